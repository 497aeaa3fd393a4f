package shim

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/mailaddr"
	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/mailerr/mailstatus"
	"github.com/mailgate/mailgate/senders"
)

type backend struct{ s *Server }

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	ss := &session{s: b.s, smtp: c, remote: c.Conn().RemoteAddr(), conn: limitedOf(c.Conn())}
	ss.log = b.s.log.With("remote", ss.remote.String())
	return ss, nil
}

// session is one SMTP session. go-smtp starts a new one after STARTTLS, so nothing
// from before TLS (in particular no AUTH) carries over.
type session struct {
	s      *Server
	smtp   *smtp.Conn // for the HELO name and TLS state, in the Received field
	remote net.Addr
	conn   *limitedConn // nil when not from a shim listener
	log    *slog.Logger

	mu        sync.Mutex
	principal *Principal
	authed    bool // the principal came by AUTH, not by the client's address
	from      string
	rcpts     []string
}

var _ smtp.AuthSession = (*session)(nil)

// AuthMechanisms offers PLAIN and LOGIN (many scanners know only LOGIN). go-smtp
// announces them only after STARTTLS unless AllowInsecureAuth.
func (ss *session) AuthMechanisms() []string { return []string{sasl.Plain, sasl.Login} }

func (ss *session) Auth(mech string) (sasl.Server, error) {
	mech = strings.ToUpper(mech)
	check := func(user, pass string) error {
		err := ss.authenticate(user, pass)
		result := "ok"
		var se *smtp.SMTPError
		switch {
		case errors.As(err, &se) && se.Code == 535:
			result = "bad_credentials"
		case err != nil:
			result = "error"
		}
		ss.s.opts.Metrics.auth.WithLabelValues(mech, result).Inc()
		return err
	}
	malformed := func() { ss.authAborted(mech, "malformed") }
	switch mech {
	case sasl.Plain:
		return syntaxReplies{malformed, sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				ss.s.opts.Metrics.auth.WithLabelValues(mech, "bad_credentials").Inc()
				return reply(mailerr.Unauthenticated.SMTPReply(), "the authorization identity must be empty or the user name")
			}
			return check(user, pass)
		})}, nil
	case sasl.Login:
		return syntaxReplies{malformed, newLoginServer(check)}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// syntaxReplies answers a SASL response that does not parse (go-sasl's errors, which are
// not SMTP replies) with 501 5.5.2: go-smtp would answer 454 4.7.0, a temporary failure,
// and the client would send the same response for ever. The shim's own replies (535,
// 454 when the key could not be checked) pass unchanged.
type syntaxReplies struct {
	malformed func() // counts the attempt
	sasl.Server
}

func (s syntaxReplies) Next(response []byte) ([]byte, bool, error) {
	challenge, done, err := s.Server.Next(response)
	if err == nil {
		return challenge, done, nil
	}
	// go-smtp writes an *SMTPError as it is, and only that.
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return nil, true, se
	}
	s.malformed()
	return nil, true, replyAuthSyntax
}

var _ smtp.AuthAborter = (*session)(nil)

// AuthAborted counts an AUTH that go-smtp answered 501 itself: a response that is not
// base64, or the client's "*". No key was checked, so the client is no closer to
// sending; a client outside the devices' ranges still has only auth_timeout to succeed.
func (ss *session) AuthAborted(mech string, cancelled bool) {
	result := "malformed"
	if cancelled {
		result = "cancelled"
	}
	ss.authAborted(mech, result)
}

func (ss *session) authAborted(mech, result string) {
	mech = strings.ToUpper(mech)
	if !slices.Contains(ss.AuthMechanisms(), mech) {
		// Any word the client sent: the metric's labels stay the mechanisms offered.
		mech = "other"
	}
	ss.s.opts.Metrics.auth.WithLabelValues(mech, result).Inc()
	ss.log.Info("smtp auth "+result, "mechanism", mech)
}

