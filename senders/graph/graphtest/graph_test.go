package graphtest

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const mb = "noreply@contoso.com"

func TestGraphAuth(t *testing.T) {
	f := New(t)
	good := getToken(t, f, GraphScope)
	smtp := getToken(t, f, "https://outlook.office365.com/.default")
	body := simpleMail(t, nil)
	tests := []struct {
		name, auth, msg string
	}{
		{"none", "", "Access token is empty."},
		{"empty bearer", "Bearer ", "Access token is empty."},
		{"basic", "Basic dXNlcjpwYXNz", "Access token is empty."},
		{"unknown", "Bearer eyJ0eXAiOiJKV1QifQ.e30.x", "Access token validation failure."},
		{"other resource", "Bearer " + smtp, "Access token validation failure. Invalid audience."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{"Content-Type": "application/json"}
			if tc.auth != "" {
				h["Authorization"] = tc.auth
			}
			r := do(t, f, req{method: "POST", url: f.GraphURL() + "/users/" + mb + "/sendMail", header: h, body: body})
			if r.status != 401 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if code, msg := r.graphErr(t); code != "InvalidAuthenticationToken" || msg != tc.msg {
				t.Errorf("got %s %q", code, msg)
			}
			if r.header.Get("WWW-Authenticate") == "" {
				t.Error("no WWW-Authenticate")
			}
		})
	}
	if r := graph(t, f, good, "POST", "/users/"+mb+"/sendMail", "", body); r.status != 202 || len(r.body) != 0 {
		t.Fatalf("good token: %d %q", r.status, r.body)
	}
	f.ExpireTokens()
	r := graph(t, f, good, "POST", "/users/"+mb+"/sendMail", "", body)
	if code, msg := r.graphErr(t); r.status != 401 || code != "InvalidAuthenticationToken" || msg != "Lifetime validation failed, the token is expired." {
		t.Errorf("expired: %d %s %s", r.status, code, msg)
	}
	fresh := getToken(t, f, GraphScope)
	if r := graph(t, f, fresh, "POST", "/users/"+mb+"/sendMail", "", body); r.status != 202 {
		t.Errorf("fresh token: %d %s", r.status, r.body)
	}
	if n := len(f.Sent()); n != 2 {
		t.Errorf("Sent %d, want 2", n)
	}
}

func TestRoutes(t *testing.T) {
	f := New(t)
	tok := getToken(t, f, GraphScope)
	tests := []struct {
		method, path string
		status       int
		code         string
	}{
		{"POST", "/me/sendMail", 400, "BadRequest"},
		{"POST", "/users/" + mb + "/calendar", 400, "BadRequest"},
		{"GET", "/users/" + mb + "/sendMail", 405, "MethodNotAllowed"},
		{"POST", "/users/" + mb + "/messages/nope/send", 404, "ErrorItemNotFound"},
		{"DELETE", "/users/" + mb + "/messages/nope", 404, "ErrorItemNotFound"},
		{"POST", "/users/" + mb + "/messages/nope/attachments", 404, "ErrorItemNotFound"},
	}
	for _, tc := range tests {
		r := graph(t, f, tok, tc.method, tc.path, "", []byte(`{}`))
		if code, _ := r.graphErr(t); r.status != tc.status || code != tc.code {
			t.Errorf("%s %s: %d %s, want %d %s", tc.method, tc.path, r.status, code, tc.status, tc.code)
		}
	}
	// Namespaced action and lower-case segment names are accepted like Graph does.
	for _, p := range []string{"/users/" + mb + "/microsoft.graph.sendMail", "/USERS/" + mb + "/sendmail"} {
		if r := graph(t, f, tok, "POST", p, "", simpleMail(t, nil)); r.status != 202 {
			t.Errorf("%s: %d %s", p, r.status, r.body)
		}
	}
	// Not under /v1.0.
	r := do(t, f, req{method: "POST", url: strings.TrimSuffix(f.GraphURL(), "/v1.0") + "/beta/users/" + mb + "/sendMail",
		header: map[string]string{"Authorization": "Bearer " + tok}})
	if r.status != 400 {
		t.Errorf("beta: %d", r.status)
	}
}

