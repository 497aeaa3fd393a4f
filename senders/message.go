package senders

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"io"
	"net/mail"
	"slices"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/mailgate/mailgate/mailaddr"
)

// Message is one validated, routed message, ready for a backend. Backends read it and
// never modify it.
//
// A message is either structured (Content is set: Graph can send it as JSON) or raw
// (Content is nil: the caller's RFC 5322 bytes). Either way WriteTo produces the
// RFC 5322 form, composed by one composer for every backend.
type Message struct {
	// ID is mailgate's id for the message.
	ID string
	// MessageID is the RFC 5322 Message-ID, with angle brackets.
	MessageID string
	// Date is the message's Date header.
	Date time.Time
	// From is the author (the From header).
	From mail.Address
	// EnvelopeFrom is the SMTP reverse-path; From.Address unless the caller gave another.
	EnvelopeFrom string
	// Recipients are the envelope recipients (To, Cc and Bcc), deduplicated.
	Recipients []string
	// Mailbox is the mailbox the route sends as (the Graph user, the SMTP AUTH user);
	// empty means From.Address.
	Mailbox string
	// SaveToSentItems overrides the backend's default when set.
	SaveToSentItems *bool
	// Content is the structured message; nil for a raw message.
	Content *Content

	rawHeader *RawHeader // what ParseRawHeader read from raw
	raw       []byte     // the caller's bytes, for a raw message
	rawEdits  []rawEdit  // what writing changes in raw, in order
}

// rawEdit replaces raw[start:end] (whole lines) with with (CRLF lines): a Bcc field
// left out, a Message-ID or From field rewritten, a field added (start == end).
type rawEdit struct {
	start, end int
	with       string
}

// Content is a structured message.
type Content struct {
	From                 mail.Address
	To, Cc, Bcc, ReplyTo []mail.Address
	Subject              string
	Text, HTML           string
	Attachments          []Attachment
	// Headers are custom header fields (X-...), in the order they are written.
	Headers []Header
}

// Attachment is a file attached to a structured message.
type Attachment struct {
	Filename    string
	ContentType string
	// ContentID, when set, makes the attachment an inline part (multipart/related),
	// referenced from the HTML as cid:ContentID. Without angle brackets.
	ContentID string
	Content   []byte
}

// Header is one header field.
type Header struct {
	Name, Value string
}

// SendingMailbox is the mailbox the message is sent as.
func (m *Message) SendingMailbox() string {
	if m.Mailbox != "" {
		return m.Mailbox
	}
	return m.From.Address
}

// NewMessage composes a structured message. id becomes the local part of the generated
// Message-ID; the envelope recipients are To, Cc and Bcc, deduplicated.
func NewMessage(id string, c *Content, now time.Time) *Message {
	return &Message{
		ID:           id,
		MessageID:    newMessageID(id, c.From.Address),
		Date:         now,
		From:         c.From,
		EnvelopeFrom: c.From.Address,
		Recipients:   Envelope(c.To, c.Cc, c.Bcc),
		Content:      c,
	}
}

// NewRawMessage wraps an RFC 5322 message whose header h was parsed by ParseRawHeader.
// The bytes are kept as they are, and written with these changes: CRLF line endings;
// a Message-ID and a Date added after the trace fields when missing; a Message-ID
// without angle brackets bracketed, one that is no msg-id (or empty) replaced, in place;
// a From whose display name is not UTF-8 re-encoded; Bcc fields left out. From and the
// envelope come from the header; callers may override Recipients and EnvelopeFrom
// afterwards.
func NewRawMessage(id string, raw []byte, h *RawHeader, now time.Time) *Message {
	m := &Message{ID: id, Date: now, raw: raw, rawHeader: h}
	if len(h.From) > 0 {
		m.From = *h.From[0]
		m.EnvelopeFrom = h.From[0].Address
	}
	var rcpts recipients
	for _, list := range [][]*mail.Address{h.To, h.Cc, h.Bcc} {
		for _, a := range list {
			rcpts.add(a.Address)
		}
	}
	m.Recipients = rcpts.list
	var edits []rawEdit
	var added string
	switch normal, ok := NormalMessageID(h.MessageID); {
	case ok:
		m.MessageID = normal
		if normal != strings.TrimSpace(h.MessageID) {
			f := h.MessageIDField
			edits = append(edits, rawEdit{f.Start, f.End, MessageIDLine(f.Name, normal)})
		}
	case h.MessageIDField != nil:
		m.MessageID = newMessageID(id, m.From.Address)
		f := h.MessageIDField
		edits = append(edits, rawEdit{f.Start, f.End, MessageIDLine(f.Name, m.MessageID)})
	default:
		m.MessageID = newMessageID(id, m.From.Address)
		added = MessageIDLine("", m.MessageID)
	}
	if !h.HasDate {
		added += "Date: " + now.Format(time.RFC1123Z) + "\r\n"
	}
	if added != "" {
		edits = append(edits, rawEdit{h.TraceEnd, h.TraceEnd, added})
	}
	edits = append(edits, h.rewrites...)
	for _, b := range h.blind {
		edits = append(edits, rawEdit{start: b[0], end: b[1]})
	}
	slices.SortFunc(edits, func(a, b rawEdit) int { return cmp.Or(cmp.Compare(a.start, b.start), cmp.Compare(a.end, b.end)) })
	m.rawEdits = edits
	return m
}

