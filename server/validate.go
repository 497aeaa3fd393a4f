package server

import (
	"fmt"
	"mime"
	"net/mail"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/mailaddr"
	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/senders"
)

// Limits bound what one request may carry.
type Limits struct {
	// MaxMessageBytes is the largest message, as encoded MIME.
	MaxMessageBytes int64
	// MaxRecipients is the most envelope recipients (to+cc+bcc, deduplicated) per message.
	MaxRecipients int
}

const (
	maxNameLen       = 256
	maxHeaderCount   = 50
	maxHeaderLen     = 998 // RFC 5322 line limit
	maxFilenameLen   = 255
	maxTagCount      = 32
	maxTagValueLen   = 256
	maxIdemKeyLen    = 255
	maxSubjectLen    = 16 << 10
	maxAttachmentCnt = 250
)

var (
	customHeaderName = regexp.MustCompile(`^[Xx]-[!-9;-~]{1,74}$`) // X- then RFC 5322 ftext
	tagKey           = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

// violations collects every problem with a request, so the caller fixes them in one go.
type violations []mailerr.FieldViolation

func (v *violations) add(field, format string, args ...any) {
	*v = append(*v, mailerr.FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// normalize validates a SendMail request and turns it into the one Message model every
// backend takes. Errors are mailerr Invalid (with every field violation) or TooLarge.
func normalize(req *mailgatev1.SendMailRequest, id string, now time.Time, lim Limits) (*senders.Message, error) {
	var v violations
	if req.GetRawMime() != nil {
		return normalizeRaw(req, id, now, lim, &v)
	}
	c := &senders.Content{Subject: req.GetSubject(), Text: req.GetText(), HTML: req.GetHtml()}
	if req.GetFrom() == nil {
		v.add("from", "required")
	} else {
		c.From, _ = address(&v, "from", req.GetFrom())
	}
	c.To = addressList(&v, "to", req.GetTo())
	c.Cc = addressList(&v, "cc", req.GetCc())
	c.Bcc = addressList(&v, "bcc", req.GetBcc())
	c.ReplyTo = addressList(&v, "replyTo", req.GetReplyTo())
	if len(c.To)+len(c.Cc)+len(c.Bcc) == 0 && len(req.GetTo())+len(req.GetCc())+len(req.GetBcc()) == 0 {
		v.add("to", "at least one recipient is required in to, cc or bcc")
	}
	switch {
	case len(c.Subject) > maxSubjectLen:
		v.add("subject", "longer than %d bytes", maxSubjectLen)
	case hasControl(c.Subject):
		v.add("subject", "must not contain line breaks or other control characters")
	}
	if c.Text == "" && c.HTML == "" {
		v.add("text", "a body is required: text, html or rawMime")
	}
	if strings.IndexByte(c.Text, 0) >= 0 {
		v.add("text", "must not contain NUL characters")
	}
	if strings.IndexByte(c.HTML, 0) >= 0 {
		v.add("html", "must not contain NUL characters")
	}
	c.Headers = customHeaders(&v, req.GetHeaders())
	c.Attachments = attachments(&v, req.GetAttachments())
	checkCommon(&v, req)
	if len(v) > 0 {
		return nil, mailerr.Violations(v)
	}
	msg := senders.NewMessage(id, c, now)
	msg.SaveToSentItems = optionalBool(req)
	if err := checkRecipientCount(len(msg.Recipients), lim); err != nil {
		return nil, err
	}
	if size := c.EstimatedSize(); size > lim.MaxMessageBytes {
		return nil, tooLarge(largestPart(c), size, lim.MaxMessageBytes)
	}
	return msg, nil
}

func normalizeRaw(req *mailgatev1.SendMailRequest, id string, now time.Time, lim Limits, v *violations) (*senders.Message, error) {
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"subject", req.GetSubject() != ""}, {"text", req.GetText() != ""}, {"html", req.GetHtml() != ""},
		{"attachments", len(req.GetAttachments()) > 0}, {"headers", len(req.GetHeaders()) > 0},
		{"replyTo", len(req.GetReplyTo()) > 0},
	} {
		if f.set {
			v.add(f.name, "not allowed with rawMime: the message's own header and body say it")
		}
	}
	raw := req.GetRawMime()
	if int64(len(raw)) > lim.MaxMessageBytes {
		return nil, tooLarge("rawMime", int64(len(raw)), lim.MaxMessageBytes)
	}
	h, err := senders.ParseRawHeader(raw)
	if err != nil {
		v.add("rawMime", "%v", err)
	} else if len(h.From) != 1 {
		v.add("rawMime", "the From header must hold exactly one address (it has %d)", len(h.From))
	} else {
		headerAddresses(v, h, len(req.GetTo())+len(req.GetCc())+len(req.GetBcc()) == 0)
	}
	var envFrom mail.Address
	if req.GetFrom() != nil {
		envFrom, _ = address(v, "from", req.GetFrom())
	}
	to, cc, bcc := addressList(v, "to", req.GetTo()), addressList(v, "cc", req.GetCc()), addressList(v, "bcc", req.GetBcc())
	checkCommon(v, req)
	if len(*v) > 0 {
		return nil, mailerr.Violations(*v)
	}
	msg := senders.NewRawMessage(id, raw, h, now)
	msg.SaveToSentItems = optionalBool(req)
	if envFrom.Address != "" {
		msg.EnvelopeFrom = envFrom.Address
	}
	if len(req.GetTo())+len(req.GetCc())+len(req.GetBcc()) > 0 {
		// The envelope, when given, overrides the header, as an SMTP envelope does.
		msg.Recipients = senders.Envelope(to, cc, bcc)
	}
	if len(msg.Recipients) == 0 {
		return nil, mailerr.Violations([]mailerr.FieldViolation{{
			Field: "to", Description: "no recipients: give to, cc or bcc, or To/Cc/Bcc header fields in rawMime",
		}})
	}
	if err := checkRecipientCount(len(msg.Recipients), lim); err != nil {
		return nil, err
	}
	return msg, nil
}

// headerAddresses checks the addresses of a raw message's header that decide who sends
// and, when the request gives no envelope, who receives, by the rules of the API's
// address fields; each is rewritten to the ASCII form the backends send. With an
// envelope, To, Cc and Bcc decide nothing, and need not even parse.
func headerAddresses(v *violations, h *senders.RawHeader, envelope bool) {
	type field struct {
		name string
		list []*mail.Address
	}
	lists := []field{{"From", h.From}}
	hint := ""
	if envelope {
		lists = append(lists, field{"To", h.To}, field{"Cc", h.Cc}, field{"Bcc", h.Bcc})
		hint = "; or give the recipients in to, cc or bcc"
		if h.RecipientsErr != nil {
			v.add("rawMime", "%v: without to, cc or bcc in the request, the recipients come from these fields; give them in to, cc or bcc", h.RecipientsErr)
		}
	}
	for _, l := range lists {
		for _, a := range l.list {
			p, err := mailaddr.Parse(a.Address)
			if err != nil {
				h := ""
				if l.name != "From" {
					h = hint
				}
				v.add("rawMime", "%s header: %q is not a valid address: %v%s", l.name, a.Address, err, h)
				continue
			}
			a.Address = p.String()
		}
	}
}

// checkCommon checks the fields structured and raw requests share.
func checkCommon(v *violations, req *mailgatev1.SendMailRequest) {
	if len(req.GetTags()) > maxTagCount {
		v.add("tags", "at most %d tags", maxTagCount)
	}
	for _, k := range sortedKeys(req.GetTags()) {
		val := req.GetTags()[k]
		if !tagKey.MatchString(k) {
			v.add("tags", "tag name %q: use 1 to 64 of A-Z a-z 0-9 _ . -", k)
		}
		if len(val) > maxTagValueLen || hasControl(val) {
			v.add("tags."+k, "at most %d characters, no control characters", maxTagValueLen)
		}
	}
	if k := req.GetIdempotencyKey(); k != "" {
		if err := checkIdempotencyKey(k); err != nil {
			v.add("idempotencyKey", "%v", err)
		}
	}
}

func checkIdempotencyKey(k string) error {
	if len(k) > maxIdemKeyLen {
		return fmt.Errorf("longer than %d characters", maxIdemKeyLen)
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return fmt.Errorf("use printable ASCII characters only")
		}
	}
	return nil
}

