// Package smtp holds the three SMTP backends to Microsoft 365 (docs/microsoft365-smtp.md):
//
//   - smtp_auth: client submission to smtp.office365.com:587 as a licensed mailbox, with
//     STARTTLS (TLS 1.2 or later) and AUTH XOAUTH2 (an app-only token) or LOGIN;
//   - relay: the tenant's MX endpoint on port 25 through an inbound connector, which
//     recognises mailgate by its TLS client certificate or its IP address;
//   - direct_send: the tenant's MX endpoint, anonymously, to the tenant's own mailboxes.
//
// They share one client (net/smtp, with deadlines and cancellation added), a pool of
// sessions per destination reused across messages, and one classification of SMTP
// replies. Recipients a server refuses while it accepts others are reported in the
// Result; a message is never sent twice because of a retry here.
package smtp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/mailgate/mailgate/mailaddr"
	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/senders/entra"
)

type kind int

const (
	kindSubmission kind = iota
	kindRelay
	kindDirectSend
)

func (k kind) String() string {
	return [...]string{"SMTP AUTH", "relay", "Direct Send"}[k]
}

// Sender sends through one SMTP backend. Its methods are safe for concurrent use.
type Sender struct {
	name   string
	kind   kind
	log    *slog.Logger
	dialer *dialer
	cfg    Connection // with its defaults

	// smtp_auth
	tokens *tokenSource // xoauth2
	login  *loginAuth   // login
	sendAs []mailaddr.Pattern

	// relay, direct_send
	accepted []string

	mu     sync.Mutex
	pools  map[string]*pool // by lower-cased mailbox; "" for relay and Direct Send
	closed bool
}

func (c *Connection) withDefaults(maxConns int) Connection {
	out := *c
	if out.MaxConnections == 0 {
		out.MaxConnections = maxConns
	}
	if out.IdleTimeout == 0 {
		out.IdleTimeout = defaultIdleTimeout
	}
	if out.Timeout == 0 {
		out.Timeout = defaultTimeout
	}
	out.Helo = c.HeloName()
	return out
}

// HeloName is the name given in EHLO: helo, else the machine's host name.
func (c *Connection) HeloName() string {
	if c.Helo != "" {
		return c.Helo
	}
	if h, _ := os.Hostname(); h != "" {
		return h
	}
	return "localhost"
}

func (c *Connection) tlsConfig() (*tls.Config, error) {
	roots, err := senders.RootCAs(c.CAFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}, nil
}

func newSubmission(c *AuthConfig, env senders.Env) (*Sender, error) {
	conn := c.connection()
	s, err := newSender(kindSubmission, conn, MaxSubmissionConnections, env)
	if err != nil {
		return nil, err
	}
	// Microsoft offers AUTH only after STARTTLS: TLS is never optional here.
	s.dialer.tlsRequired = true
	s.dialer.resolve = newResolver(conn.Address, "").resolve
	for _, p := range c.SendAs {
		s.sendAs = append(s.sendAs, mailaddr.MustParsePattern(p))
	}
	if c.Auth == "login" {
		s.login = &loginAuth{user: c.Username, password: c.Password.Value()}
		return s, nil
	}
	t, err := senders.HTTPTransport(c.CAFile)
	if err != nil {
		return nil, err
	}
	cred, err := c.TokenCredential(&http.Client{Transport: t})
	if err != nil {
		return nil, fmt.Errorf("credential: %w", err)
	}
	scope := c.TokenScope
	if scope == "" {
		scope = OutlookScope
	}
	s.tokens = &tokenSource{cred: cred, scope: scope}
	return s, nil
}

func newConnector(k kind, c *RelayConfig, env senders.Env) (*Sender, error) {
	s, err := newSender(k, c.Connection, defaultRelayConnections, env)
	if err != nil {
		return nil, err
	}
	s.dialer.tlsRequired = c.TLS != TLSOpportunistic
	s.dialer.resolve = newResolver(c.Address, c.Resolver).resolve
	s.accepted = c.AcceptedDomains
	cert, err := c.clientCertificate()
	if err != nil {
		return nil, fmt.Errorf("client_cert_file: %w", err)
	}
	if cert != nil {
		// Presented whenever the server asks, which a certificate-based connector does.
		s.dialer.tls.Certificates = []tls.Certificate{*cert}
	}
	return s, nil
}

