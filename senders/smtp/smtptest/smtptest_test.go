package smtptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	netsmtp "net/smtp"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

func TestEHLO(t *testing.T) {
	t.Parallel()
	common := map[string]string{
		"SIZE": "36700160", "PIPELINING": "", "8BITMIME": "", "ENHANCEDSTATUSCODES": "",
		"SMTPUTF8": "", "CHUNKING": "", "BINARYMIME": "", "DSN": "",
	}
	tests := []struct {
		mode     Mode
		tls      bool
		starttls bool
		auth     string // "" = not advertised
	}{
		{Submission, false, true, ""},
		{Submission, true, false, "LOGIN XOAUTH2"},
		{Relay, false, true, ""},
		{Relay, true, false, ""},
		{DirectSend, false, true, ""},
		{DirectSend, true, false, ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v/tls=%v", tt.mode, tt.tls), func(t *testing.T) {
			t.Parallel()
			s := New(t, Options{Mode: tt.mode, Tokens: testTokens, AcceptedDomains: []string{"contoso.com"}})
			var c *smtp.Client
			if tt.tls {
				c = dialTLS(t, s, nil)
			} else {
				c = dial(t, s)
			}
			for ext, param := range common {
				if ok, p := c.Extension(ext); !ok || p != param {
					t.Errorf("extension %s = %v %q, want %q", ext, ok, p, param)
				}
			}
			if ok, _ := c.Extension("STARTTLS"); ok != tt.starttls {
				t.Errorf("STARTTLS advertised = %v, want %v", ok, tt.starttls)
			}
			ok, mechs := c.Extension("AUTH")
			if ok != (tt.auth != "") || mechs != tt.auth {
				t.Errorf("AUTH advertised = %v %q, want %q", ok, mechs, tt.auth)
			}
		})
	}
}

func TestSubmissionBeforeSTARTTLS(t *testing.T) {
	t.Parallel()
	s := newSubmission(t)
	c := dial(t, s)
	check(t, "AUTH XOAUTH2 without TLS", c.Auth(xoauth2{mailbox, goodToken}),
		want{504, smtp.EnhancedCode{5, 7, 4}, "Unrecognized authentication type"})
	check(t, "AUTH LOGIN without TLS", c.Auth(sasl.NewLoginClient("basic@contoso.com", "s3cret")),
		want{504, smtp.EnhancedCode{5, 7, 4}, "Unrecognized authentication type"})
	check(t, "MAIL FROM without AUTH", c.Mail(mailbox, nil),
		want{530, smtp.EnhancedCode{5, 7, 57}, "Client not authenticated to send anonymous mail during MAIL FROM"})

	// After STARTTLS but before AUTH, MAIL FROM is refused the same way.
	c = dialTLS(t, s, nil)
	check(t, "MAIL FROM after STARTTLS without AUTH", c.Mail(mailbox, nil),
		want{530, smtp.EnhancedCode{5, 7, 57}, "Client not authenticated to send anonymous mail during MAIL FROM"})
	if n := len(s.Messages()); n != 0 {
		t.Fatalf("%d messages recorded", n)
	}
}

func TestTLSVersions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		min, max uint16
		want     uint16 // 0: the handshake must fail
	}{
		{"TLS 1.0", tls.VersionTLS10, tls.VersionTLS10, 0},
		{"TLS 1.1", tls.VersionTLS10, tls.VersionTLS11, 0},
		{"TLS 1.2", tls.VersionTLS12, tls.VersionTLS12, tls.VersionTLS12},
		{"TLS 1.3", tls.VersionTLS12, 0, tls.VersionTLS13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSubmission(t)
			c, err := dialTLSErr(t, s, &tls.Config{MinVersion: tt.min, MaxVersion: tt.max})
			if tt.want == 0 {
				if err == nil {
					t.Fatalf("STARTTLS with %s succeeded", tt.name)
				}
				return
			}
			if err != nil {
				t.Fatalf("STARTTLS: %v", err)
			}
			if err := c.Auth(xoauth2{mailbox, goodToken}); err != nil {
				t.Fatalf("AUTH: %v", err)
			}
			if err := send(c, mailbox, []string{"a@fabrikam.com"}, message(mailbox, "a@fabrikam.com", "tls")); err != nil {
				t.Fatalf("send: %v", err)
			}
			if got := s.Messages()[0].TLS; got != tt.want {
				t.Errorf("Message.TLS = %x, want %x", got, tt.want)
			}
			if got := s.Sessions()[0].TLS; got != tt.want {
				t.Errorf("SessionInfo.TLS = %x, want %x", got, tt.want)
			}
		})
	}
}

