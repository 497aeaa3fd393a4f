package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/mailerr"
)

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// checkSent checks a SendMail response for a message written by the outbox backend.
func checkSent(t testing.TB, resp *mailgatev1.SendMailResponse, domain, route string, accepted []string) {
	t.Helper()
	id := resp.GetId()
	if len(id) != 26 {
		t.Errorf("id %q: %d characters, want 26", id, len(id))
	}
	if want := "<" + id + "@" + domain + ">"; resp.GetMessageId() != want {
		t.Errorf("messageId %q, want %q", resp.GetMessageId(), want)
	}
	if resp.GetRoute() != route || resp.GetBackend() != "outbox" {
		t.Errorf("route %q backend %q, want %s and outbox", resp.GetRoute(), resp.GetBackend(), route)
	}
	if resp.GetStatus() != mailgatev1.Status_SENT {
		t.Errorf("status %s, want SENT", resp.GetStatus())
	}
	if resp.GetReplayed() {
		t.Errorf("replayed is true for a first request")
	}
	if !slices.Equal(resp.GetAcceptedRecipients(), accepted) {
		t.Errorf("acceptedRecipients %q, want %q", resp.GetAcceptedRecipients(), accepted)
	}
}

// Markers that must reach the .eml files but never the log.
const (
	textMarker    = "body-marker-7f3a"
	subjectMarker = "subject-marker-91c2"
)