func newSender(k kind, c Connection, maxConns int, env senders.Env) (*Sender, error) {
	c = c.withDefaults(maxConns)
	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	return &Sender{
		name:   env.Name,
		kind:   k,
		log:    env.Log(),
		cfg:    c,
		dialer: &dialer{helo: c.Helo, timeout: c.Timeout, tls: tlsCfg},
		pools:  make(map[string]*pool),
	}, nil
}

// Scope implements senders.Sender: SMTP AUTH sends as a mailbox, which Exchange limits;
// relay and Direct Send are a server relaying into the tenant, throttled by address.
func (s *Sender) Scope() senders.Scope {
	if s.kind == kindSubmission {
		return senders.ScopeMailbox
	}
	return senders.ScopeBackend
}

// Concurrency implements senders.Sender: Exchange Online refuses a 4th concurrent SMTP
// AUTH session of one mailbox (432 4.3.2); relay and Direct Send have no such limit.
func (s *Sender) Concurrency() int {
	if s.kind == kindSubmission {
		return 3
	}
	return 0
}

// Send implements senders.Sender.
func (s *Sender) Send(ctx context.Context, msg *senders.Message) (*senders.Result, error) {
	mailbox := ""
	if s.kind == kindSubmission {
		mailbox = msg.SendingMailbox()
		if s.login != nil {
			mailbox = s.login.user
		}
	}
	if err := s.check(msg, mailbox); err != nil {
		return nil, err
	}
	var body bytes.Buffer
	if _, err := msg.WriteTo(&body); err != nil {
		return nil, mailerr.Wrap(mailerr.Internal, err, "the message could not be composed")
	}
	p := s.pool(mailbox)
	if p == nil {
		return nil, mailerr.New(mailerr.Unavailable, "the %s backend %q is shutting down; nothing was sent", s.kind, s.name)
	}
	c, err := p.get(ctx, func(ctx context.Context) (*conn, error) { return s.dial(ctx, mailbox) })
	if errors.Is(err, errBusy) {
		return nil, mailerr.Wrap(mailerr.Unavailable, ctx.Err(),
			"all %d connections of the %s backend %q are busy%s; nothing was sent", s.cfg.MaxConnections, s.kind, s.name, forMailbox(mailbox))
	}
	if err != nil {
		s.logFix(err, mailbox)
		return nil, err
	}
	res, healthy, err := s.deliver(ctx, c, msg, body.Bytes())
	p.put(c, healthy)
	if err != nil {
		s.logFix(err, mailbox)
		return nil, err
	}
	for _, r := range res.Rejected {
		s.log.Info("recipient refused", "id", msg.ID, "recipient", r.Recipient, "reply", r.Reply)
	}
	return res, nil
}

var errBusy = errors.New("no free connection")

func forMailbox(mailbox string) string {
	if mailbox == "" {
		return ""
	}
	return " for mailbox " + mailbox
}

// check applies the backend's own rules before anything is sent: Send As for SMTP AUTH,
// the accepted domains for relay and Direct Send.
func (s *Sender) check(msg *senders.Message, mailbox string) error {
	froms := []string{msg.From.Address}
	if msg.EnvelopeFrom != msg.From.Address {
		froms = append(froms, msg.EnvelopeFrom)
	}
	switch s.kind {
	case kindSubmission:
		for _, from := range froms {
			if !mailaddr.Equal(from, mailbox) && !mailaddr.AnyMatch(s.sendAs, from) {
				return mailerr.New(mailerr.PermissionDenied,
					"mailbox %s may not send as %s: the %s backend %q's send_as does not list it (grant Send As in Exchange, then add it to send_as)",
					mailbox, from, s.kind, s.name).WithReason(mailerr.ReasonSendAsDenied)
			}
		}
	default:
		for _, from := range froms {
			if !inDomains(mailaddr.Domain(from), s.accepted, false) {
				return mailerr.New(mailerr.PermissionDenied,
					"the %s backend %q sends only from the tenant's accepted domains (%s); %s is outside them",
					s.kind, s.name, strings.Join(s.accepted, ", "), from).WithReason(mailerr.ReasonSenderDomainNotAccepted)
			}
		}
	}
	if s.kind == kindDirectSend {
		for _, rcpt := range msg.Recipients {
			if !inDomains(mailaddr.Domain(rcpt), s.accepted, false) {
				return mailerr.New(mailerr.PermissionDenied,
					"Direct Send delivers only to the tenant's own domains (%s); recipient %s is outside them: use a relay or smtp_auth backend for external recipients",
					strings.Join(s.accepted, ", "), rcpt).WithReason(mailerr.ReasonRecipientDomainNotAccepted)
			}
		}
	}
	return nil
}