func checkRecipientCount(n int, lim Limits) error {
	if n > lim.MaxRecipients {
		return mailerr.Violations([]mailerr.FieldViolation{{
			Field:       "to",
			Description: fmt.Sprintf("too many recipients: %d in to, cc and bcc together (limit %d per message)", n, lim.MaxRecipients),
		}})
	}
	return nil
}

// largestPart names the field that contributes most to a message's size.
func largestPart(c *senders.Content) string {
	field, size := "text", len(c.Text)
	if len(c.HTML) > size {
		field, size = "html", len(c.HTML)
	}
	total := 0
	for _, a := range c.Attachments {
		total += len(a.Content)
	}
	if total > size {
		field = "attachments"
	}
	return field
}

func tooLarge(field string, size, limit int64) *mailerr.Error {
	e := mailerr.Violations([]mailerr.FieldViolation{{
		Field:       field,
		Description: fmt.Sprintf("message is about %s encoded; the limit is %s", mb(size), mb(limit)),
	}})
	e.Kind = mailerr.TooLarge
	e.Msg = fmt.Sprintf("message too large: about %s encoded, limit %s", mb(size), mb(limit))
	return e
}

// mb renders a size for people: MB (MiB) with one decimal, KB below that.
func mb(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
}

func optionalBool(req *mailgatev1.SendMailRequest) *bool {
	if req.SaveToSentItems == nil {
		return nil
	}
	b := req.GetSaveToSentItems()
	return &b
}

