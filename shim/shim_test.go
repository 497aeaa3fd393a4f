package shim_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/smtp"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	gomail "github.com/wneessen/go-mail"

	"github.com/mailgate/mailgate/mailaddr"
	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/server"
	"github.com/mailgate/mailgate/server/apikey"
	"github.com/mailgate/mailgate/server/policy"
	"github.com/mailgate/mailgate/shim"
)

const (
	appKey   = "mg_shimtestkey0000000000000000000000000000000"
	otherKey = "mg_shimtestkey1111111111111111111111111111111"
	idnKey   = "mg_shimtestkey2222222222222222222222222222222"
)

// outbox is the backend: it keeps what it was given, as it would be sent.
type outbox struct {
	senders.SenderDefaults
	mu   sync.Mutex
	msgs [][]byte
	env  [][]string
	ids  []string // the Message-ID mailgate reports for each
	fail error
}

func (o *outbox) Send(_ context.Context, m *senders.Message) (*senders.Result, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fail != nil {
		return nil, o.fail
	}
	var b bytes.Buffer
	m.WriteTo(&b)
	o.msgs = append(o.msgs, b.Bytes())
	o.env = append(o.env, append([]string{m.EnvelopeFrom}, m.Recipients...))
	o.ids = append(o.ids, m.MessageID)
	return &senders.Result{Status: senders.Sent, Accepted: m.Recipients}, nil
}

func (o *outbox) sent() [][]byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([][]byte(nil), o.msgs...)
}

type fixture struct {
	addr string
	// implicitAddr is the same shim's implicit TLS listener.
	implicitAddr string
	box          *outbox
}

