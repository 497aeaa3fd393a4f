package server

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/mailerr"
)

var testNow = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

var testLimits = Limits{MaxMessageBytes: 1 << 20, MaxRecipients: 5}

func addr(a string) *mailgatev1.Address { return &mailgatev1.Address{Address: a} }

func validRequest() *mailgatev1.SendMailRequest {
	return &mailgatev1.SendMailRequest{
		From:    &mailgatev1.Address{Address: "app@example.com", Name: "App"},
		To:      []*mailgatev1.Address{addr("bob@example.com")},
		Subject: "Hello",
		Text:    "hi",
	}
}

const rawMessage = "From: Scanner <scanner@example.com>\r\nTo: bob@example.com\r\nCc: carol@example.com\r\nSubject: scan\r\n\r\nbody\r\n"

func TestNormalizeRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(r *mailgatev1.SendMailRequest)
		field  string // a field violation that must be reported
		kind   mailerr.Kind
	}{
		{"no from", func(r *mailgatev1.SendMailRequest) { r.From = nil }, "from", mailerr.Invalid},
		{"empty from", func(r *mailgatev1.SendMailRequest) { r.From = addr("") }, "from.address", mailerr.Invalid},
		{"from with display name inside", func(r *mailgatev1.SendMailRequest) { r.From = addr("App <app@example.com>") }, "from.address", mailerr.Invalid},
		{"from with CRLF", func(r *mailgatev1.SendMailRequest) { r.From = addr("app@example.com\r\nBcc: x@evil.com") }, "from.address", mailerr.Invalid},
		{"name with LF", func(r *mailgatev1.SendMailRequest) { r.From.Name = "App\nBcc: x@evil.com" }, "from.name", mailerr.Invalid},
		{"bad to", func(r *mailgatev1.SendMailRequest) { r.To = append(r.To, addr("not-an-address")) }, "to[1].address", mailerr.Invalid},
		{"bad bcc", func(r *mailgatev1.SendMailRequest) { r.Bcc = []*mailgatev1.Address{addr("@x")} }, "bcc[0].address", mailerr.Invalid},
		{"bad replyTo", func(r *mailgatev1.SendMailRequest) { r.ReplyTo = []*mailgatev1.Address{addr("a@")} }, "replyTo[0].address", mailerr.Invalid},
		{"no recipients", func(r *mailgatev1.SendMailRequest) { r.To = nil }, "to", mailerr.Invalid},
		{"too many recipients", func(r *mailgatev1.SendMailRequest) {
			for i := range 6 {
				r.Cc = append(r.Cc, addr(fmt.Sprintf("u%d@example.com", i)))
			}
		}, "to", mailerr.Invalid},
		{"subject CRLF", func(r *mailgatev1.SendMailRequest) { r.Subject = "a\r\nBcc: x@evil.com" }, "subject", mailerr.Invalid},
		{"no body", func(r *mailgatev1.SendMailRequest) { r.Text = "" }, "text", mailerr.Invalid},
		{"NUL in html", func(r *mailgatev1.SendMailRequest) { r.Html = "a\x00b" }, "html", mailerr.Invalid},
		{"non-X header", func(r *mailgatev1.SendMailRequest) { r.Headers = map[string]string{"Received": "x"} }, "headers.Received", mailerr.Invalid},
		{"header name with colon", func(r *mailgatev1.SendMailRequest) { r.Headers = map[string]string{"X-A:b": "x"} }, "headers.X-A:b", mailerr.Invalid},
		{"header value CRLF", func(r *mailgatev1.SendMailRequest) { r.Headers = map[string]string{"X-A": "1\r\nBcc: x@evil.com"} }, "headers.X-A", mailerr.Invalid},
		{"duplicate header", func(r *mailgatev1.SendMailRequest) { r.Headers = map[string]string{"X-A": "1", "x-a": "2"} }, "headers.x-a", mailerr.Invalid},
		{"attachment without name", func(r *mailgatev1.SendMailRequest) {
			r.Attachments = []*mailgatev1.Attachment{{Content: []byte("x")}}
		}, "attachments[0].filename", mailerr.Invalid},
		{"attachment path", func(r *mailgatev1.SendMailRequest) {
			r.Attachments = []*mailgatev1.Attachment{{Filename: "../etc/passwd"}}
		}, "attachments[0].filename", mailerr.Invalid},
		{"attachment bad type", func(r *mailgatev1.SendMailRequest) {
			r.Attachments = []*mailgatev1.Attachment{{Filename: "a.bin", ContentType: "nonsense"}}
		}, "attachments[0].contentType", mailerr.Invalid},
		{"attachment multipart type", func(r *mailgatev1.SendMailRequest) {
			r.Attachments = []*mailgatev1.Attachment{{Filename: "a.bin", ContentType: "multipart/mixed"}}
		}, "attachments[0].contentType", mailerr.Invalid},
		{"attachment message type", func(r *mailgatev1.SendMailRequest) {
			r.Attachments = []*mailgatev1.Attachment{{Filename: "a.eml", ContentType: "message/rfc822"}}
		}, "attachments[0].contentType", mailerr.Invalid},
		{"attachment type with a name parameter", func(r *mailgatev1.SendMailRequest) {
			r.Attachments = []*mailgatev1.Attachment{{Filename: "a.pdf", ContentType: "application/pdf; name=x.exe"}}
		}, "attachments[0].contentType", mailerr.Invalid},
		{"attachment type with a stray semicolon", func(r *mailgatev1.SendMailRequest) {
			r.Attachments = []*mailgatev1.Attachment{{Filename: "a.pdf", ContentType: "application/pdf;"}}
		}, "attachments[0].contentType", mailerr.Invalid},
		{"duplicate content id", func(r *mailgatev1.SendMailRequest) {
			r.Attachments = []*mailgatev1.Attachment{{Filename: "a.png", ContentId: "logo"}, {Filename: "b.png", ContentId: "<logo>"}}
		}, "attachments[1].contentId", mailerr.Invalid},
		{"bad tag", func(r *mailgatev1.SendMailRequest) { r.Tags = map[string]string{"has space": "x"} }, "tags", mailerr.Invalid},
		{"bad idempotency key", func(r *mailgatev1.SendMailRequest) { r.IdempotencyKey = "é" }, "idempotencyKey", mailerr.Invalid},
		{"too large", func(r *mailgatev1.SendMailRequest) {
			r.Attachments = []*mailgatev1.Attachment{{Filename: "big.bin", Content: make([]byte, 800<<10)}}
		}, "attachments", mailerr.TooLarge},
		{"raw with subject", func(r *mailgatev1.SendMailRequest) { r.RawMime = []byte(rawMessage) }, "subject", mailerr.Invalid},
		{"raw without From", func(r *mailgatev1.SendMailRequest) {
			*r = mailgatev1.SendMailRequest{RawMime: []byte("To: a@example.com\r\n\r\nx")}
		}, "rawMime", mailerr.Invalid},
		{"raw garbage", func(r *mailgatev1.SendMailRequest) {
			*r = mailgatev1.SendMailRequest{RawMime: []byte("this is not a header\r\n\r\n")}
		}, "rawMime", mailerr.Invalid},
		{"raw without recipients", func(r *mailgatev1.SendMailRequest) {
			*r = mailgatev1.SendMailRequest{RawMime: []byte("From: a@example.com\r\n\r\nx")}
		}, "to", mailerr.Invalid},
		// Addresses: RFC 5321's limits and host-name rules, no Unicode folding.
		{"65-character local part", func(r *mailgatev1.SendMailRequest) { r.To[0] = addr(strings.Repeat("a", 65) + "@example.com") }, "to[0].address", mailerr.Invalid},
		{"64-character label", func(r *mailgatev1.SendMailRequest) { r.To[0] = addr("a@" + strings.Repeat("b", 64) + ".com") }, "to[0].address", mailerr.Invalid},
		{"underscore in a domain", func(r *mailgatev1.SendMailRequest) { r.Cc = []*mailgatev1.Address{addr("a@my_host.example.com")} }, "cc[0].address", mailerr.Invalid},
		{"long s in the from domain", func(r *mailgatev1.SendMailRequest) { r.From = addr("billing@contoſo.com") }, "from.address", mailerr.Invalid},
		{"kelvin sign in the from domain", func(r *mailgatev1.SendMailRequest) { r.From = addr("x@\u212Ab.contoso.com") }, "from.address", mailerr.Invalid},
		{"non-ASCII local part", func(r *mailgatev1.SendMailRequest) { r.To[0] = addr("jörg@example.com") }, "to[0].address", mailerr.Invalid},
		{"domain literal", func(r *mailgatev1.SendMailRequest) { r.To[0] = addr("a@[192.0.2.1]") }, "to[0].address", mailerr.Invalid},
		{"raw From with long s", func(r *mailgatev1.SendMailRequest) {
			*r = mailgatev1.SendMailRequest{RawMime: []byte("From: billing@contoſo.com\r\nTo: a@example.com\r\n\r\nx")}
		}, "rawMime", mailerr.Invalid},
		{"raw To with underscore, no envelope", func(r *mailgatev1.SendMailRequest) {
			*r = mailgatev1.SendMailRequest{RawMime: []byte("From: a@example.com\r\nTo: b@my_host.example.com\r\n\r\nx")}
		}, "rawMime", mailerr.Invalid},
		// Raw messages whose structural fields are ambiguous, or that the RFCs forbid.
		{"raw with two From", func(r *mailgatev1.SendMailRequest) {
			*r = mailgatev1.SendMailRequest{RawMime: []byte("From : evil@x.com\r\nFrom: billing@example.com\r\nTo: a@example.com\r\n\r\nx")}
		}, "rawMime", mailerr.Invalid},
		{"raw with spaced bcc", func(r *mailgatev1.SendMailRequest) {
			*r = mailgatev1.SendMailRequest{RawMime: []byte("From: a@example.com\r\nTo: b@example.com\r\nbcc : secret@example.com\r\n\r\nx")}
		}, "rawMime", mailerr.Invalid},
		{"raw From group", func(r *mailgatev1.SendMailRequest) {
			*r = mailgatev1.SendMailRequest{RawMime: []byte("From: team: a@example.com;\r\nTo: b@example.com\r\n\r\nx")}
		}, "rawMime", mailerr.Invalid},
		{"raw NUL in body", func(r *mailgatev1.SendMailRequest) {
			*r = mailgatev1.SendMailRequest{RawMime: []byte("From: a@example.com\r\nTo: b@example.com\r\n\r\nx\x00y")}
		}, "rawMime", mailerr.Invalid},
		{"raw 100 KB header line", func(r *mailgatev1.SendMailRequest) {
			*r = mailgatev1.SendMailRequest{RawMime: []byte("From: a@example.com\r\nTo: b@example.com\r\nX-A: " + strings.Repeat("a", 100<<10) + "\r\n\r\nx")}
		}, "rawMime", mailerr.Invalid},
		{"raw too large", func(r *mailgatev1.SendMailRequest) {
			*r = mailgatev1.SendMailRequest{RawMime: []byte(rawMessage + strings.Repeat("x", 1<<20))}
		}, "rawMime", mailerr.TooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := validRequest()
			tt.modify(req)
			msg, err := normalize(req, "01jx0000000000000000000000", time.Now(), testLimits)
			if err == nil {
				t.Fatalf("accepted: %+v", msg)
			}
			var e *mailerr.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not classified", err)
			}
			if e.Kind != tt.kind {
				t.Errorf("kind %v, want %v (%v)", e.Kind, tt.kind, err)
			}
			var fields []string
			for _, f := range e.Fields {
				fields = append(fields, f.Field)
				if f.Description == "" {
					t.Errorf("field %s has no description", f.Field)
				}
			}
			if !slices.Contains(fields, tt.field) {
				t.Errorf("violations %v, want one for %s (%v)", fields, tt.field, err)
			}
		})
	}
}

