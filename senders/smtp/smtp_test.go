package smtp_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/config/secret"
	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/senders/entra"
	"github.com/mailgate/mailgate/senders/graph/graphtest"
	"github.com/mailgate/mailgate/senders/smtp"
	"github.com/mailgate/mailgate/senders/smtp/smtptest"
)

const mailbox = "noreply@contoso.com"

// submission starts a fake smtp.office365.com with a fake Entra, and a backend for it.
func submission(t *testing.T, adjust func(*smtp.AuthConfig)) (*smtptest.Server, *graphtest.Fake, senders.Sender) {
	t.Helper()
	entraFake := graphtest.New(t)
	srv := smtptest.New(t, smtptest.Options{Mode: smtptest.Submission, Tokens: entraFake.TokenScope,
		Users: map[string]string{"basic@contoso.com": "pa55word"}})
	c := &smtp.AuthConfig{
		Connection: smtp.Connection{Address: srv.Addr(), CAFile: srv.CAFileWith(t, entraFake.CAFile(t))},
		Credentials: entra.Credentials{
			TenantID: graphtest.TenantID, ClientID: graphtest.ClientID,
			ClientSecret: secret.New(graphtest.ClientSecret), AuthorityURL: entraFake.AuthorityURL(),
		},
	}
	if adjust != nil {
		adjust(c)
	}
	return srv, entraFake, open(t, c)
}

func open(t *testing.T, c senders.Config) senders.Sender {
	t.Helper()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := c.Open(senders.Env{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.(interface{ Close() error }).Close() })
	return s
}

func message(t *testing.T, from string, to ...string) *senders.Message {
	t.Helper()
	c := &senders.Content{From: mail.Address{Address: from}, Subject: "Report", Text: "Hello.\n.leading dot\n"}
	for _, r := range to {
		c.To = append(c.To, mail.Address{Address: r})
	}
	return senders.NewMessage("01JTEST", c, time.Now())
}