// start runs the real service (in-process store) behind a shim on a loopback port.
func start(t testing.TB, adjust func(*shim.Options, *server.ServiceOptions)) *fixture {
	t.Helper()
	keys := apikey.NewKeyring()
	keys.Add(&apikey.Key{Name: "app", Senders: []mailaddr.Pattern{mailaddr.MustParsePattern("*@contoso.com")}}, apikey.Hash(appKey))
	keys.Add(&apikey.Key{Name: "scanners", Senders: []mailaddr.Pattern{mailaddr.MustParsePattern("scanner@contoso.com")}}, apikey.Hash(otherKey))
	keys.Add(&apikey.Key{Name: "idn", Senders: []mailaddr.Pattern{mailaddr.MustParsePattern("*@exämple.com")}}, apikey.Hash(idnKey))
	box := &outbox{}
	svc := server.ServiceOptions{
		Router:   policy.NewRouter([]policy.Route{{Name: "all", Match: mailaddr.MustParsePattern("*"), Backend: "out"}}),
		Backends: map[string]senders.Sender{"out": box},
		Limits:   server.Limits{MaxMessageBytes: 1 << 20, MaxRecipients: 10},
	}
	certs, err := shim.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	opts := shim.Options{
		TLS:             &tls.Config{MinVersion: tls.VersionTLS12, Certificates: certs},
		Hostname:        "shim.test",
		MaxMessageBytes: 64 << 10,
		MaxRecipients:   10,
		ReadTimeout:     10 * time.Second,
		WriteTimeout:    10 * time.Second,
	}
	if adjust != nil {
		adjust(&opts, &svc)
	}
	srv, err := server.New(server.Options{Service: svc, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if opts.Submitter == nil {
		opts.Submitter = srv.Local()
	}
	s := shim.New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	implicit, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() { done <- s.ServeListener(ln, false) }()
	go func() { done <- s.ServeListener(implicit, true) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		// A Serve that had not started yet when Shutdown ran still returns.
		ln.Close()
		implicit.Close()
		<-done
		<-done
	})
	return &fixture{addr: ln.Addr().String(), implicitAddr: implicit.Addr().String(), box: box}
}

// dial opens a net/smtp session, with STARTTLS unless plain, and AUTH PLAIN when key
// is set.
func (f *fixture) dial(t testing.TB, plain bool, user, key string) (*smtp.Client, error) {
	t.Helper()
	c, err := smtp.Dial(f.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if !plain {
		if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
			t.Fatal(err)
		}
	}
	if key != "" {
		return c, c.Auth(smtp.PlainAuth("", user, key, "127.0.0.1"))
	}
	return c, nil
}

// send runs one transaction and returns the final reply's error (nil for 250), and the
// text of the 250.
func send(c *smtp.Client, from string, to []string, msg string) error {
	if err := c.Mail(from); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	w.Write([]byte(msg))
	return w.Close()
}

func wantReply(t *testing.T, err error, code int, enhanced string) {
	t.Helper()
	var te *textproto.Error
	if !errors.As(err, &te) || te.Code != code || !strings.HasPrefix(te.Msg, enhanced) {
		t.Fatalf("reply %v, want %d %s", err, code, enhanced)
	}
}

const message = "From: app@contoso.com\r\nTo: bob@fabrikam.com\r\nSubject: scan\r\nMessage-ID: <scan-1@contoso.com>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\nPage 1.\r\n.a line with a dot\r\nGr\xc3\xbc\xc3\x9fe\r\n"

func TestSendWithAuthPlain(t *testing.T) {
	t.Parallel()
	f := start(t, nil)
	c, err := f.dial(t, false, "app", appKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := send(c, "app@contoso.com", []string{"bob@fabrikam.com"}, message); err != nil {
		t.Fatal(err)
	}
	sent := f.box.sent()
	if len(sent) != 1 {
		t.Fatalf("%d messages at the backend", len(sent))
	}
	received, rest := trace(t, sent[0])
	if string(rest) != message {
		t.Fatalf("the backend got\n%q\nwant the bytes the client sent, after the Received field\n%q", rest, message)
	}
	if !receivedRE.MatchString(received) || !strings.Contains(received, "from localhost ([127.0.0.1])") || !strings.Contains(received, "with ESMTPSA id ") {
		t.Errorf("Received field %q", received)
	}
}

// receivedRE is the shim's Received field (RFC 5321 §4.4).
var receivedRE = regexp.MustCompile(`^Received: from \S+ \((\[[0-9.]+\]|\[IPv6:[0-9a-f:]+\])\)\r\n\tby shim\.test \(mailgate\) with ESMTPS?A? id [0-9a-f]{16};\r\n\t[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\r\n$`)

// trace splits the shim's Received field, which must be the first, from the message.
func trace(t *testing.T, b []byte) (string, []byte) {
	t.Helper()
	if !bytes.HasPrefix(b, []byte("Received: ")) {
		t.Fatalf("the message does not start with a Received field: %q", b[:min(len(b), 200)])
	}
	end := 0
	for {
		i := bytes.IndexByte(b[end:], '\n')
		if i < 0 {
			t.Fatalf("unterminated Received field: %q", b)
		}
		end += i + 1
		if b[end] != ' ' && b[end] != '\t' {
			return string(b[:end]), b[end:]
		}
	}
}

// Scanners often offer only LOGIN; go-mail as the client.
func TestSendWithAuthLogin(t *testing.T) {
	t.Parallel()
	f := start(t, nil)
	host, port, _ := net.SplitHostPort(f.addr)
	p, _ := strconv.Atoi(port)
	client, err := gomail.NewClient(host, gomail.WithPort(p), gomail.WithSMTPAuth(gomail.SMTPAuthLogin),
		gomail.WithUsername("app"), gomail.WithPassword(appKey), gomail.WithTLSPolicy(gomail.TLSMandatory),
		gomail.WithTLSConfig(&tls.Config{InsecureSkipVerify: true}), gomail.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	m := gomail.NewMsg()
	m.From("app@contoso.com")
	m.To("bob@fabrikam.com")
	m.Subject("scan")
	m.SetBodyString(gomail.TypeTextPlain, "page 1")
	if err := client.DialAndSend(m); err != nil {
		t.Fatal(err)
	}
	if n := len(f.box.sent()); n != 1 {
		t.Errorf("%d messages at the backend", n)
	}
}

func TestAuthRules(t *testing.T) {
	t.Parallel()
	f := start(t, nil)
	// Before STARTTLS no mechanism is offered: net/smtp refuses to send PLAIN in the clear.
	c, _ := f.dial(t, true, "", "")
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH offered before STARTTLS")
	}
	// A wrong key, or the right key under another name.
	_, err := f.dial(t, false, "app", otherKey)
	wantReply(t, err, 535, "5.7.8")
	_, err = f.dial(t, false, "scanners", appKey)
	wantReply(t, err, 535, "5.7.8")
	// No AUTH and not a known device: no mail, never an open relay.
	c, _ = f.dial(t, false, "", "")
	wantReply(t, send(c, "app@contoso.com", []string{"bob@fabrikam.com"}, message), 530, "5.7.0")
	if n := len(f.box.sent()); n != 0 {
		t.Errorf("%d messages sent", n)
	}

	insecure := start(t, func(o *shim.Options, _ *server.ServiceOptions) { o.AllowInsecureAuth = true })
	if _, err := insecure.dial(t, true, "app", appKey); err != nil {
		t.Errorf("allow_insecure_auth: %v", err)
	}
}

// A device admitted by its address sends as its key, with that key's senders.
func TestDevices(t *testing.T) {
	t.Parallel()
	f := start(t, func(o *shim.Options, _ *server.ServiceOptions) {
		o.Devices = []shim.Device{{Prefix: netip.MustParsePrefix("127.0.0.0/8"), Principal: shim.Principal{Name: "scanners"}}}
	})
	c, _ := f.dial(t, true, "", "")
	scan := strings.Replace(message, "From: app@contoso.com", "From: scanner@contoso.com", 1)
	if err := send(c, "scanner@contoso.com", []string{"bob@fabrikam.com"}, scan); err != nil {
		t.Fatal(err)
	}
	// The key's senders still apply: scanners may not send as app@contoso.com.
	wantReply(t, send(c, "app@contoso.com", []string{"bob@fabrikam.com"}, message), 550, "5.7.1")
}

// A device that lost the 250 and sends the same message again gets one delivery, and the
// same id; so does one that sends no Message-ID, as long as the message is dated.
func TestResendIsDeliveredOnce(t *testing.T) {
	t.Parallel()
	f := start(t, nil)
	noID := strings.Replace(message, "Message-ID: <scan-1@contoso.com>\r\n", "", 1)
	undated := strings.Replace(noID, "Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n", "", 1)
	for _, m := range []string{message, message, noID, noID, undated, undated} {
		c, _ := f.dial(t, false, "app", appKey)
		if err := send(c, "app@contoso.com", []string{"bob@fabrikam.com"}, m); err != nil {
			t.Fatal(err)
		}
		c.Quit()
	}
	sent := f.box.sent()
	if len(sent) != 4 {
		t.Fatalf("%d deliveries, want 4: one per dated message, and both undated ones", len(sent))
	}
	_, second := trace(t, sent[1])
	if !bytes.HasPrefix(second, []byte("Message-ID: <")) || !bytes.HasSuffix(second, []byte(noID)) {
		t.Errorf("without a Message-ID the shim adds one in front, below its Received field: %q", sent[1])
	}
	if _, third := trace(t, sent[2]); bytes.Equal(third, func() []byte { _, b := trace(t, sent[3]); return b }()) {
		t.Error("two undated messages without Message-ID got the same Message-ID")
	}
}

// A device reusing one Message-ID for different messages still gets each delivered.
func TestReusedMessageIDStillDelivers(t *testing.T) {
	t.Parallel()
	f := start(t, nil)
	for i := range 2 {
		c, _ := f.dial(t, false, "app", appKey)
		m := strings.Replace(message, "Page 1.", fmt.Sprintf("Page %d.", i+1), 1)
		if err := send(c, "app@contoso.com", []string{"bob@fabrikam.com"}, m); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(f.box.sent()); n != 2 {
		t.Errorf("%d deliveries, want 2", n)
	}
}

func TestReplies(t *testing.T) {
	t.Parallel()
	t.Run("too large", func(t *testing.T) {
		t.Parallel()
		f := start(t, func(o *shim.Options, _ *server.ServiceOptions) { o.MaxMessageBytes = 1000 })
		c, _ := f.dial(t, false, "app", appKey)
		wantReply(t, send(c, "app@contoso.com", []string{"bob@fabrikam.com"}, message+strings.Repeat(strings.Repeat("x", 70)+"\r\n", 40)), 552, "5.3.4")
	})
	t.Run("throttled", func(t *testing.T) {
		t.Parallel()
		f := start(t, func(_ *shim.Options, s *server.ServiceOptions) {
			s.Mailbox = server.MailboxLimits{MessagesPerMinute: 1}
		})
		c, _ := f.dial(t, false, "app", appKey)
		if err := send(c, "app@contoso.com", []string{"bob@fabrikam.com"}, message); err != nil {
			t.Fatal(err)
		}
		second := strings.Replace(message, "scan-1", "scan-2", 1)
		wantReply(t, send(c, "app@contoso.com", []string{"bob@fabrikam.com"}, second), 451, "4.7.0")
	})
	t.Run("backend refusal passes the remote code on", func(t *testing.T) {
		t.Parallel()
		f := start(t, nil)
		e := mailerr.New(mailerr.Rejected, "refused")
		e.Metadata = map[string]string{"smtpReply": "550 5.7.64 TenantAttribution; Relay Access Denied"}
		f.box.fail = e
		c, _ := f.dial(t, false, "app", appKey)
		wantReply(t, send(c, "app@contoso.com", []string{"bob@fabrikam.com"}, message), 550, "5.7.64")
	})
	t.Run("backend unavailable", func(t *testing.T) {
		t.Parallel()
		f := start(t, nil)
		f.box.fail = mailerr.New(mailerr.Unavailable, "down")
		c, _ := f.dial(t, false, "app", appKey)
		wantReply(t, send(c, "app@contoso.com", []string{"bob@fabrikam.com"}, message), 451, "4.4.1")
	})
	t.Run("too many recipients", func(t *testing.T) {
		t.Parallel()
		f := start(t, func(o *shim.Options, _ *server.ServiceOptions) { o.MaxRecipients = 2 })
		c, _ := f.dial(t, false, "app", appKey)
		c.Mail("app@contoso.com")
		c.Rcpt("a@fabrikam.com")
		c.Rcpt("b@fabrikam.com")
		wantReply(t, c.Rcpt("c@fabrikam.com"), 452, "4.5.3")
	})
	t.Run("malformed message", func(t *testing.T) {
		t.Parallel()
		f := start(t, nil)
		c, _ := f.dial(t, false, "app", appKey)
		wantReply(t, send(c, "app@contoso.com", []string{"bob@fabrikam.com"}, "no header at all\r\n"), 554, "5.6.0")
	})
}

func TestMaxConnections(t *testing.T) {
	t.Parallel()
	f := start(t, func(o *shim.Options, _ *server.ServiceOptions) { o.MaxConnections = 1 })
	first, err := smtp.Dial(f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	_, err = smtp.Dial(f.addr)
	wantReply(t, err, 421, "4.7.0")
	first.Quit()
	time.Sleep(100 * time.Millisecond) // the server notices the close
	again, err := smtp.Dial(f.addr)
	if err != nil {
		t.Fatalf("after the first connection closed: %v", err)
	}
	again.Close()
}

func TestImplicitTLS(t *testing.T) {
	t.Parallel()
	certs, _ := shim.SelfSigned("127.0.0.1")
	keys := apikey.NewKeyring()
	keys.Add(&apikey.Key{Name: "app", Senders: []mailaddr.Pattern{mailaddr.MustParsePattern("*")}}, apikey.Hash(appKey))
	box := &outbox{}
	srv, _ := server.New(server.Options{Keys: keys, Service: server.ServiceOptions{
		Router:   policy.NewRouter([]policy.Route{{Name: "all", Match: mailaddr.MustParsePattern("*"), Backend: "out"}}),
		Backends: map[string]senders.Sender{"out": box}, Limits: server.Limits{MaxMessageBytes: 1 << 20, MaxRecipients: 10},
	}})
	s := shim.New(shim.Options{Submitter: srv.Local(), TLS: &tls.Config{Certificates: certs, MinVersion: tls.VersionTLS12}})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go s.ServeListener(ln, true)
	defer s.Shutdown(context.Background())
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(smtp.PlainAuth("", "app", appKey, "127.0.0.1")); err != nil {
		t.Fatalf("AUTH over implicit TLS: %v", err)
	}
	if err := send(c, "app@contoso.com", []string{"bob@fabrikam.com"}, message); err != nil {
		t.Fatal(err)
	}
}

// One message may come in several transactions to different recipients (an MTA splitting
// its recipient list): each is delivered; a repeat of one of them is not.
func TestSplitTransactions(t *testing.T) {
	t.Parallel()
	f := start(t, nil)
	for _, rcpt := range []string{"r1@fabrikam.com", "r2@fabrikam.com", "r3@fabrikam.com", "r1@fabrikam.com"} {
		c, _ := f.dial(t, false, "app", appKey)
		if err := send(c, "app@contoso.com", []string{rcpt}, message); err != nil {
			t.Fatalf("to %s: %v", rcpt, err)
		}
	}
	if n := len(f.box.sent()); n != 3 {
		t.Errorf("%d deliveries, want 3 (the repeat to r1 is a resend)", n)
	}
}

// A resend listing the recipients in another order is still the same message.
func TestResendInAnotherRecipientOrder(t *testing.T) {
	t.Parallel()
	f := start(t, nil)
	for _, rcpts := range [][]string{{"a@fabrikam.com", "b@fabrikam.com"}, {"b@fabrikam.com", "a@fabrikam.com"}} {
		c, _ := f.dial(t, false, "app", appKey)
		if err := send(c, "app@contoso.com", rcpts, message); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(f.box.sent()); n != 1 {
		t.Errorf("%d deliveries, want 1", n)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	f := start(t, func(o *shim.Options, _ *server.ServiceOptions) { o.Metrics = shim.NewMetrics(reg) })
	c, _ := f.dial(t, false, "app", appKey)
	if err := send(c, "app@contoso.com", []string{"bob@fabrikam.com"}, message); err != nil {
		t.Fatal(err)
	}
	f.dial(t, false, "app", otherKey)
	c.Quit()
	for name, want := range map[string]float64{
		`mailgate_shim_auth_total{mechanism="PLAIN",result="ok"}`:              1,
		`mailgate_shim_auth_total{mechanism="PLAIN",result="bad_credentials"}`: 1,
		`mailgate_shim_messages_total{code="250"}`:                             1,
		`mailgate_shim_connections_total{result="accepted"}`:                   2,
	} {
		if got := metricValue(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// metricValue reads one series, named in the text exposition format, from reg.
func metricValue(t *testing.T, reg *prometheus.Registry, series string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			name := mf.GetName()
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			if name == series {
				if c := m.GetCounter(); c != nil {
					return c.GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// What decides who sends and who receives is checked as strictly over SMTP as over the
// API: homographs of allowed senders, and raw messages the RFCs forbid or that are
// ambiguous, get a permanent refusal; nothing reaches the backend.
func TestRefusesHomographsAndAmbiguousMessages(t *testing.T) {
	t.Parallel()
	f := start(t, nil)
	const tail = "To: bob@fabrikam.com\r\nSubject: scan\r\nMessage-ID: <m@contoso.com>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\nPage 1.\r\n"
	tests := []struct {
		name, from, msg string
		code            int
		enhanced        string
	}{
		{"header From with long s", "app@contoso.com", "From: app@contoſo.com\r\n" + tail, 554, "5.6.0"},
		{"header From with Kelvin sign", "app@contoso.com", "From: x@\u212Ab.contoso.com\r\n" + tail, 554, "5.6.0"},
		{"second From with space before the colon", "app@contoso.com", "From : evil@x.com\r\nFrom: app@contoso.com\r\n" + tail, 554, "5.6.0"},
		{"spaced bcc", "app@contoso.com", "From: app@contoso.com\r\nbcc : secret@example.com\r\n" + tail, 554, "5.6.0"},
		{"NUL in the body", "app@contoso.com", "From: app@contoso.com\r\n" + tail + "a\x00b\r\n", 554, "5.6.0"},
		{"100 KB header line", "app@contoso.com", "From: app@contoso.com\r\nX-A: " + strings.Repeat("a", 50<<10) + "\r\n" + tail, 554, "5.6.0"},
	}
	for _, tt := range tests {
		c, err := f.dial(t, false, "app", appKey)
		if err != nil {
			t.Fatal(err)
		}
		err = send(c, tt.from, []string{"bob@fabrikam.com"}, tt.msg)
		var te *textproto.Error
		if !errors.As(err, &te) || te.Code != tt.code || !strings.HasPrefix(te.Msg, tt.enhanced) {
			t.Errorf("%s: reply %v, want %d %s", tt.name, err, tt.code, tt.enhanced)
		}
	}
	// A MAIL FROM homograph never gets a message through either.
	c, _ := f.dial(t, false, "app", appKey)
	if err := send(c, "app@contoſo.com", []string{"bob@fabrikam.com"}, "From: app@contoso.com\r\n"+tail); err == nil {
		t.Error("MAIL FROM app@contoſo.com accepted")
	}
	if n := len(f.box.sent()); n != 0 {
		t.Errorf("%d messages reached the backend", n)
	}
}

// Devices write body lines longer than 998 (and 2000) bytes and bare 8-bit text; the
// strict rules are for the header section only.
func TestLongAndEightBitBodyLinesDelivered(t *testing.T) {
	t.Parallel()
	f := start(t, nil)
	body := strings.Repeat("QUJD", 5000) + "\r\nGr\xfc\xdfe aus dem Scanner\r\n"
	msg := "From: app@contoso.com\r\nTo: bob@fabrikam.com\r\nSubject: scan\r\n\r\n" + body
	c, err := f.dial(t, false, "app", appKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := send(c, "app@contoso.com", []string{"bob@fabrikam.com"}, msg); err != nil {
		t.Fatalf("send: %v", err)
	}
	got := f.box.sent()
	if len(got) != 1 || !bytes.Contains(got[0], []byte(body)) {
		t.Fatalf("delivered %d messages; body kept: %v", len(got), len(got) == 1 && bytes.Contains(got[0], []byte(body)))
	}
}
