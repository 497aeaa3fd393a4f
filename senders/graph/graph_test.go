package graph_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/config/secret"
	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/senders/entra"
	"github.com/mailgate/mailgate/senders/graph"
	"github.com/mailgate/mailgate/senders/graph/graphtest"
)

const mailbox = "noreply@contoso.com"

func config(t *testing.T, f *graphtest.Fake) *graph.Config {
	return &graph.Config{
		Credentials: entra.Credentials{
			TenantID:     graphtest.TenantID,
			ClientID:     graphtest.ClientID,
			ClientSecret: secret.New(graphtest.ClientSecret),
			AuthorityURL: f.AuthorityURL(),
		},
		GraphURL: f.GraphURL(),
		CAFile:   f.CAFile(t),
	}
}

func newSender(t *testing.T, c *graph.Config) senders.Sender {
	t.Helper()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := c.Open(senders.Env{Name: "graph"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func structured(id string, attachments ...senders.Attachment) *senders.Message {
	c := &senders.Content{
		From:        mail.Address{Name: "Contoso Billing", Address: mailbox},
		To:          []mail.Address{{Name: "Alice", Address: "alice@example.com"}},
		Cc:          []mail.Address{{Address: "bob@example.com"}},
		Bcc:         []mail.Address{{Address: "audit@contoso.com"}},
		ReplyTo:     []mail.Address{{Address: "help@contoso.com"}},
		Subject:     "Invoice ☃ 1001",
		Text:        "plain",
		HTML:        `<p>Invoice <img src="cid:logo"></p>`,
		Headers:     []senders.Header{{Name: "X-Invoice", Value: "1001"}},
		Attachments: attachments,
	}
	return senders.NewMessage(id, c, time.Now())
}

func addrs(list []graphtest.Address) []string {
	var out []string
	for _, a := range list {
		out = append(out, a.Address)
	}
	return out
}

func mailErr(t *testing.T, err error) *mailerr.Error {
	t.Helper()
	var e *mailerr.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not classified", err)
	}
	return e
}

// What Graph receives, field by field, for a structured message.
func TestJSON(t *testing.T) {
	t.Parallel()
	f := graphtest.New(t)
	s := newSender(t, config(t, f))
	pdf := randomBytes(100_000)
	msg := structured("01jx0000000000000000000001",
		senders.Attachment{Filename: "invoice.pdf", ContentType: "application/pdf", Content: pdf},
		senders.Attachment{Filename: "logo.png", ContentType: "image/png", ContentID: "logo", Content: []byte("\x89PNG")})
	no := false
	msg.SaveToSentItems = &no
	res, err := s.Send(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != senders.Sent || !slices.Equal(res.Accepted, msg.Recipients) {
		t.Errorf("result %+v", res)
	}
	// A second message reuses the token.
	if _, err := s.Send(context.Background(), structured("01jx0000000000000000000002")); err != nil {
		t.Fatal(err)
	}
	if n := f.TokensIssued(graphtest.GraphScope); n != 1 {
		t.Errorf("%d tokens issued for two messages, want 1 (cached)", n)
	}
	sent := f.Sent()
	if len(sent) != 2 {
		t.Fatalf("%d messages sent", len(sent))
	}
	got := sent[0]
	m := got.Message
	checks := map[string]bool{
		"via json":        got.Via == "json",
		"mailbox":         strings.EqualFold(got.Mailbox, mailbox),
		"saveToSentItems": got.SaveToSentItems != nil && !*got.SaveToSentItems,
		"subject":         m.Subject == "Invoice ☃ 1001",
		"html body":       m.BodyType == "html" && m.Body == msg.Content.HTML,
		"from":            m.From != nil && m.From.Address == mailbox && m.From.Name == "Contoso Billing",
		"to":              slices.Equal(addrs(m.To), []string{"alice@example.com"}) && m.To[0].Name == "Alice",
		"cc":              slices.Equal(addrs(m.Cc), []string{"bob@example.com"}),
		"bcc":             slices.Equal(addrs(m.Bcc), []string{"audit@contoso.com"}),
		"replyTo":         slices.Equal(addrs(m.ReplyTo), []string{"help@contoso.com"}),
		"header":          m.Header("X-Invoice") == "1001",
		"attachments":     len(m.Attachments) == 2,
	}
	for name, ok := range checks {
		if !ok {
			t.Errorf("%s wrong: %+v", name, got)
		}
	}
	if len(m.Attachments) == 2 {
		a, logo := m.Attachments[0], m.Attachments[1]
		if a.Name != "invoice.pdf" || a.ContentType != "application/pdf" || !bytes.Equal(a.Content, pdf) || a.IsInline {
			t.Errorf("attachment %s %s inline=%v, %d bytes", a.Name, a.ContentType, a.IsInline, len(a.Content))
		}
		if !logo.IsInline || logo.ContentID != "logo" || string(logo.Content) != "\x89PNG" {
			t.Errorf("inline part %+v", logo)
		}
	}
	// Not asked: Graph's own default, true (the SDK would have sent false).
	if sent[1].SaveToSentItems == nil || !*sent[1].SaveToSentItems {
		t.Errorf("saveToSentItems without a choice: %v, want true", sent[1].SaveToSentItems)
	}
}

// A raw message goes as MIME, byte for byte, with blind recipients in a Bcc field (Graph's
// MIME form has no other envelope).
func TestMIME(t *testing.T) {
	t.Parallel()
	f := graphtest.New(t)
	s := newSender(t, config(t, f))
	raw := "From: Scanner <noreply@contoso.com>\r\nTo: alice@example.com\r\nSubject: scan\r\nMessage-ID: <scan-1@mfp>\r\n" +
		"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\nsee attached\r\n"
	h, err := senders.ParseRawHeader([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	msg := senders.NewRawMessage("01jx0000000000000000000003", []byte(raw), h, time.Now())
	msg.Recipients = []string{"alice@example.com", "archive@contoso.com"}
	if _, err := s.Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	sent := f.Sent()
	if len(sent) != 1 || sent[0].Via != "mime" {
		t.Fatalf("sent %+v", sent)
	}
	want := "Bcc: archive@contoso.com\r\n" + raw
	if string(sent[0].MIME) != want {
		t.Errorf("MIME received:\n%q\nwant:\n%q", sent[0].MIME, want)
	}
	if !slices.Equal(addrs(sent[0].Message.Bcc), []string{"archive@contoso.com"}) {
		t.Errorf("Graph saw Bcc %v", sent[0].Message.Bcc)
	}
}

// Over 4 MB: draft, a small attachment in one POST, a large one through an upload
// session in slices under 4 MB without a token, then send. Nothing is left behind.
func TestLargeMessage(t *testing.T) {
	t.Parallel()
	f := graphtest.New(t)
	s := newSender(t, config(t, f))
	small, large := randomBytes(1<<20), randomBytes(30<<20+12345)
	msg := structured("01jx0000000000000000000004",
		senders.Attachment{Filename: "small.bin", ContentType: "application/octet-stream", Content: small},
		senders.Attachment{Filename: "large.bin", ContentType: "application/zip", Content: large})
	if _, err := s.Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	sent := f.Sent()
	if len(sent) != 1 || sent[0].Via != "draft" {
		t.Fatalf("sent %+v", sent)
	}
	at := sent[0].Message.Attachments
	if len(at) != 2 || !bytes.Equal(at[0].Content, small) || at[0].ViaUploadSession ||
		!bytes.Equal(at[1].Content, large) || !at[1].ViaUploadSession || at[1].ContentType != "application/zip" {
		t.Fatalf("attachments: %d, small via session %v, large via session %v", len(at), len(at) > 0 && at[0].ViaUploadSession, len(at) > 1 && at[1].ViaUploadSession)
	}
	if sent[0].Message.Subject != msg.Content.Subject || !slices.Equal(addrs(sent[0].Message.Bcc), []string{"audit@contoso.com"}) {
		t.Errorf("draft fields lost: %+v", sent[0].Message)
	}
	puts := 0
	for _, r := range f.Requests() {
		if r.Method == "PUT" {
			puts++
			if r.Headers.Get("Authorization") != "" || r.BodyLen >= 4<<20 {
				t.Errorf("upload PUT with Authorization %q, %d bytes", r.Headers.Get("Authorization"), r.BodyLen)
			}
		}
	}
	if want := (len(large) + 12*320<<10 - 1) / (12 * 320 << 10); puts != want {
		t.Errorf("%d upload PUTs, want %d", puts, want)
	}
	if n := f.Drafts(mailbox); n != 0 {
		t.Errorf("%d drafts left", n)
	}
}

// A raw message too large for the MIME form is read into fields and takes the draft path.
func TestLargeRawMessage(t *testing.T) {
	t.Parallel()
	f := graphtest.New(t)
	s := newSender(t, config(t, f))
	payload := randomBytes(4 << 20)
	var b bytes.Buffer
	b.WriteString("From: noreply@contoso.com\r\nTo: alice@example.com\r\nSubject: big scan\r\nX-Device: MFP-3\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nhello\r\n" +
		"--zz\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=scan.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	enc := make([]byte, len(payload)*2)
	n := base64Encode(enc, payload)
	b.Write(enc[:n])
	b.WriteString("\r\n--zz--\r\n")
	h, err := senders.ParseRawHeader(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	msg := senders.NewRawMessage("01jx0000000000000000000005", b.Bytes(), h, time.Now())
	if _, err := s.Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	sent := f.Sent()
	if len(sent) != 1 || sent[0].Via != "draft" {
		t.Fatalf("sent %+v", sent)
	}
	m := sent[0].Message
	if m.Subject != "big scan" || m.Body != "hello" || m.Header("X-Device") != "MFP-3" || len(m.Attachments) != 1 ||
		m.Attachments[0].Name != "scan.pdf" || !bytes.Equal(m.Attachments[0].Content, payload) {
		t.Errorf("message %q %q %q, %d attachments", m.Subject, m.Body, m.Header("X-Device"), len(m.Attachments))
	}
}

func base64Encode(dst, src []byte) int {
	const lineLen = 76 / 4 * 3
	n := 0
	for len(src) > 0 {
		chunk := src[:min(lineLen, len(src))]
		src = src[len(chunk):]
		n += copy(dst[n:], []byte(encodeStd(chunk)+"\r\n"))
	}
	return n
}

// Microsoft's answers, classified as docs/microsoft365-graph.md#troubleshooting and
// docs/api.md#errors say, and never resent when
// the message may have gone out.
func TestErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		script   graphtest.Response
		kind     mailerr.Kind
		reason   mailerr.Reason
		code     string
		posts    int // sendMail requests the fake must have seen
		recorded int // messages the fake accepted
	}{
		{"429 fractional Retry-After", graphtest.Throttle("2.128"), mailerr.Throttled, "", "TooManyRequests", 1, 0},
		{"503", graphtest.Unavailable(), mailerr.OutcomeUnknown, "", "serviceNotAvailable", 1, 0},
		{"504 after accepting", graphtest.AcceptThenGatewayTimeout(), mailerr.OutcomeUnknown, "", "", 1, 1},
		{"send as denied", graphtest.SendAsDenied(), mailerr.PermissionDenied, "SEND_AS_DENIED", "ErrorSendAsDenied", 1, 0},
		{"access denied", graphtest.AccessDenied(), mailerr.PermissionDenied, "", "ErrorAccessDenied", 1, 0},
		{"invalid recipients", graphtest.InvalidRecipients(), mailerr.Invalid, "", "ErrorInvalidRecipients", 1, 0},
		{"short 429 is retried", graphtest.Throttle("0.3"), 0, "", "", 2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := graphtest.New(t)
			s := newSender(t, config(t, f))
			f.Script(mailbox, tt.script)
			_, err := s.Send(context.Background(), structured("01jx0000000000000000000006"))
			posts := 0
			for _, r := range f.Requests() {
				if r.Method == "POST" && strings.HasSuffix(r.Path, "/sendMail") {
					posts++
				}
			}
			if posts != tt.posts || len(f.Sent()) != tt.recorded {
				t.Errorf("%d sendMail requests, %d messages accepted; want %d and %d", posts, len(f.Sent()), tt.posts, tt.recorded)
			}
			if tt.kind == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			e := mailErr(t, err)
			if e.Kind != tt.kind || tt.reason != "" && e.Reason != tt.reason || tt.code != "" && e.Metadata["graphCode"] != tt.code {
				t.Errorf("got %v %q %v, want %v %q code %s (%v)", e.Kind, e.Reason, e.Metadata, tt.kind, tt.reason, tt.code, e)
			}
			if tt.kind == mailerr.Throttled && e.RetryAfter != 2128*time.Millisecond {
				t.Errorf("RetryAfter %v, want 2.128s", e.RetryAfter)
			}
		})
	}
}

// Token trouble is the operator's: it is not the caller's UNAUTHENTICATED, and nothing
// reaches Graph.
func TestBadCredentials(t *testing.T) {
	t.Parallel()
	f := graphtest.New(t)
	c := config(t, f)
	c.ClientSecret = secret.New("wrong")
	_, err := newSender(t, c).Send(context.Background(), structured("01jx0000000000000000000007"))
	e := mailErr(t, err)
	if e.Kind != mailerr.Unavailable || e.Reason != "BACKEND_AUTH_FAILED" {
		t.Errorf("wrong secret: %v %q (%v)", e.Kind, e.Reason, e)
	}
	tokenRequests := 0
	for _, r := range f.Requests() {
		if strings.Contains(r.Path, "/users/") {
			t.Errorf("Graph was called without a token: %s %s", r.Method, r.Path)
		}
		if strings.HasSuffix(r.Path, "/oauth2/v2.0/token") {
			tokenRequests++
		}
	}
	if tokenRequests != 1 {
		t.Errorf("%d token requests for one message, want 1 (wrong credentials stay wrong)", tokenRequests)
	}
}

// Just under 3 MiB: too big for one 4 MiB POST once base64-encoded, so it takes an
// upload session.
func TestAttachmentAtTheBoundary(t *testing.T) {
	t.Parallel()
	f := graphtest.New(t)
	s := newSender(t, config(t, f))
	content := randomBytes(3<<20 - 100)
	msg := structured("01jx0000000000000000000012",
		senders.Attachment{Filename: "edge.bin", ContentType: "application/octet-stream", Content: content},
		senders.Attachment{Filename: "pad.bin", ContentType: "application/octet-stream", Content: randomBytes(2 << 20)})
	if _, err := s.Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	at := f.Sent()[0].Message.Attachments
	if len(at) != 2 || !bytes.Equal(at[0].Content, content) || !at[0].ViaUploadSession {
		t.Errorf("edge attachment: %d attachments, via session %v", len(at), len(at) > 0 && at[0].ViaUploadSession)
	}
}

// Nothing listening: retried (it never reached Graph), then UNAVAILABLE, not unknown.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	f := graphtest.New(t)
	c := config(t, f)
	c.GraphURL = "https://127.0.0.1:1/v1.0"
	_, err := newSender(t, c).Send(context.Background(), structured("01jx0000000000000000000008"))
	if e := mailErr(t, err); e.Kind != mailerr.Unavailable {
		t.Errorf("unreachable Graph: %v (%v)", e.Kind, e)
	}
}

// At most 4 requests in flight per mailbox; other mailboxes are not held up.
func TestMailboxConcurrency(t *testing.T) {
	t.Parallel()
	f := graphtest.New(t)
	f.SetLatency(100 * time.Millisecond)
	s := newSender(t, config(t, f))
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for i := range 12 {
		wg.Go(func() {
			msg := structured("01jx00000000000000000000" + string(rune('a'+i)) + "0")
			_, err := s.Send(context.Background(), msg)
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
	if n := f.MaxInFlight(mailbox); n > 4 || n < 2 {
		t.Errorf("max in flight for one mailbox: %d, want 2..4", n)
	}
	// A context that runs out while waiting for a slot fails cleanly, sending nothing.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var slow sync.WaitGroup
	for range 4 {
		slow.Go(func() { s.Send(context.Background(), structured("01jx0000000000000000000009")) })
	}
	time.Sleep(20 * time.Millisecond)
	_, err := s.Send(ctx, structured("01jx000000000000000000000z"))
	slow.Wait()
	if e := mailErr(t, err); e.Kind != mailerr.Unavailable {
		t.Errorf("waiting past the deadline for a slot: %v, want UNAVAILABLE (nothing sent)", e)
	}
}

func TestSendAs(t *testing.T) {
	t.Parallel()
	f := graphtest.New(t)
	s := newSender(t, config(t, f))
	msg := structured("01jx0000000000000000000010")
	msg.Mailbox = "shared@contoso.com" // the route's mailbox sends as the From address
	_, err := s.Send(context.Background(), msg)
	if e := mailErr(t, err); e.Kind != mailerr.PermissionDenied || e.Reason != "SEND_AS_DENIED" {
		t.Fatalf("without Send As: %v", e)
	}
	f.GrantSendAs("shared@contoso.com", mailbox)
	if _, err := s.Send(context.Background(), msg); err != nil {
		t.Fatalf("with Send As: %v", err)
	}
	if got := f.Sent()[0]; !strings.EqualFold(got.Mailbox, "shared@contoso.com") || got.Message.From.Address != mailbox {
		t.Errorf("sent via %s from %v", got.Mailbox, got.Message.From)
	}
}

// A certificate credential (recommended over secrets) signs a client assertion.
func TestCertificateCredential(t *testing.T) {
	t.Parallel()
	f := graphtest.New(t)
	dir := t.TempDir()
	rsaKey, certDER := selfSigned(t)
	cert, _ := x509.ParseCertificate(certDER)
	f.RegisterCertificate(cert)
	pemFile := filepath.Join(dir, "app.pem")
	var b bytes.Buffer
	pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: certDER})
	pem.Encode(&b, &pem.Block{Type: "PRIVATE KEY", Bytes: rsaKey})
	os.WriteFile(pemFile, b.Bytes(), 0o600)
	c := config(t, f)
	c.ClientSecret = secret.String{}
	c.CertificateFile = pemFile
	if _, err := newSender(t, c).Send(context.Background(), structured("01jx0000000000000000000011")); err != nil {
		t.Fatal(err)
	}
	if len(f.Sent()) != 1 {
		t.Error("not sent")
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := entra.Credentials{TenantID: "t", ClientID: "c", ClientSecret: secret.New("s")}
	tests := []struct {
		c    graph.Config
		want string
	}{
		{graph.Config{Credentials: entra.Credentials{ClientID: "c", ClientSecret: secret.New("s")}}, "tenant_id: required"},
		{graph.Config{Credentials: ok, GraphURL: "http://graph"}, "graph_url: want an https:// URL"},
		{graph.Config{Credentials: ok, CAFile: "/nonexistent"}, "ca_file:"},
	}
	for _, tt := range tests {
		if err := tt.c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tt.c, err, tt.want)
		}
	}
}

func selfSigned(t *testing.T) (pkcs8Key, certDER []byte) {
	t.Helper()
	key, err := rsaKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mailgate-test-app"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
	}
	certDER, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8Key, _ = x509.MarshalPKCS8PrivateKey(key)
	return pkcs8Key, certDER
}

// A raw message from an old device, with a Latin-1 display name in From and LF line
// endings: Graph gets UTF-8 in either form, as an RFC 2047 word in the MIME and as a
// JSON string on the draft path, and CRLF line endings.
func TestRawLatin1FromAndLF(t *testing.T) {
	t.Parallel()
	head := "From: J\xf6rg M\xfcller <noreply@contoso.com>\nTo: Hans M\xfcller <alice@example.com>\nSubject: scan f\xfcr Hans\n" +
		"Message-ID: <scan-2@mfp>\nDate: Tue, 24 Nov 2026 10:00:00 +0000\n"
	for _, tt := range []struct {
		name, raw, via string
	}{
		{"mime", head + "\nsee attached\n", "mime"},
		{"draft", head + "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=zz\n\n--zz\nContent-Type: text/plain\n\nGr\xfc\xdfe\n" +
			"--zz\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=scan.pdf\nContent-Transfer-Encoding: base64\n\n" +
			strings.Repeat(strings.Repeat("QUJD", 19)+"\n", 70_000) + "--zz--\n", "draft"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := graphtest.New(t)
			s := newSender(t, config(t, f))
			h, err := senders.ParseRawHeader([]byte(tt.raw))
			if err != nil {
				t.Fatal(err)
			}
			msg := senders.NewRawMessage("01jx0000000000000000000006", []byte(tt.raw), h, time.Now())
			if _, err := s.Send(context.Background(), msg); err != nil {
				t.Fatal(err)
			}
			sent := f.Sent()
			if len(sent) != 1 || sent[0].Via != tt.via {
				t.Fatalf("sent %+v", sent)
			}
			m := sent[0].Message
			if m.From == nil || m.From.Name != "Jörg Müller" || m.From.Address != "noreply@contoso.com" {
				t.Errorf("Graph's From %+v", m.From)
			}
			if len(m.To) != 1 || m.To[0].Address != "alice@example.com" {
				t.Errorf("Graph's To %+v", m.To)
			}
			if tt.via == "draft" && (m.Subject != "scan für Hans" || !strings.HasPrefix(m.Body, "Grüße")) {
				t.Errorf("draft subject %q body %q: want UTF-8 read from Latin-1", m.Subject, m.Body)
			}
			if len(m.To) == 1 && m.To[0].Name != "Hans Müller" {
				t.Errorf("To name %q", m.To[0].Name)
			}
			if tt.via == "mime" {
				mime := string(sent[0].MIME)
				if !strings.HasPrefix(mime, "From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?=\r\n <noreply@contoso.com>\r\nTo: =?utf-8?q?Hans_M=C3=BCller?=\r\n <alice@example.com>\r\n") {
					t.Errorf("MIME From not re-encoded:\n%q", mime)
				}
				if strings.Count(mime, "\n") != strings.Count(mime, "\r\n") {
					t.Errorf("MIME with line endings other than CRLF:\n%q", mime)
				}
			}
		})
	}
}

// Graph's MIME form takes the recipients from To and Cc: one that does not parse (as a
// device writes them) would be refused or guessed at, so the message takes the draft
// path, which sends to the envelope.
func TestRawUnparsedToTakesTheEnvelope(t *testing.T) {
	t.Parallel()
	f := graphtest.New(t)
	s := newSender(t, config(t, f))
	raw := "From: noreply@contoso.com\r\nTo: Mueller, Hans <alice@example.com>\r\nSubject: scan\r\n\r\nsee attached\r\n"
	h, err := senders.ParseRawHeader([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	msg := senders.NewRawMessage("01jx0000000000000000000007", []byte(raw), h, time.Now())
	msg.Recipients = []string{"alice@example.com"}
	if _, err := s.Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	sent := f.Sent()
	if len(sent) != 1 || sent[0].Via != "draft" {
		t.Fatalf("sent %+v", sent)
	}
	m := sent[0].Message
	if got := append(append(addrs(m.To), addrs(m.Cc)...), addrs(m.Bcc)...); !slices.Equal(got, []string{"alice@example.com"}) {
		t.Errorf("recipients %v, want the envelope", got)
	}
	if m.Subject != "scan" || m.Body != "see attached\r\n" && m.Body != "see attached" {
		t.Errorf("subject %q body %q", m.Subject, m.Body)
	}
}
