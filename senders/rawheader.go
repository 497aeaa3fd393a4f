package senders

import (
	"bytes"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
)

// Limits of a raw message's header section.
const (
	// MaxHeaderLine is RFC 5322's limit on a line, without its CRLF. It applies to the
	// header section only: bodies from real devices have longer lines, and every
	// backend carries them.
	MaxHeaderLine = 998
	// MaxHeaderSection is Exchange Online's limit on a message's header.
	MaxHeaderSection = 256 << 10
	// MaxRawSubject bounds an unfolded Subject field, as the API bounds subject.
	MaxRawSubject = 16 << 10
)

// singleFields are the fields RFC 5322 §3.6 allows at most once. A second one is
// ambiguous: mailgate would check one and a recipient's client might show the other.
var singleFields = map[string]string{
	"date": "Date", "from": "From", "sender": "Sender", "reply-to": "Reply-To", "to": "To",
	"cc": "Cc", "bcc": "Bcc", "message-id": "Message-ID", "in-reply-to": "In-Reply-To",
	"references": "References", "subject": "Subject",
}

// blindFields are never written: they would show blind recipients to everyone.
var blindFields = map[string]bool{"bcc": true, "resent-bcc": true}

// field is one header field of a raw message, as scanHeader found it.
type field struct {
	name       string // as written, without white space before the colon
	key        string // name in ASCII lower case
	spaced     bool   // white space between the name and the colon (RFC 5322 obsolete syntax)
	start, end int    // byte range in the message, continuation lines and line ending included
	value      []byte // the body of the field: after the colon, line endings of folds included
	valueStart int    // where value starts in the message
}

// unfolded is the field body as one line (RFC 5322 §2.2.3), without surrounding space.
func (f field) unfolded() string {
	v := bytes.ReplaceAll(f.value, []byte("\r\n"), nil)
	v = bytes.ReplaceAll(v, []byte("\n"), nil)
	return string(bytes.TrimSpace(v))
}

// scanHeader splits the header section of raw into fields, with one reading that
// validation and writing (Bcc removal) share, so they can never disagree about which
// bytes are which field. It refuses what the RFCs forbid and a parser could read two
// ways: NUL anywhere, a CR not followed by LF anywhere, header lines over 998
// characters, a header section over 256 KB, lines that are neither a field nor a
// continuation. It returns where the body starts (len(raw) for a message without one).
func scanHeader(raw []byte) ([]field, int, error) {
	if i := bytes.IndexByte(raw, 0); i >= 0 {
		return nil, 0, fmt.Errorf("a NUL character at byte %d: RFC 5322 forbids NUL in a message", i)
	}
	if i := bareCR(raw); i >= 0 {
		return nil, 0, fmt.Errorf("a CR not followed by LF at byte %d: line endings must be CRLF (or LF)", i)
	}
	var fields []field
	lineNo := 0
	for start := 0; start < len(raw); {
		lineNo++
		end := bytes.IndexByte(raw[start:], '\n')
		if end < 0 {
			end = len(raw)
		} else {
			end += start + 1
		}
		line := bytes.TrimRight(raw[start:end], "\r\n")
		if len(line) == 0 {
			return fields, end, nil // the empty line that ends the header section
		}
		if len(line) > MaxHeaderLine {
			return nil, 0, fmt.Errorf("header line %d is %d characters long; RFC 5322 allows %d (fold long fields)", lineNo, len(line), MaxHeaderLine)
		}
		if end > MaxHeaderSection {
			return nil, 0, fmt.Errorf("the header section is over %d KB (Exchange Online's limit)", MaxHeaderSection>>10)
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(fields) == 0 {
				return nil, 0, errors.New("the message starts with a continuation line (leading white space), not a header field")
			}
			f := &fields[len(fields)-1]
			f.end = end
			f.value = raw[f.valueStart:end]
			start = end
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return nil, 0, fmt.Errorf("header line %d is not a field (Name: value): %s", lineNo, quoteStart(line))
		}
		name := bytes.TrimRight(line[:colon], " \t")
		if len(name) == 0 {
			return nil, 0, fmt.Errorf("header line %d has no field name before the colon", lineNo)
		}
		for _, c := range name {
			if c < 33 || c > 126 {
				return nil, 0, fmt.Errorf("header line %d: field name %s has a character other than printable ASCII", lineNo, quoteStart(name))
			}
		}
		fields = append(fields, field{
			name:       string(name),
			key:        strings.ToLower(string(name)),
			spaced:     len(name) < colon,
			start:      start,
			end:        end,
			value:      raw[start+colon+1 : end],
			valueStart: start + colon + 1,
		})
		start = end
	}
	return fields, len(raw), nil
}