func TestSendMailJSONKeysAnyCase(t *testing.T) {
	f := New(t)
	tok := getToken(t, f, GraphScope)
	f.GrantSendAs(mb, "billing@contoso.com")
	pdf := []byte("%PDF-1.7 fake")
	png := []byte{0x89, 'P', 'N', 'G'}
	bodies := map[string]string{
		// What msgraph-sdk-go serialises: capitalised action parameters.
		"sdk": fmt.Sprintf(`{"Message":{"@odata.type":"#microsoft.graph.message","subject":"Invoice","body":{"contentType":"html","content":"<p>x</p>"},
			"from":{"emailAddress":{"address":"billing@contoso.com","name":"Billing"}},
			"toRecipients":[{"emailAddress":{"address":"alice@example.com","name":"Alice"}}],
			"ccRecipients":[{"emailAddress":{"address":"bob@example.com"}}],
			"bccRecipients":[{"emailAddress":{"address":"audit@contoso.com"}}],
			"replyTo":[{"emailAddress":{"address":"support@contoso.com"}}],
			"internetMessageHeaders":[{"name":"x-submission-id","value":"42"}],
			"attachments":[{"@odata.type":"#microsoft.graph.fileAttachment","name":"a.pdf","contentType":"application/pdf","contentBytes":%q},
			               {"@odata.type":"#microsoft.graph.fileAttachment","name":"logo.png","contentType":"image/png","contentBytes":%q,"isInline":true,"contentId":"logo"}]},
			"SaveToSentItems":false}`, base64.StdEncoding.EncodeToString(pdf), base64.StdEncoding.EncodeToString(png)),
		// Hand-written, everything in odd case.
		"mixed": fmt.Sprintf(`{"MESSAGE":{"Subject":"Invoice","Body":{"ContentType":"HTML","Content":"<p>x</p>"},
			"FROM":{"EmailAddress":{"Address":"billing@contoso.com","Name":"Billing"}},
			"ToRecipients":[{"EMAILADDRESS":{"ADDRESS":"alice@example.com","NAME":"Alice"}}],
			"CCRECIPIENTS":[{"emailaddress":{"address":"bob@example.com"}}],
			"BccRecipients":[{"emailAddress":{"address":"audit@contoso.com"}}],
			"REPLYTO":[{"emailAddress":{"address":"support@contoso.com"}}],
			"InternetMessageHeaders":[{"Name":"x-submission-id","Value":"42"}],
			"Attachments":[{"@OData.Type":"#Microsoft.Graph.FileAttachment","Name":"a.pdf","ContentType":"application/pdf","ContentBytes":%q},
			               {"@ODATA.TYPE":"#microsoft.graph.fileAttachment","NAME":"logo.png","CONTENTTYPE":"image/png","CONTENTBYTES":%q,"ISINLINE":true,"CONTENTID":"logo"}]},
			"saveToSentItems":"false"}`, base64.StdEncoding.EncodeToString(pdf), base64.StdEncoding.EncodeToString(png)),
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			before := len(f.Sent())
			if r := graph(t, f, tok, "POST", "/users/"+strings.ToUpper(mb)+"/sendMail", "application/json; charset=utf-8", []byte(body)); r.status != 202 || len(r.body) != 0 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			s := f.Sent()[before]
			m := s.Message
			if s.Mailbox != strings.ToUpper(mb) || s.Via != "json" || s.Gzip || s.MIME != nil {
				t.Errorf("sent = %+v", s)
			}
			if s.SaveToSentItems == nil || *s.SaveToSentItems {
				t.Errorf("SaveToSentItems = %v", s.SaveToSentItems)
			}
			if m.Subject != "Invoice" || m.BodyType != "html" || m.Body != "<p>x</p>" {
				t.Errorf("subject/body: %+v", m)
			}
			if m.From == nil || *m.From != (Address{"billing@contoso.com", "Billing"}) {
				t.Errorf("from %+v", m.From)
			}
			if len(m.To) != 1 || m.To[0] != (Address{"alice@example.com", "Alice"}) || len(m.Cc) != 1 || m.Cc[0].Address != "bob@example.com" ||
				len(m.Bcc) != 1 || m.Bcc[0].Address != "audit@contoso.com" || len(m.ReplyTo) != 1 || m.ReplyTo[0].Address != "support@contoso.com" {
				t.Errorf("recipients: %+v", m)
			}
			if m.Header("X-Submission-Id") != "42" {
				t.Errorf("headers %v", m.Headers)
			}
			if len(m.Attachments) != 2 {
				t.Fatalf("attachments %+v", m.Attachments)
			}
			a, b := m.Attachments[0], m.Attachments[1]
			if a.Name != "a.pdf" || a.ContentType != "application/pdf" || !bytes.Equal(a.Content, pdf) || a.IsInline || a.ContentID != "" || a.ViaUploadSession {
				t.Errorf("attachment 0: %+v", a)
			}
			if b.Name != "logo.png" || !b.IsInline || b.ContentID != "logo" || !bytes.Equal(b.Content, png) {
				t.Errorf("attachment 1: %+v", b)
			}
		})
	}
	// saveToSentItems absent → nil; true → true.
	graph(t, f, tok, "POST", "/users/"+mb+"/sendMail", "", simpleMail(t, nil))
	graph(t, f, tok, "POST", "/users/"+mb+"/sendMail", "", []byte(`{"message":{"toRecipients":[{"emailAddress":{"address":"a@b.c"}}]},"saveToSentItems":true}`))
	s := f.Sent()
	if s[2].SaveToSentItems != nil || s[3].SaveToSentItems == nil || !*s[3].SaveToSentItems {
		t.Errorf("SaveToSentItems: %v %v", s[2].SaveToSentItems, s[3].SaveToSentItems)
	}
	if s[2].Message.BodyType != "text" {
		t.Errorf("BodyType %q", s[2].Message.BodyType)
	}
}

