package smtptest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const (
	mailbox   = "noreply@contoso.com"
	goodToken = "tok-outlook"
)

// testTokens is a Tokens func backed by a map of token → scope. "tok-expired" is known
// but no longer valid.
func testTokens(token string) (string, bool) {
	scopes := map[string]string{
		goodToken:     OutlookScope,
		"tok-graph":   "https://graph.microsoft.com/.default",
		"tok-expired": OutlookScope,
	}
	scope, ok := scopes[token]
	return scope, ok && token != "tok-expired"
}

// xoauth2 is a go-sasl client for XOAUTH2 (docs/microsoft365-smtp.md#what-mailgate-sends).
type xoauth2 struct{ user, token string }

func (a xoauth2) Start() (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + a.user + "\x01auth=Bearer " + a.token + "\x01\x01"), nil
}

// Next answers a challenge with an empty line, so that the server can send its verdict.
func (a xoauth2) Next([]byte) ([]byte, error) { return []byte{}, nil }

// rawAuth sends a fixed mechanism and initial response.
type rawAuth struct {
	mech string
	ir   []byte
}

func (a rawAuth) Start() (string, []byte, error) { return a.mech, a.ir, nil }
func (a rawAuth) Next([]byte) ([]byte, error)    { return nil, errors.New("unexpected challenge") }

var _ sasl.Client = xoauth2{}

func newSubmission(t *testing.T) *Server {
	t.Helper()
	return New(t, Options{Mode: Submission, Tokens: testTokens, Users: map[string]string{"basic@contoso.com": "s3cret"}})
}

// dial opens a plain session.
func dial(t *testing.T, s *Server) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialTLS opens a session, runs STARTTLS trusting the fake's certificate and says
// EHLO client.test over TLS. (go-smtp's client does the TLS handshake lazily, with the
// first command after STARTTLS.)
func dialTLS(t *testing.T, s *Server, cfg *tls.Config) *smtp.Client {
	t.Helper()
	c, err := dialTLSErr(t, s, cfg)
	if err != nil {
		t.Fatalf("dial with STARTTLS: %v", err)
	}
	return c
}

func dialTLSErr(t *testing.T, s *Server, cfg *tls.Config) (*smtp.Client, error) {
	t.Helper()
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg = cfg.Clone()
	cfg.RootCAs = s.CertPool()
	c, err := smtp.DialStartTLS(s.Addr(), cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		return nil, err
	}
	return c, nil
}

// login opens a submission session authenticated with XOAUTH2 as user.
func login(t *testing.T, s *Server, user string) *smtp.Client {
	t.Helper()
	c := dialTLS(t, s, nil)
	if err := c.Auth(xoauth2{user, goodToken}); err != nil {
		t.Fatalf("AUTH XOAUTH2 as %s: %v", user, err)
	}
	return c
}

func message(from, to, subject string) string {
	return "From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\n" +
		"Message-ID: <" + strings.ReplaceAll(subject, " ", "-") + "@client.test>\r\n\r\nHello.\r\n"
}

func send(c *smtp.Client, from string, to []string, data string) error {
	return c.SendMail(from, to, strings.NewReader(data))
}

// want describes an expected SMTP reply; the zero value means success.
type want struct {
	code     int
	enhanced smtp.EnhancedCode
	text     string // exact text; "" does not check
}

func (w want) String() string {
	if w.code == 0 {
		return "success"
	}
	return fmt.Sprintf("%d %d.%d.%d %s", w.code, w.enhanced[0], w.enhanced[1], w.enhanced[2], w.text)
}

// check fails unless err matches w.
func check(t *testing.T, what string, err error, w want) {
	t.Helper()
	if w.code == 0 {
		if err != nil {
			t.Fatalf("%s: %v, want success", what, err)
		}
		return
	}
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("%s: error %v (%T), want %v", what, err, err, w)
	}
	if se.Code != w.code || se.EnhancedCode != w.enhanced || (w.text != "" && se.Message != w.text) {
		t.Fatalf("%s: got %d %v %q, want %v", what, se.Code, se.EnhancedCode, se.Message, w)
	}
}

// isIOError reports whether err is a failure of the connection rather than a reply.
func isIOError(err error) bool {
	var se *smtp.SMTPError
	return err != nil && !errors.As(err, &se)
}
