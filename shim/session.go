package shim

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/mail"
	"slices"
	"strings"
	"sync"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/mailaddr"
	"github.com/mailgate/mailgate/mailerr"
)

type backend struct{ s *Server }

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	ss := &session{s: b.s, remote: c.Conn().RemoteAddr(), conn: limitedOf(c.Conn())}
	ss.log = b.s.log.With("remote", ss.remote.String())
	return ss, nil
}

// session is one SMTP session. go-smtp starts a new one after STARTTLS, so nothing
// from before TLS (in particular no AUTH) carries over.
type session struct {
	s      *Server
	remote net.Addr
	conn   *limitedConn // nil when not from a shim listener
	log    *slog.Logger

	mu        sync.Mutex
	principal *Principal
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
				return replyError(535, "5.7.8", "the authorization identity must be empty or the user name")
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
		r := mailerr.Unauthenticated.SMTPReply()
		return replyError(r.Code, r.Enhanced, "Authentication credentials invalid: the user name is the API key's name, the password the key")
	case err != nil:
		ss.log.Warn("smtp auth could not be checked", userAttr(name), "error", err)
		return replyError(454, "4.7.0", "Temporary authentication failure; try again later")
	}
	ss.mu.Lock()
	ss.principal = &p
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
			return replyError(530, "5.7.0", "Authentication required: AUTH with an API key (user: its name, password: the key)")
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
	p, from, rcpts := *ss.principal, ss.from, append([]string(nil), ss.rcpts...)
	ss.mu.Unlock()

	raw, msgID := withMessageID(raw, p.Name, from, rcpts)
	req := &mailgatev1.SendMailRequest{RawMime: raw, IdempotencyKey: idempotencyKey(p.Name, msgID, from, rcpts, nil)}
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
	if err != nil && failureOf(err).kind == mailerr.KeyReused {
		// The device gives different messages the same Message-ID (some firmware
		// does): deduplicate this one by its content instead.
		ss.log.Warn("device reuses Message-IDs; deduplicating by content", keyAttr(p.Name), "message_id", msgID)
		req.IdempotencyKey = idempotencyKey(p.Name, msgID, from, rcpts, raw)
		resp, err = ss.s.opts.Submitter.SendMail(ctx, p, req)
	}
	if err != nil {
		reply := smtpReply(err)
		ss.s.opts.Metrics.reply(reply.Code)
		ss.log.Info("smtp message refused", keyAttr(p.Name), "reply", reply.Error())
		return reply
	}
	ss.s.opts.Metrics.reply(250)
	ss.log.Info("smtp message accepted", keyAttr(p.Name), "id", resp.GetId(), "replayed", resp.GetReplayed())
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + resp.GetId()}
}

// withMessageID returns raw with a Message-ID, and the Message-ID. When the device sent
// none, the one added is derived from the message itself, so that the same message sent
// again gets the same Message-ID, and so the same idempotency key. That needs a Date to
// tell a resend from a new message with the same text (a door alarm sent twice): a
// message with neither gets a random Message-ID, and is never taken for a resend.
// buf is the message as readMessage returns it.
func withMessageID(buf []byte, principal, from string, rcpts []string) ([]byte, string) {
	raw := buf[headroom:]
	dated := false
	if m, err := mail.ReadMessage(bytes.NewReader(raw)); err == nil {
		if id := strings.TrimSpace(m.Header.Get("Message-ID")); id != "" {
			return raw, id
		}
		dated = m.Header.Get("Date") != ""
	}
	h := sha256.New()
	if dated {
		for _, part := range append([]string{principal, from}, rcpts...) {
			h.Write([]byte(part))
			h.Write([]byte{0})
		}
		h.Write(raw)
	} else {
		var nonce [16]byte
		_, _ = rand.Read(nonce[:])
		h.Write(nonce[:])
	}
	domain := "shim.mailgate.invalid"
	if d := mailaddr.Domain(from); mailaddr.ValidDomain(d) {
		domain = d
	}
	id := "<" + hex.EncodeToString(h.Sum(nil)[:16]) + ".shim@" + domain + ">"
	return prepend(buf, "Message-ID: "+id+"\r\n"), id
}

// headroom is what readMessage leaves free in front of a message: room for the longest
// Message-ID line withMessageID writes (a 253-character domain), so that adding it copies
// nothing.
const headroom = 320

// readMessage reads a whole message in chunks, then into one slice of exactly its size
// after headroom bytes: the message is buf[headroom:]. io.ReadAll's doubling would hold up to twice the message, and
// prepending a field would copy it once more.
func readMessage(r io.Reader) ([]byte, error) {
	const chunk = 1 << 20
	var chunks [][]byte
	total := 0
	for {
		b := make([]byte, chunk)
		n, err := io.ReadFull(r, b)
		if n > 0 {
			chunks = append(chunks, b[:n])
			total += n
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	buf := make([]byte, headroom, headroom+total)
	for _, c := range chunks {
		buf = append(buf, c...)
	}
	return buf, nil
}

// prepend puts line before the message in buf (as readMessage returns it), in the
// headroom when it fits.
func prepend(buf []byte, line string) []byte {
	if start := headroom - len(line); start >= 0 {
		copy(buf[start:], line)
		return buf[start:]
	}
	return append([]byte(line), buf[headroom:]...)
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