// WriteTo writes the message in RFC 5322 form. For a structured message it composes MIME
// (multipart/alternative for text+html, related for inline parts, mixed for
// attachments); a raw message is written as the caller sent it. Either way no Bcc field
// is written: blind recipients are in Recipients only.
func (m *Message) WriteTo(w io.Writer) (int64, error) {
	if m.Content == nil {
		return m.writeRaw(w)
	}
	var sp splice
	msg, err := m.compose(&sp)
	if err != nil {
		return 0, err
	}
	if len(sp.parts) == 0 {
		return msg.WriteTo(w)
	}
	out := &splicer{w: w, parts: sp.parts}
	if _, err := msg.WriteTo(out); err != nil {
		return out.n, err
	}
	return out.n, out.Flush()
}

// HeaderRecipients lists the addresses of a raw message's To and Cc fields; nil for a
// structured message.
func (m *Message) HeaderRecipients() []string {
	if m.rawHeader == nil {
		return nil
	}
	var out []string
	for _, list := range [][]*mail.Address{m.rawHeader.To, m.rawHeader.Cc} {
		for _, a := range list {
			out = append(out, a.Address)
		}
	}
	return out
}

// HeaderRecipientsUnparsed reports whether a raw message's To or Cc field did not parse:
// a backend that takes the recipients from the header cannot know whom it names.
func (m *Message) HeaderRecipientsUnparsed() bool {
	return m.rawHeader != nil && m.rawHeader.unparsed
}

// RawSize is how many bytes WriteTo writes for a raw message.
func (m *Message) RawSize() int {
	n := len(m.raw)
	if m.rawHeader != nil {
		n += m.rawHeader.BareLF
	}
	for _, e := range m.rawEdits {
		n += len(e.with) - (e.end - e.start)
		if m.rawHeader != nil && m.rawHeader.BareLF > 0 {
			n -= CountBareLF(m.raw[e.start:e.end])
		}
	}
	return n
}

// writeRaw writes raw with its edits, bare LFs as CRLF. Nothing is copied: a 35 MB
// message is written from the caller's bytes.
func (m *Message) writeRaw(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	var bw *bufio.Writer
	var out io.Writer = cw
	lf := m.rawHeader != nil && m.rawHeader.BareLF > 0
	if lf {
		// One write per line would be hundreds of thousands of writes for a large
		// message; the buffer makes them a few.
		bw = bufio.NewWriterSize(cw, 64<<10)
		out = bw
	}
	at := 0
	for _, e := range append(m.rawEdits, rawEdit{start: len(m.raw), end: len(m.raw)}) {
		if err := m.writeSpan(out, at, e.start, lf); err != nil {
			return cw.n, err
		}
		if _, err := io.WriteString(out, e.with); err != nil {
			return cw.n, err
		}
		at = e.end
	}
	if bw != nil {
		if err := bw.Flush(); err != nil {
			return cw.n, err
		}
	}
	return cw.n, nil
}