func TestSendMailValidation(t *testing.T) {
	f := New(t)
	tok := getToken(t, f, GraphScope)
	f.GrantSendAs("Shared@Contoso.com", "Team@Contoso.com")
	many := func(n int) []any {
		var l []any
		for i := range n {
			l = append(l, rcpt(fmt.Sprintf("u%d@example.com", i)))
		}
		return l
	}
	tests := []struct {
		name    string
		mailbox string
		ct      string
		body    []byte
		status  int
		code    string
		msg     string
	}{
		{name: "ok", body: simpleMail(t, nil), status: 202},
		{name: "500 recipients", body: simpleMail(t, func(m map[string]any) {
			m["toRecipients"] = many(300)
			m["ccRecipients"] = many(150)
			m["bccRecipients"] = many(50)
		}), status: 202},
		{name: "501 recipients", body: simpleMail(t, func(m map[string]any) {
			m["toRecipients"] = many(300)
			m["bccRecipients"] = many(201)
		}), status: 400, code: "ErrorInvalidRecipients"},
		{name: "no recipients", body: simpleMail(t, func(m map[string]any) { delete(m, "toRecipients") }),
			status: 400, code: "ErrorInvalidRecipients", msg: "At least one recipient isn't valid., A message can't be sent because it contains no recipients."},
		{name: "unresolvable", body: simpleMail(t, func(m map[string]any) { m["ccRecipients"] = []any{rcpt("bad")} }),
			status: 400, code: "ErrorInvalidRecipients", msg: `At least one recipient isn't valid., Recipient "bad" isn't resolved. All recipients must be resolved before a message can be submitted.`},
		{name: "no message", body: []byte(`{"saveToSentItems":false}`), status: 400, code: "ErrorInvalidParameter"},
		{name: "not json", body: []byte(`{"message":`), status: 400, code: "BadRequest"},
		{name: "empty body", body: []byte(``), status: 400, code: "BadRequest"},
		{name: "wrong types", body: []byte(`{"message":{"toRecipients":"alice@example.com"}}`), status: 400, code: "BadRequest"},
		{name: "bad saveToSentItems", body: []byte(`{"message":{"toRecipients":[{"emailAddress":{"address":"a@b.c"}}]},"saveToSentItems":"no"}`), status: 400, code: "RequestBodyRead"},
		{name: "bad body type", body: simpleMail(t, func(m map[string]any) { m["body"] = map[string]any{"contentType": "xml", "content": "x"} }), status: 400, code: "RequestBodyRead"},
		{name: "standard header", body: simpleMail(t, func(m map[string]any) {
			m["internetMessageHeaders"] = []any{map[string]any{"name": "x-ok", "value": "1"}, map[string]any{"name": "In-Reply-To", "value": "<a@b>"}}
		}), status: 400, code: "InvalidInternetMessageHeader", msg: "The internet message header name 'In-Reply-To' should start with 'x-' or 'X-'."},
		{name: "X- header", body: simpleMail(t, func(m map[string]any) {
			m["internetMessageHeaders"] = []any{map[string]any{"name": "X-Upper", "value": "1"}}
		}), status: 202},
		{name: "attachment without type", body: simpleMail(t, func(m map[string]any) {
			m["attachments"] = []any{map[string]any{"name": "a.txt", "contentBytes": "aGk="}}
		}), status: 400, code: "BadRequest"},
		{name: "item attachment", body: simpleMail(t, func(m map[string]any) {
			m["attachments"] = []any{map[string]any{"@odata.type": "#microsoft.graph.itemAttachment", "name": "a"}}
		}), status: 400, code: "BadRequest"},
		{name: "attachment bad base64", body: simpleMail(t, func(m map[string]any) {
			m["attachments"] = []any{map[string]any{"@odata.type": "#microsoft.graph.fileAttachment", "name": "a.txt", "contentBytes": "not base64!"}}
		}), status: 400, code: "BadRequest"},
		{name: "from other, no grant", body: simpleMail(t, func(m map[string]any) { m["from"] = rcpt("ceo@contoso.com") }),
			status: 403, code: "ErrorSendAsDenied", msg: msgSendAsDenied},
		{name: "from self other case", body: simpleMail(t, func(m map[string]any) { m["from"] = rcpt("NoReply@Contoso.com") }), status: 202},
		{name: "from granted", mailbox: "shared@contoso.com", body: simpleMail(t, func(m map[string]any) { m["from"] = rcpt("team@contoso.com") }), status: 202},
		{name: "grant is per mailbox", body: simpleMail(t, func(m map[string]any) { m["from"] = rcpt("team@contoso.com") }), status: 403, code: "ErrorSendAsDenied"},
		{name: "unsupported content type", ct: "application/xml", body: []byte(`<x/>`), status: 415, code: "UnsupportedMediaType"},
	}
	accepted := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mbox := tc.mailbox
			if mbox == "" {
				mbox = mb
			}
			r := graph(t, f, tok, "POST", "/users/"+mbox+"/sendMail", tc.ct, tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.status == 202 {
				accepted++
				return
			}
			code, msg := r.graphErr(t)
			if code != tc.code || (tc.msg != "" && msg != tc.msg) {
				t.Errorf("got %s %q, want %s %q", code, msg, tc.code, tc.msg)
			}
		})
	}
	if n := len(f.Sent()); n != accepted {
		t.Errorf("Sent %d, want %d", n, accepted)
	}
}

