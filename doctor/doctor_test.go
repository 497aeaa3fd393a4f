package doctor_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/config/secret"
	"github.com/mailgate/mailgate/doctor"
	"github.com/mailgate/mailgate/internal/app"
	"github.com/mailgate/mailgate/internal/dnstest"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/senders/discard"
	"github.com/mailgate/mailgate/senders/entra"
	"github.com/mailgate/mailgate/senders/file"
	"github.com/mailgate/mailgate/senders/graph"
	"github.com/mailgate/mailgate/senders/graph/graphtest"
	"github.com/mailgate/mailgate/senders/smtp"
	"github.com/mailgate/mailgate/senders/smtp/smtptest"
)

const mailbox = "noreply@contoso.com"

// configWith is a configuration with one backend, named "be", and routes to it.
func configWith(typ string, settings senders.Config, routes ...config.Route) *config.Config {
	cfg := &config.Config{Backends: map[string]*config.Backend{"be": {Type: typ, Settings: settings}}}
	for _, r := range routes {
		r.Backend = "be"
		cfg.Routes = append(cfg.Routes, r)
	}
	return cfg
}

func run(t *testing.T, cfg *config.Config, opts doctor.Options) doctor.Report {
	t.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	r := doctor.Run(context.Background(), cfg, app.DoctorCheckers(), opts)
	var b bytes.Buffer
	_ = r.WriteText(&b)
	t.Logf("report:\n%s", b.String())
	return r
}

// check finds the named check; it fails the test when there is none.
func check(t *testing.T, r doctor.Report, name string) doctor.Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in the report", name)
	return doctor.Check{}
}

func wantStatus(t *testing.T, r doctor.Report, name string, st doctor.Status, detailHas, fixHas string) doctor.Check {
	t.Helper()
	c := check(t, r, name)
	if c.Status != st || !strings.Contains(c.Detail, detailHas) || !strings.Contains(c.Fix, fixHas) {
		t.Errorf("%s: %s %q (fix %q), want %s with %q (fix with %q)", name, c.Status, c.Detail, c.Fix, st, detailHas, fixHas)
	}
	if st == doctor.Fail && c.Fix == "" {
		t.Errorf("%s failed without a fix", name)
	}
	return c
}

func wantAllPass(t *testing.T, r doctor.Report) {
	t.Helper()
	for _, c := range r.Checks {
		if c.Status != doctor.Pass {
			t.Errorf("%s: %s %q", c.Name, c.Status, c.Detail)
		}
	}
	if !r.OK() {
		t.Error("the report is not OK")
	}
}

// submission starts a fake smtp.office365.com and a fake Entra, and an smtp_auth
// section for them.
func submission(t *testing.T) (*smtptest.Server, *graphtest.Fake, *smtp.AuthConfig) {
	t.Helper()
	entraFake := graphtest.New(t)
	srv := smtptest.New(t, smtptest.Options{Mode: smtptest.Submission, Tokens: entraFake.TokenScope,
		Users: map[string]string{"basic@contoso.com": "pa55word"}})
	c := &smtp.AuthConfig{
		Connection: smtp.Connection{Address: srv.Addr(), CAFile: srv.CAFileWith(t, entraFake.CAFile(t)), Helo: "doctor.test"},
		Credentials: entra.Credentials{
			TenantID: graphtest.TenantID, ClientID: graphtest.ClientID,
			ClientSecret: secret.New(graphtest.ClientSecret), AuthorityURL: entraFake.AuthorityURL(),
		},
	}
	return srv, entraFake, c
}

