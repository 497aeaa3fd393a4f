// Package smtpcheck is the doctor's checks of the SMTP backends (smtp_auth, relay,
// direct_send): DNS, the TCP connection, the greeting and EHLO, STARTTLS, the TLS
// version and the server's certificate, the AUTH mechanisms, an Entra ID token and an
// AUTH with it, the relay's client certificate, and the answers to MAIL FROM and RCPT
// TO. Nothing is ever sent: a session ends with RSET and QUIT at the latest after RCPT
// TO.
package smtpcheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/mailgate/mailgate/doctor"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/senders/smtp"
)

// smtpSpec is what the SMTP checks need of a backend section.
type smtpSpec struct {
	kind        string // "smtp_auth", "relay" or "direct_send"
	conn        smtp.Connection
	resolver    string // relay, direct_send: the DNS server for MX lookups
	tlsRequired bool
	clientCert  *tls.Certificate // relay
}

// The steps of opening a session, in order.
var openSteps = []string{"connect", "greeting", "EHLO", "STARTTLS", "TLS", "certificate", "EHLO after STARTTLS"}

// run is the checks of one backend.
type run struct{ b *doctor.Backend }

// Auth checks an smtp_auth backend.
func Auth(ctx context.Context, b *doctor.Backend, c *smtp.AuthConfig) { (&run{b}).smtpAuth(ctx, c) }

// Relay checks a relay backend.
func Relay(ctx context.Context, b *doctor.Backend, c *smtp.RelayConfig) { (&run{b}).relay(ctx, c) }

// DirectSend checks a direct_send backend.
func DirectSend(ctx context.Context, b *doctor.Backend, c *smtp.DirectSendConfig) {
	(&run{b}).directSend(ctx, c)
}

func (d *run) smtpAuth(ctx context.Context, c *smtp.AuthConfig) {
	spec := &smtpSpec{kind: "smtp_auth", conn: c.Connection, tlsRequired: true}
	if spec.conn.Address == "" {
		spec.conn.Address = smtp.SubmissionAddress
	}
	auth, mech := c.Auth, "XOAUTH2"
	if auth == "" {
		auth = "xoauth2"
	}
	var tok *doctor.Token
	var users []string
	switch auth {
	case "login":
		mech, users = "LOGIN", []string{c.Username}
	default:
		scope := c.TokenScope
		if scope == "" {
			scope = smtp.OutlookScope
		}
		tok = d.b.Token(ctx, &c.Credentials, c.CAFile, scope)
		users = d.b.RouteMailboxes()
		if d.b.Options.Mailbox != "" {
			users = []string{d.b.Options.Mailbox}
		}
	}
	authSteps := []string{"AUTH"}
	if len(users) > 0 {
		authSteps = nil
		for _, u := range users {
			authSteps = append(authSteps, "AUTH as "+u)
		}
	}

	hosts := d.resolve(ctx, spec)
	s := d.open(ctx, spec, hosts, append([]string{"AUTH mechanisms"}, authSteps...))
	if s == nil {
		return
	}
	defer s.quit()

	offered := strings.Fields(strings.ToUpper(s.ext["AUTH"]))
	if !slices.Contains(offered, mech) {
		detail := fmt.Sprintf("the server offers no AUTH %s after STARTTLS (offered: %s)", mech, orNone(offered))
		fix := "Microsoft 365 offers AUTH LOGIN XOAUTH2 on smtp.office365.com:587 after STARTTLS (its MX endpoints on port 25 offer none): check address"
		if mech == "LOGIN" && slices.Contains(offered, "XOAUTH2") {
			fix = "the server no longer offers basic authentication: set auth: xoauth2 with an app registration (docs/microsoft365-smtp.md)"
		}
		d.b.Fail("AUTH mechanisms", detail, fix)
		d.skipSteps(authSteps, "not checked: the mechanism is not offered")
		return
	}
	d.b.Pass("AUTH mechanisms", fmt.Sprintf("%s (auth: %s needs %s)", strings.Join(offered, " "), auth, mech))

	switch {
	case len(users) == 0:
		d.b.Skip("AUTH", "no route to this backend names a mailbox (a *@domain route signs in as each From address): run the doctor with --mailbox ADDRESS")
		return
	case auth == "xoauth2" && tok == nil:
		d.skipSteps(authSteps, "not checked: no token")
		return
	}
	for i, user := range users {
		sess := s
		if i > 0 {
			// A session authenticates once: each further mailbox gets a new one.
			var failure string
			if sess, failure = d.reopen(ctx, spec, s.hostport); sess == nil {
				d.b.Fail(authSteps[i], "could not open another session: "+failure, "see the checks above")
				continue
			}
		}
		var r smtp.Reply
		var err error
		if auth == "login" {
			r, err = sess.authLogin(user, c.Password.Value())
		} else {
			r, err = sess.authXOAUTH2(user, tok.Raw)
		}
		switch {
		case err != nil:
			d.b.Fail(authSteps[i], "the connection failed during AUTH: "+doctor.FirstLine(err.Error()), "try again; if it persists, check the network between mailgate and the server")
		case r.Code != 235:
			fix := replyFix(r, auth)
			if fix == "" {
				fix = "the server refused the sign-in: the reply says why"
			}
			d.b.Fail(authSteps[i], r.String(), fix)
		default:
			d.b.Pass(authSteps[i], r.String()+"; then QUIT, nothing is sent")
		}
		if i > 0 {
			sess.quit()
		}
	}
}