func bodyOf(t *testing.T, m *senders.Message) []byte {
	var b bytes.Buffer
	if _, err := m.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func wantKind(t *testing.T, err error, kind mailerr.Kind, reason string) *mailerr.Error {
	t.Helper()
	var e *mailerr.Error
	if !errors.As(err, &e) || e.Kind != kind || reason != "" && string(e.ReasonOrDefault()) != reason {
		t.Fatalf("error %v, want %v %s", err, kind, reason)
	}
	return e
}

func TestSubmissionXOAUTH2(t *testing.T) {
	t.Parallel()
	srv, entraFake, s := submission(t, nil)
	msg := message(t, mailbox, "alice@fabrikam.com", "bob@fabrikam.com")
	res, err := s.Send(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != senders.Sent || len(res.Accepted) != 2 || len(res.Rejected) != 0 {
		t.Errorf("result %+v", res)
	}
	got := srv.Messages()
	if len(got) != 1 {
		t.Fatalf("%d messages at the server", len(got))
	}
	m := got[0]
	if m.User != mailbox || m.From != mailbox || len(m.To) != 2 || m.TLS < tls.VersionTLS12 {
		t.Errorf("server saw user %q from %q to %v TLS %x", m.User, m.From, m.To, m.TLS)
	}
	if !bytes.Equal(m.Data, bodyOf(t, msg)) {
		t.Errorf("the server received other bytes than the message:\n%q\nwant\n%q", m.Data, bodyOf(t, msg))
	}
	if n := entraFake.TokensIssued(smtp.OutlookScope); n != 1 {
		t.Errorf("%d tokens for %s, want 1", n, smtp.OutlookScope)
	}
}

// Sessions are reused (after RSET), and never more than 3 per mailbox are open.
func TestSubmissionPool(t *testing.T) {
	t.Parallel()
	srv, entraFake, s := submission(t, nil)
	for range 3 {
		if _, err := s.Send(context.Background(), message(t, mailbox, "a@fabrikam.com")); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Connections(); n != 1 {
		t.Errorf("3 messages in a row took %d connections, want 1", n)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	srv.SetLatency(20 * time.Millisecond)
	for range 12 {
		wg.Go(func() {
			_, err := s.Send(context.Background(), message(t, mailbox, "a@fabrikam.com"))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := srv.MaxConcurrent(mailbox); n != smtp.MaxSubmissionConnections {
		t.Errorf("at most %d sessions at once, want %d", n, smtp.MaxSubmissionConnections)
	}
	if n := len(srv.Messages()); n != 15 {
		t.Errorf("%d messages delivered, want 15", n)
	}
	if n := entraFake.TokensIssued(smtp.OutlookScope); n != 1 {
		t.Errorf("%d tokens: the cached one should serve every session", n)
	}
}

// A token Microsoft no longer accepts (535 5.7.3) is renewed once.
func TestSubmissionRenewsRefusedToken(t *testing.T) {
	t.Parallel()
	srv, entraFake, s := submission(t, func(c *smtp.AuthConfig) { c.SendAs = []string{"*@contoso.com"} })
	if _, err := s.Send(context.Background(), message(t, mailbox, "a@fabrikam.com")); err != nil {
		t.Fatal(err)
	}
	entraFake.ExpireTokens() // revoked behind azidentity's cache
	// Another mailbox needs a new session, which authenticates with the cached token.
	other := message(t, "reports@contoso.com", "a@fabrikam.com")
	other.Mailbox = "reports@contoso.com"
	if _, err := s.Send(context.Background(), other); err != nil {
		t.Fatalf("after the token was revoked: %v", err)
	}
	if n := entraFake.TokensIssued(smtp.OutlookScope); n != 2 {
		t.Errorf("%d tokens issued, want 2 (one renewal)", n)
	}
	if got := srv.Messages(); len(got) != 2 || got[1].User != "reports@contoso.com" {
		t.Errorf("messages %+v", got)
	}
}

func TestSubmissionLogin(t *testing.T) {
	t.Parallel()
	srv, _, s := submission(t, func(c *smtp.AuthConfig) {
		c.Credentials = entra.Credentials{}
		c.Auth, c.Username, c.Password = "login", "basic@contoso.com", secret.New("pa55word")
	})
	// The authenticated user is the username, whatever the route's mailbox.
	if _, err := s.Send(context.Background(), message(t, "basic@contoso.com", "a@fabrikam.com")); err != nil {
		t.Fatal(err)
	}
	if got := srv.Messages(); len(got) != 1 || got[0].User != "basic@contoso.com" {
		t.Errorf("messages %+v", got)
	}
	_, err := s.Send(context.Background(), message(t, mailbox, "a@fabrikam.com"))
	wantKind(t, err, mailerr.PermissionDenied, "SEND_AS_DENIED")

	_, _, bad := submission(t, func(c *smtp.AuthConfig) {
		c.Credentials = entra.Credentials{}
		c.Auth, c.Username, c.Password = "login", "basic@contoso.com", secret.New("wrong")
	})
	_, err = bad.Send(context.Background(), message(t, "basic@contoso.com", "a@fabrikam.com"))
	e := wantKind(t, err, mailerr.Unavailable, "BACKEND_AUTH_FAILED")
	if !strings.HasPrefix(e.Metadata["smtpReply"], "535 5.7.3") {
		t.Errorf("metadata %v", e.Metadata)
	}
}

func TestSubmissionSendAs(t *testing.T) {
	t.Parallel()
	srv, _, s := submission(t, func(c *smtp.AuthConfig) { c.SendAs = []string{"billing@contoso.com"} })
	// Not in send_as: refused before connecting.
	ceo := message(t, "ceo@contoso.com", "a@fabrikam.com")
	ceo.Mailbox = mailbox // the route's mailbox
	_, err := s.Send(context.Background(), ceo)
	wantKind(t, err, mailerr.PermissionDenied, "SEND_AS_DENIED")
	if n := srv.Connections(); n != 0 {
		t.Errorf("%d connections for a refused From", n)
	}
	// In send_as, but Exchange has no Send As for it: Microsoft's 5.7.60.
	billing := message(t, "billing@contoso.com", "a@fabrikam.com")
	billing.Mailbox = mailbox
	_, err = s.Send(context.Background(), billing)
	e := wantKind(t, err, mailerr.PermissionDenied, "SEND_AS_DENIED")
	if !strings.HasPrefix(e.Metadata["smtpReply"], "550 5.7.60") || e.Metadata["smtpCommand"] != "MAIL FROM" {
		t.Errorf("metadata %v", e.Metadata)
	}
	srv.GrantSendAs(mailbox, "billing@contoso.com")
	if _, err := s.Send(context.Background(), billing); err != nil {
		t.Fatalf("with Send As granted: %v", err)
	}
}

func TestSubmissionUntrustedCertificate(t *testing.T) {
	t.Parallel()
	srv, _, s := submission(t, func(c *smtp.AuthConfig) { c.CAFile = "" })
	_, err := s.Send(context.Background(), message(t, mailbox, "a@fabrikam.com"))
	e := wantKind(t, err, mailerr.Unavailable, "")
	if !strings.Contains(e.Msg, "did not verify") {
		t.Errorf("message %q", e.Msg)
	}
	if len(srv.Messages()) != 0 {
		t.Error("sent over an unverified connection")
	}
}

func TestSubmissionReplies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		stage  smtptest.Stage
		reply  smtptest.Reply
		kind   mailerr.Kind
		reason string
		retry  time.Duration
	}{
		{smtptest.StageAuth, smtptest.Reply{Code: 432, Enhanced: "4.3.2", Text: "Concurrent connections limit exceeded."}, mailerr.Throttled, "", 15 * time.Second},
		{smtptest.StageMail, smtptest.Reply{Code: 554, Enhanced: "5.2.0", Text: "STOREDRV.Submission.Exception:SubmissionQuotaExceededException"}, mailerr.Throttled, "", time.Hour},
		{smtptest.StageMail, smtptest.Reply{Code: 451, Enhanced: "4.4.4", Text: "Temporary server error"}, mailerr.Unavailable, "", 0},
		{smtptest.StageData, smtptest.Reply{Code: 554, Enhanced: "5.2.2", Text: "mailbox full; STOREDRV.Submission.Exception:QuotaExceededException"}, mailerr.Unavailable, "BACKEND_MAILBOX_UNAVAILABLE", 0},
		{smtptest.StageData, smtptest.Reply{Code: 554, Enhanced: "5.6.0", Text: "Corrupt message content"}, mailerr.Rejected, "BACKEND_REJECTED", 0},
		{smtptest.StageConnect, smtptest.Reply{Code: 421, Enhanced: "4.3.2", Text: "Service not available"}, mailerr.Throttled, "", time.Minute},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d_%s", tt.reply.Code, tt.reply.Enhanced), func(t *testing.T) {
			t.Parallel()
			srv, _, s := submission(t, nil)
			srv.Script(tt.stage, tt.reply)
			_, err := s.Send(context.Background(), message(t, mailbox, "a@fabrikam.com"))
			e := wantKind(t, err, tt.kind, tt.reason)
			if e.RetryAfter != tt.retry || !strings.HasPrefix(e.Metadata["smtpReply"], fmt.Sprintf("%d %s", tt.reply.Code, tt.reply.Enhanced)) {
				t.Errorf("retry %v metadata %v", e.RetryAfter, e.Metadata)
			}
			// The session (or a new one) carries the next message.
			if _, err := s.Send(context.Background(), message(t, mailbox, "a@fabrikam.com")); err != nil {
				t.Errorf("next message: %v", err)
			}
		})
	}
}

// A connection that breaks after the final dot leaves the outcome unknown.
func TestSubmissionHangupAfterData(t *testing.T) {
	t.Parallel()
	srv, _, s := submission(t, nil)
	srv.Script(smtptest.StageData, smtptest.Reply{Hangup: true})
	_, err := s.Send(context.Background(), message(t, mailbox, "a@fabrikam.com"))
	wantKind(t, err, mailerr.OutcomeUnknown, "")
	if n := len(srv.Messages()); n != 1 {
		t.Errorf("%d messages at the server, want 1 (it did arrive)", n)
	}
}

// The caller's deadline ends the exchange promptly.
func TestSubmissionDeadline(t *testing.T) {
	t.Parallel()
	srv, _, s := submission(t, nil)
	if _, err := s.Send(context.Background(), message(t, mailbox, "a@fabrikam.com")); err != nil {
		t.Fatal(err) // a session is open and authenticated
	}
	srv.SetLatency(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Send(ctx, message(t, mailbox, "a@fabrikam.com"))
	if time.Since(start) > 5*time.Second {
		t.Errorf("Send took %v after a 200ms deadline", time.Since(start))
	}
	wantKind(t, err, mailerr.OutcomeUnknown, "") // the message had been sent when the deadline came
}

func relay(t *testing.T, opts smtptest.Options, adjust func(*smtp.RelayConfig)) (*smtptest.Server, senders.Sender) {
	t.Helper()
	opts.Mode = smtptest.Relay
	opts.AcceptedDomains = []string{"contoso.com"}
	srv := smtptest.New(t, opts)
	c := &smtp.RelayConfig{ConnectorConfig: smtp.ConnectorConfig{
		Connection:      smtp.Connection{Address: srv.Addr(), CAFile: srv.CAFile(t)},
		AcceptedDomains: []string{"contoso.com"},
	}}
	if adjust != nil {
		adjust(c)
	}
	return srv, open(t, c)
}

func TestRelayClientCertificate(t *testing.T) {
	t.Parallel()
	ca := smtptest.NewCA(t)
	cert, key := ca.Issue(t, "relay.contoso.com")
	srv, s := relay(t, smtptest.Options{ClientCAs: ca.Pool()}, func(c *smtp.RelayConfig) {
		c.ClientCertFile, c.ClientKeyFile = cert, key
	})
	msg := message(t, "alerts@contoso.com", "ops@fabrikam.com", "ops@contoso.com")
	res, err := s.Send(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	got := srv.Messages()
	if len(res.Accepted) != 2 || len(got) != 1 || got[0].ClientCertName != "relay.contoso.com" || !bytes.Equal(got[0].Data, bodyOf(t, msg)) {
		t.Errorf("result %+v, server saw %+v", res, got)
	}
	// From outside the accepted domains: refused before connecting.
	conns := srv.Connections()
	_, err = s.Send(context.Background(), message(t, "alerts@fabrikam.com", "ops@contoso.com"))
	wantKind(t, err, mailerr.PermissionDenied, "SENDER_DOMAIN_NOT_ACCEPTED")
	if srv.Connections() != conns {
		t.Error("connected for a From outside the accepted domains")
	}
}

func TestRelayWithoutCertificateIsRefused(t *testing.T) {
	t.Parallel()
	ca := smtptest.NewCA(t)
	_, s := relay(t, smtptest.Options{ClientCAs: ca.Pool()}, nil)
	_, err := s.Send(context.Background(), message(t, "alerts@contoso.com", "ops@fabrikam.com"))
	e := wantKind(t, err, mailerr.Rejected, "BACKEND_REJECTED")
	if !strings.HasPrefix(e.Metadata["smtpReply"], "550 5.7.64") {
		t.Errorf("metadata %v", e.Metadata)
	}
	// A certificate from a CA the connector does not trust is no better.
	other := smtptest.NewCA(t)
	cert, key := other.Issue(t, "relay.contoso.com")
	_, s = relay(t, smtptest.Options{ClientCAs: ca.Pool()}, func(c *smtp.RelayConfig) {
		c.ClientCertFile, c.ClientKeyFile = cert, key
	})
	_, err = s.Send(context.Background(), message(t, "alerts@contoso.com", "ops@fabrikam.com"))
	if err == nil {
		t.Error("a certificate from an untrusted CA was accepted")
	}
}

// Recipients refused for good are reported while the others get the message; a
// server's per-transaction recipient limit (452 4.5.3) splits the message.
func TestRelayRecipients(t *testing.T) {
	t.Parallel()
	srv, s := relay(t, smtptest.Options{}, nil)
	srv.Script(smtptest.StageRcpt, smtptest.Reply{Code: 550, Enhanced: "5.1.10", Text: "RESOLVER.ADR.RecipientNotFound; Recipient not found"})
	res, err := s.Send(context.Background(), message(t, "alerts@contoso.com", "gone@contoso.com", "ops@contoso.com"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Accepted) != 1 || res.Accepted[0] != "ops@contoso.com" || len(res.Rejected) != 1 ||
		res.Rejected[0].Recipient != "gone@contoso.com" || !strings.HasPrefix(res.Rejected[0].Reply, "550 5.1.10") {
		t.Errorf("result %+v", res)
	}

	var many []string
	for i := range 501 {
		many = append(many, fmt.Sprintf("user%d@contoso.com", i))
	}
	res, err = s.Send(context.Background(), message(t, "alerts@contoso.com", many...))
	if err != nil {
		t.Fatal(err)
	}
	got := srv.Messages()
	if len(res.Accepted) != 501 || len(got) != 3 || len(got[1].To) != 500 || len(got[2].To) != 1 {
		t.Errorf("501 recipients: accepted %d, transactions %d", len(res.Accepted), len(got)-1)
	}

	srv.Script(smtptest.StageRcpt, smtptest.Reply{Code: 550, Enhanced: "5.1.10", Text: "Recipient not found"})
	_, err = s.Send(context.Background(), message(t, "alerts@contoso.com", "gone@contoso.com"))
	wantKind(t, err, mailerr.Rejected, "BACKEND_REJECTED")
}

func TestRelayThrottled(t *testing.T) {
	t.Parallel()
	srv, s := relay(t, smtptest.Options{}, nil)
	srv.Script(smtptest.StageMail, smtptest.Reply{Code: 451, Enhanced: "4.7.500", Text: "Server busy. Please try again later from [203.0.113.7]. (S77719) [AS1]"})
	_, err := s.Send(context.Background(), message(t, "alerts@contoso.com", "ops@contoso.com"))
	if e := wantKind(t, err, mailerr.Throttled, ""); e.RetryAfter != 5*time.Minute {
		t.Errorf("retry after %v", e.RetryAfter)
	}
	if s.Scope() != senders.ScopeBackend {
		t.Error("a relay must be paused as a whole")
	}
}

func TestRelayTLSRequired(t *testing.T) {
	t.Parallel()
	// Without the CA the STARTTLS certificate does not verify: nothing goes in the clear.
	srv, s := relay(t, smtptest.Options{}, func(c *smtp.RelayConfig) { c.CAFile = "" })
	_, err := s.Send(context.Background(), message(t, "alerts@contoso.com", "ops@contoso.com"))
	wantKind(t, err, mailerr.Unavailable, "")
	if len(srv.Messages()) != 0 {
		t.Error("sent despite a failed TLS verification")
	}
}

func TestDirectSend(t *testing.T) {
	t.Parallel()
	srv := smtptest.New(t, smtptest.Options{Mode: smtptest.DirectSend, AcceptedDomains: []string{"contoso.com"}})
	s := open(t, &smtp.DirectSendConfig{ConnectorConfig: smtp.ConnectorConfig{
		Connection:      smtp.Connection{Address: srv.Addr(), CAFile: srv.CAFile(t)},
		AcceptedDomains: []string{"contoso.com"},
	}})
	if _, err := s.Send(context.Background(), message(t, "scanner@contoso.com", "alice@contoso.com")); err != nil {
		t.Fatal(err)
	}
	_, err := s.Send(context.Background(), message(t, "scanner@contoso.com", "alice@contoso.com", "bob@fabrikam.com"))
	e := wantKind(t, err, mailerr.PermissionDenied, "RECIPIENT_DOMAIN_NOT_ACCEPTED")
	if !strings.Contains(e.Msg, "bob@fabrikam.com") || !strings.Contains(e.Msg, "contoso.com") {
		t.Errorf("the error must name the recipient and the rule: %q", e.Msg)
	}
	if n := srv.Connections(); n != 1 {
		t.Errorf("%d connections: an external recipient must be refused before connecting", n)
	}
	srv.SetRejectDirectSend(true)
	_, err = s.Send(context.Background(), message(t, "scanner@contoso.com", "alice@contoso.com"))
	e = wantKind(t, err, mailerr.Rejected, "BACKEND_REJECTED")
	if !strings.HasPrefix(e.Metadata["smtpReply"], "550 5.7.68") {
		t.Errorf("metadata %v", e.Metadata)
	}
}

// Idle sessions are closed, and a new one opened for the next message.
func TestIdleSessionsClose(t *testing.T) {
	t.Parallel()
	srv, s := relay(t, smtptest.Options{}, func(c *smtp.RelayConfig) { c.IdleTimeout = 50 * time.Millisecond })
	if _, err := s.Send(context.Background(), message(t, "alerts@contoso.com", "ops@contoso.com")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := s.Send(context.Background(), message(t, "alerts@contoso.com", "ops@contoso.com")); err != nil {
		t.Fatal(err)
	}
	if n := srv.Connections(); n != 2 {
		t.Errorf("%d connections, want 2 (the idle one closed)", n)
	}
}
