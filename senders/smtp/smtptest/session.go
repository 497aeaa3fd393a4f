package smtptest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
	"sync"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailgate/mailgate/mailaddr"
)

// replyf builds a reply. The err* functions below are Exchange Online's replies
// (docs/microsoft365-smtp.md#troubleshooting); they return fresh values because callers
// may keep them.
func replyf(code int, enhanced smtp.EnhancedCode, format string, args ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enhanced, Message: fmt.Sprintf(format, args...)}
}

func errUnrecognizedAuth() error {
	return replyf(504, smtp.EnhancedCode{5, 7, 4}, "Unrecognized authentication type")
}

func errNotAuthenticated() error {
	return replyf(530, smtp.EnhancedCode{5, 7, 57}, "Client not authenticated to send anonymous mail during MAIL FROM")
}

func errSendAsEnvelope() error {
	return replyf(550, smtp.EnhancedCode{5, 7, 60}, "SMTP; Client does not have permissions to send as this sender")
}

func errSendAsHeader(user, from string) error {
	return replyf(554, smtp.EnhancedCode{5, 2, 252}, "SendAsDenied; %s not allowed to send as %s; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied", user, from)
}

func errTokenRefused() error {
	return replyf(535, smtp.EnhancedCode{5, 7, 3}, "Authentication unsuccessful [%s]", Hostname)
}

func errBasicDisabled() error {
	return replyf(535, smtp.EnhancedCode{5, 7, 139}, "Authentication unsuccessful, basic authentication is disabled.")
}

func errBadPassword() error {
	return replyf(535, smtp.EnhancedCode{5, 7, 3}, "Authentication unsuccessful")
}

func errConcurrency() error {
	return replyf(432, smtp.EnhancedCode{4, 3, 2}, "Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending for more information.")
}

func errStartTLSFirst() error {
	return replyf(530, smtp.EnhancedCode{5, 7, 0}, "Must issue a STARTTLS command first")
}

func errRelayDenied() error {
	return replyf(550, smtp.EnhancedCode{5, 7, 64}, "TenantAttribution; Relay Access Denied [%s]", Hostname)
}

func errNonAcceptedDomain() error {
	return replyf(550, smtp.EnhancedCode{5, 7, 54}, "SMTP; Unable to relay recipient in non-accepted domain")
}

func errDirectSendRejected() error {
	return replyf(550, smtp.EnhancedCode{5, 7, 68}, "TenantInboundAttribution; Direct Send not allowed for this organization from unauthorized sources")
}

func errTooManyRecipients() error {
	return replyf(452, smtp.EnhancedCode{4, 5, 3}, "Too many recipients")
}

func errTooBig() error {
	return replyf(552, smtp.EnhancedCode{5, 3, 4}, "Message size exceeds fixed maximum message size")
}

func errSenderAlreadySpecified() error {
	return replyf(503, smtp.EnhancedCode{5, 5, 2}, "Sender already specified")
}

// errHungUp is returned after a hangup; go-smtp's attempt to send it fails.
func errHungUp() error {
	return replyf(421, smtp.EnhancedCode{4, 4, 2}, "connection dropped by smtptest")
}

// backend hands go-smtp a session per EHLO. It is unexported so that Server does not
// grow a NewSession method.
type backend struct{ s *Server }

// NewSession is called by go-smtp at the first EHLO/HELO of a connection, and again at
// the first EHLO after STARTTLS (go-smtp drops the session on STARTTLS). An error
// returned here would be sent as the reply to EHLO, not as the greeting, and go-smtp
// would keep the connection open; that is why StageConnect is handled by the listener.
func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	st := stateOf(c)
	if st == nil {
		return nil, replyf(421, smtp.EnhancedCode{4, 3, 2}, "smtptest: unknown connection")
	}
	ss := &session{s: b.s, st: st, c: c}
	state, isTLS := c.TLSConnectionState()
	if isTLS {
		ss.tls = &state
	}
	b.s.mu.Lock()
	st.info.EHLO = c.Hostname()
	if isTLS {
		st.info.TLS = state.Version
		st.info.ClientCertName = verifiedCN(state)
	}
	b.s.mu.Unlock()
	return ss, nil
}