func (s *Sender) pool(mailbox string) *pool {
	key := mailaddr.Key(mailbox)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	p, ok := s.pools[key]
	if !ok {
		p = newPool(s.cfg.MaxConnections, s.cfg.IdleTimeout)
		s.pools[key] = p
	}
	return p
}

// Close implements io.Closer: idle sessions end with QUIT.
func (s *Sender) Close() error {
	s.mu.Lock()
	s.closed = true
	pools := s.pools
	s.pools = nil
	s.mu.Unlock()
	for _, p := range pools {
		p.close()
	}
	return nil
}

// dial opens a session, authenticated for SMTP AUTH. A token Microsoft refuses with
// 535 5.7.3 is renewed once (it may have been revoked or had its rights changed).
func (s *Sender) dial(ctx context.Context, mailbox string) (*conn, error) {
	if s.kind != kindSubmission {
		return s.dialer.dial(ctx, nil)
	}
	c, err := s.dialer.dial(ctx, s.authenticate(ctx, mailbox, false))
	var r *replyError
	if s.tokens != nil && errors.As(err, &r) && r.reply.Code == 535 && r.reply.Enhanced == "5.7.3" {
		s.log.Info("token refused; renewing it once", "mailbox", mailbox)
		c, err = s.dialer.dial(ctx, s.authenticate(ctx, mailbox, true))
	}
	return c, err
}

func (s *Sender) authenticate(ctx context.Context, mailbox string, renew bool) func(*conn) error {
	return func(c *conn) error {
		var a smtpAuth = s.login
		if s.tokens != nil {
			tok, err := s.tokens.token(ctx, renew)
			if err != nil {
				if entra.IsTokenError(err) {
					s.log.Error("SMTP AUTH backend cannot get a token; fix the app registration or the backend's credentials",
						"fix", entra.Fix(err), "error", strings.Join(strings.Fields(err.Error()), " "))
				}
				return mailerr.Wrap(mailerr.Unavailable, err,
					"mailgate could not get a token for Microsoft 365 (an operator must fix the backend's credentials); nothing was sent").
					WithReason(mailerr.ReasonBackendAuthFailed)
			}
			a = &xoauth2{user: mailbox, token: tok}
		}
		if err := c.step(func() error { return c.client.Auth(a) }); err != nil {
			return sessionError(c, "AUTH", err)
		}
		return nil
	}
}

// logFix logs the operator's fix for failures only an operator can fix.
func (s *Sender) logFix(err error, mailbox string) {
	var r *replyError
	if !errors.As(err, &r) {
		return
	}
	if fix := OperatorFix(r.reply, s.login != nil); fix != "" {
		attrs := []any{"command", r.command, "reply", r.reply.String(), "fix", fix}
		if mailbox != "" {
			attrs = append(attrs, "mailbox", mailbox)
		}
		s.log.Error("the server refused the backend; an operator must act", attrs...)
	}
}

// tokenSource gets app-only tokens for XOAUTH2. azidentity caches each token and renews
// it before it expires; renew asks Entra for a new one whatever the cache holds.
type tokenSource struct {
	cred  azcore.TokenCredential
	scope string
}

func (t *tokenSource) token(ctx context.Context, renew bool) (string, error) {
	opts := policy.TokenRequestOptions{Scopes: []string{t.scope}}
	if renew {
		// A claims challenge bypasses the token cache (this is how azidentity answers a
		// Continuous Access Evaluation challenge); the new token replaces the cached one.
		opts.Claims = `{"access_token":{"nbf":{"essential":true,"value":"` + strconv.FormatInt(time.Now().Unix(), 10) + `"}}}`
	}
	tok, err := t.cred.GetToken(ctx, opts)
	if err != nil {
		return "", err
	}
	return tok.Token, nil
}
