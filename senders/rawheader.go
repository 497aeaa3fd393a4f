package senders

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"golang.org/x/text/encoding/charmap"
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

// CountBareLF counts the LFs in b that no CR precedes: what writing b with CRLF line
// endings adds.
func CountBareLF(b []byte) int {
	n := 0
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return n
		}
		i += j
		if i == 0 || b[i-1] != '\r' {
			n++
		}
		i++
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

// FieldSpan is where a header field is in a message: raw[Start:End], continuation lines
// and line ending included.
type FieldSpan struct {
	Name       string // as written
	Start, End int
}

// RawHeader is what mailgate reads from the header of a raw message.
type RawHeader struct {
	From []*mail.Address
	// To, Cc and Bcc are the addresses of those fields. A field that does not parse
	// leaves its list empty and RecipientsErr says why: its addresses matter only when
	// the header gives the recipients.
	To, Cc, Bcc   []*mail.Address
	RecipientsErr error
	// MessageID is the Message-ID field's value, unfolded, as the message gives it; ""
	// without one or when it is empty. MessageIDField is the field, nil without one.
	MessageID      string
	MessageIDField *FieldSpan
	HasDate        bool
	// TraceEnd is where the trace fields (Received, Return-Path) at the top of the
	// message end: fields mailgate adds go there.
	TraceEnd int
	// BareLF counts the message's LFs without a CR before them; written, each becomes
	// CRLF.
	BareLF int

	blind    [][2]int  // byte ranges of the Bcc and Resent-Bcc fields
	rewrites []rawEdit // From, To and Cc fields whose display names were not UTF-8, re-encoded
	unparsed bool      // a To or Cc field did not parse
}

// ParseRawHeader reads the header section of an RFC 5322 message, strictly where the
// header decides who sends, leniently where it does not. It fails when a structural
// field is ambiguous (a second From, To, Subject…; white space before a structural
// field's colon; group syntax in From), when From does not parse, and on what
// scanHeader refuses. To, Cc and Bcc that do not parse are reported in RecipientsErr,
// not refused: they decide nothing when an envelope gives the recipients. Errors say
// which field and which rule.
func ParseRawHeader(raw []byte) (*RawHeader, error) {
	fields, _, err := scanHeader(raw)
	if err != nil {
		return nil, err
	}
	h := &RawHeader{BareLF: CountBareLF(raw)}
	seen := map[string]bool{}
	values := map[string]string{}
	var spans = map[string]*FieldSpan{}
	trace := true
	for _, f := range fields {
		if trace && (f.key == "received" || f.key == "return-path") {
			h.TraceEnd = f.end
		} else {
			trace = false
		}
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
		spans[f.key] = &FieldSpan{Name: f.name, Start: f.start, End: f.end}
	}
	if len(values["subject"]) > MaxRawSubject {
		//lint:ignore ST1005 the field name is written as RFC 5322 spells it, and callers see it
		return nil, fmt.Errorf("Subject header: %d characters unfolded; the limit is %d", len(values["subject"]), MaxRawSubject)
	}
	h.MessageID = values["message-id"]
	h.MessageIDField = spans["message-id"]
	h.HasDate = values["date"] != ""
	if hasGroup(values["from"]) {
		//lint:ignore ST1005 the field name is written as RFC 5322 spells it, and callers see it
		return nil, errors.New("From header: group syntax (name: addresses;) is not allowed in From; give one address")
	}
	if v := values["from"]; v != "" {
		list, latin, err := parseAddressList(v)
		if err != nil {
			//lint:ignore ST1005 the field name is written as RFC 5322 spells it, and callers see it
			return nil, fmt.Errorf("From header: %w", err)
		}
		h.From = list
		if f := spans["from"]; latin {
			h.rewrites = append(h.rewrites, rawEdit{f.Start, f.End, encodeAddressField(f.Name, list)})
		}
	}
	for _, f := range []struct {
		key, name string
		dst       *[]*mail.Address
	}{{"to", "To", &h.To}, {"cc", "Cc", &h.Cc}, {"bcc", "Bcc", &h.Bcc}} {
		v := values[f.key]
		if v == "" {
			continue
		}
		list, latin, err := parseAddressList(v)
		if err != nil {
			if h.RecipientsErr == nil {
				h.RecipientsErr = fmt.Errorf("%s header: %w", f.name, err)
			}
			h.unparsed = h.unparsed || f.key != "bcc"
			continue
		}
		*f.dst = list
		if s := spans[f.key]; latin && f.key != "bcc" {
			h.rewrites = append(h.rewrites, rawEdit{s.Start, s.End, encodeAddressField(s.Name, list)})
		}
	}
	return h, nil
}