func TestNormalizeReportsAllViolations(t *testing.T) {
	t.Parallel()
	req := &mailgatev1.SendMailRequest{From: addr("bad"), Subject: "a\nb"}
	_, err := normalize(req, "01jx0000000000000000000000", time.Now(), testLimits)
	var e *mailerr.Error
	if !errors.As(err, &e) || len(e.Fields) != 4 {
		t.Fatalf("want 4 violations (from, to, subject, text), got %v", err)
	}
}

func TestNormalizeStructured(t *testing.T) {
	t.Parallel()
	req := validRequest()
	req.Cc = []*mailgatev1.Address{addr("Carol@Example.com")}
	req.Bcc = []*mailgatev1.Address{addr("bob@EXAMPLE.com"), addr("dave@example.com")}
	req.Headers = map[string]string{"X-B": "2", "X-A": "1"}
	req.Attachments = []*mailgatev1.Attachment{{Filename: "report.pdf", Content: []byte("%PDF")}, {Filename: "logo.png", ContentId: "<logo>"}}
	req.SaveToSentItems = proto.Bool(false)
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	msg, err := normalize(req, "01jx0000000000000000000000", now, testLimits)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"bob@example.com", "Carol@Example.com", "dave@example.com"}; !slices.Equal(msg.Recipients, want) {
		t.Errorf("recipients %v, want %v (deduplicated case-insensitively, in to/cc/bcc order)", msg.Recipients, want)
	}
	if msg.MessageID != "<01jx0000000000000000000000@example.com>" {
		t.Errorf("message id %q", msg.MessageID)
	}
	if msg.EnvelopeFrom != "app@example.com" || msg.From.Name != "App" {
		t.Errorf("from %+v / envelope %q", msg.From, msg.EnvelopeFrom)
	}
	c := msg.Content
	if c.Headers[0].Name != "X-A" || c.Headers[1].Name != "X-B" {
		t.Errorf("headers not in a stable order: %+v", c.Headers)
	}
	if c.Attachments[0].ContentType != "application/pdf" || c.Attachments[1].ContentID != "logo" {
		t.Errorf("attachments %+v: want the type guessed from the name and the cid unbracketed", c.Attachments)
	}
	if msg.SaveToSentItems == nil || *msg.SaveToSentItems {
		t.Errorf("saveToSentItems lost: %v", msg.SaveToSentItems)
	}
}