// verifiedCN is the CN of the client certificate, if it was verified.
func verifiedCN(state tls.ConnectionState) string {
	if len(state.VerifiedChains) == 0 || len(state.PeerCertificates) == 0 {
		return ""
	}
	return state.PeerCertificates[0].Subject.CommonName
}

// session is one go-smtp Session: from EHLO (or EHLO after STARTTLS) to the end of the
// connection or the next STARTTLS.
type session struct {
	s   *Server
	st  *connState
	c   *smtp.Conn
	tls *tls.ConnectionState // nil without TLS

	// mu guards the fields below: with BDAT, go-smtp runs Data on its own goroutine and
	// may call Reset while Data is still reading.
	mu      sync.Mutex
	user    string // authenticated user, as given in AUTH
	hasFrom bool
	from    string
	rcpts   []string
	inData  bool // the next Reset is go-smtp's own after DATA, not an RSET
	// maybeEHLO: the last call was a Reset that was counted as an RSET but may have come
	// from a repeated EHLO, which go-smtp follows at once with AuthMechanisms.
	maybeEHLO bool
}

var _ smtp.AuthSession = (*session)(nil)

// AuthMechanisms is called by go-smtp while it answers EHLO, and only then. That is how
// a repeated EHLO, which go-smtp reports as a Reset, is told apart from an RSET. (go-smtp
// calls it only when AUTH is allowed, which Server.AllowInsecureAuth makes always.)
func (ss *session) AuthMechanisms() []string {
	ss.mu.Lock()
	ehloReset := ss.maybeEHLO
	ss.maybeEHLO = false
	ss.mu.Unlock()
	ss.s.mu.Lock()
	if ehloReset {
		ss.st.info.Resets--
	}
	ss.st.info.EHLO = ss.c.Hostname()
	ss.s.mu.Unlock()

	if ss.s.mode == Submission && ss.tls != nil {
		return []string{"LOGIN", "XOAUTH2"}
	}
	return nil
}

// Auth is called with the mechanism upper-cased by go-smtp, so a lower-case
// "AUTH xoauth2", which Exchange refuses, cannot be told apart and is accepted.
func (ss *session) Auth(mech string) (sasl.Server, error) {
	ss.command()
	if r, ok := ss.s.next(StageAuth); ok {
		return nil, ss.scripted(r)
	}
	if ss.s.mode != Submission || ss.tls == nil {
		return nil, errUnrecognizedAuth()
	}
	switch mech {
	case "XOAUTH2":
		return &xoauth2Server{ss: ss}, nil
	case "LOGIN":
		return &loginServer{ss: ss}, nil
	}
	return nil, errUnrecognizedAuth()
}