// ParseAddressList reads an address field's value as ParseRawHeader does: a value that
// is not valid UTF-8 is read as windows-1252 (old devices write Latin-1 display names),
// encoded words in any charset go-message knows are decoded, and display names come
// back as valid UTF-8. The addresses themselves must be ASCII or, in a UTF-8 value,
// UTF-8.
func ParseAddressList(v string) ([]*mail.Address, error) {
	list, _, err := parseAddressList(v)
	return list, err
}

// parseAddressList is ParseAddressList; latin reports a value read as windows-1252.
func parseAddressList(v string) (list []*mail.Address, latin bool, err error) {
	if !utf8.ValidString(v) {
		v, latin = decodeWindows1252(v), true
	}
	list, err = (&mail.AddressParser{WordDecoder: wordDecoder}).ParseList(v)
	if err != nil {
		return nil, latin, shorten(err)
	}
	for _, a := range list {
		if latin && !isASCII(a.Address) {
			return nil, latin, errors.New("8-bit bytes that are not UTF-8 in an address: only a display name may hold them")
		}
		a.Name = strings.ToValidUTF8(a.Name, "\uFFFD")
	}
	return list, latin, nil
}

// shorten keeps a parse error short: net/mail quotes the rest of the field, which may
// be long.
func shorten(err error) error {
	if s := err.Error(); len(s) > 200 {
		return errors.New(s[:200] + "…")
	}
	return err
}

// wordDecoder decodes RFC 2047 words in display names. A charset go-message does not
// know leaves the word's bytes as they are (made valid UTF-8 afterwards): a display name
// is never a reason to refuse a message.
var wordDecoder = &mime.WordDecoder{CharsetReader: func(cs string, input io.Reader) (io.Reader, error) {
	if r, err := charset.Reader(cs, input); err == nil {
		return r, nil
	}
	return input, nil
}}

// encodeAddressField writes an address field whose display names were not UTF-8 again,
// each name as RFC 2047 words of UTF-8, one a line, so that every backend gets a header
// it can read (Graph needs UTF-8; a recipient's client would guess the raw bytes'
// charset). Comments and group names are not kept.
func encodeAddressField(name string, list []*mail.Address) string {
	var b strings.Builder
	b.WriteString(name + ":")
	for i, a := range list {
		if i > 0 {
			b.WriteString(",\r\n")
		}
		if a.Name != "" {
			// Encode splits a long name into words of at most 75 characters; between
			// two encoded words, folding white space is not part of the name (RFC 2047
			// §6.2).
			for _, w := range strings.Fields(mime.QEncoding.Encode("utf-8", a.Name)) {
				b.WriteString(" " + w + "\r\n")
			}
		}
		b.WriteString(" <" + a.Address + ">")
	}
	b.WriteString("\r\n")
	return b.String()
}

// UTF8 is s when it is valid UTF-8, else s read as windows-1252: text from a raw message
// for a backend that carries only UTF-8 (Graph's JSON).
func UTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return decodeWindows1252(s)
}

// decodeWindows1252 reads s as windows-1252, the superset of ISO-8859-1 that mail
// programs take for it. Its five undefined bytes become U+FFFD.
func decodeWindows1252(s string) string {
	// The decoder maps every byte to a rune: it cannot fail.
	out, _ := charmap.Windows1252.NewDecoder().String(s)
	return out
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// NormalMessageID is the Message-ID mailgate sends for a field's value v: v itself when
// it is one msg-id, <v> when v is one without its angle brackets (20261203.0001@mfp), and
// ok false otherwise (spaces, no @, 8-bit bytes, several ids, comments): such a value is
// replaced. A msg-id here is "<", a left part, "@", a right part, ">", both parts
// non-empty printable ASCII without "<", ">" or "@".
func NormalMessageID(v string) (id string, ok bool) {
	v = strings.TrimSpace(v)
	inner := v
	if strings.HasPrefix(v, "<") && strings.HasSuffix(v, ">") {
		inner = v[1 : len(v)-1]
	}
	left, right, found := strings.Cut(inner, "@")
	if !found || left == "" || right == "" {
		return "", false
	}
	for i := 0; i < len(inner); i++ {
		if c := inner[i]; c <= ' ' || c > '~' || c == '<' || c == '>' || c == '@' && i != len(left) {
			return "", false
		}
	}
	return "<" + inner + ">", true
}

// MessageIDLine is a Message-ID field holding id, under the name the message gave it.
func MessageIDLine(name, id string) string {
	if name == "" {
		name = "Message-ID"
	}
	return name + ": " + id + "\r\n"
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