func (d *run) relay(ctx context.Context, c *smtp.RelayConfig) {
	spec := &smtpSpec{kind: "relay", conn: c.Connection, resolver: c.Resolver, tlsRequired: c.TLS != smtp.TLSOpportunistic}
	spec.clientCert = d.clientCertificate(c)
	from := d.from(c.AcceptedDomains)
	steps := []string{"MAIL FROM"}
	if d.b.Options.Rcpt != "" {
		steps = append(steps, "RCPT TO")
	}
	hosts := d.resolve(ctx, spec)
	s := d.open(ctx, spec, hosts, steps)
	if s == nil {
		return
	}
	defer s.quit()
	how := "by this host's public IP (IP-based connector)"
	if spec.clientCert != nil {
		how = "by the client certificate (certificate-based connector)"
	}
	passed := "the server accepted MAIL FROM:<%s> on the connection the inbound connector recognises " + how
	if d.b.Options.Rcpt == "" {
		passed += "; Microsoft 365 may refuse relaying only at RCPT TO: run the doctor with --rcpt <an external address> to check that too"
	}
	if !d.mailFrom(s, from, passed, steps[1:]) {
		return
	}
	if d.b.Options.Rcpt != "" {
		d.rcptTo(s, d.b.Options.Rcpt, "the server accepts RCPT TO:<%s>: it relays for mailgate")
	}
	_, _ = s.cmd("RSET")
}

func (d *run) directSend(ctx context.Context, c *smtp.DirectSendConfig) {
	spec := &smtpSpec{kind: "direct_send", conn: c.Connection, resolver: c.Resolver, tlsRequired: c.TLS != smtp.TLSOpportunistic}
	from := d.from(c.AcceptedDomains)
	rcpt := d.b.Options.Rcpt
	if rcpt == "" && len(c.AcceptedDomains) > 0 {
		rcpt = "postmaster@" + c.AcceptedDomains[0]
	}
	hosts := d.resolve(ctx, spec)
	s := d.open(ctx, spec, hosts, []string{"MAIL FROM", "RCPT TO"})
	if s == nil {
		return
	}
	defer s.quit()
	if !d.mailFrom(s, from, "the server accepted an anonymous MAIL FROM:<%s> (Reject Direct Send is off)", []string{"RCPT TO"}) {
		return
	}
	d.rcptTo(s, rcpt, "the server accepts RCPT TO:<%s>: it delivers to the tenant's mailboxes")
	_, _ = s.cmd("RSET")
}

func (d *run) from(accepted []string) string {
	if d.b.Options.From != "" || len(accepted) == 0 {
		return d.b.Options.From
	}
	return "postmaster@" + accepted[0]
}