func (ss *session) authenticate(name, secret string) error {
	ctx, cancel := context.WithTimeout(context.Background(), ss.s.opts.SubmitTimeout)
	defer cancel()
	p, err := ss.s.opts.Submitter.Authenticate(ctx, name, secret)
	switch {
	case errors.Is(err, ErrBadCredentials):
		ss.log.Info("smtp auth refused", userAttr(name))
		return reply(mailerr.Unauthenticated.SMTPReply(), "Authentication credentials invalid: the user name is the API key's name, the password the key")
	case err != nil:
		ss.log.Warn("smtp auth could not be checked", userAttr(name), "error", err)
		return reply(mailerr.ReplyAuthUnavailable, "Temporary authentication failure; try again later")
	}
	ss.mu.Lock()
	ss.principal, ss.authed = &p, true
	ss.mu.Unlock()
	if ss.conn != nil {
		ss.conn.authenticated()
	}
	ss.log.Debug("smtp auth", keyAttr(p.Name))
	return nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.principal == nil {
		p, ok := ss.s.device(ss.remote)
		if !ok {
			// Never an open relay: no key, no configured address, no mail.
			return reply(mailerr.ReplyAuthRequired, "Authentication required: AUTH with an API key (user: its name, password: the key)")
		}
		ss.principal = &p
	}
	ss.from, ss.rcpts = from, nil
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *session) Reset() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.from, ss.rcpts = "", nil
}

func (ss *session) Logout() error { return nil }

// Data submits the message. The reply is the service's verdict: 250 with mailgate's id
// once the message is accepted, else the code mailerr's table gives its error.
func (ss *session) Data(r io.Reader) error {
	raw, err := readMessage(r)
	if err != nil {
		// go-smtp's own replies (552 for a message over SIZE) pass; go-smtp writes any
		// other error's text after 554, and a read error's names the socket's addresses.
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se
		}
		ss.log.Info("smtp message not received completely", "error", err)
		return replyIncomplete
	}
	ss.mu.Lock()
	p, from, rcpts, authed := *ss.principal, ss.from, append([]string(nil), ss.rcpts...), ss.authed
	ss.mu.Unlock()

	msg := &message{buf: raw, off: headroom}
	msgID, ok := withMessageID(msg, p.Name, from, rcpts)
	raw = msg.bytes() // what the device sent, with its Message-ID: the content a key may hash
	traceID := newTraceID()
	if ok {
		// Only on a message the service can take: its refusal of another names lines
		// and bytes of the message as the device sent it.
		msg.replace(0, 0, ss.received(traceID, authed, time.Now()))
	}
	req := &mailgatev1.SendMailRequest{RawMime: msg.bytes(), IdempotencyKey: idempotencyKey(p.Name, msgID, from, rcpts, nil),
		Delivery: mailgatev1.SendMailRequest_SYNC}
	if ss.s.opts.Queued {
		req.Delivery = mailgatev1.SendMailRequest_QUEUED
	}
	if from != "" {
		req.From = &mailgatev1.Address{Address: from}
	}
	// In a canonical order: a resend that lists the recipients in another order is
	// still the same request to the service.
	ordered := slices.Clone(rcpts)
	slices.SortFunc(ordered, func(a, b string) int { return strings.Compare(mailaddr.Key(a), mailaddr.Key(b)) })
	for _, rcpt := range ordered {
		req.To = append(req.To, &mailgatev1.Address{Address: rcpt})
	}
	ctx, cancel := context.WithTimeout(context.Background(), ss.s.opts.SubmitTimeout)
	defer cancel()
	resp, err := ss.s.opts.Submitter.SendMail(ctx, p, req)
	failed := mailstatus.FromError(err) // nil on success
	if failed != nil && failed.Kind == mailerr.KeyReused {
		// The device gives different messages the same Message-ID (some firmware
		// does): deduplicate this one by its content instead.
		ss.log.Warn("device reuses Message-IDs; deduplicating by content", keyAttr(p.Name), "message_id", msgID)
		req.IdempotencyKey = idempotencyKey(p.Name, msgID, from, rcpts, raw)
		resp, err = ss.s.opts.Submitter.SendMail(ctx, p, req)
		failed = mailstatus.FromError(err)
	}
	if failed != nil {
		reply := smtpReply(failed)
		ss.s.opts.Metrics.reply(reply.Code)
		ss.log.Info("smtp message refused", keyAttr(p.Name), "received_id", traceID, "reply", reply.Error())
		return reply
	}
	ss.s.opts.Metrics.reply(250)
	ss.log.Info("smtp message accepted", keyAttr(p.Name), "id", resp.GetId(), "received_id", traceID, "status", resp.GetStatus().String(),
		"replayed", resp.GetReplayed())
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + resp.GetId()}
}

