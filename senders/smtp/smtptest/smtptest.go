// Package smtptest runs in-process fakes of Microsoft 365's SMTP endpoints, for tests of
// mailgate's SMTP sender. Each fake is a github.com/emersion/go-smtp server on
// 127.0.0.1 with a self-signed certificate, and it answers the way Exchange Online does
// as Microsoft documents it (docs/microsoft365-smtp.md, and the pages its Sources list):
//
//   - Submission models smtp.office365.com:587, SMTP AUTH client submission
//     (#smtp-auth-with-oauth-smtp_auth): AUTH is offered only after STARTTLS, as LOGIN and
//     XOAUTH2 (#what-mailgate-sends); an XOAUTH2 token must have been issued for
//     https://outlook.office365.com/.default; a mailbox may have at most 3 authenticated
//     connections at once (#limits-and-how-mailgate-keeps-to-them); the sender must be the
//     mailbox or a Send-As address, checked at MAIL FROM and on the From: header.
//   - Relay models the tenant's MX endpoint with an inbound connector
//     (#relay-through-an-inbound-connector-relay): IP-based (any client) or
//     certificate-based (a TLS client certificate whose CN or a DNS SAN is an accepted
//     domain). External recipients are allowed.
//   - DirectSend models the tenant's MX endpoint used anonymously (#direct-send-direct_send):
//     recipients must be in an accepted domain, and Set-OrganizationConfig
//     -RejectDirectSend is available.
//
// Replies carry Exchange Online's codes and texts (#troubleshooting), always with an
// enhanced status code. TLS 1.0 and 1.1 are refused. Limits: 500 recipients per message,
// 35 MiB per message by default. Not modelled: message and recipient rates, daily quotas,
// SPF/DKIM/DMARC, Conditional Access and the per-tenant/per-mailbox SMTP AUTH switch
// (#step-6-turn-on-smtp-auth-for-the-mailbox).
//
// Failures can be injected with Server.Script, which replaces the answer to the next
// command at a given stage, or hangs up instead of answering.
//
// Typical use:
//
//	s := smtptest.New(t, smtptest.Options{
//		Mode:   smtptest.Submission,
//		Tokens: func(tok string) (string, bool) { return smtptest.OutlookScope, tok == "good" },
//	})
//	// dial s.Addr(), STARTTLS trusting s.CertPool() (or s.CAFile(t)),
//	// AUTH XOAUTH2 as "noreply@contoso.com" with token "good", send.
//	msgs := s.Messages()
package smtptest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Mode selects which Microsoft 365 endpoint a Server imitates.
type Mode int

const (
	// Submission is smtp.office365.com:587 (SMTP AUTH client submission).
	Submission Mode = iota
	// Relay is the tenant MX endpoint with an inbound connector (port 25).
	Relay
	// DirectSend is the tenant MX endpoint used anonymously (port 25).
	DirectSend
)