// mailFrom checks MAIL FROM; on failure the later steps are skipped.
func (d *run) mailFrom(s *session, from, passFormat string, later []string) bool {
	r, err := s.cmd("MAIL FROM:<%s>", from)
	switch {
	case err != nil:
		d.b.Fail("MAIL FROM", "the connection failed at MAIL FROM: "+doctor.FirstLine(err.Error()), "try again; if it persists, check the network between mailgate and the server")
	case r.Code != 250:
		fix := replyFix(r, "")
		if fix == "" {
			fix = "the server refused the sender: the reply says why"
		}
		d.b.Fail("MAIL FROM", fmt.Sprintf("MAIL FROM:<%s>: %s", from, r), fix)
	default:
		d.b.Pass("MAIL FROM", fmt.Sprintf(passFormat, from)+"; then RSET, nothing is sent")
		return true
	}
	d.skipSteps(later, "not checked after MAIL FROM failed")
	return false
}

func (d *run) rcptTo(s *session, rcpt, passFormat string) {
	r, err := s.cmd("RCPT TO:<%s>", rcpt)
	switch {
	case err != nil:
		d.b.Fail("RCPT TO", "the connection failed at RCPT TO: "+doctor.FirstLine(err.Error()), "try again; if it persists, check the network between mailgate and the server")
	case r.Code != 250 && r.Code != 251:
		fix := replyFix(r, "")
		if fix == "" {
			fix = "the server refused the recipient: the reply says why"
		}
		d.b.Fail("RCPT TO", fmt.Sprintf("RCPT TO:<%s>: %s", rcpt, r), fix)
	default:
		d.b.Pass("RCPT TO", fmt.Sprintf(passFormat, rcpt)+"; then RSET, nothing is sent")
	}
}

func (d *run) skipSteps(steps []string, why string) {
	if len(steps) > 0 {
		d.b.Skip(strings.Join(steps, ", "), why)
	}
}

// resolve checks DNS as the backend resolves its address, and returns the host:port
// candidates to connect to, in order: address itself when it is host:port, else the
// domain's MX hosts on port 25 (the domain itself without MX), each only if it resolves.
func (d *run) resolve(ctx context.Context, spec *smtpSpec) []string {
	timeout := d.b.Timeout()
	lookupHost := func(host string) ([]string, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return net.DefaultResolver.LookupHost(ctx, host)
	}
	address := spec.conn.Address
	if host, _, err := net.SplitHostPort(address); err == nil {
		if net.ParseIP(host) != nil {
			d.b.Pass("DNS", host+" is an IP address: nothing to look up")
			return []string{address}
		}
		addrs, err := lookupHost(host)
		if err != nil {
			d.b.Fail("DNS", doctor.FirstLine(err.Error()), "the name does not resolve: check address, and this machine's DNS")
			return nil
		}
		d.b.Pass("DNS", host+" is "+strings.Join(addrs, ", "))
		return []string{address}
	}

	dns := smtp.DNSResolver(spec.resolver)
	via := ""
	if spec.resolver != "" {
		via = " (asked " + spec.resolver + ")"
	}
	mctx, cancel := context.WithTimeout(ctx, timeout)
	mxs, err := dns.LookupMX(mctx, address)
	cancel()
	var dnsErr *net.DNSError
	var hosts []string
	switch {
	case err == nil && len(mxs) == 1 && mxs[0].Host == ".":
		d.b.Fail("DNS MX", address+" publishes a null MX (MX 0 .): it accepts no mail"+via,
			"set address to the tenant's MX endpoint (such as contoso-com.mail.protection.outlook.com:25) or to a domain whose MX points at Microsoft 365")
		return nil
	case err == nil && len(mxs) > 0:
		var list []string
		microsoft := false
		for _, mx := range mxs {
			h := strings.TrimSuffix(mx.Host, ".")
			hosts = append(hosts, h)
			list = append(list, fmt.Sprintf("%d %s", mx.Pref, h))
			microsoft = microsoft || isMicrosoftMX(h)
		}
		detail := address + " MX " + strings.Join(list, ", ") + via
		if !microsoft {
			detail += "; none is a Microsoft 365 endpoint (*.mail.protection.outlook.com, *.mx.microsoft): fine for a relay of your own, not for reaching the tenant"
		}
		d.b.Pass("DNS MX", detail)
	case err == nil, errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		d.b.Pass("DNS MX", address+" has no MX record"+via+": mailgate uses the domain itself, on port 25; use a bare domain only when its MX points at Microsoft 365")
		hosts = []string{address}
	default:
		d.b.Fail("DNS MX", doctor.FirstLine(err.Error()), "the MX lookup failed: check resolver (or this machine's DNS) and address")
		return nil
	}
	port := "25"
	if d.b.Options.MXPort != "" {
		port = d.b.Options.MXPort
	}
	var out []string
	for _, h := range hosts {
		addrs, err := lookupHost(h)
		if err != nil {
			fix := "the MX host does not resolve: fix the domain's MX record, or set address to the tenant's MX endpoint with :25"
			if h == address {
				fix = "the domain has neither an MX record nor an address: set address to the tenant's MX endpoint (such as contoso-com.mail.protection.outlook.com:25) or to a domain whose MX points at Microsoft 365"
			}
			d.b.Fail("DNS "+h, doctor.FirstLine(err.Error()), fix)
			continue
		}
		d.b.Pass("DNS "+h, h+" is "+strings.Join(addrs, ", "))
		out = append(out, net.JoinHostPort(h, port))
	}
	return out
}