func TestGzipAndSizeLimit(t *testing.T) {
	f := New(t)
	tok := getToken(t, f, GraphScope)
	path := "/users/" + mb + "/sendMail"

	// gzip'd JSON, as the Graph SDK's compression handler sends it.
	r := graph(t, f, tok, "POST", path, "", gz(t, simpleMail(t, nil)), "Content-Encoding", "gzip")
	if r.status != 202 {
		t.Fatalf("gzip: %d %s", r.status, r.body)
	}
	if s := f.Sent(); len(s) != 1 || !s[0].Gzip || s[0].Message.Subject != "Hello" {
		t.Fatalf("gzip sent: %+v", s)
	}

	// A body of exactly MaxRequestBytes (after decompression) is accepted; one more byte is not.
	padded := func(n int) []byte {
		b := simpleMail(t, nil)
		return append(b, bytes.Repeat([]byte(" "), n-len(b))...)
	}
	tooLarge := func(r result) {
		t.Helper()
		code, msg := r.graphErr(t)
		if r.status != 413 || code != "RequestEntityTooLarge" || msg != "The maximum request length supported is 4MB." {
			t.Errorf("got %d %s %q", r.status, code, msg)
		}
	}
	if r := graph(t, f, tok, "POST", path, "", padded(MaxRequestBytes)); r.status != 202 {
		t.Errorf("exactly 4 MiB: %d %s", r.status, r.body)
	}
	tooLarge(graph(t, f, tok, "POST", path, "", padded(MaxRequestBytes+1)))
	small := gz(t, padded(MaxRequestBytes+1))
	if len(small) > 100000 {
		t.Fatalf("compressed body unexpectedly large: %d", len(small))
	}
	tooLarge(graph(t, f, tok, "POST", path, "", small, "Content-Encoding", "gzip"))
	if r := graph(t, f, tok, "POST", path, "", gz(t, padded(MaxRequestBytes)), "Content-Encoding", "gzip"); r.status != 202 {
		t.Errorf("gzip exactly 4 MiB: %d %s", r.status, r.body)
	}
	// A MIME body over 4 MB is refused the same way.
	tooLarge(graph(t, f, tok, "POST", path, "text/plain", bytes.Repeat([]byte("QUFB"), MaxRequestBytes/4+1)))

	// Corrupt gzip and unknown encodings.
	if r := graph(t, f, tok, "POST", path, "", []byte("not gzip"), "Content-Encoding", "gzip"); r.status != 400 {
		t.Errorf("corrupt gzip: %d", r.status)
	}
	if r := graph(t, f, tok, "POST", path, "", simpleMail(t, nil), "Content-Encoding", "br"); r.status != 415 {
		t.Errorf("br: %d", r.status)
	}
	if n := len(f.Sent()); n != 3 {
		t.Errorf("Sent %d, want 3", n)
	}
	// BodyLen is what came over the wire.
	var found bool
	for _, rq := range f.Requests() {
		if rq.Method == "POST" && rq.Headers.Get("Content-Encoding") == "gzip" && rq.Status == 413 {
			found = true
			if rq.BodyLen != int64(len(small)) {
				t.Errorf("BodyLen %d, want %d", rq.BodyLen, len(small))
			}
		}
	}
	if !found {
		t.Error("413 gzip request not recorded")
	}
}

