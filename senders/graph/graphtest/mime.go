package graphtest

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
)

// parseMIMEBody decodes a MIME sendMail/draft body: base64 of the whole message, possibly
// wrapped over lines.
func parseMIMEBody(body []byte) ([]byte, *Message, *graphError) {
	clean := bytes.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, body)
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
	n, err := base64.StdEncoding.Strict().Decode(raw, clean)
	if err != nil || len(clean) == 0 {
		return nil, nil, gerr(400, "ErrorMimeContentInvalidBase64String", msgInvalidBase64MIME)
	}
	raw = raw[:n]
	m, err := parseMIME(raw)
	if err != nil {
		var ge *graphError
		if errors.As(err, &ge) {
			return nil, nil, ge
		}
		return nil, nil, gerr(400, "ErrorMimeContentInvalid", "The MIME content is invalid. (%v)", err)
	}
	return raw, m, nil
}

func (e *graphError) Error() string { return e.code + ": " + e.msg }

var wordDecoder = &mime.WordDecoder{CharsetReader: func(charset string, in io.Reader) (io.Reader, error) {
	// utf-8 and us-ascii are handled by mime.WordDecoder itself; pass others through
	// undecoded rather than failing (tests use UTF-8).
	return in, nil
}}

func decodeWords(s string) string {
	if d, err := wordDecoder.DecodeHeader(s); err == nil {
		return d
	}
	return s
}

// parseMIME parses an RFC 5322/MIME message into a Message: headers, recipients, the
// text or HTML body (HTML preferred in multipart/alternative) and every other leaf part
// as an attachment.
func parseMIME(raw []byte) (*Message, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	m := &Message{Subject: decodeWords(msg.Header.Get("Subject")), Headers: rawHeaders(raw)}

	addrs := func(name string) ([]Address, error) {
		if msg.Header.Get(name) == "" {
			return nil, nil
		}
		l, err := msg.Header.AddressList(name)
		if err != nil {
			return nil, gerr(400, "ErrorInvalidRecipients", msgUnresolvedRecipient, strings.TrimSpace(msg.Header.Get(name)))
		}
		var out []Address
		for _, a := range l {
			out = append(out, Address{Address: a.Address, Name: a.Name})
		}
		return out, nil
	}
	if m.To, err = addrs("To"); err != nil {
		return nil, err
	}
	if m.Cc, err = addrs("Cc"); err != nil {
		return nil, err
	}
	if m.Bcc, err = addrs("Bcc"); err != nil {
		return nil, err
	}
	if m.ReplyTo, err = addrs("Reply-To"); err != nil {
		return nil, err
	}
	if msg.Header.Get("From") != "" {
		from, err := msg.Header.AddressList("From")
		if err != nil || len(from) == 0 {
			return nil, fmt.Errorf("bad From header: %v", err)
		}
		m.From = &Address{Address: from[0].Address, Name: from[0].Name}
	}

	top := textproto.MIMEHeader(msg.Header)
	if err := walkPart(m, top, msg.Body, 0); err != nil {
		return nil, err
	}
	if m.BodyType == "" {
		m.BodyType = "text"
	}
	return m, nil
}

// rawHeaders returns the top-level header fields with their names as written.
func rawHeaders(raw []byte) map[string]string {
	out := map[string]string{}
	r := bufio.NewReader(bytes.NewReader(raw))
	var name, val string
	flush := func() {
		if name != "" {
			if _, dup := out[name]; !dup {
				out[name] = decodeWords(strings.TrimSpace(val))
			}
		}
		name, val = "", ""
	}
	for {
		line, err := r.ReadString('\n')
		trimmed := strings.TrimRight(line, "\r\n")
		if trimmed == "" {
			break
		}
		if trimmed[0] == ' ' || trimmed[0] == '\t' {
			val += " " + strings.TrimSpace(trimmed)
		} else {
			flush()
			if k, v, ok := strings.Cut(trimmed, ":"); ok {
				name, val = strings.TrimSpace(k), v
			}
		}
		if err != nil {
			break
		}
	}
	flush()
	return out
}

func walkPart(m *Message, h textproto.MIMEHeader, body io.Reader, depth int) error {
	if depth > 20 {
		return errors.New("MIME nesting too deep")
	}
	ctype := h.Get("Content-Type")
	if ctype == "" {
		ctype = "text/plain; charset=us-ascii"
	}
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil {
		mt, params = "application/octet-stream", map[string]string{}
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("multipart: %w", err)
			}
			if err := walkPart(m, p.Header, p, depth+1); err != nil {
				return err
			}
		}
	}

	content, err := decodeTransfer(h.Get("Content-Transfer-Encoding"), body)
	if err != nil {
		return err
	}
	disp, dparams, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
	name := dparams["filename"]
	if name == "" {
		name = params["name"]
	}
	name = decodeWords(name)
	cid := strings.Trim(strings.TrimSpace(h.Get("Content-Id")), "<>")

	if (mt == "text/plain" || mt == "text/html") && disp != "attachment" && name == "" {
		switch {
		case mt == "text/html" && m.BodyType != "html":
			// HTML wins over a text alternative seen before it.
			m.BodyType, m.Body = "html", string(content)
			return nil
		case mt == "text/plain" && m.BodyType == "":
			m.BodyType, m.Body = "text", string(content)
			return nil
		case mt == "text/plain" && m.BodyType == "html":
			return nil // the text alternative of an HTML body
		}
		// A further text part: kept below as an (unnamed) attachment.
	}
	m.Attachments = append(m.Attachments, Attachment{
		Name:        name,
		ContentType: mt,
		ContentID:   cid,
		IsInline:    disp == "inline" || (disp == "" && cid != ""),
		Content:     content,
	})
	return nil
}

func decodeTransfer(cte string, r io.Reader) ([]byte, error) {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		b, err := io.ReadAll(r)
		if err != nil {
			return nil, err
		}
		clean := bytes.Map(func(r rune) rune {
			switch r {
			case ' ', '\t', '\r', '\n':
				return -1
			}
			return r
		}, b)
		out, err := base64.StdEncoding.DecodeString(string(clean))
		if err != nil {
			return nil, fmt.Errorf("base64 part: %w", err)
		}
		return out, nil
	case "quoted-printable":
		b, err := io.ReadAll(quotedprintable.NewReader(r))
		if err != nil {
			return nil, fmt.Errorf("quoted-printable part: %w", err)
		}
		return b, nil
	default:
		return io.ReadAll(r)
	}
}