// TestSend sends well-formed messages over gRPC and REST and reads back what the file
// backend wrote.
func TestSend(t *testing.T) {
	t.Parallel()
	p := serve(t)
	client := dial(t, p)
	app, other := keys["app"].Key, keys["other"].Key

	t.Run("group", func(t *testing.T) {
		t.Run("grpc structured message", func(t *testing.T) {
			t.Parallel()
			pdf := randomBytes(t, 100<<10)
			png := randomBytes(t, 3<<10)
			text := "Hello Alice,\n\nThe report is attached: 100 € ≠ 100 $, a=b, 50% done.\n" +
				strings.Repeat("A long line that quoted-printable has to wrap. ", 8) + "\n" +
				"trailing spaces   \n.\nFrom the start of a line\n-- \n" + textMarker + "\n"
			html := `<p>Hello <b>Alice</b> — ümlaut</p><img src="cid:logo.1@e2e">`
			subject := "Rapport trimestriel — Überblick ✓ 日本語 " + subjectMarker
			req := &mailgatev1.SendMailRequest{
				From: &mailgatev1.Address{Address: "app@example.com", Name: "Ünïcode Sender, Inc."},
				To: []*mailgatev1.Address{
					{Address: "alice@example.net", Name: "Alice Ärger"},
					{Address: "bob@example.org"},
				},
				Cc:      []*mailgatev1.Address{{Address: "carol@example.net", Name: "Carol"}},
				Bcc:     []*mailgatev1.Address{{Address: "hidden-grpc@example.org", Name: "Hidden"}},
				Subject: subject,
				Text:    text,
				Html:    html,
				Attachments: []*mailgatev1.Attachment{
					{Filename: "report.pdf", ContentType: "application/pdf", Content: pdf},
					{Filename: "logo.png", ContentType: "image/png", Content: png, ContentId: "logo.1@e2e"},
				},
				Headers: map[string]string{"X-Ticket": "T-1001"},
				Tags:    map[string]string{"flow": "grpc"},
			}
			resp, err := client.SendMail(rpcContext(t, bearer(app)), req)
			if err != nil {
				t.Fatalf("SendMail: %v", err)
			}
			checkSent(t, resp, "example.com", "files",
				[]string{"alice@example.net", "bob@example.org", "carol@example.net", "hidden-grpc@example.org"})
			checkEML(t, readEML(t, p, resp.GetId()), wantEML{
				MessageID: resp.GetMessageId(),
				From:      mail.Address{Name: "Ünïcode Sender, Inc.", Address: "app@example.com"},
				To:        []mail.Address{{Name: "Alice Ärger", Address: "alice@example.net"}, {Address: "bob@example.org"}},
				Cc:        []mail.Address{{Name: "Carol", Address: "carol@example.net"}},
				Bcc:       []string{"hidden-grpc@example.org"},
				Subject:   subject,
				Headers:   map[string]string{"X-Ticket": "T-1001"},
				Text:      text,
				HTML:      html,
				Attachments: []wantAttachment{
					{Filename: "report.pdf", ContentType: "application/pdf", Content: pdf},
					{Filename: "logo.png", ContentType: "image/png", ContentID: "logo.1@e2e", Content: png},
				},
			})

			// GetMessage over gRPC: the sender's key reads the record, another key cannot.
			rec, err := client.GetMessage(rpcContext(t, bearer(app)), &mailgatev1.GetMessageRequest{Id: resp.GetId()})
			if err != nil {
				t.Fatalf("GetMessage: %v", err)
			}
			if rec.GetMessageId() != resp.GetMessageId() || rec.GetStatus() != mailgatev1.Status_SENT ||
				rec.GetFrom() != "app@example.com" || rec.GetTags()["flow"] != "grpc" {
				t.Errorf("GetMessage record %v does not match the send %v", rec, resp)
			}
			_, err = client.GetMessage(rpcContext(t, bearer(other)), &mailgatev1.GetMessageRequest{Id: resp.GetId()})
			checkGRPCError(t, err, wantError{code: codes.NotFound, reason: "NOT_FOUND"})
		})

		t.Run("rest structured message and GetMessage", func(t *testing.T) {
			t.Parallel()
			data := randomBytes(t, 50<<10)
			text := "Grüße aus REST\n" + textMarker + "\n"
			html := "<h1>Grüße</h1>"
			body := mustJSON(t, map[string]any{
				"from": map[string]string{"address": "app@example.com", "name": "App"},
				"to": []map[string]string{
					{"address": "r1@example.net", "name": "R One"},
					{"address": "r2@example.net"},
				},
				// The same mailbox as to[0], spelled otherwise: one envelope recipient.
				"cc":          []map[string]string{{"address": "R1@EXAMPLE.NET"}},
				"bcc":         []map[string]string{{"address": "hidden-rest@example.org"}},
				"subject":     "Grüße aus REST " + subjectMarker,
				"text":        text,
				"html":        html,
				"attachments": []map[string]string{{"filename": "Überblick 2026.bin", "contentType": "application/octet-stream", "content": base64.StdEncoding.EncodeToString(data)}},
				"headers":     map[string]string{"X-Ticket": "T-2002"},
				"tags":        map[string]string{"ticket": "T-2002", "env": "e2e"},
			})
			resp := sendOK(t, p, xAPIKey(app), body)
			checkSent(t, resp, "example.com", "files", []string{"r1@example.net", "r2@example.net", "hidden-rest@example.org"})
			checkEML(t, readEML(t, p, resp.GetId()), wantEML{
				MessageID: resp.GetMessageId(),
				From:      mail.Address{Name: "App", Address: "app@example.com"},
				To:        []mail.Address{{Name: "R One", Address: "r1@example.net"}, {Address: "r2@example.net"}},
				Cc:        []mail.Address{{Address: "R1@EXAMPLE.NET"}},
				Bcc:       []string{"hidden-rest@example.org"},
				Subject:   "Grüße aus REST " + subjectMarker,
				Headers:   map[string]string{"X-Ticket": "T-2002"},
				Text:      text,
				HTML:      html,
				Attachments: []wantAttachment{
					{Filename: "Überblick 2026.bin", ContentType: "application/octet-stream", Content: data},
				},
			})

			r := rest(t, http.MethodGet, p.baseURL+"/v1/messages/"+resp.GetId(), xAPIKey(app), nil)
			if r.Status != http.StatusOK {
				t.Fatalf("GET /v1/messages/%s: HTTP %d: %s", resp.GetId(), r.Status, r.Body)
			}
			rec := new(mailgatev1.GetMessageResponse)
			if err := protojson.Unmarshal(r.Body, rec); err != nil {
				t.Fatalf("not a GetMessageResponse: %v: %s", err, r.Body)
			}
			want := &mailgatev1.GetMessageResponse{
				Id: resp.GetId(), MessageId: resp.GetMessageId(), Route: "files", Backend: "outbox",
				Status: mailgatev1.Status_SENT, AcceptedRecipients: resp.GetAcceptedRecipients(),
				From: "app@example.com", Tags: map[string]string{"ticket": "T-2002", "env": "e2e"},
				AcceptTime: rec.GetAcceptTime(), Delivery: mailgatev1.SendMailRequest_SYNC,
			}
			if !proto.Equal(rec, want) {
				t.Errorf("GetMessage:\n got %v\nwant %v", rec, want)
			}
			if at := rec.GetAcceptTime().AsTime(); time.Since(at) > time.Minute || time.Since(at) < -time.Minute {
				t.Errorf("acceptTime %s is not about now", at)
			}
			if !strings.Contains(string(r.Body), `"status":"SENT"`) {
				t.Errorf("REST record does not spell the status as \"SENT\": %s", r.Body)
			}

			r = rest(t, http.MethodGet, p.baseURL+"/v1/messages/"+resp.GetId(), xAPIKey(other), nil)
			checkRESTError(t, r, wantError{http: http.StatusNotFound, code: codes.NotFound, reason: "NOT_FOUND"})
		})

		t.Run("rest rawMime", func(t *testing.T) {
			t.Parallel()
			raw := []byte("From: App <app@example.com>\r\n" +
				"To: Raw One <raw1@example.net>\r\n" +
				"Cc: raw2@example.net\r\n" +
				"Subject: =?utf-8?q?raw_=C3=BCber?=\r\n" +
				"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\n" +
				"MIME-Version: 1.0\r\n" +
				"Content-Type: text/plain; charset=utf-8\r\n" +
				"Content-Transfer-Encoding: 8bit\r\n" +
				"X-Raw: kept as is\r\n" +
				"\r\n" +
				"Raw body über\r\n" +
				".a line starting with a dot\r\n" +
				"no newline at the end")
			resp := sendOK(t, p, xAPIKey(app), mustJSON(t, map[string]any{"rawMime": raw}))
			checkSent(t, resp, "example.com", "files", []string{"raw1@example.net", "raw2@example.net"})
			got := readEML(t, p, resp.GetId())
			prefix := "Message-ID: " + resp.GetMessageId() + "\r\n"
			if !bytes.HasPrefix(got, []byte("Message-ID: ")) || !bytes.Equal(got, append([]byte(prefix), raw...)) {
				t.Errorf(".eml is not the Message-ID field then the bytes sent:\n got %q\nwant %q", got, prefix+string(raw))
			}

			// With an envelope, the envelope decides the recipients, as in SMTP.
			resp = sendOK(t, p, xAPIKey(app), mustJSON(t, map[string]any{
				"rawMime": raw,
				"bcc":     []map[string]string{{"address": "raw-bcc@example.org"}},
			}))
			checkSent(t, resp, "example.com", "files", []string{"raw-bcc@example.org"})
			if got := readEML(t, p, resp.GetId()); !bytes.HasSuffix(got, raw) || bytes.Contains(got, []byte("raw-bcc@")) {
				t.Errorf("raw message with an envelope Bcc was changed: %q", got)
			}
		})

		t.Run("notify route", func(t *testing.T) {
			t.Parallel()
			resp, err := client.SendMail(rpcContext(t, xAPIKey(app)), &mailgatev1.SendMailRequest{
				From:    &mailgatev1.Address{Address: "someone@notify.example.com"},
				To:      []*mailgatev1.Address{{Address: "n@example.net"}},
				Subject: "notify",
				Text:    "notify " + textMarker,
			})
			if err != nil {
				t.Fatalf("SendMail: %v", err)
			}
			checkSent(t, resp, "notify.example.com", "notify", []string{"n@example.net"})
			checkEML(t, readEML(t, p, resp.GetId()), wantEML{
				MessageID: resp.GetMessageId(),
				From:      mail.Address{Address: "someone@notify.example.com"},
				To:        []mail.Address{{Address: "n@example.net"}},
				Subject:   "notify",
				Text:      "notify " + textMarker,
			})
		})

		t.Run("rest proto field names", func(t *testing.T) {
			t.Parallel()
			// docs/api.md#calling-the-api: lowerCamelCase JSON, proto names accepted on input.
			resp := sendOK(t, p, xAPIKey(app), mustJSON(t, map[string]any{
				"from":        map[string]string{"address": "app@example.com"},
				"to":          []map[string]string{{"address": "names@example.net"}},
				"reply_to":    []map[string]string{{"address": "replies@example.com"}},
				"subject":     "proto names",
				"html":        `<img src="cid:pic">`,
				"attachments": []map[string]string{{"filename": "pic.gif", "content_type": "image/gif", "content_id": "pic", "content": "R0lGODlh"}},
			}))
			checkSent(t, resp, "example.com", "files", []string{"names@example.net"})
			raw := readEML(t, p, resp.GetId())
			checkEML(t, raw, wantEML{
				MessageID: resp.GetMessageId(),
				From:      mail.Address{Address: "app@example.com"},
				To:        []mail.Address{{Address: "names@example.net"}},
				Subject:   "proto names",
				HTML:      `<img src="cid:pic">`,
				Attachments: []wantAttachment{
					{Filename: "pic.gif", ContentType: "image/gif", ContentID: "pic", Content: []byte("GIF89a")},
				},
			})
			msg, err := mail.ReadMessage(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			if rt, err := msg.Header.AddressList("Reply-To"); err != nil || len(rt) != 1 || rt[0].Address != "replies@example.com" {
				t.Errorf("Reply-To %q (%v), want replies@example.com", msg.Header.Get("Reply-To"), err)
			}
		})

		t.Run("probes", func(t *testing.T) {
			t.Parallel()
			for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready", "/openapi.json": `"swagger"`} {
				r := rest(t, http.MethodGet, p.baseURL+path, auth{}, nil)
				if r.Status != http.StatusOK || !strings.Contains(string(r.Body), want) {
					t.Errorf("GET %s: HTTP %d %.80q, want 200 with %s", path, r.Status, r.Body, want)
				}
			}
			conn := dialConn(t, p)
			h, err := healthpb.NewHealthClient(conn).Check(rpcContext(t, auth{}), &healthpb.HealthCheckRequest{})
			if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("gRPC health: %v %v, want SERVING", h, err)
			}
		})

		t.Run("rest Authorization Bearer", func(t *testing.T) {
			t.Parallel()
			resp := sendOK(t, p, bearer(app), mustJSON(t, map[string]any{
				"from":    map[string]string{"address": "app@example.com"},
				"to":      []map[string]string{{"address": "bearer@example.net"}},
				"subject": "bearer",
				"html":    "<p>html only</p>",
			}))
			checkSent(t, resp, "example.com", "files", []string{"bearer@example.net"})
			checkEML(t, readEML(t, p, resp.GetId()), wantEML{
				MessageID: resp.GetMessageId(),
				From:      mail.Address{Address: "app@example.com"},
				To:        []mail.Address{{Address: "bearer@example.net"}},
				Subject:   "bearer",
				HTML:      "<p>html only</p>",
			})
		})
	})

	p.stop(t)
	lines := logLines(t, p.logs())
	accepted := 0
	for _, l := range lines {
		if l["msg"] == "message accepted" {
			accepted++
		}
	}
	if accepted != 7 {
		t.Errorf("%d \"message accepted\" log lines, want 7", accepted)
	}
	if len(lines) == 0 || lines[len(lines)-1]["msg"] != "mailgate stopped" {
		t.Errorf("the log does not end with \"mailgate stopped\"")
	}
	// docs/operations.md#logs: no secret or message body is ever logged.
	for _, secret := range []string{app, other, textMarker, subjectMarker} {
		if strings.Contains(p.logs(), secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
}

// baseRequest is a valid message from app@example.com; cases spoil one thing in it.
func baseRequest(from string) *mailgatev1.SendMailRequest {
	return &mailgatev1.SendMailRequest{
		From:    &mailgatev1.Address{Address: from},
		To:      []*mailgatev1.Address{{Address: "rcpt@example.net"}},
		Subject: "hello",
		Text:    "body",
	}
}

func with(from string, change func(*mailgatev1.SendMailRequest)) *mailgatev1.SendMailRequest {
	r := baseRequest(from)
	if change != nil {
		change(r)
	}
	return r
}

func manyRecipients(n int) []*mailgatev1.Address {
	out := make([]*mailgatev1.Address, n)
	for i := range out {
		out[i] = &mailgatev1.Address{Address: fmt.Sprintf("r%d@example.net", i)}
	}
	return out
}

// TestRefused sends requests mailgate must refuse, over REST and gRPC, and checks the
// error each gets and that nothing reached the outbox.
func TestRefused(t *testing.T) {
	t.Parallel()
	p := serve(t)
	client := dial(t, p)
	app, other, wide := keys["app"].Key, keys["other"].Key, keys["wide"].Key

	unauth := wantError{http: 401, code: codes.Unauthenticated, reason: "UNAUTHENTICATED"}
	notAllowed := wantError{http: 403, code: codes.PermissionDenied, reason: "SENDER_NOT_ALLOWED"}
	invalid := func(fields ...string) wantError {
		return wantError{http: 400, code: codes.InvalidArgument, reason: "INVALID_ARGUMENT", fields: fields}
	}
	tooLarge := func(field string) wantError {
		return wantError{http: 413, code: codes.InvalidArgument, reason: "MESSAGE_TOO_LARGE", fields: []string{field}}
	}
	big := randomBytes(t, 900<<10)

	cases := []struct {
		name string
		auth auth
		req  *mailgatev1.SendMailRequest
		want wantError
	}{
		{"no key", auth{}, baseRequest("app@example.com"), unauth},
		{"unknown key", xAPIKey("mg_" + strings.Repeat("A", 43)), baseRequest("app@example.com"), unauth},
		{"unknown bearer key", bearer("not-a-key"), baseRequest("app@example.com"), unauth},
		{"key other as app@example.com", bearer(other), baseRequest("app@example.com"), notAllowed},
		{"key app as app@elsewhere.org", bearer(app), baseRequest("app@elsewhere.org"), notAllowed},
		{"key wide as a From no route matches", bearer(wide), baseRequest("x@unrouted.org"),
			wantError{http: 403, code: codes.PermissionDenied, reason: "NO_ROUTE"}},
		{"bad address in to[1]", bearer(app), with("app@example.com", func(r *mailgatev1.SendMailRequest) {
			r.To = append(r.To, &mailgatev1.Address{Address: "not an address"})
		}), invalid("to[1].address")},
		{"display name inside the address", bearer(app), with("app@example.com", func(r *mailgatev1.SendMailRequest) {
			r.Cc = []*mailgatev1.Address{{Address: "Bob <bob@example.net>"}}
		}), invalid("cc[0].address")},
		{"CRLF in a display name", bearer(app), with("app@example.com", func(r *mailgatev1.SendMailRequest) {
			r.To[0].Name = "Eve\r\nBcc: victim@example.org"
		}), invalid("to[0].name")},
		{"rawMime whose From the key may not use", bearer(app), &mailgatev1.SendMailRequest{
			From:    &mailgatev1.Address{Address: "app@example.com"}, // an allowed envelope does not cover the header
			RawMime: []byte("From: other@example.com\r\nTo: a@example.net\r\nSubject: x\r\n\r\nbody\r\n"),
		}, notAllowed},
		{"CRLF in subject", bearer(app), with("app@example.com", func(r *mailgatev1.SendMailRequest) {
			r.Subject = "hello\r\nBcc: victim@example.org"
		}), invalid("subject")},
		{"CRLF in a custom header value", bearer(app), with("app@example.com", func(r *mailgatev1.SendMailRequest) {
			r.Headers = map[string]string{"X-Ticket": "1\r\nBcc: victim@example.org"}
		}), invalid("headers.X-Ticket")},
		{"header not X-", bearer(app), with("app@example.com", func(r *mailgatev1.SendMailRequest) {
			r.Headers = map[string]string{"Received": "from nowhere"}
		}), invalid("headers.Received")},
		{"no body", bearer(app), with("app@example.com", func(r *mailgatev1.SendMailRequest) {
			r.Text = ""
		}), invalid("text")},
		{"no recipients", bearer(app), with("app@example.com", func(r *mailgatev1.SendMailRequest) {
			r.To = nil
		}), invalid("to")},
		{"501 recipients", bearer(app), with("app@example.com", func(r *mailgatev1.SendMailRequest) {
			r.To = manyRecipients(501)
		}), invalid("to")},
		{"every violation at once", bearer(app), with("app@example.com", func(r *mailgatev1.SendMailRequest) {
			r.To = append(r.To, &mailgatev1.Address{Address: "@"})
			r.Subject = "a\nb"
			r.Text = ""
			r.Attachments = []*mailgatev1.Attachment{{Filename: "../etc/passwd", Content: []byte("x")}}
		}), invalid("to[1].address", "subject", "text", "attachments[0].filename")},
		{"attachment of 900 KB, over 1 MiB encoded", bearer(app), with("app@example.com", func(r *mailgatev1.SendMailRequest) {
			r.Attachments = []*mailgatev1.Attachment{{Filename: "big.bin", Content: big}}
		}), tooLarge("attachments")},
		{"attachment of 4 MB, past gRPC's own message limit", bearer(app), with("app@example.com", func(r *mailgatev1.SendMailRequest) {
			r.Attachments = []*mailgatev1.Attachment{{Filename: "huge.bin", Content: bytes.Repeat(big, 5)}}
		}), wantError{http: 413, code: codes.InvalidArgument, reason: "MESSAGE_TOO_LARGE"}},
		{"rawMime over 1 MiB", bearer(app), &mailgatev1.SendMailRequest{
			RawMime: append([]byte("From: app@example.com\r\nTo: a@example.net\r\n\r\n"), bytes.Repeat([]byte("0123456789abcde\r\n"), 70000)...),
		}, tooLarge("rawMime")},
	}
	for _, c := range cases {
		t.Run("rest/"+c.name, func(t *testing.T) {
			t.Parallel()
			checkRESTError(t, sendREST(t, p, c.auth, protoJSON(t, c.req)), c.want)
			checkOutboxEmpty(t, p)
		})
		t.Run("grpc/"+c.name, func(t *testing.T) {
			t.Parallel()
			_, err := client.SendMail(rpcContext(t, c.auth), c.req)
			if st, _ := status.FromError(err); c.want.reason == "MESSAGE_TOO_LARGE" && st.Code() == codes.ResourceExhausted {
				// grpc-go refuses a message over its MaxRecvMsgSize before any handler
				// runs: RESOURCE_EXHAUSTED without mailgate's ErrorInfo, which clients
				// (mailerr.KindOf) read as too large, never as throttled.
				if mailerr.KindOf(st.Code(), "") != mailerr.TooLarge || !strings.Contains(st.Message(), "larger than max") {
					t.Errorf("oversized gRPC request: %s %q", st.Code(), st.Message())
				}
			} else {
				checkGRPCError(t, err, c.want)
			}
			checkOutboxEmpty(t, p)
		})
	}

	// REST only: what the JSON body itself gets wrong.
	bigJSON := func() []byte {
		// About 3 MB of JSON: past the body limit (1 MiB message, base64, JSON around it).
		return protoJSON(t, with("app@example.com", func(r *mailgatev1.SendMailRequest) {
			r.Attachments = []*mailgatev1.Attachment{{Filename: "huge.bin", Content: randomBytes(t, 2200<<10)}}
		}))
	}
	restCases := []struct {
		name string
		body func() []byte
		// chunked hides the length, so the limit is found while reading.
		chunked bool
		want    wantError
	}{
		{"unknown JSON field", func() []byte {
			return []byte(`{"from":{"address":"app@example.com"},"to":[{"address":"a@example.net"}],"text":"x","colour":"blue"}`)
		}, false, invalid()},
		{"malformed JSON", func() []byte { return []byte(`{"from": {"address": "app@example.com"`) }, false, invalid()},
		{"3 MB body", bigJSON, false, wantError{http: 413, code: codes.InvalidArgument, reason: "MESSAGE_TOO_LARGE"}},
		{"3 MB body, chunked", bigJSON, true, wantError{http: 413, code: codes.InvalidArgument, reason: "MESSAGE_TOO_LARGE"}},
	}
	for _, c := range restCases {
		t.Run("rest/"+c.name, func(t *testing.T) {
			t.Parallel()
			body := bytes.NewReader(c.body())
			var r restResponse
			if c.chunked {
				r = rest(t, http.MethodPost, p.baseURL+"/v1/messages:send", xAPIKey(app), struct{ *bytes.Reader }{body})
			} else {
				r = rest(t, http.MethodPost, p.baseURL+"/v1/messages:send", xAPIKey(app), body)
			}
			checkRESTError(t, r, c.want)
			checkOutboxEmpty(t, p)
		})
	}

	t.Run("rest/GetMessage with a malformed id", func(t *testing.T) {
		t.Parallel()
		r := rest(t, http.MethodGet, p.baseURL+"/v1/messages/nope", xAPIKey(app), nil)
		checkRESTError(t, r, invalid("id"))
	})
	t.Run("rest/GetMessage of an unknown id", func(t *testing.T) {
		t.Parallel()
		r := rest(t, http.MethodGet, p.baseURL+"/v1/messages/01arz3ndektsv4rrffq69g5fav", xAPIKey(app), nil)
		checkRESTError(t, r, wantError{http: 404, code: codes.NotFound, reason: "NOT_FOUND"})
	})
}

// checkOutboxEmpty checks that the outbox holds no file at all, finished or not.
func checkOutboxEmpty(t testing.TB, p *proc) {
	t.Helper()
	entries, err := os.ReadDir(p.outbox)
	if err != nil {
		t.Fatalf("outbox: %v", err)
	}
	for _, e := range entries {
		t.Errorf("a refused request left %s in the outbox", e.Name())
	}
}

// sendMailStarted reads from /metrics how many SendMail calls the gRPC servers (public
// and the REST gateway's in-process one) have begun.
func sendMailStarted(p *proc) int {
	r, err := doREST(http.MethodGet, p.baseURL+"/metrics", auth{}, nil)
	if err != nil || r.Status != http.StatusOK {
		return -1
	}
	total := 0
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "grpc_server_started_total{") && strings.Contains(line, `grpc_method="SendMail"`) {
			n, err := strconv.Atoi(line[strings.LastIndexByte(line, ' ')+1:])
			if err == nil {
				total += n
			}
		}
	}
	return total
}