func TestSubmissionAuth(t *testing.T) {
	t.Parallel()
	tokenRefused := want{535, smtp.EnhancedCode{5, 7, 3}, "Authentication unsuccessful [fake.smtptest]"}
	badPassword := want{535, smtp.EnhancedCode{5, 7, 3}, "Authentication unsuccessful"}
	tests := []struct {
		name     string
		noUsers  bool // Options.Users empty: basic auth disabled
		client   sasl.Client
		want     want
		wantUser string
	}{
		{name: "xoauth2", client: xoauth2{mailbox, goodToken}, wantUser: mailbox},
		{name: "xoauth2 graph token", client: xoauth2{mailbox, "tok-graph"}, want: tokenRefused},
		{name: "xoauth2 unknown token", client: xoauth2{mailbox, "tok-nobody-issued"}, want: tokenRefused},
		{name: "xoauth2 expired token", client: xoauth2{mailbox, "tok-expired"}, want: tokenRefused},
		{name: "xoauth2 without user", client: xoauth2{"", goodToken}, want: tokenRefused},
		{name: "xoauth2 malformed", client: rawAuth{"XOAUTH2", []byte("user=" + mailbox + "\x01auth=Bearer " + goodToken)}, want: tokenRefused},
		{name: "xoauth2 not bearer", client: rawAuth{"XOAUTH2", []byte("user=" + mailbox + "\x01auth=Basic " + goodToken + "\x01\x01")}, want: tokenRefused},
		{name: "login", client: sasl.NewLoginClient("Basic@Contoso.com", "s3cret"), wantUser: "Basic@Contoso.com"},
		{name: "login wrong password", client: sasl.NewLoginClient("basic@contoso.com", "guess"), want: badPassword},
		{name: "login unknown user", client: sasl.NewLoginClient("who@contoso.com", "s3cret"), want: badPassword},
		{name: "login basic disabled", noUsers: true, client: sasl.NewLoginClient("basic@contoso.com", "s3cret"),
			want: want{535, smtp.EnhancedCode{5, 7, 139}, "Authentication unsuccessful, basic authentication is disabled."}},
		{name: "plain not offered", client: sasl.NewPlainClient("", "basic@contoso.com", "s3cret"),
			want: want{504, smtp.EnhancedCode{5, 7, 4}, "Unrecognized authentication type"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := Options{Mode: Submission, Tokens: testTokens, Users: map[string]string{"basic@contoso.com": "s3cret"}}
			if tt.noUsers {
				opts.Users = nil
			}
			s := New(t, opts)
			c := dialTLS(t, s, nil)
			err := c.Auth(tt.client)
			check(t, "AUTH", err, tt.want)
			if err != nil {
				if got := s.Sessions()[0].User; got != "" {
					t.Errorf("SessionInfo.User = %q after a failed AUTH", got)
				}
				return
			}
			if err := send(c, tt.wantUser, []string{"a@fabrikam.com"}, message(tt.wantUser, "a@fabrikam.com", "auth")); err != nil {
				t.Fatalf("send: %v", err)
			}
			m := s.Messages()[0]
			if m.User != tt.wantUser {
				t.Errorf("Message.User = %q, want %q", m.User, tt.wantUser)
			}
			mech, _, _ := tt.client.Start()
			if si := s.Sessions()[0]; si.AuthMechanism != mech || si.User != tt.wantUser {
				t.Errorf("SessionInfo auth = %q %q, want %q %q", si.AuthMechanism, si.User, mech, tt.wantUser)
			}
		})
	}
}

// netLogin is a net/smtp LOGIN client that sends no initial response and checks the
// server's prompts.
type netLogin struct{ user, pass string }

func (a netLogin) Start(*netsmtp.ServerInfo) (string, []byte, error) { return "LOGIN", nil, nil }

func (a netLogin) Next(fromServer []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	switch string(fromServer) {
	case "Username:":
		return []byte(a.user), nil
	case "Password:":
		return []byte(a.pass), nil
	}
	return nil, fmt.Errorf("unexpected prompt %q", fromServer)
}

// netXOAUTH2 is a net/smtp XOAUTH2 client, with the client message of
// docs/microsoft365-smtp.md#what-mailgate-sends.
type netXOAUTH2 struct{ user, token string }

func (a netXOAUTH2) Start(si *netsmtp.ServerInfo) (string, []byte, error) {
	if !si.TLS {
		return "", nil, errors.New("xoauth2 requires TLS")
	}
	return "XOAUTH2", []byte("user=" + a.user + "\x01auth=Bearer " + a.token + "\x01\x01"), nil
}

func (a netXOAUTH2) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return []byte{}, nil
	}
	return nil, nil
}

// TestNetSMTP drives the fake with Go's net/smtp, which mailgate's sender uses.
func TestNetSMTP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		auth netsmtp.Auth
		user string
	}{
		{"xoauth2", netXOAUTH2{mailbox, goodToken}, mailbox},
		{"login without initial response", netLogin{"basic@contoso.com", "s3cret"}, "basic@contoso.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSubmission(t)
			c, err := netsmtp.Dial(s.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Hello("client.test"); err != nil {
				t.Fatal(err)
			}
			if ok, _ := c.Extension("AUTH"); ok {
				t.Fatal("AUTH advertised before STARTTLS")
			}
			if err := c.StartTLS(&tls.Config{ServerName: "127.0.0.1", RootCAs: s.CertPool()}); err != nil {
				t.Fatal(err)
			}
			if err := c.Auth(tt.auth); err != nil {
				t.Fatalf("AUTH: %v", err)
			}
			if err := c.Mail(tt.user); err != nil {
				t.Fatal(err)
			}
			if err := c.Rcpt("a@fabrikam.com"); err != nil {
				t.Fatal(err)
			}
			w, err := c.Data()
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(w, message(tt.user, "a@fabrikam.com", "net smtp"))
			if err := w.Close(); err != nil {
				t.Fatalf("end of DATA: %v", err)
			}
			if err := c.Quit(); err != nil {
				t.Fatal(err)
			}
			if m := s.Messages(); len(m) != 1 || m[0].User != tt.user {
				t.Fatalf("messages = %+v", m)
			}
			if si := s.Sessions()[0]; si.EHLO != "client.test" {
				t.Errorf("SessionInfo.EHLO = %q", si.EHLO)
			}
		})
	}
}