// withMessageID gives msg a Message-ID mailgate can send, and returns it; ok is false
// for a message whose header the service will refuse, which is left as it is.
//
//   - A msg-id (<id@domain>) is kept.
//   - One without its angle brackets (20261203.0001@mfp) is bracketed, in place: the
//     same id with or without brackets is the same message, and gets the same key.
//   - Any other value (spaces, no @, 8-bit bytes) is replaced, in place, by one derived
//     from the principal, the envelope sender and that value: a resend of it gets the
//     same Message-ID, and so the same key, as if it were a msg-id.
//   - None (or an empty field): one is added, derived from the message itself, so that
//     the same message sent again gets the same Message-ID. That needs a Date to tell a
//     resend from a new message with the same text (a door alarm sent twice): a message
//     with neither gets a random Message-ID, and is never taken for a resend.
//
// Generated ids are at the envelope sender's domain, or for a null reverse-path
// (MAIL FROM:<>, a bounce) the From header's, in ASCII (A-labels).
func withMessageID(msg *message, principal, from string, rcpts []string) (string, bool) {
	raw := msg.bytes()
	h, err := senders.ParseRawHeader(raw)
	if err != nil {
		return randomMessageID("shim.mailgate.invalid"), false
	}
	domain := mailaddr.Domain(from)
	if domain == "" && len(h.From) == 1 {
		domain = mailaddr.Domain(h.From[0].Address)
	}
	if domain == "" {
		domain = "shim.mailgate.invalid"
	}
	f := h.MessageIDField
	if id, ok := senders.NormalMessageID(h.MessageID); ok {
		if id != strings.TrimSpace(h.MessageID) {
			msg.replace(f.Start, f.End, senders.MessageIDLine(f.Name, id))
		}
		return id, true
	}
	var id string
	switch {
	case h.MessageID != "":
		sum := hashParts(principal, from, h.MessageID).Sum(nil)
		id = "<" + hex.EncodeToString(sum[:16]) + ".shim@" + domain + ">"
	case h.HasDate:
		hp := hashParts(append([]string{principal, from}, rcpts...)...)
		hp.Write(raw)
		id = "<" + hex.EncodeToString(hp.Sum(nil)[:16]) + ".shim@" + domain + ">"
	default:
		id = randomMessageID(domain)
	}
	if f != nil {
		msg.replace(f.Start, f.End, senders.MessageIDLine(f.Name, id))
	} else {
		msg.replace(h.TraceEnd, h.TraceEnd, senders.MessageIDLine("", id))
	}
	return id, true
}

func randomMessageID(domain string) string {
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	sum := sha256.Sum256(nonce[:])
	return "<" + hex.EncodeToString(sum[:16]) + ".shim@" + domain + ">"
}

// hashParts starts a hash of strings, each ended by a NUL so that no two lists hash
// alike.
func hashParts(parts ...string) hash.Hash {
	h := sha256.New()
	for _, part := range parts {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return h
}

// received is the shim's trace field (RFC 5321 §4.4), on top of the message: the
// client's HELO name and address (no reverse lookup: it would delay every message and
// depend on DNS), the shim's host name, the protocol (RFC 3848: ESMTP, S with TLS, A
// with AUTH), and id, a fresh id the shim logs with mailgate's id (which exists only
// once the message is submitted). No "for" clause: it would name a blind recipient to
// every recipient.
func (ss *session) received(id string, authed bool, now time.Time) string {
	helo := "unknown"
	if ss.smtp != nil && validHelo(ss.smtp.Hostname()) {
		helo = ss.smtp.Hostname()
	}
	addr := "unknown"
	if ap, err := netip.ParseAddrPort(ss.remote.String()); err == nil {
		ip := ap.Addr().Unmap()
		addr = "[" + ip.String() + "]"
		if ip.Is6() {
			addr = "[IPv6:" + ip.String() + "]"
		}
	}
	proto := "ESMTP"
	if ss.smtp != nil {
		if _, ok := ss.smtp.TLSConnectionState(); ok {
			proto += "S"
		}
	}
	if authed {
		proto += "A"
	}
	return "Received: from " + helo + " (" + addr + ")\r\n\tby " + ss.s.opts.Hostname + " (mailgate) with " + proto +
		" id " + id + ";\r\n\t" + now.Format(time.RFC1123Z) + "\r\n"
}

// validHelo reports whether a HELO name can go in a header field as it is: a host name
// or an address literal, at most 255 characters.
func validHelo(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(".-_:[]", c) >= 0) {
			return false
		}
	}
	return true
}