const mimeMessage = "From: Contoso Billing <billing@contoso.com>\r\n" +
	"To: Alice <alice@example.com>, bob@example.com\r\n" +
	"Cc: carol@example.com\r\n" +
	"Bcc: audit@contoso.com\r\n" +
	"Reply-To: support@contoso.com\r\n" +
	"Subject: =?utf-8?q?Caf=C3=A9_invoice?=\r\n" +
	"Message-ID: <123@contoso.com>\r\n" +
	"In-Reply-To: <122@contoso.com>\r\n" +
	"X-Submission-Id: 8f9c\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"outer\"\r\n" +
	"\r\n" +
	"--outer\r\n" +
	"Content-Type: multipart/related; boundary=\"rel\"\r\n" +
	"\r\n" +
	"--rel\r\n" +
	"Content-Type: multipart/alternative; boundary=\"alt\"\r\n" +
	"\r\n" +
	"--alt\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Caf=C3=A9\r\n" +
	"--alt\r\n" +
	"Content-Type: text/html; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"<p>Caf=C3=A9 <img src=3D\"cid:logo@x\"></p>\r\n" +
	"--alt--\r\n" +
	"--rel\r\n" +
	"Content-Type: image/png\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"Content-ID: <logo@x>\r\n" +
	"Content-Disposition: inline; filename=\"logo.png\"\r\n" +
	"\r\n" +
	"iVBORw==\r\n" +
	"--rel--\r\n" +
	"--outer\r\n" +
	"Content-Type: application/pdf; name=\"invoice.pdf\"\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"Content-Disposition: attachment; filename=\"invoice.pdf\"\r\n" +
	"\r\n" +
	"JVBERi0xLjc=\r\n" +
	"--outer--\r\n"