func (m Mode) String() string {
	switch m {
	case Submission:
		return "Submission"
	case Relay:
		return "Relay"
	case DirectSend:
		return "DirectSend"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

const (
	// Hostname is the name the fake gives itself: in its greeting and in the brackets of
	// some replies, where Exchange names the front-end server.
	Hostname = "fake.smtptest"
	// OutlookScope is the scope an XOAUTH2 token must have been issued for.
	OutlookScope = "https://outlook.office365.com/.default"
	// DefaultMaxMessageBytes is Exchange's default MaxSendSize, 35 MiB.
	DefaultMaxMessageBytes = 36700160
	// MaxRecipients is the most RCPT TO one transaction may have (RecipientLimits 500).
	MaxRecipients = 500
	// MaxSessionsPerMailbox is how many authenticated sessions one mailbox may have open
	// at the same time on the Submission endpoint.
	MaxSessionsPerMailbox = 3
)

// concurrencyGrace is how long the AUTH of a session over the limit waits for another
// session of the same mailbox to end before it is refused. The server learns that a
// client closed a connection only after the client has moved on (a client reads the
// 221 reply to QUIT before the server closes its end), so without the grace a pool that
// replaces a connection would race the fake and get a spurious 432.
const concurrencyGrace = 200 * time.Millisecond

// Options configures a Server. Only Mode is required.
type Options struct {
	Mode Mode
	// AcceptedDomains are the tenant's accepted domains (compared case-insensitively).
	// Relay: the client certificate's CN or a DNS SAN must equal one of them or be a
	// subdomain of one. DirectSend: every RCPT TO domain must be one of them, and with
	// RejectDirectSend a MAIL FROM in one of them is refused.
	AcceptedDomains []string
	// Tokens checks an XOAUTH2 bearer token: the scope it was issued for, and whether it
	// is known and unexpired. Submission only. Nil: every token is refused.
	Tokens func(token string) (scope string, ok bool)
	// Users are AUTH LOGIN (basic) accounts: user → password. User names are compared
	// case-insensitively. Empty: basic authentication is disabled. Submission only.
	Users map[string]string
	// ClientCAs verifies relay client certificates. Relay only. If nil, the relay is an
	// IP-based connector: it accepts any client (the static IP authenticates) and asks
	// for no certificate.
	ClientCAs *x509.CertPool
	// MaxMessageBytes is the largest message accepted; 0 means DefaultMaxMessageBytes.
	MaxMessageBytes int64
}

// Stage is a point in an SMTP session at which Script can replace the server's answer.
type Stage int

const (
	// StageConnect is the greeting. A scripted reply is sent instead of the 220 greeting
	// and the connection is closed.
	StageConnect Stage = iota
	// StageAuth is the AUTH command.
	StageAuth
	// StageMail is MAIL FROM.
	StageMail
	// StageRcpt is one RCPT TO.
	StageRcpt
	// StageData is the reply to the final dot of DATA (or to BDAT LAST).
	StageData
)

func (st Stage) String() string {
	switch st {
	case StageConnect:
		return "StageConnect"
	case StageAuth:
		return "StageAuth"
	case StageMail:
		return "StageMail"
	case StageRcpt:
		return "StageRcpt"
	case StageData:
		return "StageData"
	}
	return "Stage(" + strconv.Itoa(int(st)) + ")"
}

// Reply is a scripted server answer.
type Reply struct {
	Code     int    // e.g. 451
	Enhanced string // e.g. "4.7.500"; empty means "<class>.0.0"
	Text     string
	// Hangup: close the connection instead of answering. At StageData the message has
	// been received in full and is recorded as accepted (so the client cannot know it
	// went out).
	Hangup bool
}

// Message is a message the fake accepted.
type Message struct {
	From           string   // MAIL FROM
	To             []string // accepted RCPT TO, in order
	Data           []byte   // exactly the bytes received after DATA (dot-unstuffed, line ends as sent)
	User           string   // authenticated user as given in AUTH ("" for relay/direct send)
	TLS            uint16   // TLS version, 0 if plain
	ClientCertName string   // relay: CN of the verified client certificate
}

// SessionInfo describes one TCP connection the fake accepted.
type SessionInfo struct {
	EHLO           string // the name given in the last EHLO (or the HELO that started the session)
	TLS            uint16 // TLS version after STARTTLS, 0 if plain
	ClientCertName string // CN of the verified client certificate, if any
	AuthMechanism  string // "XOAUTH2" or "LOGIN" after a successful AUTH
	User           string // authenticated user, as given in AUTH
	Messages       int    // messages accepted on this connection
	// Resets counts RSET commands. A repeated HELO (not EHLO) counts too: go-smtp
	// reports both as a reset, and only for EHLO does the fake see the difference.
	Resets int
	Closed bool // the connection has been closed
}

// Server is a running fake. All methods are safe for concurrent use.
type Server struct {
	mode      Mode
	accepted  []string // lower case
	tokens    func(string) (string, bool)
	users     map[string]string // lower-cased user → password
	clientCAs *x509.CertPool
	maxBytes  int64

	cert *x509.Certificate
	ln   net.Listener
	smtp *smtp.Server
	done chan struct{} // closed when the server shuts down
	wg   sync.WaitGroup

	mu               sync.Mutex
	sendAs           map[string]map[string]bool // lower-cased mailbox → lower-cased addresses
	rejectDirectSend bool
	scripts          map[Stage][]Reply
	latency          time.Duration
	messages         []Message
	conns            []*connState   // every accepted connection, in order
	active           map[string]int // lower-cased user → authenticated sessions now
	maxActive        map[string]int
	released         chan struct{} // closed, and replaced, whenever an authenticated session ends
}

// New starts a fake listening on 127.0.0.1:0. It is closed on t.Cleanup, which also
// closes every connection still open.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	switch opts.Mode {
	case Submission, Relay, DirectSend:
	default:
		t.Fatalf("smtptest: unknown mode %v", opts.Mode)
	}
	if opts.MaxMessageBytes < 0 {
		t.Fatalf("smtptest: negative MaxMessageBytes %d", opts.MaxMessageBytes)
	}
	s := &Server{
		mode:      opts.Mode,
		tokens:    opts.Tokens,
		users:     map[string]string{},
		maxBytes:  opts.MaxMessageBytes,
		done:      make(chan struct{}),
		sendAs:    map[string]map[string]bool{},
		scripts:   map[Stage][]Reply{},
		active:    map[string]int{},
		maxActive: map[string]int{},
		released:  make(chan struct{}),
	}
	if s.maxBytes == 0 {
		s.maxBytes = DefaultMaxMessageBytes
	}
	for _, d := range opts.AcceptedDomains {
		s.accepted = append(s.accepted, strings.ToLower(strings.TrimSuffix(d, ".")))
	}
	for u, p := range opts.Users {
		s.users[strings.ToLower(u)] = p
	}
	if opts.Mode == Relay {
		s.clientCAs = opts.ClientCAs
	}

	cert, key := newServerCert(t)
	s.cert = cert
	tlsConfig := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}},
		// Microsoft turned TLS 1.0 and 1.1 off on smtp.office365.com
		// (docs/microsoft365-smtp.md#troubleshooting).
		MinVersion: tls.VersionTLS12,
	}
	if s.clientCAs != nil {
		// A certificate-based connector: the client certificate is optional at the TLS
		// level and judged at MAIL FROM, like Exchange's tenant attribution.
		tlsConfig.ClientAuth = tls.VerifyClientCertIfGiven
		tlsConfig.ClientCAs = s.clientCAs
	}

	srv := smtp.NewServer(backend{s})
	srv.Domain = Hostname
	srv.TLSConfig = tlsConfig
	srv.MaxMessageBytes = s.maxBytes
	// The recipient limit is enforced by the session, because go-smtp's own check
	// answers with its own text and advertises LIMITS, which Exchange does not.
	srv.MaxRecipients = 0
	// go-smtp refuses AUTH without TLS itself (523 5.7.10) unless this is set; the
	// session refuses it instead, with Exchange's reply, and offers no mechanism then.
	srv.AllowInsecureAuth = true
	srv.EnableSMTPUTF8 = true
	srv.EnableBINARYMIME = true
	srv.EnableDSN = true
	// Errors here are clients going away, which tests provoke on purpose.
	srv.ErrorLog = log.New(io.Discard, "", 0)
	s.smtp = srv

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	s.ln = ln
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = srv.Serve(&listener{Listener: ln, s: s})
	}()
	t.Cleanup(s.close)
	return s
}