func isMicrosoftMX(h string) bool {
	h = strings.ToLower(h)
	for _, suffix := range []string{".mail.protection.outlook.com", ".mx.microsoft", ".mail.protection.office365.us", ".mail.protection.partner.outlook.cn"} {
		if strings.HasSuffix(h, suffix) {
			return true
		}
	}
	return false
}

// open connects to the first candidate that answers and takes the session through
// the greeting, EHLO, STARTTLS and EHLO again, reporting each step. On a failure it
// reports the later steps, and then the caller's, as skipped, and returns nil.
func (d *run) open(ctx context.Context, spec *smtpSpec, hosts []string, later []string) *session {
	p := &probe{d: d, spec: spec}
	s := p.open(ctx, hosts)
	if s == nil {
		var rest []string
		for _, st := range openSteps {
			if !slices.Contains(p.done, st) {
				rest = append(rest, st)
			}
		}
		why := "not checked after the failure above"
		if len(hosts) == 0 {
			why = "not checked: no host to connect to"
		}
		d.skipSteps(append(rest, later...), why)
	}
	return s
}

// reopen opens another session to hostport, reporting nothing; it returns why it could
// not.
func (d *run) reopen(ctx context.Context, spec *smtpSpec, hostport string) (*session, string) {
	p := &probe{d: d, spec: spec, quiet: true}
	s := p.open(ctx, []string{hostport})
	return s, p.failure
}

// probe runs the steps of opening one session.
type probe struct {
	d     *run
	spec  *smtpSpec
	quiet bool     // report nothing; keep the first failure
	done  []string // the steps reported
	// failure is the first failure, when quiet.
	failure string

	// The client certificate: whether the server asked for one, and which was given.
	certAsked     bool
	certPresented string
}

func (p *probe) step(name string, st doctor.Status, detail, fix string) {
	p.done = append(p.done, name)
	if p.quiet {
		if st == doctor.Fail && p.failure == "" {
			p.failure = name + ": " + detail
		}
		return
	}
	p.d.b.Add(name, st, detail, fix)
}