// authenticated completes a successful AUTH, unless the mailbox is at its session limit:
// then the AUTH fails with 432 and the connection is closed after the reply.
func (ss *session) authenticated(mech, user string) error {
	if !ss.s.acquire(ss.st, user) {
		ss.st.closeAfterReply()
		return errConcurrency()
	}
	ss.mu.Lock()
	ss.user = user
	ss.mu.Unlock()
	ss.s.mu.Lock()
	ss.st.info.AuthMechanism, ss.st.info.User = mech, user
	ss.s.mu.Unlock()
	return nil
}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	ss.command()
	if r, ok := ss.s.next(StageMail); ok {
		return ss.scripted(r)
	}
	ss.mu.Lock()
	user, hasFrom := ss.user, ss.hasFrom
	ss.mu.Unlock()
	if hasFrom {
		// go-smtp would start a second transaction on top of the first.
		return errSenderAlreadySpecified()
	}
	switch ss.s.mode {
	case Submission:
		if user == "" {
			return errNotAuthenticated()
		}
		if !ss.s.mayAs(user, from) {
			return errSendAsEnvelope()
		}
	case Relay:
		if ss.s.clientCAs != nil {
			if ss.tls == nil {
				return errStartTLSFirst()
			}
			if !ss.s.certAccepted(*ss.tls) {
				return errRelayDenied()
			}
		}
	case DirectSend:
		ss.s.mu.Lock()
		reject := ss.s.rejectDirectSend
		ss.s.mu.Unlock()
		if reject && ss.s.acceptedDomain(mailaddr.Domain(from)) {
			return errDirectSendRejected()
		}
	}
	// go-smtp checks SIZE= against MaxMessageBytes itself before calling Mail.
	if opts != nil && opts.Size > ss.s.maxBytes {
		return errTooBig()
	}
	ss.mu.Lock()
	ss.hasFrom, ss.from, ss.rcpts = true, from, nil
	ss.mu.Unlock()
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.command()
	if r, ok := ss.s.next(StageRcpt); ok {
		return ss.scripted(r)
	}
	ss.mu.Lock()
	n := len(ss.rcpts)
	ss.mu.Unlock()
	if n >= MaxRecipients {
		return errTooManyRecipients()
	}
	if ss.s.mode == DirectSend && !ss.s.acceptedDomain(mailaddr.Domain(to)) {
		return errNonAcceptedDomain()
	}
	ss.mu.Lock()
	ss.rcpts = append(ss.rcpts, to)
	ss.mu.Unlock()
	return nil
}

func (ss *session) Data(r io.Reader) error {
	ss.mu.Lock()
	ss.inData, ss.maybeEHLO = true, false
	user, from, rcpts := ss.user, ss.from, append([]string(nil), ss.rcpts...)
	ss.mu.Unlock()

	data, err := io.ReadAll(r)
	tooBig := errors.Is(err, smtp.ErrDataTooLarge)
	if err != nil && !tooBig {
		// The client went away or abandoned BDAT: nobody will read an answer.
		return err
	}
	ss.s.wait()

	msg := Message{From: from, To: rcpts, Data: data, User: user}
	if ss.tls != nil {
		msg.TLS = ss.tls.Version
		msg.ClientCertName = verifiedCN(*ss.tls)
	}
	if r, ok := ss.s.next(StageData); ok {
		if !tooBig && (r.Hangup || r.Code/100 == 2) {
			ss.s.recordMessage(ss.st, msg)
		}
		return ss.scripted(r)
	}
	if tooBig {
		return errTooBig()
	}
	h := parseHeader(data)
	if ss.s.mode == Submission {
		if err := ss.checkHeaderFrom(h, user); err != nil {
			return err
		}
	}
	n := ss.s.recordMessage(ss.st, msg)
	id := strings.TrimSpace(h.Get("Message-Id"))
	if id == "" {
		id = fmt.Sprintf("<%d@%s>", n, Hostname)
	}
	// A *SMTPError with a 2xx code is go-smtp's way to customise the success reply.
	return replyf(250, smtp.EnhancedCode{2, 6, 0}, "%s [InternalId=%d, Hostname=%s] Queued mail for delivery", id, n, Hostname)
}

// checkHeaderFrom applies Send-As to the From: header, as Exchange's store driver does
// after DATA. A message without a From: header passes (Exchange fills it in).
func (ss *session) checkHeaderFrom(h mail.Header, user string) error {
	raw := h.Get("From")
	if raw == "" {
		return nil
	}
	addrs, err := newAddressParser().ParseList(raw)
	if err != nil {
		return errSendAsHeader(user, strings.TrimSpace(raw))
	}
	for _, a := range addrs {
		if !ss.s.mayAs(user, a.Address) {
			return errSendAsHeader(user, a.Address)
		}
	}
	return nil
}

// newAddressParser returns a parser that decodes any charset in display names as if it
// were ASCII: only the addresses matter here, and an unknown charset must not make a
// From: unparsable.
func newAddressParser() *mail.AddressParser {
	return &mail.AddressParser{WordDecoder: &mime.WordDecoder{
		CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
	}}
}

// parseHeader returns the message header, or an empty one if it cannot be parsed.
func parseHeader(data []byte) mail.Header {
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return mail.Header{}
	}
	return m.Header
}

