package graph

import (
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/senders"
)

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	tests := map[string]time.Duration{
		"2.128":  2128 * time.Millisecond, // Graph sends fractional seconds
		"3":      3 * time.Second,
		"0.0001": 100 * time.Microsecond,
		"":       10 * time.Second,
		"soon":   10 * time.Second,
		"-1":     10 * time.Second,
	}
	for in, want := range tests {
		if got := retryAfter(in); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", in, got, want)
		}
	}
	if d := retryAfter(time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat)); d < 28*time.Second || d > 31*time.Second {
		t.Errorf("HTTP date: %v", d)
	}
}

func TestClassifyGraphErrors(t *testing.T) {
	t.Parallel()
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	tests := []struct {
		name      string
		ge        graphError
		delivered bool
		kind      mailerr.Kind
		reason    mailerr.Reason
	}{
		{"429", graphError{status: 429, code: "TooManyRequests", header: h("Retry-After", "2.128")}, true, mailerr.Throttled, ""},
		{"concurrency", graphError{status: 429, code: "ApplicationThrottled", header: h()}, true, mailerr.Throttled, ""},
		{"413", graphError{status: 413, header: h()}, true, mailerr.TooLarge, reasonRequestTooLarge},
		{"400 4MB", graphError{status: 400, code: "BadRequest", message: "The maximum request length supported is 4MB.", header: h()}, true, mailerr.TooLarge, reasonRequestTooLarge},
		{"send as", graphError{status: 403, code: "ErrorSendAsDenied", header: h()}, true, mailerr.PermissionDenied, "SEND_AS_DENIED"},
		{"access denied", graphError{status: 403, code: "ErrorAccessDenied", message: "Access is denied. Check credentials and try again.", header: h()}, true, mailerr.PermissionDenied, ""},
		{"bad recipients", graphError{status: 400, code: "ErrorInvalidRecipients", header: h()}, true, mailerr.Invalid, ""},
		{"header", graphError{status: 400, code: "InvalidInternetMessageHeader", header: h()}, true, mailerr.Invalid, ""},
		{"size", graphError{status: 400, code: "ErrorMessageSizeExceeded", header: h()}, true, mailerr.TooLarge, ""},
		{"submission quota", graphError{status: 400, code: "ErrorSubmissionQuotaExceeded", header: h()}, true, mailerr.Throttled, ""},
		{"mailbox full", graphError{status: 400, code: "ErrorQuotaExceeded", header: h()}, true, mailerr.Unavailable, "BACKEND_MAILBOX_UNAVAILABLE"},
		{"token refused", graphError{status: 401, code: "InvalidAuthenticationToken", header: h()}, true, mailerr.Unavailable, "BACKEND_AUTH_FAILED"},
		{"503 after sending", graphError{status: 503, header: h()}, true, mailerr.OutcomeUnknown, ""},
		{"504 after sending", graphError{status: 504, header: h()}, true, mailerr.OutcomeUnknown, ""},
		{"503 on a draft step", graphError{status: 503, header: h()}, false, mailerr.Unavailable, ""},
		{"no mailbox", graphError{status: 404, code: "MailboxNotEnabledForRESTAPI", header: h()}, true, mailerr.Unavailable, "BACKEND_MAILBOX_UNAVAILABLE"},
	}
	s := &Sender{log: discardLogger()}
	for _, tt := range tests {
		ge := tt.ge
		e := s.classify("sendMail", "noreply@contoso.com", &uploadError{ge}, tt.delivered)
		if e.Kind != tt.kind || (tt.reason != "" && e.Reason != tt.reason) {
			t.Errorf("%s: %v/%q, want %v/%q (%v)", tt.name, e.Kind, e.Reason, tt.kind, tt.reason, e)
		}
		if ge.code != "" && e.Metadata["graphCode"] != ge.code {
			t.Errorf("%s: metadata %v lacks Microsoft's code", tt.name, e.Metadata)
		}
		if tt.name == "429" && e.RetryAfter != 2128*time.Millisecond {
			t.Errorf("429: RetryAfter %v", e.RetryAfter)
		}
	}
}