// bareCR is the index of the first CR not followed by LF in b, or -1.
func bareCR(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\r')
		if j < 0 {
			return -1
		}
		i += j
		if i+1 >= len(b) || b[i+1] != '\n' {
			return i
		}
		i += 2
	}
}

// quoteStart quotes the start of b for an error message: at most 40 bytes, so that an
// error never echoes a whole oversized line.
func quoteStart(b []byte) string {
	if len(b) > 40 {
		return fmt.Sprintf("%q…", b[:40])
	}
	return fmt.Sprintf("%q", b)
}

// RawHeader is what mailgate reads from the header of a raw message.
type RawHeader struct {
	From        []*mail.Address
	To, Cc, Bcc []*mail.Address
	MessageID   string
	HasDate     bool
	CRLF        bool // the header uses CRLF line endings

	blind [][2]int // byte ranges of the Bcc and Resent-Bcc fields
}

// ParseRawHeader reads the header section of an RFC 5322 message, strictly where the
// header decides who sends and who receives. It fails when a structural field is
// ambiguous (a second From, To, Subject…; white space before a structural field's
// colon; group syntax in From), when an address field does not parse, and on what
// scanHeader refuses. Errors say which field and which rule.
func ParseRawHeader(raw []byte) (*RawHeader, error) {
	fields, _, err := scanHeader(raw)
	if err != nil {
		return nil, err
	}
	h := &RawHeader{}
	if i := bytes.IndexByte(raw, '\n'); i > 0 && raw[i-1] == '\r' {
		h.CRLF = true
	}
	seen := map[string]bool{}
	values := map[string]string{}
	for _, f := range fields {
		canonical, single := singleFields[f.key]
		if blindFields[f.key] {
			h.blind = append(h.blind, [2]int{f.start, f.end})
			if !single {
				canonical = f.name
			}
		}
		if f.spaced && (single || blindFields[f.key]) {
			return nil, fmt.Errorf("%s header: white space between the field name and the colon is obsolete syntax that mail programs read differently; write %q", canonical, canonical+":")
		}
		if !single {
			continue
		}
		if seen[f.key] {
			return nil, fmt.Errorf("%s header: the message has more than one; RFC 5322 allows one", canonical)
		}
		seen[f.key] = true
		values[f.key] = f.unfolded()
	}
	if len(values["subject"]) > MaxRawSubject {
		return nil, fmt.Errorf("Subject header: %d characters unfolded; the limit is %d", len(values["subject"]), MaxRawSubject)
	}
	h.MessageID = values["message-id"]
	h.HasDate = values["date"] != ""
	if hasGroup(values["from"]) {
		return nil, errors.New("From header: group syntax (name: addresses;) is not allowed in From; give one address")
	}
	for _, f := range []struct {
		key, name string
		dst       *[]*mail.Address
	}{{"from", "From", &h.From}, {"to", "To", &h.To}, {"cc", "Cc", &h.Cc}, {"bcc", "Bcc", &h.Bcc}} {
		v := values[f.key]
		if v == "" {
			continue
		}
		list, err := (&mail.AddressParser{}).ParseList(v)
		if err != nil {
			return nil, fmt.Errorf("%s header: %w", f.name, err)
		}
		*f.dst = list
	}
	if h.MessageID != "" && (!strings.HasPrefix(h.MessageID, "<") || !strings.HasSuffix(h.MessageID, ">")) {
		return nil, errors.New("Message-ID header must be of the form <id@domain>")
	}
	return h, nil
}

// hasGroup reports whether an address field uses group syntax: a colon outside quoted
// strings, comments and angle brackets.
func hasGroup(v string) bool {
	depth, quoted, angle := 0, false, false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\':
			i++
		case quoted:
			quoted = c != '"'
		case c == '"':
			quoted = depth == 0
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0:
		case c == '<':
			angle = true
		case c == '>':
			angle = false
		case c == ':' && !angle:
			return true
		}
	}
	return false
}

// prefixFor builds the header fields mailgate adds in front of a raw message: a
// Message-ID and a Date when it has none.
func prefixFor(m *Message, h *RawHeader, now time.Time) []byte {
	eol := "\n"
	if h.CRLF {
		eol = "\r\n"
	}
	var prefix bytes.Buffer
	if h.MessageID == "" {
		prefix.WriteString("Message-ID: " + m.MessageID + eol)
	}
	if !h.HasDate {
		prefix.WriteString("Date: " + now.Format(time.RFC1123Z) + eol)
	}
	return prefix.Bytes()
}