func (ss *session) Reset() {
	ss.mu.Lock()
	rset := !ss.inData
	ss.inData, ss.hasFrom, ss.from, ss.rcpts = false, false, "", nil
	ss.maybeEHLO = rset
	ss.mu.Unlock()
	if rset {
		ss.s.mu.Lock()
		ss.st.info.Resets++
		ss.s.mu.Unlock()
	}
}

// Logout does nothing: the concurrency slot belongs to the connection and is released
// when it closes (go-smtp also calls Logout at STARTTLS).
func (ss *session) Logout() error { return nil }

// command notes that a command other than RSET or EHLO arrived.
func (ss *session) command() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.maybeEHLO = false
}

// scripted carries out a scripted reply.
func (ss *session) scripted(r Reply) error {
	if r.Hangup {
		ss.st.hangup()
		return errHungUp()
	}
	return r.smtpError()
}

// certAccepted reports whether the TLS session presented a verified client certificate
// whose CN or a DNS SAN is an accepted domain or a subdomain of one
// (docs/microsoft365-smtp.md#certificate-based-connector).
func (s *Server) certAccepted(state tls.ConnectionState) bool {
	if len(state.VerifiedChains) == 0 || len(state.PeerCertificates) == 0 {
		return false
	}
	leaf := state.PeerCertificates[0]
	names := append([]string{leaf.Subject.CommonName}, leaf.DNSNames...)
	for _, n := range names {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		for _, d := range s.accepted {
			if n == d || strings.HasSuffix(n, "."+d) {
				return true
			}
		}
	}
	return false
}

// xoauth2Server is the server side of SASL XOAUTH2 as Microsoft documents it
// (docs/microsoft365-smtp.md#what-mailgate-sends): a single client message
// "user=U\x01auth=Bearer T\x01\x01". A failure is
// answered with 535 at once; there is no JSON error challenge as with Google.
type xoauth2Server struct {
	ss    *session
	asked bool
}

func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	if resp == nil && !x.asked {
		// "AUTH XOAUTH2" without an initial response: ask for it with an empty 334.
		x.asked = true
		return []byte{}, false, nil
	}
	user, token, ok := parseXOAUTH2(resp)
	if !ok || x.ss.s.tokens == nil {
		return nil, false, errTokenRefused()
	}
	scope, ok := x.ss.s.tokens(token)
	if !ok || scope != OutlookScope {
		return nil, false, errTokenRefused()
	}
	return nil, true, x.ss.authenticated("XOAUTH2", user)
}

func parseXOAUTH2(b []byte) (user, token string, ok bool) {
	rest, ok := strings.CutSuffix(string(b), "\x01\x01")
	if !ok {
		return "", "", false
	}
	for _, kv := range strings.Split(rest, "\x01") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "user":
			user = v
		case "auth":
			scheme, t, found := strings.Cut(v, " ")
			if found && strings.EqualFold(scheme, "Bearer") {
				token = t
			}
		}
	}
	return user, token, user != "" && token != ""
}

// loginServer is the server side of the LOGIN mechanism: "334 VXNlcm5hbWU6" (Username:)
// unless the client sent the user name as initial response, then "334 UGFzc3dvcmQ6"
// (Password:).
type loginServer struct {
	ss    *session
	state int // 0: start, 1: user name asked, 2: password asked
	user  string
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.state {
	case 0:
		if len(resp) == 0 {
			l.state = 1
			return []byte("Username:"), false, nil
		}
		l.user, l.state = string(resp), 2
		return []byte("Password:"), false, nil
	case 1:
		l.user, l.state = string(resp), 2
		return []byte("Password:"), false, nil
	}
	users := l.ss.s.users
	if len(users) == 0 {
		return nil, false, errBasicDisabled()
	}
	want, ok := users[strings.ToLower(l.user)]
	if !ok || want != string(resp) {
		return nil, false, errBadPassword()
	}
	return nil, true, l.ss.authenticated("LOGIN", l.user)
}