const largeRaw = "From: Scanner <scanner@contoso.com>\r\n" +
	"To: Alice <alice@contoso.com>, eve@contoso.com\r\n" +
	"Cc: bob@contoso.com\r\n" +
	"Subject: =?UTF-8?q?Scan_=E2=98=83?=\r\n" +
	"X-Device: MFP-3\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=b1\r\n\r\n" +
	"--b1\r\nContent-Type: multipart/alternative; boundary=b2\r\n\r\n" +
	"--b2\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nscann=E9\r\n" +
	"--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>scanned</p>\r\n--b2--\r\n" +
	"--b1\r\nContent-Type: application/pdf; name=\"scan.pdf\"\r\nContent-Disposition: attachment; filename=\"scan.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjc=\r\n" +
	"--b1--\r\n"

func rawMessage(t *testing.T, raw string, envelope ...string) *senders.Message {
	t.Helper()
	h, err := senders.ParseRawHeader([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	m := senders.NewRawMessage("01jx0000000000000000000000", []byte(raw), h, time.Now())
	if len(envelope) > 0 {
		m.Recipients = envelope
	}
	return m
}

func TestContentFromMIME(t *testing.T) {
	t.Parallel()
	// The envelope leaves out eve and adds a blind recipient.
	msg := rawMessage(t, largeRaw, "alice@contoso.com", "bob@contoso.com", "audit@contoso.com")
	c, err := contentFromMIME(msg)
	if err != nil {
		t.Fatal(err)
	}
	var to, cc, bcc []string
	for _, a := range c.To {
		to = append(to, a.Address)
	}
	for _, a := range c.Cc {
		cc = append(cc, a.Address)
	}
	for _, a := range c.Bcc {
		bcc = append(bcc, a.Address)
	}
	if !slices.Equal(to, []string{"alice@contoso.com"}) || !slices.Equal(cc, []string{"bob@contoso.com"}) || !slices.Equal(bcc, []string{"audit@contoso.com"}) {
		t.Errorf("to %v cc %v bcc %v: the envelope must decide", to, cc, bcc)
	}
	if c.Subject != "Scan ☃" || c.Text != "scanné" || !strings.Contains(c.HTML, "<p>scanned</p>") {
		t.Errorf("subject %q text %q html %q", c.Subject, c.Text, c.HTML)
	}
	if len(c.Attachments) != 1 || c.Attachments[0].Filename != "scan.pdf" || string(c.Attachments[0].Content) != "%PDF-1.7" {
		t.Errorf("attachments %+v", c.Attachments)
	}
	if len(c.Headers) != 1 || c.Headers[0] != (senders.Header{Name: "X-Device", Value: "MFP-3"}) {
		t.Errorf("headers %+v", c.Headers)
	}
	if c.From.Address != "scanner@contoso.com" {
		t.Errorf("from %v", c.From)
	}
}

func TestBlindRecipients(t *testing.T) {
	t.Parallel()
	msg := rawMessage(t, largeRaw, "Alice@contoso.com", "audit@contoso.com", "bob@contoso.com")
	if got := blindRecipients(msg); !slices.Equal(got, []string{"audit@contoso.com"}) {
		t.Errorf("blind recipients %v", got)
	}
	var b strings.Builder
	msg.WriteRawWithBcc(&b, blindRecipients(msg))
	if !strings.Contains(b.String(), "Bcc: audit@contoso.com\r\n") {
		t.Errorf("no Bcc field for the blind recipient:\n%s", b.String()[:300])
	}
}

func TestJSONSizeBoundsTheRequest(t *testing.T) {
	t.Parallel()
	c := &senders.Content{
		Subject:     "x",
		HTML:        strings.Repeat("\"<p>\n", 1000),
		Attachments: []senders.Attachment{{Filename: "a.bin", Content: make([]byte, 1<<20)}},
	}
	// base64 of 1 MiB is 1,398,104 bytes; the quotes and newlines double and sextuple.
	if n := jsonSize(c); n < 1_398_104+5000 {
		t.Errorf("jsonSize %d is below what the JSON will be", n)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