func newTraceID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// headroom is what readMessage leaves free in front of a message: room for the fields
// the shim adds or rewrites (Received, Message-ID; a HELO name and a host name of 255
// characters each fit), so that doing so copies only the header before them.
const headroom = 2048

// readMessage reads a whole message in chunks, then into one slice of exactly its size
// after headroom bytes: the message is buf[headroom:]. io.ReadAll's doubling would hold
// up to twice the message, and prepending a field would copy it once more. The copy
// from the chunks writes each LF without a CR before it as CRLF: the message has CRLF
// line endings before the shim adds anything (a CR without LF stays, and is refused).
func readMessage(r io.Reader) ([]byte, error) {
	const chunk = 1 << 20
	var chunks [][]byte
	total, bare := 0, 0
	var prev byte
	for {
		b := make([]byte, chunk)
		n, err := io.ReadFull(r, b)
		if n > 0 {
			c := b[:n]
			chunks = append(chunks, c)
			total += n
			bare += senders.CountBareLF(c)
			if c[0] == '\n' && prev == '\r' {
				bare-- // the CR ended the chunk before
			}
			prev = c[n-1]
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	buf := make([]byte, headroom, headroom+total+bare)
	prev = 0
	for _, c := range chunks {
		if bare == 0 {
			buf = append(buf, c...)
			continue
		}
		for len(c) > 0 {
			i := bytes.IndexByte(c, '\n')
			if i < 0 {
				buf = append(buf, c...)
				prev = c[len(c)-1]
				break
			}
			buf = append(buf, c[:i]...)
			if (i > 0 && c[i-1] != '\r') || (i == 0 && prev != '\r') {
				buf = append(buf, '\r')
			}
			buf = append(buf, '\n')
			prev = '\n'
			c = c[i+1:]
		}
	}
	return buf, nil
}

// message is a message being prepared for submission: buf[off:] is the message, and
// buf[:off] free room in front of it.
type message struct {
	buf []byte
	off int
}

func (m *message) bytes() []byte { return m.buf[m.off:] }

// replace puts with in place of the message's bytes [start, end), moving the bytes
// before start (at most the header) within the free room, not the rest of the message.
func (m *message) replace(start, end int, with string) {
	delta := len(with) - (end - start)
	if delta > m.off {
		// No room left (a very long host name): one copy.
		b := m.bytes()
		out := make([]byte, 0, len(b)+delta)
		out = append(append(append(out, b[:start]...), with...), b[end:]...)
		*m = message{buf: out}
		return
	}
	off := m.off - delta
	copy(m.buf[off:], m.buf[m.off:m.off+start])
	copy(m.buf[off+start:], with)
	m.off = off
}

// idempotencyKey identifies one transaction of a message: its principal, Message-ID and
// envelope (and, for a device that reuses Message-IDs, its content). The envelope is in
// it because one message may rightly come in several transactions, to different
// recipients (an MTA splits a long recipient list); a resend repeats the envelope. The
// result is printable ASCII of bounded length, as the API wants.
func idempotencyKey(principal, msgID, from string, rcpts []string, content []byte) string {
	sorted := slices.Clone(rcpts)
	for i := range sorted {
		sorted[i] = mailaddr.Key(sorted[i])
	}
	slices.Sort(sorted)
	h := sha256.New()
	for _, part := range append([]string{principal, msgID, mailaddr.Key(from)}, sorted...) {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	prefix := "smtp-msgid-"
	if content != nil {
		h.Write(content)
		prefix = "smtp-content-"
	}
	return prefix + hex.EncodeToString(h.Sum(nil))
}