func TestNormalizeRaw(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	t.Run("recipients from header", func(t *testing.T) {
		t.Parallel()
		msg, err := normalize(&mailgatev1.SendMailRequest{RawMime: []byte(rawMessage)}, "01jx0000000000000000000000", now, testLimits)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"bob@example.com", "carol@example.com"}; !slices.Equal(msg.Recipients, want) {
			t.Errorf("recipients %v, want %v", msg.Recipients, want)
		}
		if msg.From.Address != "scanner@example.com" || msg.EnvelopeFrom != "scanner@example.com" {
			t.Errorf("from %+v envelope %q", msg.From, msg.EnvelopeFrom)
		}
		var b strings.Builder
		msg.WriteTo(&b)
		want := "Message-ID: <01jx0000000000000000000000@example.com>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n" + rawMessage
		if b.String() != want {
			t.Errorf("written:\n%q\nwant:\n%q", b.String(), want)
		}
	})
	t.Run("envelope overrides header", func(t *testing.T) {
		t.Parallel()
		req := &mailgatev1.SendMailRequest{
			RawMime: []byte(rawMessage),
			From:    addr("bounces@example.com"),
			Bcc:     []*mailgatev1.Address{addr("hidden@example.com")},
		}
		msg, err := normalize(req, "01jx0000000000000000000000", now, testLimits)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(msg.Recipients, []string{"hidden@example.com"}) || msg.EnvelopeFrom != "bounces@example.com" {
			t.Errorf("recipients %v envelope from %q", msg.Recipients, msg.EnvelopeFrom)
		}
	})
	t.Run("bodies with 8-bit bytes and long lines", func(t *testing.T) {
		t.Parallel()
		raw := "From: a@example.com\r\nTo: b@example.com\r\n\r\nGr\xfc\xdfe\r\n" + strings.Repeat("z", 2000) + "\r\n"
		if _, err := normalize(&mailgatev1.SendMailRequest{RawMime: []byte(raw)}, "01jx0000000000000000000000", now, testLimits); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("internationalised domains travel as A-labels", func(t *testing.T) {
		t.Parallel()
		raw := "From: scan@exämple.com\r\nTo: b@münchen.de\r\n\r\nx\r\n"
		msg, err := normalize(&mailgatev1.SendMailRequest{RawMime: []byte(raw)}, "01jx0000000000000000000000", now, testLimits)
		if err != nil {
			t.Fatal(err)
		}
		if msg.EnvelopeFrom != "scan@xn--exmple-cua.com" || !slices.Equal(msg.Recipients, []string{"b@xn--mnchen-3ya.de"}) {
			t.Errorf("envelope %q → %v", msg.EnvelopeFrom, msg.Recipients)
		}
		req := validRequest()
		req.To[0] = addr("bob@exämple.com")
		msg, err = normalize(req, "01jx0000000000000000000000", now, testLimits)
		if err != nil || !slices.Equal(msg.Recipients, []string{"bob@xn--exmple-cua.com"}) {
			t.Errorf("structured: %v %v", msg, err)
		}
	})
	t.Run("keeps existing Message-ID", func(t *testing.T) {
		t.Parallel()
		raw := "Message-ID: <abc@device>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n" + rawMessage
		msg, err := normalize(&mailgatev1.SendMailRequest{RawMime: []byte(raw)}, "01jx0000000000000000000000", now, testLimits)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		msg.WriteTo(&b)
		if msg.MessageID != "<abc@device>" || b.String() != raw {
			t.Errorf("message id %q; bytes changed: %q", msg.MessageID, b.String())
		}
	})
}

// To, Cc and Bcc fields mailgate does not use need not parse when the request gives the
// recipients; without them, the error says to give them.
func TestNormalizeRawRecipientForms(t *testing.T) {
	t.Parallel()
	for _, to := range []string{
		"To: Mueller, Hans <bob@example.com>\r\n",
		"To: bob@example.com;carol@example.com\r\n",
		"To: undisclosed recipients\r\n",
		"To: Hans M\xfcller <bob@example.com>\r\nCc: Mueller, Hans <carol@example.com>\r\n",
		"To: bob@example.com\r\nBcc: secret;other\r\n",
	} {
		raw := []byte("From: scanner@example.com\r\n" + to + "Subject: scan\r\n\r\nbody\r\n")
		for _, env := range []*mailgatev1.SendMailRequest{
			{To: []*mailgatev1.Address{addr("bob@example.com")}},
			{Cc: []*mailgatev1.Address{addr("bob@example.com")}},
			{Bcc: []*mailgatev1.Address{addr("bob@example.com")}},
		} {
			req := proto.Clone(env).(*mailgatev1.SendMailRequest)
			req.RawMime = raw
			msg, err := normalize(req, "01jx0000000000000000000000", testNow, testLimits)
			if err != nil {
				t.Errorf("%q with an envelope: %v", to, err)
				continue
			}
			if !slices.Equal(msg.Recipients, []string{"bob@example.com"}) {
				t.Errorf("%q: recipients %v, want the envelope", to, msg.Recipients)
			}
		}
	}
	for _, to := range []string{
		"To: Mueller, Hans <bob@example.com>\r\n",
		"To: bob@example.com;carol@example.com\r\n",
		"To: undisclosed recipients\r\n",
		"To: bob@example.com\r\nBcc: secret;other\r\n",
		"To: b\xf6b@example.com\r\n",
		"To: bob@my_host.example.com\r\n",
	} {
		raw := []byte("From: scanner@example.com\r\n" + to + "Subject: scan\r\n\r\nbody\r\n")
		_, err := normalize(&mailgatev1.SendMailRequest{RawMime: raw}, "01jx0000000000000000000000", testNow, testLimits)
		var e *mailerr.Error
		if !errors.As(err, &e) || e.Kind != mailerr.Invalid || len(e.Fields) == 0 {
			t.Errorf("%q without an envelope: %v, want a field violation", to, err)
			continue
		}
		if f := e.Fields[0]; f.Field != "rawMime" || !strings.Contains(f.Description, "give them in to, cc or bcc") && !strings.Contains(f.Description, "give the recipients in to, cc or bcc") {
			t.Errorf("%q: %s: %s, want rawMime and a hint to give to, cc or bcc", to, f.Field, f.Description)
		}
	}
}

// What mailgate changes in a raw message, over the API as through the shim.
func TestNormalizeRawRewrites(t *testing.T) {
	t.Parallel()
	const date = "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
	tests := []struct {
		name, raw, wantID string
		want              string // the written message
	}{
		{"bracketless Message-ID", "Message-ID: 20261203.0001@mfp\r\n" + date + rawMessage, "<20261203.0001@mfp>",
			"Message-ID: <20261203.0001@mfp>\r\n" + date + rawMessage},
		{"Message-ID with spaces", "Message-ID: scan 3\r\n" + date + rawMessage, "<01jx0000000000000000000000@example.com>",
			"Message-ID: <01jx0000000000000000000000@example.com>\r\n" + date + rawMessage},
		{"LF only", strings.ReplaceAll("Message-ID: <a@b>\r\n"+date+rawMessage, "\r\n", "\n"), "<a@b>",
			"Message-ID: <a@b>\r\n" + date + rawMessage},
		{"Latin-1 From name", "Message-ID: <a@b>\r\n" + date + "From: J\xf6rg <scanner@example.com>\r\nTo: bob@example.com\r\n\r\nx\r\n", "<a@b>",
			"Message-ID: <a@b>\r\n" + date + "From: =?utf-8?q?J=C3=B6rg?=\r\n <scanner@example.com>\r\nTo: bob@example.com\r\n\r\nx\r\n"},
		{"IDN From", date + "From: scan@exämple.com\r\nTo: bob@example.com\r\n\r\nx\r\n", "<01jx0000000000000000000000@xn--exmple-cua.com>",
			"Message-ID: <01jx0000000000000000000000@xn--exmple-cua.com>\r\n" + date + "From: scan@exämple.com\r\nTo: bob@example.com\r\n\r\nx\r\n"},
	}
	for _, tt := range tests {
		msg, err := normalize(&mailgatev1.SendMailRequest{RawMime: []byte(tt.raw)}, "01jx0000000000000000000000", testNow, testLimits)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		var b strings.Builder
		msg.WriteTo(&b)
		if msg.MessageID != tt.wantID || b.String() != tt.want {
			t.Errorf("%s: Message-ID %q, wrote\n%q\nwant %q,\n%q", tt.name, msg.MessageID, b.String(), tt.wantID, tt.want)
		}
		if !utf8.ValidString(msg.From.Name) {
			t.Errorf("%s: From name %q is not UTF-8", tt.name, msg.From.Name)
		}
		if _, err := proto.Marshal(&mailgatev1.SendMailResponse{MessageId: msg.MessageID}); err != nil {
			t.Errorf("%s: the response does not encode: %v", tt.name, err)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	f.Add("app@example.com", "bob@example.com", "subject", "X-A", "v", []byte(nil))
	f.Add("", "", "", "", "", []byte(rawMessage))
	f.Add("app@example.com", "bob@example.com", strings.Repeat("é=", 300), "X-A", "ü", []byte(nil))
	f.Fuzz(func(t *testing.T, from, to, subject, hname, hvalue string, raw []byte) {
		req := &mailgatev1.SendMailRequest{
			From: addr(from), To: []*mailgatev1.Address{addr(to)}, Subject: subject, Text: "x",
			Headers: map[string]string{hname: hvalue}, RawMime: raw,
		}
		if raw == nil {
			req.Html = subject + hvalue // bodies with any bytes, for the size bound
		}
		msg, err := normalize(req, "01jx0000000000000000000000", time.Now(), testLimits)
		if err != nil {
			var e *mailerr.Error
			if !errors.As(err, &e) || (e.Kind != mailerr.Invalid && e.Kind != mailerr.TooLarge) {
				t.Fatalf("unclassified or wrong kind: %v", err)
			}
			return
		}
		// Whatever was accepted must compose without injecting header lines.
		var b strings.Builder
		if _, err := msg.WriteTo(&b); err != nil {
			t.Fatalf("accepted message does not compose: %v", err)
		}
		if msg.Content != nil && strings.Contains(strings.ToLower(b.String()), "\nbcc:") {
			t.Fatalf("a Bcc header was injected:\n%s", b.String())
		}
		if msg.Content != nil && msg.Content.EstimatedSize() < int64(b.Len()) {
			t.Fatalf("EstimatedSize %d < actual %d: the size limit could be passed", msg.Content.EstimatedSize(), b.Len())
		}
	})
}