func (p *probe) open(ctx context.Context, hosts []string) *session {
	if len(hosts) == 0 {
		return nil
	}
	timeout := p.d.b.Timeout()
	var nc net.Conn
	var hostport, detail string
	var tried []string
	for _, hp := range hosts {
		start := time.Now()
		c, err := (&net.Dialer{Timeout: timeout}).DialContext(ctx, "tcp", hp)
		if err == nil {
			nc, hostport = c, hp
			detail = hp
			if ra := c.RemoteAddr().String(); ra != hp {
				detail += " (" + ra + ")"
			}
			detail += " in " + elapsed(time.Since(start))
			break
		}
		tried = append(tried, hp+": "+doctor.FirstLine(err.Error()))
		if ctx.Err() != nil {
			break
		}
	}
	_, port, _ := net.SplitHostPort(hosts[0])
	if nc == nil {
		p.step("connect", doctor.Fail, strings.Join(tried, "; "),
			fmt.Sprintf("check the network, that outbound TCP port %s is open (firewalls; many ISPs and clouds block port 25), and address", port))
		return nil
	}
	if len(tried) > 0 {
		detail += "; could not reach " + strings.Join(tried, "; ")
	}
	p.step("connect", doctor.Pass, detail, "")
	s := newSession(ctx, nc, hostport, timeout)
	if !p.greet(s) || !p.ehlo(s, "EHLO") {
		s.close()
		return nil
	}

	if _, ok := s.ext["STARTTLS"]; !ok {
		switch {
		case p.spec.kind == "smtp_auth":
			p.step("STARTTLS", doctor.Fail, "the server does not offer STARTTLS",
				"Microsoft 365 offers STARTTLS on smtp.office365.com:587, and mailgate never signs in without TLS: check address")
		case p.spec.clientCert != nil:
			p.step("STARTTLS", doctor.Fail, "the server does not offer STARTTLS, and a client certificate travels only in TLS",
				"a certificate-based connector needs TLS: set address to the tenant's MX endpoint (which offers STARTTLS) and keep tls: required")
		case p.spec.tlsRequired:
			p.step("STARTTLS", doctor.Fail, "the server does not offer STARTTLS, and tls is required",
				"Microsoft 365's MX endpoints offer STARTTLS on port 25: check address; tls: opportunistic is only for a relay in your own network")
		default:
			p.step("STARTTLS", doctor.Pass, "not offered: with tls: opportunistic, mailgate sends in the clear", "")
			for _, st := range []string{"TLS", "certificate", "EHLO after STARTTLS"} {
				p.step(st, doctor.Skip, "no STARTTLS", "")
			}
			return s
		}
		s.quit()
		return nil
	}
	p.step("STARTTLS", doctor.Pass, "offered", "")
	if !p.startTLS(ctx, s) || !p.ehlo(s, "EHLO after STARTTLS") {
		s.close()
		return nil
	}
	return s
}

func (p *probe) greet(s *session) bool {
	r, err := s.read()
	switch {
	case err != nil:
		p.step("greeting", doctor.Fail, "no greeting: "+doctor.FirstLine(err.Error()),
			"the server took the connection but did not greet as an SMTP server: check address and port (a firewall or proxy may intercept the port)")
		return false
	case r.Code != 220:
		fix := replyFix(r, "")
		if fix == "" {
			fix = "the server refused the connection: the reply says why"
		}
		p.step("greeting", doctor.Fail, r.String(), fix)
		return false
	}
	p.step("greeting", doctor.Pass, r.String(), "")
	return true
}

func (p *probe) ehlo(s *session, name string) bool {
	r, err := s.hello(p.spec.conn.HeloName())
	switch {
	case err != nil:
		fix := "the connection broke: try again; if it persists, look for a middlebox between mailgate and the server"
		if name != "EHLO" && p.spec.clientCert != nil && strings.Contains(err.Error(), "certificate") {
			fix = "the server refused the client certificate in TLS: it must chain to a certificate authority the server trusts (for Microsoft 365, a public CA), and be valid"
		}
		p.step(name, doctor.Fail, "no answer to EHLO: "+doctor.FirstLine(err.Error()), fix)
		return false
	case r.Code != 250:
		fix := replyFix(r, "")
		if fix == "" {
			fix = "the server refused EHLO: set helo to this host's fully-qualified domain name"
		}
		p.step(name, doctor.Fail, r.String(), fix)
		return false
	}
	p.step(name, doctor.Pass, strings.Join(s.exts, ", "), "")
	return true
}