// address validates one Address. The address must be a bare addr-spec; a display name
// goes in name, so nothing a caller sends is parsed twice or silently rewritten.
func address(v *violations, field string, a *mailgatev1.Address) (mail.Address, bool) {
	addr, name := a.GetAddress(), a.GetName()
	ok := true
	switch {
	case addr == "":
		v.add(field+".address", "required")
		ok = false
	case hasControl(addr):
		v.add(field+".address", "must not contain line breaks or other control characters")
		ok = false
	case len(addr) > mailaddr.MaxAddress:
		v.add(field+".address", "longer than %d characters", mailaddr.MaxAddress)
		ok = false
	case strings.ContainsAny(addr, "<>"):
		v.add(field+".address", "%q: give the bare address (user@example.com) and the display name in name", addr)
		ok = false
	default:
		a, err := mailaddr.Parse(addr)
		if err != nil {
			v.add(field+".address", "%q is not a valid address: %v", addr, err)
			ok = false
		} else {
			// An internationalised domain travels in its ASCII form (A-labels), the
			// one every backend's envelope can carry.
			addr = a.String()
		}
	}
	if hasControl(name) {
		v.add(field+".name", "must not contain line breaks or other control characters")
		ok = false
	} else if len(name) > maxNameLen {
		v.add(field+".name", "longer than %d characters", maxNameLen)
		ok = false
	}
	return mail.Address{Name: name, Address: addr}, ok
}

func addressList(v *violations, field string, list []*mailgatev1.Address) []mail.Address {
	out := make([]mail.Address, 0, len(list))
	for i, a := range list {
		if addr, ok := address(v, fmt.Sprintf("%s[%d]", field, i), a); ok {
			out = append(out, addr)
		}
	}
	return out
}