// refused reports whether a new TCP connection to addr is refused.
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// TestDrain sends SIGTERM while a REST and a gRPC request wait on a slow backend: both
// must complete, new connections must be refused at once, and the process must exit 0.
func TestDrain(t *testing.T) {
	t.Parallel()
	p := serve(t)
	client := dial(t, p)
	req := &mailgatev1.SendMailRequest{
		From:    &mailgatev1.Address{Address: "slow@example.com"},
		To:      []*mailgatev1.Address{{Address: "patient@example.net"}},
		Subject: "slow",
		Text:    "takes 2 s",
	}
	type restResult struct {
		r   restResponse
		err error
		at  time.Time
	}
	restDone := make(chan restResult, 1)
	body := protoJSON(t, req)
	go func() {
		r, err := doREST(http.MethodPost, p.baseURL+"/v1/messages:send", xAPIKey(keys["app"].Key), bytes.NewReader(body))
		restDone <- restResult{r, err, time.Now()}
	}()
	type grpcResult struct {
		resp *mailgatev1.SendMailResponse
		err  error
		at   time.Time
	}
	grpcDone := make(chan grpcResult, 1)
	ctx := rpcContext(t, bearer(keys["drain"].Key))
	go func() {
		resp, err := client.SendMail(ctx, req)
		grpcDone <- grpcResult{resp, err, time.Now()}
	}()

	// Both requests are in the service once the metrics count them as started.
	if err := waitFor(t.Context(), 5*time.Second, func() bool { return sendMailStarted(p) >= 2 }); err != nil {
		t.Fatalf("the two SendMail calls never showed as started in /metrics: %v", err)
	}
	signaled := time.Now()
	p.terminate(t)

	if err := waitFor(t.Context(), 1500*time.Millisecond, func() bool {
		return refused(p.httpAddr) && refused(p.grpcAddr)
	}); err != nil {
		t.Errorf("new connections still accepted after SIGTERM: %v", err)
	}
	refusedAt := time.Now()

	rr := <-restDone
	if rr.err != nil {
		t.Errorf("in-flight REST request: %v", rr.err)
	} else if rr.r.Status != http.StatusOK {
		t.Errorf("in-flight REST request: HTTP %d: %s", rr.r.Status, rr.r.Body)
	} else {
		resp := new(mailgatev1.SendMailResponse)
		if err := protojson.Unmarshal(rr.r.Body, resp); err != nil {
			t.Errorf("in-flight REST request: %v: %s", err, rr.r.Body)
		} else if resp.GetStatus() != mailgatev1.Status_SENT || resp.GetRoute() != "slow" || resp.GetBackend() != "slow" {
			t.Errorf("in-flight REST request: %v, want SENT through route and backend slow", resp)
		}
	}
	gr := <-grpcDone
	if gr.err != nil {
		t.Errorf("in-flight gRPC request: %v", gr.err)
	} else if gr.resp.GetStatus() != mailgatev1.Status_SENT || gr.resp.GetRoute() != "slow" {
		t.Errorf("in-flight gRPC request: %v, want SENT through route slow", gr.resp)
	}
	// The listeners close at SIGTERM, not when the drain ends: both requests were still
	// waiting on the backend's 2 s when new connections were already refused.
	for _, done := range []time.Time{rr.at, gr.at} {
		if !refusedAt.Before(done) {
			t.Errorf("new connections were refused only %s after SIGTERM, after an in-flight request finished (%s)",
				refusedAt.Sub(signaled), done.Sub(signaled))
		}
	}

	p.waitExit(t, shutdownTimeout-time.Since(signaled))
	t.Logf("exited %s after SIGTERM (shutdown_timeout %s)", time.Since(signaled).Round(time.Millisecond), shutdownTimeout)
	logs := p.logs()
	for _, want := range []string{`"msg":"draining"`, `"msg":"mailgate stopped"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s", want)
		}
	}
}

// TestEncodedSizeLimit sends text whose encoded form is far larger than the text: the
// limit is on the message "as encoded MIME" (config.Limits.MaxMessageBytes).
func TestEncodedSizeLimit(t *testing.T) {
	t.Parallel()
	p := serve(t)
	// 3-byte UTF-8 characters: quoted-printable writes each byte as =XX, so the body
	// grows threefold: about 640 KB of JSON, about 1.9 MB of MIME.
	text := strings.Repeat("日本語テキスト", 15000)
	html := "<p>" + strings.Repeat("日本語", 35000) + "</p>"
	r := sendREST(t, p, xAPIKey(keys["app"].Key), mustJSON(t, map[string]any{
		"from":    map[string]string{"address": "app@example.com"},
		"to":      []map[string]string{{"address": "big@example.net"}},
		"subject": "non-ASCII text",
		"text":    text,
		"html":    html,
	}))
	if r.Status != http.StatusOK {
		checkRESTError(t, r, wantError{http: 413, code: codes.InvalidArgument, reason: "MESSAGE_TOO_LARGE"})
		checkOutboxEmpty(t, p)
		return
	}
	resp := new(mailgatev1.SendMailResponse)
	if err := protojson.Unmarshal(r.Body, resp); err != nil {
		t.Fatal(err)
	}
	eml := readEML(t, p, resp.GetId())
	if len(eml) <= maxMessageBytes {
		t.Fatalf("the message is %d bytes encoded; the test meant it to be over %d", len(eml), maxMessageBytes)
	}
	t.Errorf("max_message_bytes %d let through a message of %d bytes encoded (%.1f times the limit)",
		maxMessageBytes, len(eml), float64(len(eml))/maxMessageBytes)
}

// checkConfig runs `mailgate check-config FILE`.
func checkConfig(t testing.TB, yaml string) (stdout, stderr string, code int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mailgate.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	cmd := exec.Command(binary, "check-config", path)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	code = exitCode(t, cmd.Run())
	return out.String(), errOut.String(), code
}

// exitCode is the exit status of a command that ran, from its Run or Wait error.
func exitCode(t testing.TB, err error) int {
	t.Helper()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.ExitCode()
	}
	t.Fatal(err)
	return -1
}

func TestCheckConfig(t *testing.T) {
	t.Parallel()
	t.Run("good", func(t *testing.T) {
		t.Parallel()
		stdout, stderr, code := checkConfig(t, configYAML("127.0.0.1:1", "127.0.0.1:2", t.TempDir()))
		if code != 0 {
			t.Fatalf("exit status %d, want 0; stderr:\n%s", code, stderr)
		}
		if !strings.Contains(stdout, ": OK") {
			t.Errorf("stdout does not say OK:\n%s", stdout)
		}
		// The routing table, in order: number, name, match, backend, type.
		last := -1
		for _, row := range [][]string{
			{"1. slow", "slow@example.com", "slow", "discard"},
			{"2. files", "*@example.com", "outbox", "file"},
			{"3. notify", "*@notify.example.com", "outbox", "file"},
		} {
			i := strings.Index(stdout, row[0])
			if i < 0 {
				t.Errorf("no route row %q in:\n%s", row[0], stdout)
				continue
			}
			if i < last {
				t.Errorf("route %q out of order in:\n%s", row[0], stdout)
			}
			last = i
			line, _, _ := strings.Cut(stdout[i:], "\n")
			if fields := strings.Fields(line); len(fields) < 5 || !slices.Equal(fields[2:5], row[1:]) {
				t.Errorf("route row %q, want %q", line, row)
			}
		}
	})

	hash := keys["app"].Hash
	bad := []struct {
		name, yaml string
		paths      []string
	}{
		{"unknown field", fmt.Sprintf(`
listen: {http: "127.0.0.1:1"}
keys: [{name: a, hash: %s, senders: ["*"]}]
routes: [{match: "*", backend: outbox}]
backends:
  outbox: {type: file, dir: /tmp/x, colour: blue}
`, hash), []string{"backends.outbox.colour"}},
		{"route to a missing backend", fmt.Sprintf(`
listen: {http: "127.0.0.1:1"}
keys: [{name: a, hash: %s, senders: ["*"]}]
routes: [{match: "*", backend: nosuch}]
backends:
  outbox: {type: file, dir: /tmp/x}
`, hash), []string{"routes[0].backend"}},
		{"unknown field and route to a missing backend", fmt.Sprintf(`
listen: {http: "127.0.0.1:1"}
keys: [{name: a, hash: %s, senders: ["*"]}]
routes: [{match: "*", backend: nosuch}]
backends:
  outbox: {type: file, dir: /tmp/x, colour: blue}
`, hash), []string{"routes[0].backend", "backends.outbox.colour"}},
	}
	t.Run("missing file", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "nosuch.yaml")
		out, err := exec.Command(binary, "check-config", path).CombinedOutput()
		if code := exitCode(t, err); code != 1 || !strings.Contains(string(out), path) {
			t.Errorf("exit status %d, want 1, and output naming %s:\n%s", code, path, out)
		}
	})
	t.Run("serve refuses a bad file", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "mailgate.yaml")
		if err := os.WriteFile(path, []byte(bad[0].yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(binary, "serve", "--config", path)
		out, err := cmd.CombinedOutput()
		if code := exitCode(t, err); code != 1 || !strings.Contains(string(out), bad[0].paths[0]) {
			t.Errorf("serve: exit status %d, want 1, and output naming %s:\n%s", code, bad[0].paths[0], out)
		}
	})
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := checkConfig(t, c.yaml)
			if code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
			for _, path := range c.paths {
				switch {
				case strings.Contains(stderr, path):
				default:
					t.Errorf("stderr does not name %s:\n%s", path, stderr)
				}
			}
			if strings.Contains(stdout, "OK") {
				t.Errorf("stdout says OK:\n%s", stdout)
			}
		})
	}
}

// TestServeDefault runs `mailgate serve` without a configuration: the embedded default,
// fixed loopback ports, the development key from MAILGATE_DEV_KEY, ./outbox.
func TestServeDefault(t *testing.T) {
	t.Parallel()
	const httpAddr, grpcAddr = "127.0.0.1:8080", "127.0.0.1:9090"
	for _, addr := range []string{httpAddr, grpcAddr} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("the embedded default listens on %s, which is taken here: %v", addr, err)
		}
		ln.Close()
	}
	devKey := "mg_e2e-development-key-" + base64.RawURLEncoding.EncodeToString(randomBytes(t, 12))
	dir := t.TempDir()
	p := start(t, dir, []string{"MAILGATE_DEV_KEY=" + devKey}, "serve")
	p.httpAddr, p.grpcAddr, p.baseURL = httpAddr, grpcAddr, "http://"+httpAddr
	p.outbox = filepath.Join(dir, "outbox")
	if err := p.waitReady(); err != nil {
		if p.exited() && strings.Contains(p.logs(), "address already in use") {
			t.Skipf("the embedded default's ports were taken meanwhile: %s", p.logs())
		}
		t.Fatalf("mailgate serve: %v", err)
	}
	t.Cleanup(func() { p.stop(t) })

	resp := sendOK(t, p, xAPIKey(devKey), mustJSON(t, map[string]any{
		"from":    map[string]string{"address": "anyone@example.org"},
		"to":      []map[string]string{{"address": "try@example.net"}},
		"subject": "trying mailgate",
		"text":    "hello from the default configuration",
	}))
	if resp.GetRoute() != "default" || resp.GetBackend() != "outbox" || resp.GetStatus() != mailgatev1.Status_SENT {
		t.Errorf("response %v, want route default, backend outbox, SENT", resp)
	}
	checkEML(t, readEML(t, p, resp.GetId()), wantEML{
		MessageID: resp.GetMessageId(),
		From:      mail.Address{Address: "anyone@example.org"},
		To:        []mail.Address{{Address: "try@example.net"}},
		Subject:   "trying mailgate",
		Text:      "hello from the default configuration",
	})
	r := sendREST(t, p, xAPIKey("mg_wrong"), mustJSON(t, map[string]any{}))
	checkRESTError(t, r, wantError{http: 401, code: codes.Unauthenticated, reason: "UNAUTHENTICATED"})

	p.stop(t)
	if strings.Contains(p.logs(), devKey) {
		t.Errorf("the log shows MAILGATE_DEV_KEY")
	}
	logLines(t, p.logs())
}