func TestSMTPAuthPasses(t *testing.T) {
	t.Parallel()
	srv, entraFake, c := submission(t)
	cfg := configWith("smtp_auth", c,
		config.Route{Match: mailbox},
		config.Route{Match: "alerts@contoso.com", Mailbox: "billing@contoso.com"},
		config.Route{Match: "*@contoso.com"}, // signs in as each From: nothing to check
	)
	r := run(t, cfg, doctor.Options{})
	wantAllPass(t, r)
	wantStatus(t, r, "token", doctor.Pass, smtp.OutlookScope, "")
	wantStatus(t, r, "TLS", doctor.Pass, "TLS 1.3", "")
	wantStatus(t, r, "certificate", doctor.Pass, "127.0.0.1", "")
	wantStatus(t, r, "AUTH mechanisms", doctor.Pass, "XOAUTH2", "")
	wantStatus(t, r, "AUTH as "+mailbox, doctor.Pass, "235", "")
	wantStatus(t, r, "AUTH as billing@contoso.com", doctor.Pass, "235", "")
	order := []string{"token", "DNS", "connect", "greeting", "EHLO", "STARTTLS", "TLS", "certificate",
		"EHLO after STARTTLS", "AUTH mechanisms", "AUTH as billing@contoso.com", "AUTH as " + mailbox}
	for i, c := range r.Checks {
		if i >= len(order) || c.Name != order[i] || c.Backend != "be" || c.Type != "smtp_auth" {
			t.Fatalf("check %d is %s/%s %q, want the order %v", i, c.Backend, c.Type, c.Name, order)
		}
	}
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("the doctor sent %d messages", n)
	}
	sessions := srv.Sessions()
	if len(sessions) != 2 {
		t.Fatalf("%d sessions, want one per mailbox", len(sessions))
	}
	for _, s := range sessions {
		if s.AuthMechanism != "XOAUTH2" || s.EHLO != "doctor.test" || s.TLS < tls.VersionTLS12 {
			t.Errorf("session %+v", s)
		}
	}
	if n := entraFake.TokensIssued(smtp.OutlookScope); n != 1 {
		t.Errorf("%d tokens issued, want 1", n)
	}
}

func TestSMTPAuthWrongSecret(t *testing.T) {
	t.Parallel()
	srv, _, c := submission(t)
	c.ClientSecret = secret.New("not-the-secret")
	r := run(t, configWith("smtp_auth", c, config.Route{Match: mailbox}), doctor.Options{})
	wantStatus(t, r, "token", doctor.Fail, "AADSTS7000215", "copy the secret's Value")
	wantStatus(t, r, "AUTH mechanisms", doctor.Pass, "XOAUTH2", "")
	wantStatus(t, r, "AUTH as "+mailbox, doctor.Skip, "no token", "")
	if r.OK() || r.Failed() != 1 {
		t.Errorf("OK %v with %d failures, want 1 failure", r.OK(), r.Failed())
	}
	if s := srv.Sessions(); len(s) != 1 || s[0].AuthMechanism != "" {
		t.Errorf("sessions %+v, want one without AUTH", s)
	}
	if strings.Contains(r.Checks[0].Detail, "not-the-secret") {
		t.Error("the report shows the secret")
	}
}

func TestSMTPAuthUntrustedCertificate(t *testing.T) {
	t.Parallel()
	srv, entraFake, c := submission(t)
	c.CAFile = entraFake.CAFile(t) // trusts Entra, not the SMTP server
	r := run(t, configWith("smtp_auth", c, config.Route{Match: mailbox}), doctor.Options{})
	wantStatus(t, r, "token", doctor.Pass, "", "")
	wantStatus(t, r, "certificate", doctor.Fail, "unknown authority", "ca_file")
	wantStatus(t, r, "EHLO after STARTTLS, AUTH mechanisms, AUTH as "+mailbox, doctor.Skip, "after the failure", "")
	if s := srv.Sessions(); len(s) != 1 || s[0].AuthMechanism != "" {
		t.Errorf("sessions %+v: no AUTH may follow a certificate that did not verify", s)
	}
}

// The token is for Graph, not Outlook: Microsoft refuses it with 535 5.7.3.
func TestSMTPAuthTokenRefused(t *testing.T) {
	t.Parallel()
	_, _, c := submission(t)
	c.TokenScope = graphtest.GraphScope
	r := run(t, configWith("smtp_auth", c, config.Route{Match: mailbox}), doctor.Options{})
	wantStatus(t, r, "token", doctor.Pass, graphtest.GraphScope, "")
	wantStatus(t, r, "AUTH as "+mailbox, doctor.Fail, "535 5.7.3", "SMTP.SendAsApp")
}

func TestSMTPAuthMailboxes(t *testing.T) {
	t.Parallel()
	_, _, c := submission(t)
	cfg := configWith("smtp_auth", c, config.Route{Match: "*@contoso.com"})
	r := run(t, cfg, doctor.Options{})
	wantStatus(t, r, "AUTH", doctor.Skip, "--mailbox", "")
	if !r.OK() {
		t.Error("a skipped AUTH is not a failure")
	}
	r = run(t, cfg, doctor.Options{Mailbox: "other@contoso.com"})
	wantStatus(t, r, "AUTH as other@contoso.com", doctor.Pass, "235", "")
}