func TestSendMailMIME(t *testing.T) {
	f := New(t)
	tok := getToken(t, f, GraphScope)
	f.GrantSendAs(mb, "billing@contoso.com")
	path := "/users/" + mb + "/sendMail"

	enc := wrap76(base64.StdEncoding.EncodeToString([]byte(mimeMessage)))
	if r := graph(t, f, tok, "POST", path, "text/plain", []byte(enc)); r.status != 202 || len(r.body) != 0 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	s := f.Sent()[0]
	m := s.Message
	if s.Via != "mime" || string(s.MIME) != mimeMessage || s.SaveToSentItems != nil {
		t.Errorf("sent %+v", s)
	}
	if m.Subject != "Café invoice" || m.BodyType != "html" || m.Body != "<p>Café <img src=\"cid:logo@x\"></p>" {
		t.Errorf("subject/body %q %q %q", m.Subject, m.BodyType, m.Body)
	}
	if m.From == nil || *m.From != (Address{"billing@contoso.com", "Contoso Billing"}) {
		t.Errorf("from %+v", m.From)
	}
	if len(m.To) != 2 || m.To[0] != (Address{"alice@example.com", "Alice"}) || m.To[1].Address != "bob@example.com" ||
		len(m.Cc) != 1 || len(m.Bcc) != 1 || m.Bcc[0].Address != "audit@contoso.com" || len(m.ReplyTo) != 1 {
		t.Errorf("recipients %+v", m)
	}
	if m.Headers["Message-ID"] != "<123@contoso.com>" || m.Header("in-reply-to") != "<122@contoso.com>" || m.Header("X-Submission-Id") != "8f9c" {
		t.Errorf("headers %v", m.Headers)
	}
	if len(m.Attachments) != 2 {
		t.Fatalf("attachments %+v", m.Attachments)
	}
	logo, pdf := m.Attachments[0], m.Attachments[1]
	if logo.Name != "logo.png" || logo.ContentType != "image/png" || logo.ContentID != "logo@x" || !logo.IsInline || !bytes.Equal(logo.Content, []byte{0x89, 'P', 'N', 'G'}) {
		t.Errorf("logo %+v", logo)
	}
	if pdf.Name != "invoice.pdf" || pdf.ContentType != "application/pdf" || pdf.IsInline || string(pdf.Content) != "%PDF-1.7" {
		t.Errorf("pdf %+v", pdf)
	}

	// A MIME sendMail body as Microsoft documents it (docs/microsoft365-graph.md#what-mailgate-sends-to-microsoft),
	// gzip'd, with a charset parameter.
	sample := "RnJvbTogbm9yZXBseUBjb250b3NvLmNvbQ0KVG86IGFsaWNlQGV4YW1wbGUuY29tDQpTdWJqZWN0\r\n" +
		"OiBUZXN0DQpNSU1FLVZlcnNpb246IDEuMA0KQ29udGVudC1UeXBlOiB0ZXh0L3BsYWluOyBjaGFy\r\n" +
		"c2V0PXV0Zi04DQoNCmhlbGxvDQo="
	if r := graph(t, f, tok, "POST", path, "text/plain; charset=utf-8", gz(t, []byte(sample)), "Content-Encoding", "gzip"); r.status != 202 {
		t.Fatalf("sample: %d %s", r.status, r.body)
	}
	s = f.Sent()[1]
	if !s.Gzip || s.Message.Subject != "Test" || s.Message.BodyType != "text" || s.Message.Body != "hello\r\n" ||
		len(s.Message.To) != 1 || s.Message.To[0].Address != "alice@example.com" || s.Message.From.Address != mb {
		t.Errorf("sample parsed as %+v", s)
	}

	tests := []struct {
		name, body, code, msg string
		status                int
	}{
		{name: "bad base64", body: "not*base64", status: 400, code: "ErrorMimeContentInvalidBase64String", msg: "Invalid base64 string for MIME content."},
		{name: "truncated base64", body: "RnJvbTo", status: 400, code: "ErrorMimeContentInvalidBase64String"},
		{name: "empty", body: "", status: 400, code: "ErrorMimeContentInvalidBase64String"},
		{name: "no recipients", body: base64.StdEncoding.EncodeToString([]byte("Subject: x\r\n\r\nbody\r\n")), status: 400, code: "ErrorInvalidRecipients",
			msg: "At least one recipient isn't valid., A message can't be sent because it contains no recipients."},
		{name: "only bcc", body: base64.StdEncoding.EncodeToString([]byte("Bcc: hidden@example.com\r\nSubject: x\r\n\r\nbody\r\n")), status: 202},
		{name: "from other", body: base64.StdEncoding.EncodeToString([]byte("From: ceo@contoso.com\r\nTo: a@example.com\r\n\r\nbody\r\n")), status: 403, code: "ErrorSendAsDenied"},
		{name: "not MIME", body: base64.StdEncoding.EncodeToString([]byte("just some text without headers")), status: 400, code: "ErrorMimeContentInvalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := graph(t, f, tok, "POST", path, "text/plain", []byte(tc.body))
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.status == 202 {
				return
			}
			if code, msg := r.graphErr(t); code != tc.code || (tc.msg != "" && msg != tc.msg) {
				t.Errorf("got %s %q", code, msg)
			}
		})
	}
	if s := f.Sent(); len(s) != 3 || s[2].Message.Bcc[0].Address != "hidden@example.com" {
		t.Errorf("sent %+v", s)
	}
}