// startTLS runs STARTTLS and judges the TLS session and the server's certificate. The
// handshake itself accepts any version and certificate so that the report can say what
// the server offered; nothing is sent over a session that fails either check.
func (p *probe) startTLS(ctx context.Context, s *session) bool {
	roots, rootsErr := senders.RootCAs(p.spec.conn.CAFile)
	r, err := s.cmd("STARTTLS")
	switch {
	case err != nil:
		p.step("TLS", doctor.Fail, "no answer to STARTTLS: "+doctor.FirstLine(err.Error()), "the connection broke: try again; if it persists, look for a middlebox between mailgate and the server")
		return false
	case r.Code != 220:
		fix := replyFix(r, "")
		if fix == "" {
			fix = "the server offered STARTTLS but refused it: the reply says why"
		}
		p.step("TLS", doctor.Fail, "STARTTLS: "+r.String(), fix)
		return false
	}
	var certs []tls.Certificate
	if p.spec.clientCert != nil {
		certs = []tls.Certificate{*p.spec.clientCert}
	}
	cfg := &tls.Config{
		ServerName: s.host,
		// Verified below, by hand, before anything else is sent: the report can then
		// tell a bad certificate from a failed handshake.
		InsecureSkipVerify: true, //nolint:gosec
		MinVersion:         tls.VersionTLS10,
		// What crypto/tls does with Certificates (as the backend configures it), noting
		// whether the server asked.
		GetClientCertificate: func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			p.certAsked = true
			for i := range certs {
				if cri.SupportsCertificate(&certs[i]) == nil {
					p.certPresented = certName(certs[i].Leaf)
					return &certs[i], nil
				}
			}
			return new(tls.Certificate), nil
		},
	}
	tc := tls.Client(s.nc, cfg)
	hctx, cancel := context.WithTimeout(ctx, s.timeout)
	err = tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		fix := "the TLS handshake failed: look for a TLS-inspecting proxy or firewall between mailgate and the server"
		if strings.Contains(err.Error(), "version") {
			fix = "the server offers no TLS version mailgate supports: " + fixOldTLS
		}
		p.step("TLS", doctor.Fail, "TLS handshake: "+doctor.FirstLine(err.Error()), fix)
		return false
	}
	s.upgrade(tc)
	state := tc.ConnectionState()
	detail := fmt.Sprintf("%s (%s)", tlsVersionName(state.Version), tls.CipherSuiteName(state.CipherSuite))
	switch {
	case p.certAsked && p.certPresented != "":
		detail += "; the server asked for a client certificate: presented " + p.certPresented
	case p.certAsked && len(certs) > 0:
		detail += "; the server asked for a client certificate, but accepts none issued by the client certificate's CA: none presented"
	case p.certAsked:
		detail += "; the server asked for a client certificate: none configured"
	case len(certs) > 0:
		detail += "; the server did not ask for the client certificate"
	}
	if state.Version < tls.VersionTLS12 {
		p.step("TLS", doctor.Fail, detail+": mailgate requires TLS 1.2 or later", fixOldTLS)
		return false
	}
	p.step("TLS", doctor.Pass, detail, "")

	leaf := state.PeerCertificates[0]
	if rootsErr != nil {
		p.step("certificate", doctor.Fail, "ca_file: "+rootsErr.Error(), "give ca_file a readable PEM file of certificate authorities")
		return false
	}
	inter := x509.NewCertPool()
	for _, c := range state.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: s.host}); err != nil {
		p.step("certificate", doctor.Fail, certSummary(leaf)+": "+doctor.FirstLine(err.Error()), certFix(err, s.host))
		return false
	}
	p.step("certificate", doctor.Pass, "valid "+certSummary(leaf), "")
	return true
}

const fixOldTLS = "Microsoft 365 and mailgate use TLS 1.2 or later; the server, or a TLS-inspecting proxy between mailgate and it, offers only TLS 1.0 or 1.1: remove the downgrading middlebox, or upgrade the server"

func certFix(err error, host string) string {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua):
		return "the certificate is not signed by a certificate authority this machine trusts: for Microsoft 365, look for a TLS-inspecting proxy or firewall between mailgate and Microsoft and give its CA in ca_file; for a relay of your own or a test server, give its CA in ca_file"
	case errors.As(err, &hn):
		return "the certificate does not name " + host + ": set address to the server's name as its certificate gives it (smtp.office365.com, or the tenant's MX endpoint)"
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		return "the certificate is expired or not yet valid: check this machine's clock; for Microsoft 365, look for a TLS-inspecting middlebox (and give its CA in ca_file)"
	}
	return "the certificate did not verify: for Microsoft 365, check the clock and any TLS-inspecting middlebox; give a private CA in ca_file"
}