func TestNetSMTPAuthFailure(t *testing.T) {
	t.Parallel()
	s := newSubmission(t)
	c, err := netsmtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartTLS(&tls.Config{ServerName: "127.0.0.1", RootCAs: s.CertPool()}); err != nil {
		t.Fatal(err)
	}
	err = c.Auth(netXOAUTH2{mailbox, "tok-graph"})
	var te *textproto.Error
	if !errors.As(err, &te) || te.Code != 535 || te.Msg != "5.7.3 Authentication unsuccessful [fake.smtptest]" {
		t.Fatalf("AUTH with a Graph token: %v", err)
	}
}

func TestConcurrentSessionLimit(t *testing.T) {
	t.Parallel()
	s := newSubmission(t)
	var sessions []*smtp.Client
	for _, user := range []string{mailbox, "NoReply@Contoso.com", mailbox} {
		sessions = append(sessions, login(t, s, user))
	}
	// Another mailbox has its own limit.
	other := login(t, s, "alerts@contoso.com")

	fourth := dialTLS(t, s, nil)
	check(t, "4th AUTH", fourth.Auth(xoauth2{mailbox, goodToken}), want{432, smtp.EnhancedCode{4, 3, 2},
		"Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending for more information."})
	if err := fourth.Noop(); !isIOError(err) {
		t.Fatalf("NOOP after 432: %v, want a closed connection", err)
	}
	if got := s.MaxConcurrent(mailbox); got != MaxSessionsPerMailbox {
		t.Errorf("MaxConcurrent = %d, want %d", got, MaxSessionsPerMailbox)
	}
	if got := s.MaxConcurrent("alerts@contoso.com"); got != 1 {
		t.Errorf("MaxConcurrent(alerts) = %d, want 1", got)
	}

	// The sessions still work, and ending one frees a slot at once (a pool replacing
	// a connection must not get a 432).
	if err := send(sessions[0], mailbox, []string{"a@fabrikam.com"}, message(mailbox, "a@fabrikam.com", "limit")); err != nil {
		t.Fatal(err)
	}
	if err := sessions[0].Quit(); err != nil {
		t.Fatal(err)
	}
	replacement := login(t, s, mailbox)
	if err := send(replacement, mailbox, []string{"a@fabrikam.com"}, message(mailbox, "a@fabrikam.com", "limit 2")); err != nil {
		t.Fatal(err)
	}
	other.Close() // without QUIT
	if got := s.MaxConcurrent(mailbox); got != MaxSessionsPerMailbox {
		t.Errorf("MaxConcurrent = %d, want %d", got, MaxSessionsPerMailbox)
	}
	waitFor(t, func() bool { return s.Sessions()[4].Closed })
	if si := s.Sessions()[4]; si.User != "" {
		t.Errorf("refused session: %+v", si)
	}
}

func TestConcurrentSessionLimitParallel(t *testing.T) {
	t.Parallel()
	s := newSubmission(t)
	const n = 6
	errs := make(chan error, n)
	var hold sync.WaitGroup
	hold.Add(1)
	for range n {
		go func() {
			c, err := dialTLSErr(t, s, nil)
			if err == nil {
				err = c.Auth(xoauth2{mailbox, goodToken})
			}
			errs <- err
			hold.Wait() // keep the session open until all have tried
		}()
	}
	var ok, refused int
	for range n {
		err := <-errs
		var se *smtp.SMTPError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &se) && se.Code == 432:
			refused++
		default:
			t.Errorf("AUTH: %v", err)
		}
	}
	hold.Done()
	if ok != MaxSessionsPerMailbox || refused != n-MaxSessionsPerMailbox {
		t.Fatalf("%d authenticated, %d refused", ok, refused)
	}
	if got := s.MaxConcurrent(mailbox); got != MaxSessionsPerMailbox {
		t.Fatalf("MaxConcurrent = %d", got)
	}
}

func TestSendAs(t *testing.T) {
	t.Parallel()
	const shared = "support@contoso.com"
	denied := want{550, smtp.EnhancedCode{5, 7, 60}, "SMTP; Client does not have permissions to send as this sender"}
	tests := []struct {
		name     string
		envelope string
		header   string // From: header value
		want     want   // at MAIL FROM
		wantData want   // at the end of DATA
	}{
		{name: "own mailbox", envelope: mailbox, header: mailbox},
		{name: "own mailbox other case", envelope: "NoReply@Contoso.COM", header: "No Reply <NOREPLY@contoso.com>"},
		{name: "granted", envelope: shared, header: "Support <" + shared + ">"},
		{name: "granted with encoded display name", envelope: mailbox, header: "=?koi8-r?B?8NLJ18XU?= <" + shared + ">"},
		{name: "no From header", envelope: mailbox},
		{name: "envelope not granted", envelope: "ceo@contoso.com", header: mailbox, want: denied},
		{name: "header not granted", envelope: mailbox, header: "CEO <ceo@contoso.com>",
			wantData: want{554, smtp.EnhancedCode{5, 2, 252}, "SendAsDenied; noreply@contoso.com not allowed to send as ceo@contoso.com; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied"}},
		{name: "second header address not granted", envelope: mailbox, header: mailbox + ", ceo@contoso.com",
			wantData: want{554, smtp.EnhancedCode{5, 2, 252}, ""}},
		{name: "unparsable header", envelope: mailbox, header: "<<nonsense",
			wantData: want{554, smtp.EnhancedCode{5, 2, 252}, ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSubmission(t)
			s.GrantSendAs("NoReply@contoso.com", "Support@Contoso.com")
			c := login(t, s, mailbox)
			err := c.Mail(tt.envelope, nil)
			check(t, "MAIL FROM", err, tt.want)
			if err != nil {
				return
			}
			if err := c.Rcpt("a@fabrikam.com", nil); err != nil {
				t.Fatal(err)
			}
			w, err := c.Data()
			if err != nil {
				t.Fatal(err)
			}
			data := "Subject: send as\r\n\r\nbody\r\n"
			if tt.header != "" {
				data = "From: " + tt.header + "\r\n" + data
			}
			io.WriteString(w, data)
			check(t, "end of DATA", w.Close(), tt.wantData)
			if got, wantN := len(s.Messages()), map[bool]int{true: 1, false: 0}[tt.wantData.code == 0]; got != wantN {
				t.Fatalf("%d messages recorded, want %d", got, wantN)
			}
			// The session goes on after a refused message.
			if err := send(c, mailbox, []string{"a@fabrikam.com"}, message(mailbox, "a@fabrikam.com", "after")); err != nil {
				t.Fatalf("next message: %v", err)
			}
		})
	}
}