func TestSMTPAuthLogin(t *testing.T) {
	t.Parallel()
	srv, _, c := submission(t)
	c.Auth, c.Credentials, c.Username = "login", entra.Credentials{}, "basic@contoso.com"
	c.Password = secret.New("pa55word")
	cfg := configWith("smtp_auth", c, config.Route{Match: "*", Mailbox: "basic@contoso.com"})
	r := run(t, cfg, doctor.Options{})
	wantAllPass(t, r)
	wantStatus(t, r, "AUTH as basic@contoso.com", doctor.Pass, "235", "")
	if s := srv.Sessions(); len(s) != 1 || s[0].AuthMechanism != "LOGIN" {
		t.Errorf("sessions %+v", s)
	}
	c.Password = secret.New("wrong")
	r = run(t, cfg, doctor.Options{})
	wantStatus(t, r, "AUTH as basic@contoso.com", doctor.Fail, "535 5.7.3", "password")
	if strings.Contains(r.Checks[len(r.Checks)-1].Detail, "wrong") {
		t.Error("the report shows the password")
	}
}

// scriptedServer is a minimal SMTP server: it greets with greeting, answers EHLO with
// the extensions, STARTTLS with tlsConfig (when given), QUIT, and 502 to anything else.
func scriptedServer(t *testing.T, greeting string, exts []string, tlsConfig *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
				var conn net.Conn = nc
				rd := bufio.NewReader(conn)
				write := func(s string) { _, _ = conn.Write([]byte(s + "\r\n")) }
				write(greeting)
				if !strings.HasPrefix(greeting, "220") {
					return
				}
				for {
					line, err := rd.ReadString('\n')
					if err != nil {
						return
					}
					switch verb, _, _ := strings.Cut(strings.ToUpper(strings.TrimSpace(line)), " "); verb {
					case "EHLO":
						lines := append([]string{"scripted.test Hello"}, exts...)
						for i, l := range lines {
							sep := "-"
							if i == len(lines)-1 {
								sep = " "
							}
							write("250" + sep + l)
						}
					case "STARTTLS":
						if tlsConfig == nil {
							write("502 5.5.2 not implemented")
							continue
						}
						write("220 2.0.0 SMTP server ready")
						conn = tls.Server(nc, tlsConfig)
						rd = bufio.NewReader(conn)
					case "QUIT":
						write("221 2.0.0 Bye")
						return
					default:
						write("502 5.5.2 not implemented")
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestSMTPAuthNoSTARTTLS(t *testing.T) {
	t.Parallel()
	addr := scriptedServer(t, "220 scripted.test ESMTP", []string{"SIZE 1000", "AUTH LOGIN"}, nil)
	c := &smtp.AuthConfig{Connection: smtp.Connection{Address: addr}, Auth: "login", Username: "u@contoso.com", Password: secret.New("p")}
	r := run(t, configWith("smtp_auth", c), doctor.Options{})
	wantStatus(t, r, "EHLO", doctor.Pass, "AUTH LOGIN", "")
	wantStatus(t, r, "STARTTLS", doctor.Fail, "does not offer STARTTLS", "smtp.office365.com:587")
	wantStatus(t, r, "TLS, certificate, EHLO after STARTTLS, AUTH mechanisms, AUTH as u@contoso.com", doctor.Skip, "", "")
}

func TestGreetingRefused(t *testing.T) {
	t.Parallel()
	addr := scriptedServer(t, "554 5.7.606 Access denied, banned sending IP [203.0.113.7]", nil, nil)
	c := &smtp.DirectSendConfig{ConnectorConfig: smtp.ConnectorConfig{Connection: smtp.Connection{Address: addr}, AcceptedDomains: []string{"contoso.com"}}}
	r := run(t, configWith("direct_send", c), doctor.Options{})
	wantStatus(t, r, "greeting", doctor.Fail, "554 5.7.606", "delist")
	wantStatus(t, r, "EHLO, STARTTLS, TLS, certificate, EHLO after STARTTLS, MAIL FROM, RCPT TO", doctor.Skip, "", "")
}

// A server (or a middlebox) that offers only TLS 1.1.
func TestOldTLS(t *testing.T) {
	t.Parallel()
	cert := selfSigned(t)
	addr := scriptedServer(t, "220 scripted.test ESMTP", []string{"STARTTLS"},
		&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	c := &smtp.RelayConfig{ConnectorConfig: smtp.ConnectorConfig{Connection: smtp.Connection{Address: addr}, AcceptedDomains: []string{"contoso.com"}}}
	r := run(t, configWith("relay", c), doctor.Options{})
	wantStatus(t, r, "TLS", doctor.Fail, "TLS 1.1", "TLS 1.2 or later")
	wantStatus(t, r, "certificate, EHLO after STARTTLS, MAIL FROM", doctor.Skip, "", "")
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "scripted.test"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func relayConfig(srv *smtptest.Server, t *testing.T, certFile, keyFile string) *smtp.RelayConfig {
	return &smtp.RelayConfig{
		ConnectorConfig: smtp.ConnectorConfig{
			Connection:      smtp.Connection{Address: srv.Addr(), CAFile: srv.CAFile(t)},
			AcceptedDomains: []string{"contoso.com"},
		},
		ClientCertFile: certFile, ClientKeyFile: keyFile,
	}
}

func TestRelay(t *testing.T) {
	t.Parallel()
	ca := smtptest.NewCA(t)
	srv := smtptest.New(t, smtptest.Options{Mode: smtptest.Relay, AcceptedDomains: []string{"contoso.com"}, ClientCAs: ca.Pool()})

	good, goodKey := ca.Issue(t, "relay.contoso.com")
	r := run(t, configWith("relay", relayConfig(srv, t, good, goodKey)), doctor.Options{})
	wantAllPass(t, r)
	wantStatus(t, r, "client certificate", doctor.Pass, "relay.contoso.com is in the accepted domain contoso.com", "")
	wantStatus(t, r, "TLS", doctor.Pass, "presented CN=relay.contoso.com", "")
	wantStatus(t, r, "MAIL FROM", doctor.Pass, "postmaster@contoso.com", "")

	bad, badKey := ca.Issue(t, "relay.fabrikam.com")
	r = run(t, configWith("relay", relayConfig(srv, t, bad, badKey)), doctor.Options{})
	wantStatus(t, r, "client certificate", doctor.Fail, "none of the names is in accepted_domains", "TlsSenderCertificateName")
	wantStatus(t, r, "TLS", doctor.Pass, "presented CN=relay.fabrikam.com", "")
	wantStatus(t, r, "MAIL FROM", doctor.Fail, "550 5.7.64", "inbound connector")

	if n := len(srv.Messages()); n != 0 {
		t.Errorf("the doctor sent %d messages", n)
	}
	for _, s := range srv.Sessions() {
		if s.Resets == 0 && s.ClientCertName == "relay.contoso.com" {
			t.Errorf("session %+v: no RSET after MAIL FROM", s)
		}
	}
}

// An IP-based connector, checked with --rcpt for an external recipient too.
func TestRelayIPBased(t *testing.T) {
	t.Parallel()
	srv := smtptest.New(t, smtptest.Options{Mode: smtptest.Relay, AcceptedDomains: []string{"contoso.com"}})
	r := run(t, configWith("relay", relayConfig(srv, t, "", "")), doctor.Options{From: "app@contoso.com", Rcpt: "someone@fabrikam.com"})
	wantStatus(t, r, "client certificate", doctor.Skip, "IP-based", "")
	wantStatus(t, r, "MAIL FROM", doctor.Pass, "app@contoso.com", "")
	wantStatus(t, r, "RCPT TO", doctor.Pass, "someone@fabrikam.com", "")
	if !r.OK() {
		t.Error("report not OK")
	}
}

func directSendConfig(srv *smtptest.Server, t *testing.T) *smtp.DirectSendConfig {
	return &smtp.DirectSendConfig{ConnectorConfig: smtp.ConnectorConfig{
		Connection:      smtp.Connection{Address: srv.Addr(), CAFile: srv.CAFile(t)},
		AcceptedDomains: []string{"contoso.com"},
	}}
}

func TestDirectSend(t *testing.T) {
	t.Parallel()
	srv := smtptest.New(t, smtptest.Options{Mode: smtptest.DirectSend, AcceptedDomains: []string{"contoso.com"}})
	cfg := configWith("direct_send", directSendConfig(srv, t))
	r := run(t, cfg, doctor.Options{})
	wantAllPass(t, r)
	wantStatus(t, r, "RCPT TO", doctor.Pass, "postmaster@contoso.com", "")

	r = run(t, cfg, doctor.Options{Rcpt: "bob@fabrikam.com"})
	wantStatus(t, r, "RCPT TO", doctor.Fail, "550 5.7.54", "accepted_domains")

	srv.SetRejectDirectSend(true)
	r = run(t, cfg, doctor.Options{})
	wantStatus(t, r, "MAIL FROM", doctor.Fail, "550 5.7.68", "RejectDirectSend")
	wantStatus(t, r, "RCPT TO", doctor.Skip, "", "")
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("the doctor sent %d messages", n)
	}
}

// A bare-domain address: the MX lookup through the backend's resolver, then the MX
// host (localhost, which the fake's certificate names) on "port 25".
func TestDirectSendMX(t *testing.T) {
	t.Parallel()
	srv := smtptest.New(t, smtptest.Options{Mode: smtptest.DirectSend, AcceptedDomains: []string{"contoso.test"}})
	dns := dnstest.Serve(t, dnstest.Zone{LoopbackA: true, MX: map[string][]dnsmessage.MXResource{
		"contoso.test.": {{Pref: 10, MX: dnsmessage.MustNewName("localhost.")}},
		"null.test.":    {{Pref: 0, MX: dnsmessage.MustNewName(".")}},
	}})
	_, port, _ := net.SplitHostPort(srv.Addr())
	c := &smtp.DirectSendConfig{ConnectorConfig: smtp.ConnectorConfig{
		Connection:      smtp.Connection{Address: "contoso.test", CAFile: srv.CAFile(t)},
		AcceptedDomains: []string{"contoso.test"},
		Resolver:        dns,
	}}
	r := run(t, configWith("direct_send", c), doctor.Options{MXPort: port})
	wantAllPass(t, r)
	wantStatus(t, r, "DNS MX", doctor.Pass, "10 localhost", "")
	if !strings.Contains(check(t, r, "DNS MX").Detail, "none is a Microsoft 365 endpoint") {
		t.Error("the MX detail does not say that localhost is not Microsoft 365")
	}
	wantStatus(t, r, "DNS localhost", doctor.Pass, "127.0.0.1", "")
	wantStatus(t, r, "connect", doctor.Pass, "localhost:"+port, "")
	wantStatus(t, r, "certificate", doctor.Pass, "localhost", "")

	c.Address = "null.test"
	r = run(t, configWith("direct_send", c), doctor.Options{MXPort: port})
	wantStatus(t, r, "DNS MX", doctor.Fail, "null MX", "mail.protection.outlook.com")
	wantStatus(t, r, "connect, greeting, EHLO, STARTTLS, TLS, certificate, EHLO after STARTTLS, MAIL FROM, RCPT TO", doctor.Skip, "no host", "")
}

func TestConnectRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := &smtp.DirectSendConfig{ConnectorConfig: smtp.ConnectorConfig{Connection: smtp.Connection{Address: addr}, AcceptedDomains: []string{"contoso.com"}}}
	r := run(t, configWith("direct_send", c), doctor.Options{})
	_, port, _ := net.SplitHostPort(addr)
	wantStatus(t, r, "connect", doctor.Fail, "refused", "port "+port)
}

func TestGraph(t *testing.T) {
	t.Parallel()
	f := graphtest.New(t)
	c := &graph.Config{
		Credentials: entra.Credentials{TenantID: graphtest.TenantID, ClientID: graphtest.ClientID,
			ClientSecret: secret.New(graphtest.ClientSecret), AuthorityURL: f.AuthorityURL()},
		GraphURL: f.GraphURL(), CAFile: f.CAFile(t),
	}
	cfg := configWith("graph", c, config.Route{Match: mailbox})
	cfg.Limits.MaxMessageBytes = 35 << 20
	r := run(t, cfg, doctor.Options{})
	wantAllPass(t, r)
	wantStatus(t, r, "Graph reachable", doctor.Pass, "HTTP 401", "")
	wantStatus(t, r, "token", doctor.Pass, graphtest.GraphScope, "")
	wantStatus(t, r, "Mail.Send", doctor.Pass, "", "")
	wantStatus(t, r, "Mail.ReadWrite", doctor.Pass, "", "")
	if n := len(f.Sent()); n != 0 {
		t.Errorf("the doctor sent %d messages", n)
	}
	for _, req := range f.Requests() {
		if req.Server == "graph" && req.Headers.Get("Authorization") != "" {
			t.Errorf("the doctor sent a token to Graph: %s %s", req.Method, req.Path)
		}
	}

	r = run(t, cfg, doctor.Options{GraphRBAC: true})
	wantStatus(t, r, "Mail.Send", doctor.Skip, "RBAC", "")

	c.TenantID = "00000000-0000-0000-0000-000000000000"
	r = run(t, cfg, doctor.Options{})
	wantStatus(t, r, "token", doctor.Fail, "AADSTS90002", "tenant_id")
	wantStatus(t, r, "Mail.Send", doctor.Skip, "no token", "")

	// Entra unreachable: not a refusal, whatever azidentity calls it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	c.TenantID, c.AuthorityURL = graphtest.TenantID, "https://"+closed+"/"
	r = run(t, cfg, doctor.Options{Timeout: time.Second})
	wantStatus(t, r, "token", doctor.Fail, "no token", "could not be reached")
}

func TestFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := run(t, configWith("file", &file.Config{Dir: dir}), doctor.Options{})
	wantAllPass(t, r)
	wantStatus(t, r, "write", doctor.Pass, "created, synced and removed", "")
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the doctor left %d files behind", len(left))
	}

	missing := filepath.Join(dir, "a", "outbox")
	r = run(t, configWith("file", &file.Config{Dir: missing}), doctor.Options{})
	wantStatus(t, r, "directory", doctor.Pass, "does not exist yet", "")
	wantStatus(t, r, "write", doctor.Skip, "", "")
	if _, err := os.Stat(filepath.Join(dir, "a")); err == nil {
		t.Error("the doctor created the directory")
	}

	// A regular file where a folder must be: not writable, even for root.
	blocker := filepath.Join(dir, "blocker")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r = run(t, configWith("file", &file.Config{Dir: filepath.Join(blocker, "outbox")}), doctor.Options{})
	wantStatus(t, r, "directory", doctor.Fail, "cannot create it", "create")
	r = run(t, configWith("file", &file.Config{Dir: blocker}), doctor.Options{})
	wantStatus(t, r, "directory", doctor.Fail, "not a directory", "")
	if r.OK() {
		t.Error("report OK")
	}

	if os.Getuid() != 0 {
		ro := filepath.Join(dir, "ro")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		r = run(t, configWith("file", &file.Config{Dir: ro}), doctor.Options{})
		wantStatus(t, r, "write", doctor.Fail, "cannot write", "chmod")
	}
}

func TestReportOutput(t *testing.T) {
	t.Parallel()
	cfg := &config.Config{Backends: map[string]*config.Backend{
		"sink": {Type: "discard", Settings: &discard.Config{}},
		"out":  {Type: "file", Settings: &file.Config{Dir: filepath.Join(t.TempDir(), "x", "y")}},
		"bad":  {Type: "file", Settings: &file.Config{Dir: "/dev/null/outbox"}},
	}}
	r := doctor.Run(context.Background(), cfg, app.DoctorCheckers(), doctor.Options{})
	if r.OK() || r.Failed() != 1 {
		t.Fatalf("OK %v, %d failed", r.OK(), r.Failed())
	}
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	for _, want := range []string{
		"backend bad (file)\n  FAIL  directory  /dev/null/outbox does not exist",
		"        fix: create /dev/null/outbox",
		"backend sink (discard)\n  PASS  discard  accepts and drops every message",
		"1 of 3 backends failed (1 failed check)\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the text report lacks %q:\n%s", want, text)
		}
	}
	if strings.Index(text, "backend bad") > strings.Index(text, "backend out") || strings.Index(text, "backend out") > strings.Index(text, "backend sink") {
		t.Errorf("backends not in name order:\n%s", text)
	}

	b.Reset()
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		OK     bool
		Failed int
		Checks []doctor.Check
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.OK || got.Failed != 1 || len(got.Checks) != len(r.Checks) || got.Checks[0].Backend != "bad" || got.Checks[0].Status != doctor.Fail || got.Checks[0].Fix == "" {
		t.Errorf("JSON %s", b.String())
	}

	r = doctor.Run(context.Background(), cfg, app.DoctorCheckers(), doctor.Options{Backends: []string{"sink"}})
	if len(r.Checks) != 1 || !r.OK() {
		t.Errorf("--backend sink: %+v", r.Checks)
	}
	b.Reset()
	_ = r.WriteText(&b)
	if !strings.HasSuffix(b.String(), "all 1 backend passed\n") {
		t.Errorf("summary %q", b.String())
	}
}
