package e2e

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// leaf is one non-multipart part of a parsed message, its body decoded.
type leaf struct {
	Header      textproto.MIMEHeader
	MediaType   string
	Params      map[string]string
	Disposition string
	DispParams  map[string]string
	Body        []byte
	// Parents are the media types of the multiparts enclosing the part, outermost first.
	Parents []string
}

// parseMIME walks a message's MIME tree, with the standard library only.
func parseMIME(t testing.TB, h textproto.MIMEHeader, body io.Reader, parents []string) []leaf {
	t.Helper()
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "text/plain; charset=us-ascii"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		t.Fatalf("Content-Type %q: %v", ct, err)
	}
	if strings.HasPrefix(mt, "multipart/") {
		if params["boundary"] == "" {
			t.Fatalf("%s without a boundary", mt)
		}
		mr := multipart.NewReader(body, params["boundary"])
		var out []leaf
		for {
			// NextRawPart: decode Content-Transfer-Encoding here, seeing what was written.
			part, err := mr.NextRawPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", mt, err)
			}
			out = append(out, parseMIME(t, part.Header, part, append(slices.Clip(parents), mt))...)
		}
		return out
	}
	l := leaf{Header: h, MediaType: mt, Params: params, Parents: parents}
	if cd := h.Get("Content-Disposition"); cd != "" {
		if l.Disposition, l.DispParams, err = mime.ParseMediaType(cd); err != nil {
			t.Fatalf("Content-Disposition %q: %v", cd, err)
		}
	}
	var r io.Reader
	switch cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))); cte {
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, body)
	case "quoted-printable":
		r = quotedprintable.NewReader(body)
	case "", "7bit", "8bit", "binary":
		r = body
	default:
		t.Fatalf("part %s: unknown Content-Transfer-Encoding %q", mt, cte)
	}
	if l.Body, err = io.ReadAll(r); err != nil {
		t.Fatalf("part %s: decoding its body: %v", mt, err)
	}
	return []leaf{l}
}

// wantAttachment is an attachment the message must carry.
type wantAttachment struct {
	Filename, ContentType, ContentID string
	Content                          []byte
}

// wantEML is what a structured message written by the file backend must say.
type wantEML struct {
	MessageID   string
	From        mail.Address
	To, Cc      []mail.Address
	Bcc         []string // must appear nowhere in the file
	Subject     string
	Headers     map[string]string // custom headers
	Text, HTML  string
	Attachments []wantAttachment
}

// readEML reads <outbox>/<id>.eml.
func readEML(t testing.TB, p *proc, id string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.outbox, id+".eml"))
	if err != nil {
		t.Fatalf("the file backend wrote no message %s: %v", id, err)
	}
	return b
}