func TestRelay(t *testing.T) {
	t.Parallel()
	ca := NewCA(t)
	otherCA := NewCA(t)
	relayDenied := want{550, smtp.EnhancedCode{5, 7, 64}, "TenantAttribution; Relay Access Denied [fake.smtptest]"}
	type cert struct {
		ca   *CA
		cn   string
		sans []string
	}
	tests := []struct {
		name      string
		ipBased   bool // Options.ClientCAs nil
		plain     bool // no STARTTLS
		cert      *cert
		handshake bool // the TLS handshake must fail
		want      want // at MAIL FROM
		wantCN    string
	}{
		{name: "cert CN subdomain", cert: &cert{ca, "relay.contoso.com", nil}, wantCN: "relay.contoso.com"},
		{name: "cert CN domain", cert: &cert{ca, "contoso.com", nil}, wantCN: "contoso.com"},
		{name: "cert SAN", cert: &cert{ca, "app server", []string{"mail.fabrikam.net", "smtp.Contoso.com"}}, wantCN: "app server"},
		{name: "cert wildcard SAN", cert: &cert{ca, "x", []string{"*.contoso.com"}}, wantCN: "x"},
		{name: "cert second accepted domain", cert: &cert{ca, "relay.contoso.org", nil}, wantCN: "relay.contoso.org"},
		{name: "cert for other domain", cert: &cert{ca, "relay.fabrikam.com", []string{"fabrikam.com"}}, want: relayDenied},
		{name: "cert lookalike domain", cert: &cert{ca, "evilcontoso.com", nil}, want: relayDenied},
		{name: "TLS without cert", want: relayDenied},
		{name: "no TLS", plain: true, want: want{530, smtp.EnhancedCode{5, 7, 0}, "Must issue a STARTTLS command first"}},
		{name: "cert from untrusted CA", cert: &cert{otherCA, "relay.contoso.com", nil}, handshake: true},
		{name: "IP-based without TLS", ipBased: true, plain: true},
		{name: "IP-based with TLS", ipBased: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := Options{Mode: Relay, AcceptedDomains: []string{"contoso.com", "contoso.org"}}
			if !tt.ipBased {
				opts.ClientCAs = ca.Pool()
			}
			s := New(t, opts)
			var c *smtp.Client
			if tt.plain {
				c = dial(t, s)
			} else {
				cfg := &tls.Config{}
				if tt.cert != nil {
					certFile, keyFile := tt.cert.ca.Issue(t, tt.cert.cn, tt.cert.sans...)
					pair, err := tls.LoadX509KeyPair(certFile, keyFile)
					if err != nil {
						t.Fatal(err)
					}
					cfg.Certificates = []tls.Certificate{pair}
				}
				var err error
				c, err = dialTLSErr(t, s, cfg)
				if tt.handshake {
					if err == nil {
						t.Fatal("handshake with an untrusted client certificate succeeded")
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			const from = "app@contoso.com"
			err := c.Mail(from, nil)
			check(t, "MAIL FROM", err, tt.want)
			if err != nil {
				return
			}
			// A relay takes external recipients.
			to := []string{"someone@fabrikam.com", "colleague@contoso.com"}
			for _, rcpt := range to {
				if err := c.Rcpt(rcpt, nil); err != nil {
					t.Fatalf("RCPT TO %s: %v", rcpt, err)
				}
			}
			w, err := c.Data()
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(w, message(from, to[0], "relay"))
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			m := s.Messages()
			if len(m) != 1 || m[0].ClientCertName != tt.wantCN || m[0].User != "" || len(m[0].To) != 2 {
				t.Fatalf("messages = %+v", m)
			}
			if got := s.Sessions()[0].ClientCertName; got != tt.wantCN {
				t.Errorf("SessionInfo.ClientCertName = %q, want %q", got, tt.wantCN)
			}
		})
	}
}

func TestRelayRefusesAUTH(t *testing.T) {
	t.Parallel()
	s := New(t, Options{Mode: Relay, Tokens: testTokens})
	c := dialTLS(t, s, nil)
	check(t, "AUTH", c.Auth(xoauth2{mailbox, goodToken}), want{504, smtp.EnhancedCode{5, 7, 4}, "Unrecognized authentication type"})
}

func TestDirectSend(t *testing.T) {
	t.Parallel()
	nonAccepted := want{550, smtp.EnhancedCode{5, 7, 54}, "SMTP; Unable to relay recipient in non-accepted domain"}
	rejected := want{550, smtp.EnhancedCode{5, 7, 68}, "TenantInboundAttribution; Direct Send not allowed for this organization from unauthorized sources"}
	tests := []struct {
		name     string
		reject   bool // SetRejectDirectSend(true)
		tls      bool
		from     string
		to       []string
		wantMail want
		wantRcpt []want // per recipient
	}{
		{name: "internal", from: "scanner@contoso.com", to: []string{"alice@contoso.com", "Bob@CONTOSO.COM"}, wantRcpt: []want{{}, {}}},
		{name: "internal over TLS", tls: true, from: "scanner@contoso.com", to: []string{"alice@contoso.com"}, wantRcpt: []want{{}}},
		{name: "external", from: "scanner@contoso.com", to: []string{"alice@contoso.com", "bob@fabrikam.com"}, wantRcpt: []want{{}, nonAccepted}},
		{name: "subdomain is not accepted", from: "scanner@contoso.com", to: []string{"alice@eu.contoso.com"}, wantRcpt: []want{nonAccepted}},
		{name: "rejected from accepted domain", reject: true, from: "scanner@Contoso.com", wantMail: rejected},
		{name: "reject allows foreign sender", reject: true, from: "news@fabrikam.com", to: []string{"alice@contoso.com"}, wantRcpt: []want{{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := New(t, Options{Mode: DirectSend, AcceptedDomains: []string{"contoso.com"}})
			s.SetRejectDirectSend(tt.reject)
			var c *smtp.Client
			if tt.tls {
				c = dialTLS(t, s, nil)
			} else {
				c = dial(t, s)
			}
			err := c.Mail(tt.from, nil)
			check(t, "MAIL FROM", err, tt.wantMail)
			if err != nil {
				return
			}
			var accepted []string
			for i, rcpt := range tt.to {
				err := c.Rcpt(rcpt, nil)
				check(t, "RCPT TO "+rcpt, err, tt.wantRcpt[i])
				if err == nil {
					accepted = append(accepted, rcpt)
				}
			}
			if len(accepted) == 0 {
				return
			}
			w, err := c.Data()
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(w, message(tt.from, tt.to[0], "direct send"))
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			m := s.Messages()
			if len(m) != 1 || strings.Join(m[0].To, ",") != strings.Join(accepted, ",") {
				t.Fatalf("messages = %+v, want To %v", m, accepted)
			}
		})
	}
}

func TestRejectDirectSendToggle(t *testing.T) {
	t.Parallel()
	s := New(t, Options{Mode: DirectSend, AcceptedDomains: []string{"contoso.com"}})
	c := dial(t, s)
	s.SetRejectDirectSend(true)
	check(t, "MAIL FROM while rejected", c.Mail("scanner@contoso.com", nil), want{550, smtp.EnhancedCode{5, 7, 68}, ""})
	s.SetRejectDirectSend(false)
	check(t, "MAIL FROM after turning it off", c.Mail("scanner@contoso.com", nil), want{})
}

func TestTooManyRecipients(t *testing.T) {
	t.Parallel()
	for _, mode := range []Mode{Submission, Relay, DirectSend} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			s := New(t, Options{Mode: mode, Tokens: testTokens, AcceptedDomains: []string{"contoso.com"}})
			var c *smtp.Client
			if mode == Submission {
				c = login(t, s, mailbox)
			} else {
				c = dial(t, s)
			}
			if err := c.Mail(mailbox, nil); err != nil {
				t.Fatal(err)
			}
			for i := range MaxRecipients {
				if err := c.Rcpt(fmt.Sprintf("user%d@contoso.com", i), nil); err != nil {
					t.Fatalf("RCPT TO #%d: %v", i+1, err)
				}
			}
			check(t, "RCPT TO #501", c.Rcpt("one.too.many@contoso.com", nil),
				want{452, smtp.EnhancedCode{4, 5, 3}, "Too many recipients"})
			w, err := c.Data()
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(w, message(mailbox, "list@contoso.com", "many"))
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if m := s.Messages(); len(m) != 1 || len(m[0].To) != MaxRecipients {
				t.Fatalf("recorded %d messages", len(m))
			}
			// The count is per transaction.
			if err := send(c, mailbox, []string{"one.more@contoso.com"}, message(mailbox, "one.more@contoso.com", "next")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestMessageSize(t *testing.T) {
	t.Parallel()
	const limit = 1000
	body := func(n int) string {
		// Exactly n bytes, ending in CRLF so that the client adds nothing.
		var b strings.Builder
		b.WriteString("Subject: size\r\n\r\n")
		for n-b.Len() > 51 {
			b.WriteString(strings.Repeat("x", 48) + "\r\n")
		}
		b.WriteString(strings.Repeat("y", n-b.Len()-2) + "\r\n")
		return b.String()
	}
	tooBig := want{552, smtp.EnhancedCode{5, 3, 4}, "Message size exceeds fixed maximum message size"}
	tests := []struct {
		name string
		size int
		want want
	}{
		{"under", limit - 1, want{}},
		// go-smtp's DATA reader refuses a message of exactly the limit as well.
		{"at limit", limit, tooBig},
		{"over", limit + 1, tooBig},
		{"far over", 50 * limit, tooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := New(t, Options{Mode: Relay, MaxMessageBytes: limit})
			c := dial(t, s)
			if size, ok := c.MaxMessageSize(); !ok || size != limit {
				t.Errorf("SIZE = %d %v", size, ok)
			}
			data := body(tt.size)
			if len(data) != tt.size {
				t.Fatalf("test message has %d bytes", len(data))
			}
			check(t, "send", send(c, "app@contoso.com", []string{"a@fabrikam.com"}, data), tt.want)
			if got := len(s.Messages()); got != map[bool]int{true: 1, false: 0}[tt.want.code == 0] {
				t.Fatalf("%d messages recorded", got)
			}
			// The session survives a refusal.
			if err := send(c, "app@contoso.com", []string{"a@fabrikam.com"}, "Subject: small\r\n\r\nx\r\n"); err != nil {
				t.Fatalf("next message: %v", err)
			}
		})
	}
	t.Run("SIZE parameter", func(t *testing.T) {
		t.Parallel()
		s := New(t, Options{Mode: Relay, MaxMessageBytes: limit})
		c := dial(t, s)
		// go-smtp answers this itself, with its own text.
		check(t, "MAIL FROM SIZE=1001", c.Mail("app@contoso.com", &smtp.MailOptions{Size: limit + 1}), want{552, smtp.EnhancedCode{5, 3, 4}, ""})
		check(t, "MAIL FROM SIZE=1000", c.Mail("app@contoso.com", &smtp.MailOptions{Size: limit}), want{})
	})
}

func TestExactBytes(t *testing.T) {
	t.Parallel()
	data := "From: app@contoso.com\r\nSubject: =?utf-8?q?dots?=\r\n\r\n" +
		".leading dot\r\n" +
		"..two leading dots\r\n" +
		".\r\n" +
		"ünïcödé 8-bit\r\n" +
		"trailing spaces   \r\n" +
		"\r\n" +
		"last line\r\n"
	s := New(t, Options{Mode: Relay})
	c := dial(t, s)
	if err := send(c, "app@contoso.com", []string{"a@fabrikam.com"}, data); err != nil {
		t.Fatal(err)
	}
	if got := s.Messages()[0].Data; string(got) != data {
		t.Fatalf("recorded\n%q\nwant\n%q", got, data)
	}
}

// TestExactBytesRaw speaks SMTP by hand, to check that dot-unstuffing is all the fake
// does: a bare LF stays a bare LF.
func TestExactBytesRaw(t *testing.T) {
	t.Parallel()
	s := New(t, Options{Mode: Relay})
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	tc := textproto.NewConn(nc)
	expect := func(code int) {
		t.Helper()
		if _, _, err := tc.ReadResponse(code); err != nil {
			t.Fatalf("want %d: %v", code, err)
		}
	}
	expect(220)
	for _, step := range []struct {
		cmd  string
		code int
	}{{"EHLO raw.test", 250}, {"MAIL FROM:<app@contoso.com>", 250}, {"RCPT TO:<a@fabrikam.com>", 250}, {"DATA", 354}} {
		if err := tc.PrintfLine("%s", step.cmd); err != nil {
			t.Fatal(err)
		}
		expect(step.code)
	}
	io.WriteString(nc, "Subject: raw\r\n\r\n..stuffed\r\nbare\nLF\r\n.\r\n")
	_, msg, err := tc.ReadResponse(250)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(msg, "2.6.0 <1@fake.smtptest> [InternalId=1, Hostname=fake.smtptest] Queued mail for delivery") {
		t.Errorf("reply to DATA: %q", msg)
	}
	want := "Subject: raw\r\n\r\n.stuffed\r\nbare\nLF\r\n"
	if got := string(s.Messages()[0].Data); got != want {
		t.Fatalf("recorded %q, want %q", got, want)
	}
}

func TestRSETAndManyMessages(t *testing.T) {
	t.Parallel()
	s := newSubmission(t)
	c := dialTLS(t, s, nil)
	if err := c.Auth(xoauth2{mailbox, goodToken}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if i > 0 {
			if err := c.Reset(); err != nil {
				t.Fatal(err)
			}
		}
		if err := send(c, mailbox, []string{"a@fabrikam.com"}, message(mailbox, "a@fabrikam.com", fmt.Sprint("message ", i))); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	// A refused transaction, cleared with RSET.
	if err := c.Mail(mailbox, nil); err != nil {
		t.Fatal(err)
	}
	check(t, "second MAIL FROM", c.Mail(mailbox, nil), want{503, smtp.EnhancedCode{5, 5, 2}, "Sender already specified"})
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := send(c, mailbox, []string{"b@fabrikam.com"}, message(mailbox, "b@fabrikam.com", "after reset")); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}

	msgs := s.Messages()
	if len(msgs) != 4 || msgs[3].To[0] != "b@fabrikam.com" {
		t.Fatalf("messages = %+v", msgs)
	}
	if !bytes.Contains(msgs[1].Data, []byte("Subject: message 1\r\n")) {
		t.Errorf("second message: %q", msgs[1].Data)
	}
	if s.Connections() != 1 {
		t.Errorf("Connections = %d", s.Connections())
	}
	si := s.Sessions()
	if len(si) != 1 {
		t.Fatalf("Sessions = %+v", si)
	}
	// go-smtp's client follows every RSET with a new EHLO; those are not counted.
	wantInfo := SessionInfo{EHLO: "client.test", TLS: tls.VersionTLS13, AuthMechanism: "XOAUTH2", User: mailbox, Messages: 4, Resets: 3}
	waitFor(t, func() bool { return s.Sessions()[0].Closed })
	wantInfo.Closed = true
	if got := s.Sessions()[0]; got != wantInfo {
		t.Fatalf("SessionInfo = %+v, want %+v", got, wantInfo)
	}
}

// TestRSETCountNetSMTP checks the RSET count with net/smtp, which sends no EHLO after
// RSET, and with a repeated EHLO.
func TestRSETCountNetSMTP(t *testing.T) {
	t.Parallel()
	s := New(t, Options{Mode: DirectSend, AcceptedDomains: []string{"contoso.com"}})
	c, err := netsmtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 2 {
		if err := c.Reset(); err != nil {
			t.Fatal(err)
		}
	}
	if id, err := c.Text.Cmd("EHLO again.test"); err != nil {
		t.Fatal(err)
	} else {
		c.Text.StartResponse(id)
		_, _, err = c.Text.ReadResponse(250)
		c.Text.EndResponse(id)
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	if si := s.Sessions()[0]; si.Resets != 3 || si.EHLO != "again.test" {
		t.Fatalf("SessionInfo = %+v, want 3 resets, EHLO again.test", si)
	}
}

func TestScript(t *testing.T) {
	t.Parallel()
	type step int
	const (
		connect step = iota
		auth
		mail
		rcpt
		data
	)
	tests := []struct {
		name     string
		stage    Stage
		reply    Reply
		fails    step // the step that gets the reply
		ioError  bool // the client sees a dropped connection instead of a reply
		want     want
		recorded bool // the failed message is nonetheless recorded
	}{
		{name: "greeting 421", stage: StageConnect, reply: Reply{Code: 421, Enhanced: "4.3.2", Text: "Service not available"},
			fails: connect, want: want{421, smtp.EnhancedCode{4, 3, 2}, "Service not available"}},
		{name: "greeting hangup", stage: StageConnect, reply: Reply{Hangup: true}, fails: connect, ioError: true},
		{name: "auth 454", stage: StageAuth, reply: Reply{Code: 454, Enhanced: "4.7.0", Text: "Temporary authentication failure"},
			fails: auth, want: want{454, smtp.EnhancedCode{4, 7, 0}, "Temporary authentication failure"}},
		{name: "auth hangup", stage: StageAuth, reply: Reply{Hangup: true}, fails: auth, ioError: true},
		{name: "mail 451", stage: StageMail, reply: Reply{Code: 451, Enhanced: "4.7.500", Text: "Server busy. Please try again later from [203.0.113.7]. (AS761)"},
			fails: mail, want: want{451, smtp.EnhancedCode{4, 7, 500}, "Server busy. Please try again later from [203.0.113.7]. (AS761)"}},
		{name: "mail without enhanced code", stage: StageMail, reply: Reply{Code: 421, Text: "Try later"},
			fails: mail, want: want{421, smtp.EnhancedCode{4, 0, 0}, "Try later"}},
		{name: "mail hangup", stage: StageMail, reply: Reply{Hangup: true}, fails: mail, ioError: true},
		{name: "rcpt 550", stage: StageRcpt, reply: Reply{Code: 550, Enhanced: "5.1.10", Text: "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"},
			fails: rcpt, want: want{550, smtp.EnhancedCode{5, 1, 10}, "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"}},
		{name: "data 451", stage: StageData, reply: Reply{Code: 451, Enhanced: "4.3.0", Text: "Temporary server error"},
			fails: data, want: want{451, smtp.EnhancedCode{4, 3, 0}, "Temporary server error"}},
		{name: "data hangup", stage: StageData, reply: Reply{Hangup: true}, fails: data, ioError: true, recorded: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSubmission(t)
			s.Script(tt.stage, tt.reply)
			attempt := func() (step, error) {
				nc, err := net.Dial("tcp", s.Addr())
				if err != nil {
					t.Fatal(err)
				}
				c := smtp.NewClient(nc)
				defer c.Close()
				if err := c.Hello("client.test"); err != nil {
					return connect, err
				}
				c.Close()
				c, err = dialTLSErr(t, s, nil)
				if err != nil {
					t.Fatalf("STARTTLS: %v", err)
				}
				if err := c.Auth(xoauth2{mailbox, goodToken}); err != nil {
					return auth, err
				}
				if err := c.Mail(mailbox, nil); err != nil {
					return mail, err
				}
				if err := c.Rcpt("a@fabrikam.com", nil); err != nil {
					return rcpt, err
				}
				w, err := c.Data()
				if err != nil {
					t.Fatalf("DATA: %v", err)
				}
				io.WriteString(w, message(mailbox, "a@fabrikam.com", "scripted"))
				return data, w.Close()
			}
			at, err := attempt()
			if at != tt.fails {
				t.Fatalf("failed at step %d (%v), want step %d", at, err, tt.fails)
			}
			if tt.ioError {
				if !isIOError(err) {
					t.Fatalf("got %v, want a dropped connection", err)
				}
			} else {
				check(t, "scripted step", err, tt.want)
			}
			if got := len(s.Messages()); got != map[bool]int{true: 1, false: 0}[tt.recorded] {
				t.Fatalf("%d messages recorded after the scripted reply", got)
			}
			// The script is used up: the next attempt goes through.
			if at, err := attempt(); err != nil {
				t.Fatalf("second attempt failed at step %d: %v", at, err)
			}
		})
	}
}

func TestScriptQueueAndSuccessReply(t *testing.T) {
	t.Parallel()
	s := New(t, Options{Mode: Relay})
	s.Script(StageRcpt, Reply{Code: 452, Enhanced: "4.5.3", Text: "Too many recipients"}, Reply{Code: 550, Enhanced: "5.1.1", Text: "unknown"})
	s.Script(StageData, Reply{Code: 250, Enhanced: "2.6.0", Text: "<custom@id> Queued mail for delivery"})
	c := dial(t, s)
	if err := c.Mail("app@contoso.com", nil); err != nil {
		t.Fatal(err)
	}
	check(t, "RCPT 1", c.Rcpt("a@fabrikam.com", nil), want{452, smtp.EnhancedCode{4, 5, 3}, "Too many recipients"})
	check(t, "RCPT 2", c.Rcpt("b@fabrikam.com", nil), want{550, smtp.EnhancedCode{5, 1, 1}, "unknown"})
	check(t, "RCPT 3", c.Rcpt("c@fabrikam.com", nil), want{})
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: x\r\n\r\ny\r\n")
	resp, err := w.CloseWithResponse()
	if err != nil || resp.StatusText != "2.6.0 <custom@id> Queued mail for delivery" {
		t.Fatalf("end of DATA: %v %+v", err, resp)
	}
	if m := s.Messages(); len(m) != 1 || m[0].To[0] != "c@fabrikam.com" {
		t.Fatalf("messages = %+v", m)
	}
}

func TestScriptRejectsUnsendableReplies(t *testing.T) {
	t.Parallel()
	s := New(t, Options{Mode: Relay})
	for _, tt := range []struct {
		stage Stage
		reply Reply
	}{
		{StageMail, Reply{Code: 250, Text: "ok"}},
		{StageRcpt, Reply{Code: 354}},
		{StageData, Reply{Code: 700}},
		{StageMail, Reply{Code: 451, Enhanced: "4.7"}},
		{StageMail, Reply{Code: 451, Enhanced: "5.7.1"}},
		{Stage(9), Reply{Hangup: true}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Script(%v, %+v) did not panic", tt.stage, tt.reply)
				}
			}()
			s.Script(tt.stage, tt.reply)
		}()
	}
}

func TestLatency(t *testing.T) {
	t.Parallel()
	s := New(t, Options{Mode: Relay})
	const d = 300 * time.Millisecond
	s.SetLatency(d)
	c := dial(t, s)
	start := time.Now()
	if err := c.Mail("app@contoso.com", nil); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) >= d {
		t.Fatal("MAIL FROM was delayed")
	}
	if err := c.Rcpt("a@fabrikam.com", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: slow\r\n\r\nx\r\n")
	start = time.Now()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := time.Since(start); got < d {
		t.Fatalf("end of DATA answered after %v, want at least %v", got, d)
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	s := New(t, Options{Mode: DirectSend, AcceptedDomains: []string{"contoso.com"}})
	const clients, perClient = 8, 5
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			c, err := smtp.Dial(s.Addr())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			for j := range perClient {
				to := fmt.Sprintf("user%d@contoso.com", i)
				if err := send(c, "scanner@fabrikam.com", []string{to}, message("scanner@fabrikam.com", to, fmt.Sprint("m", i, j))); err != nil {
					t.Error(err)
					return
				}
				_ = s.Messages()
				_ = s.Sessions()
			}
			c.Quit()
		})
	}
	wg.Wait()
	if got := len(s.Messages()); got != clients*perClient {
		t.Fatalf("%d messages", got)
	}
	if got := s.Connections(); got != clients {
		t.Fatalf("%d connections", got)
	}
}

