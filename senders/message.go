package senders

import (
	"bytes"
	"errors"
	"io"
	"net/mail"
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
	rawPrefix []byte     // header fields mailgate adds in front of raw (Message-ID, Date)
	rawBcc    [][2]int   // byte ranges of raw's Bcc fields, left out when writing
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
// The bytes are kept as they are; a Message-ID and a Date are prepended when missing.
// From and the envelope come from the header; callers may override Recipients and
// EnvelopeFrom afterwards.
func NewRawMessage(id string, raw []byte, h *RawHeader, now time.Time) *Message {
	m := &Message{ID: id, Date: now, raw: raw, rawHeader: h, MessageID: h.MessageID}
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
	if m.MessageID == "" {
		m.MessageID = newMessageID(id, m.From.Address)
	}
	m.rawPrefix = prefixFor(m, h, now)
	m.rawBcc = h.blind
	return m
}

// WriteTo writes the message in RFC 5322 form. For a structured message it composes MIME
// (multipart/alternative for text+html, related for inline parts, mixed for
// attachments); a raw message is written as the caller sent it. Either way no Bcc field
// is written: blind recipients are in Recipients only.
func (m *Message) WriteTo(w io.Writer) (int64, error) {
	if m.Content == nil {
		n, err := w.Write(m.rawPrefix)
		total := int64(n)
		at := 0
		for _, r := range append(m.rawBcc, [2]int{len(m.raw), len(m.raw)}) {
			if err != nil {
				break
			}
			n, err = w.Write(m.raw[at:r[0]])
			total += int64(n)
			at = r[1]
		}
		return total, err
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

// RawSize is how many bytes WriteTo writes for a raw message.
func (m *Message) RawSize() int {
	n := len(m.rawPrefix) + len(m.raw)
	for _, r := range m.rawBcc {
		n -= r[1] - r[0]
	}
	return n
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
		eol := "\n"
		if m.rawHeader != nil && m.rawHeader.CRLF {
			eol = "\r\n"
		}
		// One address per line keeps every line far below RFC 5322's 998 characters.
		k, err := io.WriteString(w, "Bcc: "+strings.Join(bcc, ","+eol+" ")+eol)
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

func newMessageID(id, from string) string {
	domain := "mailgate.invalid"
	if i := strings.LastIndexByte(from, '@'); i >= 0 && i < len(from)-1 {
		domain = from[i+1:]
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