func customHeaders(v *violations, headers map[string]string) []senders.Header {
	if len(headers) > maxHeaderCount {
		v.add("headers", "at most %d custom headers", maxHeaderCount)
	}
	seen := map[string]string{}
	var out []senders.Header
	for _, name := range sortedKeys(headers) {
		value := headers[name]
		field := "headers." + name
		if !customHeaderName.MatchString(name) {
			v.add(field, "custom header names must start with X- and contain only printable ASCII without ':' or spaces")
			continue
		}
		if other, dup := seen[strings.ToLower(name)]; dup {
			v.add(field, "same header as %s (names are case-insensitive)", other)
			continue
		}
		seen[strings.ToLower(name)] = name
		if hasControl(value) {
			v.add(field, "value must not contain line breaks or other control characters")
			continue
		}
		if len(name)+2+len(value) > maxHeaderLen {
			v.add(field, "header longer than %d characters", maxHeaderLen)
			continue
		}
		out = append(out, senders.Header{Name: name, Value: value})
	}
	return out
}

func attachments(v *violations, list []*mailgatev1.Attachment) []senders.Attachment {
	if len(list) > maxAttachmentCnt {
		v.add("attachments", "at most %d attachments", maxAttachmentCnt)
	}
	out := make([]senders.Attachment, 0, len(list))
	ids := map[string]int{}
	for i, a := range list {
		field := fmt.Sprintf("attachments[%d]", i)
		name := a.GetFilename()
		switch {
		case name == "":
			v.add(field+".filename", "required")
		case len(name) > maxFilenameLen:
			v.add(field+".filename", "longer than %d bytes", maxFilenameLen)
		case hasControl(name) || strings.ContainsAny(name, `/\`) || name == "." || name == "..":
			v.add(field+".filename", "%q: a file name, without path separators or control characters", name)
		}
		ctype := a.GetContentType()
		if ctype == "" {
			ctype = mime.TypeByExtension(strings.ToLower(path.Ext(name)))
			if ctype == "" {
				ctype = "application/octet-stream"
			}
		} else if mt, problem := attachmentType(ctype); problem != "" {
			v.add(field+".contentType", "%q %s", ctype, problem)
		} else {
			ctype = mt
			if strings.HasPrefix(mt, "text/") && utf8.Valid(a.GetContent()) {
				ctype += "; charset=utf-8"
			}
		}
		cid := strings.TrimSuffix(strings.TrimPrefix(a.GetContentId(), "<"), ">")
		if cid != "" {
			if hasControl(cid) || strings.ContainsAny(cid, " <>\"") || len(cid) > maxFilenameLen {
				v.add(field+".contentId", "%q: use printable characters without spaces, quotes or angle brackets", a.GetContentId())
			} else if j, dup := ids[cid]; dup {
				v.add(field+".contentId", "same as attachments[%d].contentId", j)
			}
			ids[cid] = i
		}
		out = append(out, senders.Attachment{Filename: name, ContentType: ctype, ContentID: cid, Content: a.GetContent()})
	}
	return out
}

// attachmentType checks a caller's attachment media type: a plain type/subtype of a
// discrete type, since mailgate writes the parameters (name=, from the filename) and the
// part's structure itself. A multipart or message type would claim a structure the
// base64 content does not have.
func attachmentType(ctype string) (string, string) {
	mt, params, err := mime.ParseMediaType(ctype)
	typ, sub, _ := strings.Cut(mt, "/")
	switch {
	case err != nil || sub == "" || hasControl(ctype):
		return "", "is not a media type such as application/pdf"
	case len(params) > 0 || strings.Contains(ctype, ";"):
		return "", "has parameters: give type/subtype only, such as application/pdf (mailgate sets name= from the filename)"
	case typ == "multipart" || typ == "message":
		return "", "is a composite type: attach the file as application/octet-stream, or send the whole message as rawMime"
	}
	return mt, ""
}

// hasControl reports whether s has a control character (CR and LF above all: they would
// end a header field and start another) or is not valid UTF-8. Tabs are allowed.
func hasControl(s string) bool {
	if !utf8.ValidString(s) {
		return true
	}
	for _, r := range s {
		if r != '\t' && unicode.IsControl(r) {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