var throttleBodyRE = regexp.MustCompile(`^\{"error":\{"code":"TooManyRequests","innerError":\{"code":"429","date":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d","message":"Please retry after","request-id":"[0-9a-f-]{36}","status":"429"\},"message":"Please retry again later\."\}\}$`)

func TestScripts(t *testing.T) {
	f := New(t)
	tok := getToken(t, f, GraphScope)
	f.Script(strings.ToUpper(mb),
		Throttle("2.128"), Concurrency(), Unavailable(), SendAsDenied(), AccessDenied(), InvalidRecipients(),
		AcceptThenGatewayTimeout(), ErrorResponse(403, "ErrorAccessDenied", "Access to OData is disabled.", ""))
	path := "/users/" + mb + "/sendMail"
	body := simpleMail(t, nil)

	// A request refused by authentication does not use up a script entry.
	if r := graph(t, f, "", "POST", path, "", body); r.status != 401 {
		t.Fatalf("unauthenticated: %d", r.status)
	}
	// Another mailbox is not affected.
	if r := graph(t, f, tok, "POST", "/users/other@contoso.com/sendMail", "", body); r.status != 202 {
		t.Fatalf("other mailbox: %d %s", r.status, r.body)
	}

	want := []struct {
		status     int
		retryAfter string
		code, msg  string
		sent       int
	}{
		{429, "2.128", "TooManyRequests", "Please retry again later.", 1},
		{429, "1", "ApplicationThrottled", "Application is over its MailboxConcurrency limit.", 1},
		{503, "3", "serviceNotAvailable", "", 1},
		{403, "", "ErrorSendAsDenied", msgSendAsDenied, 1},
		{403, "", "ErrorAccessDenied", "Access is denied. Check credentials and try again.", 1},
		{400, "", "ErrorInvalidRecipients", `At least one recipient isn't valid., Recipient "alice@example.com" isn't resolved. All recipients must be resolved before a message can be submitted.`, 1},
		{504, "", "GatewayTimeout", "", 2},
		{403, "", "ErrorAccessDenied", "Access to OData is disabled.", 2},
		{202, "", "", "", 3},
		{202, "", "", "", 4},
	}
	for i, w := range want {
		r := graph(t, f, tok, "POST", path, "", body)
		if r.status != w.status || r.header.Get("Retry-After") != w.retryAfter {
			t.Fatalf("#%d: %d Retry-After %q, want %d %q: %s", i, r.status, r.header.Get("Retry-After"), w.status, w.retryAfter, r.body)
		}
		if w.status != 202 {
			if code, msg := r.graphErr(t); code != w.code || (w.msg != "" && msg != w.msg) {
				t.Errorf("#%d: %s %q", i, code, msg)
			}
		}
		if i == 0 && !throttleBodyRE.Match(r.body) {
			t.Errorf("throttle body %s", r.body)
		}
		if n := len(f.Sent()); n != w.sent {
			t.Errorf("#%d: Sent %d, want %d", i, n, w.sent)
		}
	}

	// AcceptThenGatewayTimeout on an invalid request: the normal error, nothing recorded.
	f.Script(mb, AcceptThenGatewayTimeout())
	if r := graph(t, f, tok, "POST", path, "", simpleMail(t, func(m map[string]any) { delete(m, "toRecipients") })); r.status != 400 {
		t.Errorf("invalid under AcceptThenGatewayTimeout: %d", r.status)
	}
	if r := graph(t, f, tok, "POST", path, "", body); r.status != 202 {
		t.Errorf("script entry not used up: %d", r.status)
	}
	for _, r := range []Response{Throttle("1"), Concurrency(), Unavailable(), AcceptThenGatewayTimeout(), SendAsDenied(), AccessDenied(), InvalidRecipients()} {
		if r.String() == "" {
			t.Error("empty String()")
		}
	}
}