func (s *Server) close() {
	close(s.done)
	_ = s.ln.Close()
	// Close connections directly as well: go-smtp registers a connection only once its
	// goroutine runs, so its own Close can miss one that was just accepted.
	s.mu.Lock()
	conns := append([]*connState(nil), s.conns...)
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.raw.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.smtp.Shutdown(ctx) // waits for the connection goroutines
	s.wg.Wait()
}

// Addr is the address the fake listens on, "127.0.0.1:PORT".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Certificate is the server's self-signed certificate (ECDSA P-256; SANs 127.0.0.1, ::1
// and localhost). It is its own CA: trust it as a root.
func (s *Server) Certificate() *x509.Certificate { return s.cert }

// CertPool returns a new pool holding only the server's certificate.
func (s *Server) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.cert)
	return p
}

// CAFile writes the server's certificate as PEM into t.TempDir() and returns its path.
func (s *Server) CAFile(t testing.TB) string {
	t.Helper()
	return writePEM(t, "smtptest-ca.pem", "CERTIFICATE", s.cert.Raw)
}

// CAFileWith writes one PEM file trusting the server and the certificates in the PEM
// files others (a fake Entra's, say): the ca_file of a backend that talks to both.
func (s *Server) CAFileWith(t testing.TB, others ...string) string {
	t.Helper()
	pem, err := os.ReadFile(s.CAFile(t))
	for _, o := range others {
		var b []byte
		if b, err = os.ReadFile(o); err != nil {
			break
		}
		pem = append(pem, b...)
	}
	p := filepath.Join(t.TempDir(), "smtptest-cas.pem")
	if err == nil {
		err = os.WriteFile(p, pem, 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// GrantSendAs lets mailbox send as from (Add-RecipientPermission -AccessRights SendAs).
// Submission only; addresses are compared case-insensitively.
func (s *Server) GrantSendAs(mailbox, from string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := strings.ToLower(mailbox)
	if s.sendAs[k] == nil {
		s.sendAs[k] = map[string]bool{}
	}
	s.sendAs[k][strings.ToLower(from)] = true
}

// SetRejectDirectSend models Set-OrganizationConfig -RejectDirectSend: while on, a
// DirectSend MAIL FROM in an accepted domain is refused with 550 5.7.68. It takes effect
// at once (Exchange takes up to 30 minutes).
func (s *Server) SetRejectDirectSend(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejectDirectSend = on
}

// Script queues replies for stage: the next command at that stage, in any session, gets
// the next queued reply instead of normal processing (so a scripted reply also applies
// where the fake would have refused the command). A reply without Hangup must have a
// 4xx or 5xx Code, except at StageData where a 2xx Code accepts and records the message
// with that reply. Script panics on a reply it cannot send (bad Code or Enhanced), since
// that is a mistake in the test.
func (s *Server) Script(stage Stage, replies ...Reply) {
	for _, r := range replies {
		if err := r.validate(stage); err != nil {
			panic("smtptest: Script(" + stage.String() + "): " + err.Error())
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scripts[stage] = append(s.scripts[stage], replies...)
}

// SetLatency delays the answer to the end of DATA by d (scripted answers and hangups
// too), as Exchange does while it commits the message.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// Messages returns copies of the messages accepted so far, in order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.messages))
	for i, m := range s.messages {
		m.To = append([]string(nil), m.To...)
		m.Data = append([]byte(nil), m.Data...)
		out[i] = m
	}
	return out
}

// Connections is the number of TCP connections accepted so far, including those refused
// by a scripted StageConnect reply.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// MaxConcurrent is the highest number of simultaneously authenticated sessions seen for
// user (case-insensitive). It never exceeds MaxSessionsPerMailbox: a session refused
// with 432 did not authenticate.
func (s *Server) MaxConcurrent(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxActive[strings.ToLower(user)]
}

// Sessions describes every connection accepted so far, in order.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SessionInfo, len(s.conns))
	for i, c := range s.conns {
		out[i] = c.info
	}
	return out
}

// next pops the next scripted reply for stage.
func (s *Server) next(stage Stage) (Reply, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.scripts[stage]
	if len(q) == 0 {
		return Reply{}, false
	}
	s.scripts[stage] = q[1:]
	return q[0], true
}

// wait sleeps for the configured latency, or until the server shuts down.
func (s *Server) wait() {
	s.mu.Lock()
	d := s.latency
	s.mu.Unlock()
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.done:
	}
}

// mayAs reports whether user may use from as sender.
func (s *Server) mayAs(user, from string) bool {
	if strings.EqualFold(user, from) {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sendAs[strings.ToLower(user)][strings.ToLower(from)]
}

// acceptedDomain reports whether d is one of the tenant's accepted domains.
func (s *Server) acceptedDomain(d string) bool {
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	for _, a := range s.accepted {
		if d == a {
			return true
		}
	}
	return false
}

// acquire counts an authenticated session of user on c, waiting up to concurrencyGrace
// for a free slot. It reports false if the mailbox stayed at its limit.
func (s *Server) acquire(c *connState, user string) bool {
	k := strings.ToLower(user)
	deadline := time.Now().Add(concurrencyGrace)
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.active[k] >= MaxSessionsPerMailbox {
		wait := time.Until(deadline)
		if wait <= 0 {
			return false
		}
		released := s.released
		s.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-released:
		case <-t.C:
		case <-s.done:
		}
		t.Stop()
		s.mu.Lock()
	}
	if c.closed {
		// Closed while waiting: it will never be released, so do not count it.
		return false
	}
	s.active[k]++
	s.maxActive[k] = max(s.maxActive[k], s.active[k])
	c.authKey = k
	return true
}

// recordMessage stores m as accepted on c and returns its 1-based number.
func (s *Server) recordMessage(c *connState, m Message) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.messages = append(s.messages, m)
	c.info.Messages++
	return len(s.messages)
}

func (r Reply) validate(stage Stage) error {
	if stage < StageConnect || stage > StageData {
		return fmt.Errorf("unknown stage")
	}
	if _, err := parseEnhanced(r.Enhanced); err != nil {
		return err
	}
	if r.Hangup {
		return nil
	}
	switch class := r.Code / 100; {
	case r.Code < 200 || r.Code > 599:
		return fmt.Errorf("reply code %d out of range", r.Code)
	case class == 2 && stage == StageData, class == 4, class == 5:
	default:
		return fmt.Errorf("reply code %d would desynchronise the session; use 4xx or 5xx", r.Code)
	}
	if r.Enhanced != "" && r.Enhanced[0] != byte('0'+r.Code/100) {
		return fmt.Errorf("enhanced code %s does not match reply code %d", r.Enhanced, r.Code)
	}
	return nil
}

// smtpError is r as the error a go-smtp Session returns to have it sent.
func (r Reply) smtpError() *smtp.SMTPError {
	ec, _ := parseEnhanced(r.Enhanced)
	if ec == smtp.EnhancedCodeNotSet {
		ec = smtp.EnhancedCode{r.Code / 100, 0, 0}
	}
	return &smtp.SMTPError{Code: r.Code, EnhancedCode: ec, Message: r.Text}
}

// wire is r as sent on the wire, lines separated like go-smtp does.
func (r Reply) wire() string {
	e := r.smtpError()
	lines := strings.Split(r.Text, "\n")
	var b strings.Builder
	for _, l := range lines[:len(lines)-1] {
		fmt.Fprintf(&b, "%d-%s\r\n", r.Code, l)
	}
	fmt.Fprintf(&b, "%d %d.%d.%d %s\r\n", r.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2], lines[len(lines)-1])
	return b.String()
}

func parseEnhanced(s string) (smtp.EnhancedCode, error) {
	if s == "" {
		return smtp.EnhancedCodeNotSet, nil
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return smtp.EnhancedCode{}, fmt.Errorf("malformed enhanced code %q", s)
	}
	var ec smtp.EnhancedCode
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 {
			return smtp.EnhancedCode{}, fmt.Errorf("malformed enhanced code %q", s)
		}
		ec[i] = n
	}
	if ec[0] != 2 && ec[0] != 4 && ec[0] != 5 {
		return smtp.EnhancedCode{}, fmt.Errorf("enhanced code %q has class %d", s, ec[0])
	}
	return ec, nil
}

func writePEM(t testing.TB, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatalf("smtptest: writing %s: %v", name, err)
	}
	return p
}