// checkEML parses a composed message with net/mail and mime/multipart and compares it
// with what was sent.
func checkEML(t testing.TB, raw []byte, want wantEML) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("the .eml does not parse as RFC 5322: %v", err)
	}
	h := msg.Header

	from, err := h.AddressList("From")
	if err != nil || len(from) != 1 || *from[0] != want.From {
		t.Errorf("From %q (%v), want %v", h.Get("From"), err, want.From)
	}
	checkAddrs(t, h, "To", want.To)
	checkAddrs(t, h, "Cc", want.Cc)

	var dec mime.WordDecoder
	if subj, err := dec.DecodeHeader(h.Get("Subject")); err != nil || subj != want.Subject {
		t.Errorf("Subject decodes to %q (%v), want %q; raw %q", subj, err, want.Subject, h.Get("Subject"))
	}
	if ids := h["Message-Id"]; len(ids) != 1 || strings.TrimSpace(ids[0]) != want.MessageID {
		t.Errorf("Message-ID fields %q, want exactly one, %s", ids, want.MessageID)
	}
	if len(h["Date"]) != 1 {
		t.Errorf("Date fields %q, want exactly one", h["Date"])
	} else if d, err := h.Date(); err != nil {
		t.Errorf("Date %q: %v", h.Get("Date"), err)
	} else if age := time.Since(d); age < -time.Minute || age > 5*time.Minute {
		t.Errorf("Date %s is not about now", d)
	}
	if mv := h.Get("Mime-Version"); mv != "1.0" {
		t.Errorf("MIME-Version %q, want 1.0", mv)
	}
	for name, value := range want.Headers {
		if got := h[textproto.CanonicalMIMEHeaderKey(name)]; len(got) != 1 || got[0] != value {
			t.Errorf("header %s: %q, want [%q]", name, got, value)
		}
	}
	if v, ok := h["Bcc"]; ok {
		t.Errorf("the message has a Bcc header: %q", v)
	}
	for _, b := range want.Bcc {
		if bytes.Contains(bytes.ToLower(raw), []byte(strings.ToLower(b))) {
			t.Errorf("the Bcc address %s appears in the message", b)
		}
	}

	leaves := parseMIME(t, textproto.MIMEHeader(h), msg.Body, nil)
	var texts, htmls []leaf
	atts := map[string]leaf{}
	for _, l := range leaves {
		switch {
		case l.Disposition != "" && l.Disposition != "inline" || l.Header.Get("Content-Id") != "":
			name := l.DispParams["filename"]
			if name == "" {
				name = l.Params["name"]
			}
			// Non-ASCII names come as an RFC 2047 word inside the quoted parameter (what
			// most mail programs write and read), which mime.ParseMediaType leaves as is.
			if decoded, err := dec.DecodeHeader(name); err == nil {
				name = decoded
			}
			if _, dup := atts[name]; dup {
				t.Errorf("two attachments named %q", name)
			}
			atts[name] = l
		case l.MediaType == "text/plain":
			texts = append(texts, l)
		case l.MediaType == "text/html":
			htmls = append(htmls, l)
		default:
			t.Errorf("unexpected part %s %q", l.MediaType, l.Header)
		}
	}
	checkBody(t, "text/plain", texts, want.Text)
	checkBody(t, "text/html", htmls, want.HTML)
	if want.Text != "" && want.HTML != "" && len(texts) == 1 && len(htmls) == 1 {
		if !slices.Contains(texts[0].Parents, "multipart/alternative") || !slices.Equal(texts[0].Parents, htmls[0].Parents) {
			t.Errorf("text in %q and html in %q: want both in one multipart/alternative", texts[0].Parents, htmls[0].Parents)
		}
	}
	if len(atts) != len(want.Attachments) {
		t.Errorf("%d attachments, want %d", len(atts), len(want.Attachments))
	}
	for _, wa := range want.Attachments {
		l, ok := atts[wa.Filename]
		if !ok {
			t.Errorf("no attachment named %q (have %v)", wa.Filename, mapKeys(atts))
			continue
		}
		if l.MediaType != wa.ContentType {
			t.Errorf("attachment %s: Content-Type %s, want %s", wa.Filename, l.MediaType, wa.ContentType)
		}
		if !bytes.Equal(l.Body, wa.Content) {
			t.Errorf("attachment %s: %d bytes differ from the %d sent", wa.Filename, len(l.Body), len(wa.Content))
		}
		if wa.ContentID != "" {
			// RFC 2045 §7, RFC 2392: the header holds the id in angle brackets.
			if cid := l.Header.Get("Content-Id"); cid != "<"+wa.ContentID+">" {
				t.Errorf("inline part %s: Content-ID %q, want <%s>", wa.Filename, cid, wa.ContentID)
			}
			if l.Disposition != "inline" {
				t.Errorf("inline part %s: Content-Disposition %q, want inline", wa.Filename, l.Disposition)
			}
			if !slices.Contains(l.Parents, "multipart/related") {
				t.Errorf("inline part %s is in %q, want inside multipart/related", wa.Filename, l.Parents)
			}
		} else if l.Disposition != "attachment" {
			t.Errorf("attachment %s: Content-Disposition %q, want attachment", wa.Filename, l.Disposition)
		}
	}
}

func checkAddrs(t testing.TB, h mail.Header, field string, want []mail.Address) {
	t.Helper()
	if len(want) == 0 {
		if v, ok := h[field]; ok {
			t.Errorf("%s: %q, want no such field", field, v)
		}
		return
	}
	got, err := h.AddressList(field)
	if err != nil {
		t.Errorf("%s %q: %v", field, h.Get(field), err)
		return
	}
	var g []mail.Address
	for _, a := range got {
		g = append(g, *a)
	}
	if !slices.Equal(g, want) {
		t.Errorf("%s: %v, want %v", field, g, want)
	}
}

// checkBody checks that exactly one part of a kind carries the body sent. The message
// is written with CRLF line ends (RFC 5322), so line ends are compared as LF.
func checkBody(t testing.TB, kind string, parts []leaf, want string) {
	t.Helper()
	if want == "" {
		if len(parts) != 0 {
			t.Errorf("%d %s parts, want none", len(parts), kind)
		}
		return
	}
	if len(parts) != 1 {
		t.Errorf("%d %s parts, want one", len(parts), kind)
		return
	}
	p := parts[0]
	if cs := strings.ToLower(p.Params["charset"]); cs != "utf-8" {
		t.Errorf("%s charset %q, want utf-8", kind, cs)
	}
	got := strings.ReplaceAll(string(p.Body), "\r\n", "\n")
	if got != want {
		t.Errorf("%s body decodes to %q, want %q", kind, got, want)
	}
}

func mapKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