func TestConcurrencyAndLatency(t *testing.T) {
	f := New(t)
	tok := getToken(t, f, GraphScope)
	f.SetLatency(400 * time.Millisecond)
	body := simpleMail(t, nil)
	send := func(n int, mailbox string) []int {
		statuses := make([]int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				statuses[i] = graph(t, f, tok, "POST", "/users/"+mailbox+"/sendMail", "", body).status
			})
		}
		wg.Wait()
		return statuses
	}
	start := time.Now()
	for _, s := range send(6, mb) {
		if s != 202 {
			t.Errorf("status %d", s)
		}
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("latency not applied: %v", d)
	}
	if n := f.MaxInFlight(strings.ToUpper(mb)); n != 6 {
		t.Errorf("MaxInFlight = %d, want 6", n)
	}
	if n := f.MaxInFlight("other@contoso.com"); n != 0 {
		t.Errorf("other MaxInFlight = %d", n)
	}

	f.SetConcurrencyLimit(4)
	counts := map[int]int{}
	for _, s := range send(6, "second@contoso.com") {
		counts[s]++
	}
	if counts[202] != 4 || counts[429] != 2 {
		t.Errorf("with limit 4: %v", counts)
	}
}

func TestClientCAFileRequests(t *testing.T) {
	f := New(t)
	b, err := os.ReadFile(f.CAFile(t))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("CA file %q", b)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || !c.Equal(f.Certificate()) {
		t.Fatalf("CA file cert: %v", err)
	}
	if !strings.HasPrefix(f.AuthorityURL(), "https://127.0.0.1:") || !strings.HasSuffix(f.AuthorityURL(), "/") ||
		!strings.HasPrefix(f.GraphURL(), "https://127.0.0.1:") || !strings.HasSuffix(f.GraphURL(), "/v1.0") || f.AuthorityURL() == f.GraphURL()[:len(f.AuthorityURL())] {
		t.Errorf("URLs %s %s", f.AuthorityURL(), f.GraphURL())
	}
	tok := getToken(t, f, GraphScope)
	graph(t, f, tok, "POST", "/users/"+mb+"/sendMail", "", simpleMail(t, nil), "client-request-id", "my-id")
	rs := f.Requests()
	if len(rs) != 2 || rs[0].Server != "entra" || rs[1].Server != "graph" {
		t.Fatalf("requests %+v", rs)
	}
	g := rs[1]
	if g.Method != "POST" || g.Path != "/v1.0/users/"+mb+"/sendMail" || g.Status != 202 || g.Mailbox != mb ||
		g.Headers.Get("Authorization") != "Bearer "+tok || g.BodyLen != int64(len(simpleMail(t, nil))) || g.At.IsZero() {
		t.Errorf("graph request %+v", g)
	}
	// Requests returns copies.
	rs[1].Headers.Set("Authorization", "changed")
	if f.Requests()[1].Headers.Get("Authorization") == "changed" {
		t.Error("Requests shares header maps")
	}
}

func TestMaxSendSize(t *testing.T) {
	f := New(t)
	tok := getToken(t, f, GraphScope)
	f.SetMaxSendSize(1000)
	big := simpleMail(t, func(m map[string]any) {
		m["attachments"] = []any{map[string]any{"@odata.type": "#microsoft.graph.fileAttachment", "name": "a.bin",
			"contentBytes": base64.StdEncoding.EncodeToString(make([]byte, 2000))}}
	})
	r := graph(t, f, tok, "POST", "/users/"+mb+"/sendMail", "", big)
	if code, _ := r.graphErr(t); r.status != 400 || code != "ErrorMessageSizeExceeded" {
		t.Errorf("%d %s", r.status, code)
	}
	if r := graph(t, f, tok, "POST", "/users/"+mb+"/sendMail", "", simpleMail(t, nil)); r.status != 202 {
		t.Errorf("small: %d", r.status)
	}
}