// writeSpan writes raw[a:b], each LF without a CR before it (in raw) as CRLF when lf.
// Spans start at line starts, so the byte before a is the end of the line before.
func (m *Message) writeSpan(w io.Writer, a, b int, lf bool) error {
	if !lf {
		_, err := w.Write(m.raw[a:b])
		return err
	}
	for from := a; a < b; {
		i := bytes.IndexByte(m.raw[from:b], '\n')
		if i < 0 {
			_, err := w.Write(m.raw[a:b])
			return err
		}
		i += from
		if i > 0 && m.raw[i-1] == '\r' {
			from = i + 1
			continue
		}
		if _, err := w.Write(m.raw[a:i]); err != nil {
			return err
		}
		if _, err := io.WriteString(w, "\r\n"); err != nil {
			return err
		}
		a, from = i+1, i+1
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// WriteRawWithBcc writes a raw message as WriteTo does, with one Bcc field listing bcc
// ahead of the caller's header. It is for a backend whose only envelope is the header
// (Graph's MIME sendMail); the receiving system removes the field.
func (m *Message) WriteRawWithBcc(w io.Writer, bcc []string) (int64, error) {
	if m.Content != nil {
		return 0, errors.New("WriteRawWithBcc: not a raw message")
	}
	var n int64
	if len(bcc) > 0 {
		// One address per line keeps every line far below RFC 5322's 998 characters.
		k, err := io.WriteString(w, "Bcc: "+strings.Join(bcc, ",\r\n ")+"\r\n")
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
	k, err := m.WriteTo(w)
	return n + k, err
}

// compose builds the go-mail message afresh for each write: it is cheap (attachments are
// read through, not copied) and leaves no reader state behind a failed write. Large
// attachments are left to sp, to be streamed in (see splice); with a nil sp, go-mail
// encodes them itself.
func (m *Message) compose(sp *splice) (*gomail.Msg, error) {
	c := m.Content
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent(), gomail.WithCharset(gomail.CharsetUTF8))
	msg.FromMailAddress(&c.From)
	setAddrs(msg, gomail.HeaderTo, c.To)
	setAddrs(msg, gomail.HeaderCc, c.Cc)
	setAddrs(msg, gomail.HeaderReplyTo, c.ReplyTo)
	msg.SetMessageIDWithValue(strings.TrimSuffix(strings.TrimPrefix(m.MessageID, "<"), ">"))
	msg.SetDateWithValue(m.Date)
	if c.Subject != "" {
		msg.Subject(c.Subject)
	}
	for _, h := range c.Headers {
		msg.SetGenHeader(gomail.Header(h.Name), h.Value)
	}
	switch {
	case c.Text != "" && c.HTML != "":
		msg.SetBodyString(gomail.TypeTextPlain, c.Text)
		msg.AddAlternativeString(gomail.TypeTextHTML, c.HTML)
	case c.HTML != "":
		msg.SetBodyString(gomail.TypeTextHTML, c.HTML)
	default:
		msg.SetBodyString(gomail.TypeTextPlain, c.Text)
	}
	for _, a := range c.Attachments {
		opts := []gomail.FileOption{gomail.WithFileContentType(gomail.ContentType(a.ContentType))}
		content := a.Content
		if sp != nil && len(content) >= spliceMin {
			content = sp.standIn(content)
		}
		r := bytes.NewReader(content)
		if a.ContentID != "" {
			// RFC 2392: the header holds the id in angle brackets; cid: URLs omit them.
			msg.EmbedReadSeeker(a.Filename, r, append(opts, gomail.WithFileContentID("<"+a.ContentID+">"))...)
		} else {
			msg.AttachReadSeeker(a.Filename, r, opts...)
		}
	}
	return msg, nil
}

func setAddrs(msg *gomail.Msg, h gomail.AddrHeader, list []mail.Address) {
	if len(list) == 0 {
		return
	}
	ptrs := make([]*mail.Address, len(list))
	for i := range list {
		ptrs[i] = &list[i]
	}
	msg.SetAddrHeaderFromMailAddress(h, ptrs...)
}

// EstimatedSize is the size of the composed message, never less and at most a few
// kilobytes more: base64 attachments grow by 4/3 plus line breaks, bodies by their
// quoted-printable escapes. It enforces size limits without composing the message.
func (c *Content) EstimatedSize() int64 {
	n := 2048 + wordSize(c.Subject) // fixed header fields, multipart boundaries
	for _, h := range c.Headers {
		n += int64(len(h.Name)+4) + wordSize(h.Value)
	}
	for _, list := range [][]mail.Address{{c.From}, c.To, c.Cc, c.ReplyTo} {
		for _, a := range list {
			n += int64(len(a.Address)+6) + wordSize(a.Name)
		}
	}
	n += qpSize(c.Text) + qpSize(c.HTML)
	for _, a := range c.Attachments {
		b64 := (int64(len(a.Content)) + 2) / 3 * 4
		n += b64 + b64/76*2 + 512 + wordSize(a.Filename)*2 + int64(len(a.ContentType)+len(a.ContentID))
	}
	return n
}

// wordSize bounds the size of s in a header as RFC 2047 encoded words: every byte
// escaped (three characters), 15 characters of "=?UTF-8?q?", "?=" and folding for
// every 60 characters of payload.
func wordSize(s string) int64 {
	if s == "" {
		return 0
	}
	n := 3 * int64(len(s))
	return n + (n/60+1)*15
}

// qpSize is the quoted-printable size of s: a byte that needs escaping costs three, and
// every 75 characters a soft line break costs three more (upper bound).
func qpSize(s string) int64 {
	n := int64(len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x80 || c == '=' || c < ' ' && c != '\t' && c != '\r' && c != '\n' {
			n += 2
		}
	}
	return n + n/75*3
}

// newMessageID is the Message-ID mailgate gives a message: its id at the From address's
// domain, in ASCII (A-labels), as a msg-id must be; go-mail would write a Unicode domain
// as an RFC 2047 word, which is no msg-id.
func newMessageID(id, from string) string {
	domain := mailaddr.Domain(from)
	if domain == "" {
		domain = "mailgate.invalid"
	}
	return "<" + id + "@" + domain + ">"
}

// Envelope lists the addresses of lists once each, in order: the envelope recipients of
// To, Cc and Bcc.
func Envelope(lists ...[]mail.Address) []string {
	var r recipients
	for _, list := range lists {
		for _, a := range list {
			r.add(a.Address)
		}
	}
	return r.list
}

// recipients collects envelope recipients once each, comparing canonical forms (ASCII
// case-insensitive: a domain is, and no real system distinguishes local parts by case).
type recipients struct {
	list []string
	seen map[string]struct{}
}

func (r *recipients) add(addr string) {
	k := mailaddr.Key(addr)
	if _, dup := r.seen[k]; dup {
		return
	}
	if r.seen == nil {
		r.seen = make(map[string]struct{})
	}
	r.seen[k] = struct{}{}
	r.list = append(r.list, addr)
}