// certSummary describes a certificate: "for a, b, valid until 2027-01-01, issued by X".
func certSummary(c *x509.Certificate) string {
	names := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		names = []string{c.Subject.CommonName}
	}
	if len(names) > 4 {
		names = append(names[:4], fmt.Sprintf("%d more", len(names)-4))
	}
	return fmt.Sprintf("for %s, until %s, issued by %s", strings.Join(names, ", "),
		c.NotAfter.UTC().Format(time.DateOnly), issuerName(c))
}

func issuerName(c *x509.Certificate) string {
	switch {
	case c.Issuer.CommonName != "":
		return c.Issuer.CommonName
	case len(c.Issuer.Organization) > 0:
		return c.Issuer.Organization[0]
	}
	return c.Issuer.String()
}

func certName(c *x509.Certificate) string {
	if c == nil {
		return "a certificate"
	}
	return "CN=" + c.Subject.CommonName
}

func elapsed(d time.Duration) string {
	if d < time.Millisecond {
		return "under 1ms"
	}
	return d.Round(time.Millisecond).String()
}

func tlsVersionName(v uint16) string { return tls.VersionName(v) }

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, " ")
}

// clientCertificate checks the relay's client certificate as Microsoft 365 will judge
// it: valid now, and named (subject CN or a DNS SAN) after an accepted domain or a host
// in one. It returns the pair to present, or nil when there is none to load.
func (d *run) clientCertificate(c *smtp.RelayConfig) *tls.Certificate {
	const name = "client certificate"
	if c.ClientCertFile == "" {
		d.b.Skip(name, "none: an IP-based inbound connector recognises this host's public IP address")
		return nil
	}
	pair, err := tls.LoadX509KeyPair(c.ClientCertFile, c.ClientKeyFile)
	if err != nil {
		d.b.Fail(name, doctor.FirstLine(err.Error()), "client_cert_file and client_key_file must be a PEM certificate (with its chain) and its unencrypted private key")
		return nil
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		d.b.Fail(name, doctor.FirstLine(err.Error()), "client_cert_file must hold a PEM certificate")
		return nil
	}
	pair.Leaf = leaf
	names := append([]string{leaf.Subject.CommonName}, leaf.DNSNames...)
	names = slices.DeleteFunc(names, func(n string) bool { return n == "" })
	var match string
	for _, n := range names {
		if dom := smtp.AcceptedDomainOf(n, c.AcceptedDomains); dom != "" {
			match = fmt.Sprintf("%s is in the accepted domain %s", n, dom)
			break
		}
	}
	now := time.Now()
	detail := fmt.Sprintf("names %s, valid %s to %s, issued by %s", strings.Join(names, ", "),
		leaf.NotBefore.UTC().Format(time.DateOnly), leaf.NotAfter.UTC().Format(time.DateOnly), issuerName(leaf))
	switch {
	case now.Before(leaf.NotBefore):
		d.b.Fail(name, detail+": not valid yet", "check this machine's clock, or wait until the certificate's start date")
	case now.After(leaf.NotAfter):
		d.b.Fail(name, detail+": expired", "renew the certificate (and update the inbound connector's TlsSenderCertificateName if its name changes), then restart mailgate")
	case match == "":
		d.b.Fail(name, fmt.Sprintf("%s: none of the names is in accepted_domains (%s)", detail, strings.Join(c.AcceptedDomains, ", ")),
			"Microsoft 365 attributes the connection to the tenant by the certificate's subject or SAN: use a certificate named after an accepted domain or a host in one (such as relay."+firstOr(c.AcceptedDomains, "contoso.com")+"), and set the inbound connector's TlsSenderCertificateName to it")
	default:
		if left := time.Until(leaf.NotAfter); left < 30*24*time.Hour {
			match += fmt.Sprintf("; it expires within %d days: renew it soon", int(left.Hours()/24)+1)
		}
		d.b.Pass(name, detail+"; "+match)
	}
	return &pair
}

func firstOr(list []string, def string) string {
	if len(list) > 0 {
		return list[0]
	}
	return def
}