func TestServerCertificateFiles(t *testing.T) {
	t.Parallel()
	s := New(t, Options{Mode: DirectSend})
	cert := s.Certificate()
	if k, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Fatalf("public key %T, want ECDSA P-256", cert.PublicKey)
	}
	for _, host := range []string{"127.0.0.1", "::1", "localhost"} {
		if err := cert.VerifyHostname(host); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
	pemBytes, err := os.ReadFile(s.CAFile(t))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("CAFile holds no certificate")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost"}); err != nil {
		t.Fatalf("server certificate does not verify against CAFile: %v", err)
	}
}

func TestCA(t *testing.T) {
	t.Parallel()
	ca := NewCA(t)
	certFile, keyFile := ca.Issue(t, "relay.contoso.com", "relay.contoso.com", "smtp.contoso.com")
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf := pair.Leaf
	if leaf.Subject.CommonName != "relay.contoso.com" || len(leaf.DNSNames) != 2 {
		t.Errorf("subject %v, SANs %v", leaf.Subject, leaf.DNSNames)
	}
	if life := time.Until(leaf.NotAfter); life > 25*time.Hour || life < 23*time.Hour {
		t.Errorf("valid for another %v", life)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate does not verify for client auth: %v", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("client certificate verifies for server auth")
	}
	b, err := os.ReadFile(ca.CertFile(t))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" || !bytes.Equal(block.Bytes, ca.Certificate().Raw) {
		t.Fatal("CertFile does not hold the CA certificate")
	}
}

// waitFor polls cond for up to a few seconds: the server notices a closed connection
// asynchronously.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
