package graphtest

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// createDraft creates a draft and returns its id.
func createDraft(t *testing.T, f *Fake, tok, mailbox string, msg map[string]any) string {
	t.Helper()
	r := graph(t, f, tok, "POST", "/users/"+mailbox+"/messages", "", mustJSON(t, msg))
	if r.status != 201 {
		t.Fatalf("create draft: %d %s", r.status, r.body)
	}
	id, _ := r.json(t)["id"].(string)
	if id == "" {
		t.Fatalf("draft without id: %s", r.body)
	}
	return id
}

func msgPath(mailbox, id string, rest ...string) string {
	return "/users/" + mailbox + "/messages/" + url.PathEscape(id) + strings.Join(rest, "")
}

func createSession(t *testing.T, f *Fake, tok, mailbox, id string, item map[string]any) string {
	t.Helper()
	r := graph(t, f, tok, "POST", msgPath(mailbox, id, "/attachments/createUploadSession"), "", mustJSON(t, map[string]any{"AttachmentItem": item}))
	if r.status != 201 {
		t.Fatalf("createUploadSession: %d %s", r.status, r.body)
	}
	m := r.json(t)
	if nr, _ := m["nextExpectedRanges"].([]any); len(nr) != 1 || nr[0] != "0-" || m["expirationDateTime"] == "" {
		t.Errorf("session %s", r.body)
	}
	u, _ := m["uploadUrl"].(string)
	if !regexp.MustCompile(`^https://127\.0\.0\.1:\d+/upload/[\w-]+\?authtoken=[\w-]+$`).MatchString(u) {
		t.Fatalf("uploadUrl %q", u)
	}
	return u
}

// put sends one upload slice with no Authorization header.
func put(t *testing.T, f *Fake, u string, start, end, total int64, data []byte, extra ...string) result {
	t.Helper()
	h := map[string]string{"Content-Type": "application/octet-stream", "Content-Range": fmt.Sprintf("bytes %d-%d/%d", start, end, total)}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	return do(t, f, req{method: "PUT", url: u, header: h, body: data})
}

func TestDraftUploadSend(t *testing.T) {
	f := New(t)
	tok := getToken(t, f, GraphScope)
	small := []byte("small attachment")
	id := createDraft(t, f, tok, mb, map[string]any{
		"subject": "Big", "body": map[string]any{"contentType": "HTML", "content": "<b>hi</b>"},
		"toRecipients":           []any{rcpt("alice@example.com")},
		"internetMessageHeaders": []any{map[string]any{"name": "x-id", "value": "7"}},
		"attachments": []any{map[string]any{"@odata.type": "#microsoft.graph.fileAttachment", "name": "inline.txt",
			"contentBytes": base64.StdEncoding.EncodeToString(small)}},
	})
	if !strings.HasSuffix(id, "=") {
		t.Errorf("draft id %q should look like an Exchange id", id)
	}
	if n := f.Drafts(strings.ToUpper(mb)); n != 1 {
		t.Fatalf("Drafts = %d", n)
	}
	// GET returns it.
	if r := graph(t, f, tok, "GET", msgPath(mb, id), "", nil); r.status != 200 || r.json(t)["isDraft"] != true {
		t.Errorf("GET draft: %d %s", r.status, r.body)
	}

	// A second small attachment with a single POST (lower-case keys, inline).
	r := graph(t, f, tok, "POST", msgPath(mb, id, "/attachments"), "", mustJSON(t, map[string]any{
		"@odata.type": "#microsoft.graph.fileAttachment", "name": "logo.png", "contentType": "image/png",
		"contentBytes": base64.StdEncoding.EncodeToString([]byte{1, 2, 3}), "isInline": true, "contentId": "logo"}))
	if r.status != 201 || r.json(t)["id"] == "" {
		t.Fatalf("POST attachment: %d %s", r.status, r.body)
	}

	// The large one through an upload session: 9,000,000 bytes in 4 MiB slices.
	const size = 9000000
	content := bytes.Repeat([]byte("0123456789"), size/10)
	u := createSession(t, f, tok, mb, id, map[string]any{"attachmentType": "file", "name": "big.zip", "size": size,
		"contentType": "application/zip", "isInline": false})
	for start := int64(0); start < size; start += MaxUploadSliceBytes {
		end := min(start+MaxUploadSliceBytes, size) - 1
		r := put(t, f, u, start, end, size, content[start:end+1])
		if end == size-1 {
			if r.status != 201 || len(r.body) != 0 {
				t.Fatalf("final PUT: %d %s", r.status, r.body)
			}
			loc := r.header.Get("Location")
			if !strings.Contains(loc, "/Messages('"+id+"')/Attachments('") {
				t.Errorf("Location %q", loc)
			}
		} else {
			if r.status != 200 {
				t.Fatalf("PUT %d: %d %s", start, r.status, r.body)
			}
			if nr, _ := r.json(t)["nextExpectedRanges"].([]any); len(nr) != 1 || nr[0] != fmt.Sprintf("%d-", end+1) {
				t.Errorf("nextExpectedRanges %v", nr)
			}
		}
	}
	// The finished session is gone.
	if r := put(t, f, u, 0, 0, size, []byte{0}); r.status != 404 {
		t.Errorf("PUT after completion: %d", r.status)
	}

	if r := graph(t, f, tok, "POST", msgPath(mb, id, "/send"), "", nil); r.status != 202 || len(r.body) != 0 {
		t.Fatalf("send: %d %s", r.status, r.body)
	}
	if n := f.Drafts(mb); n != 0 {
		t.Errorf("Drafts after send = %d", n)
	}
	sent := f.Sent()
	if len(sent) != 1 {
		t.Fatalf("Sent %d", len(sent))
	}
	s := sent[0]
	if s.Via != "draft" || s.Mailbox != mb || s.Message.Subject != "Big" || s.Message.BodyType != "html" || s.Message.Header("x-id") != "7" {
		t.Errorf("sent %+v", s)
	}
	as := s.Message.Attachments
	if len(as) != 3 || as[0].Name != "inline.txt" || !bytes.Equal(as[0].Content, small) ||
		as[1].Name != "logo.png" || !as[1].IsInline || as[1].ContentID != "logo" || as[1].ViaUploadSession ||
		as[2].Name != "big.zip" || as[2].ContentType != "application/zip" || !as[2].ViaUploadSession || !bytes.Equal(as[2].Content, content) {
		t.Errorf("attachments: %d", len(as))
		for _, a := range as {
			t.Logf("  %s %s inline=%v cid=%q session=%v %d bytes", a.Name, a.ContentType, a.IsInline, a.ContentID, a.ViaUploadSession, len(a.Content))
		}
	}
	// Sending again: the draft is gone.
	if r := graph(t, f, tok, "POST", msgPath(mb, id, "/send"), "", nil); r.status != 404 {
		t.Errorf("second send: %d", r.status)
	}
	// No upload PUT carried an Authorization header; every other Graph request did.
	for _, rq := range f.Requests() {
		if rq.Server != "graph" {
			continue
		}
		upload := strings.HasPrefix(rq.Path, "/upload/")
		if upload == (rq.Headers.Get("Authorization") != "") {
			t.Errorf("%s %s Authorization=%q", rq.Method, rq.Path, rq.Headers.Get("Authorization"))
		}
		if upload && rq.Status != 404 && rq.Mailbox != mb {
			t.Errorf("upload request mailbox %q", rq.Mailbox)
		}
	}
}

func TestUploadSessionChecks(t *testing.T) {
	f := New(t)
	tok := getToken(t, f, GraphScope)
	id := createDraft(t, f, tok, mb, map[string]any{"toRecipients": []any{rcpt("a@example.com")}})
	const size = 5 * 1000 * 1000
	item := map[string]any{"attachmentType": "file", "name": "x.bin", "size": size}

	t.Run("createUploadSession", func(t *testing.T) {
		tests := []struct {
			name   string
			body   string
			status int
			code   string
		}{
			{"lower-case key", `{"attachmentItem":{"attachmentType":"file","name":"x","size":3000000}}`, 201, ""},
			{"too small", `{"AttachmentItem":{"attachmentType":"file","name":"x","size":2999999}}`, 400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize"},
			{"too large", `{"AttachmentItem":{"attachmentType":"file","name":"x","size":157286401}}`, 400, "ErrorAttachmentSizeLimitExceeded"},
			{"max", `{"AttachmentItem":{"attachmentType":"file","name":"x","size":157286400}}`, 201, ""},
			{"no item", `{}`, 400, "ErrorInvalidParameter"},
			{"no size", `{"AttachmentItem":{"attachmentType":"file","name":"x"}}`, 400, "ErrorInvalidParameter"},
			{"no name", `{"AttachmentItem":{"attachmentType":"file","size":3000000}}`, 400, "ErrorInvalidParameter"},
			{"item type", `{"AttachmentItem":{"attachmentType":"item","name":"x","size":3000000}}`, 400, "ErrorInvalidParameter"},
		}
		for _, tc := range tests {
			r := graph(t, f, tok, "POST", msgPath(mb, id, "/attachments/createUploadSession"), "", []byte(tc.body))
			if r.status != tc.status {
				t.Errorf("%s: %d %s", tc.name, r.status, r.body)
				continue
			}
			if tc.code != "" {
				if code, _ := r.graphErr(t); code != tc.code {
					t.Errorf("%s: code %s", tc.name, code)
				}
			}
		}
		if r := graph(t, f, tok, "POST", msgPath(mb, "nope", "/attachments/createUploadSession"), "", mustJSON(t, map[string]any{"AttachmentItem": item})); r.status != 404 {
			t.Errorf("unknown draft: %d", r.status)
		}
		if r := graph(t, f, tok, "POST", msgPath("someone@contoso.com", id, "/attachments/createUploadSession"), "", mustJSON(t, map[string]any{"AttachmentItem": item})); r.status != 404 {
			t.Errorf("other mailbox's draft: %d", r.status)
		}
	})

	u := createSession(t, f, tok, mb, id, item)
	chunk := make([]byte, 1000)
	tests := []struct {
		name       string
		start, end int64
		total      int64
		data       []byte
		extra      []string
		status     int
		code       string
	}{
		{name: "authorization header", start: 0, end: 999, total: size, data: chunk, extra: []string{"Authorization", "Bearer " + tok}, status: 400, code: "BadRequest"},
		{name: "wrong start", start: 1000, end: 1999, total: size, data: chunk, status: 416, code: "RequestedRangeNotSatisfiable"},
		{name: "wrong total", start: 0, end: 999, total: size + 1, data: chunk, status: 400, code: "InvalidContentRange"},
		{name: "length mismatch", start: 0, end: 1999, total: size, data: chunk, status: 400, code: "InvalidContentLength"},
		{name: "end before start", start: 10, end: 5, total: size, data: chunk[:0], status: 400, code: "InvalidContentRange"},
		{name: "past the end", start: 0, end: size, total: size, data: chunk, status: 400, code: "InvalidContentRange"},
		{name: "slice over 4 MB", start: 0, end: MaxUploadSliceBytes, total: size, data: make([]byte, MaxUploadSliceBytes+1), status: 400, code: "InvalidContentRange"},
		{name: "malformed range", extra: []string{"Content-Range", "0-999/5000000"}, data: chunk, status: 400, code: "InvalidContentRange"},
		{name: "first slice", start: 0, end: 999, total: size, data: chunk, status: 200},
		{name: "repeated slice", start: 0, end: 999, total: size, data: chunk, status: 416, code: "RequestedRangeNotSatisfiable"},
		{name: "second slice", start: 1000, end: 1999, total: size, data: chunk, status: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := put(t, f, u, tc.start, tc.end, tc.total, tc.data, tc.extra...)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.code != "" {
				if code, _ := r.graphErr(t); code != tc.code {
					t.Errorf("code %s, want %s", code, tc.code)
				}
			}
		})
	}

	// Wrong authtoken.
	bad := regexp.MustCompile(`authtoken=.*$`).ReplaceAllString(u, "authtoken=wrong")
	if r := put(t, f, bad, 2000, 2999, size, chunk); r.status != 401 {
		t.Errorf("bad authtoken: %d", r.status)
	}
	// GET reports progress; DELETE cancels.
	r := do(t, f, req{method: "GET", url: u})
	if nr, _ := r.json(t)["nextExpectedRanges"].([]any); r.status != 200 || len(nr) != 1 || nr[0] != "2000-" {
		t.Errorf("GET session: %d %s", r.status, r.body)
	}
	if r := do(t, f, req{method: "DELETE", url: u}); r.status != 204 {
		t.Errorf("DELETE session: %d", r.status)
	}
	if r := put(t, f, u, 2000, 2999, size, chunk); r.status != 404 {
		t.Errorf("PUT after cancel: %d", r.status)
	}
	// The rejected Authorization-carrying PUT is on record.
	var seen bool
	for _, rq := range f.Requests() {
		if rq.Method == "PUT" && rq.Headers.Get("Authorization") != "" && rq.Status == 400 {
			seen = true
		}
	}
	if !seen {
		t.Error("PUT with Authorization not recorded")
	}
	// Deleting the draft ends its sessions.
	u2 := createSession(t, f, tok, mb, id, item)
	if r := graph(t, f, tok, "DELETE", msgPath(mb, id), "", nil); r.status != 204 {
		t.Fatalf("DELETE draft: %d %s", r.status, r.body)
	}
	if r := put(t, f, u2, 0, 999, size, chunk); r.status != 404 {
		t.Errorf("PUT to deleted draft's session: %d", r.status)
	}
}

func TestDraftLifecycle(t *testing.T) {
	f := New(t)
	tok := getToken(t, f, GraphScope)

	// Exchange stores drafts without recipients or with a foreign from; send refuses them.
	noRcpt := createDraft(t, f, tok, mb, map[string]any{"subject": "x"})
	r := graph(t, f, tok, "POST", msgPath(mb, noRcpt, "/send"), "", nil)
	if code, _ := r.graphErr(t); r.status != 400 || code != "ErrorInvalidRecipients" {
		t.Errorf("send without recipients: %d %s", r.status, code)
	}
	foreign := createDraft(t, f, tok, mb, map[string]any{"from": rcpt("ceo@contoso.com"), "toRecipients": []any{rcpt("a@example.com")}})
	r = graph(t, f, tok, "POST", msgPath(mb, foreign, "/send"), "", nil)
	if code, _ := r.graphErr(t); r.status != 403 || code != "ErrorSendAsDenied" {
		t.Errorf("send foreign from: %d %s", r.status, code)
	}
	if n := f.Drafts(mb); n != 2 {
		t.Errorf("Drafts = %d, want 2", n)
	}
	// Header names are checked when the draft is created.
	r = graph(t, f, tok, "POST", "/users/"+mb+"/messages", "", mustJSON(t, map[string]any{
		"internetMessageHeaders": []any{map[string]any{"name": "References", "value": "<a@b>"}}}))
	if code, _ := r.graphErr(t); r.status != 400 || code != "InvalidInternetMessageHeader" {
		t.Errorf("bad header draft: %d %s", r.status, code)
	}
	// Another mailbox cannot see, send or delete the draft.
	if r := graph(t, f, tok, "DELETE", msgPath("other@contoso.com", noRcpt), "", nil); r.status != 404 {
		t.Errorf("foreign delete: %d", r.status)
	}
	if r := graph(t, f, tok, "POST", msgPath("other@contoso.com", foreign, "/send"), "", nil); r.status != 404 {
		t.Errorf("foreign send: %d", r.status)
	}
	// DELETE → 204, then 404; mailbox match is case-insensitive.
	for _, id := range []string{noRcpt, foreign} {
		if r := graph(t, f, tok, "DELETE", msgPath(strings.ToUpper(mb), id), "", nil); r.status != 204 {
			t.Errorf("delete: %d %s", r.status, r.body)
		}
		if r := graph(t, f, tok, "DELETE", msgPath(mb, id), "", nil); r.status != 404 {
			t.Errorf("second delete: %d", r.status)
		}
	}
	if n := f.Drafts(mb); n != 0 {
		t.Errorf("Drafts = %d", n)
	}

	// Attachment POST limits: the 4 MB request limit (base64!) and the 3 MB rule.
	id := createDraft(t, f, tok, mb, map[string]any{"toRecipients": []any{rcpt("a@example.com")}})
	att := func(n int) []byte {
		return mustJSON(t, map[string]any{"@odata.type": "#microsoft.graph.fileAttachment", "name": "a.bin",
			"contentBytes": base64.StdEncoding.EncodeToString(make([]byte, n))})
	}
	if r := graph(t, f, tok, "POST", msgPath(mb, id, "/attachments"), "", att(3000000)); r.status != 201 {
		t.Errorf("3,000,000-byte attachment: %d %s", r.status, r.body)
	}
	if r := graph(t, f, tok, "POST", msgPath(mb, id, "/attachments"), "", att(3*1024*1024)); r.status != 413 {
		t.Errorf("3 MiB attachment: %d %s", r.status, r.body)
	}
	if r := graph(t, f, tok, "POST", msgPath(mb, id, "/attachments"), "", []byte(`{"name":"x","contentBytes":"aGk="}`)); r.status != 400 {
		t.Errorf("attachment without @odata.type: %d", r.status)
	}

	// Scripts apply to /send; AcceptThenGatewayTimeout sends the draft.
	f.Script(mb, Throttle("5"), AcceptThenGatewayTimeout())
	r = graph(t, f, tok, "POST", msgPath(mb, id, "/send"), "", nil)
	if r.status != 429 || r.header.Get("Retry-After") != "5" || f.Drafts(mb) != 1 || len(f.Sent()) != 0 {
		t.Fatalf("throttled send: %d, drafts %d, sent %d", r.status, f.Drafts(mb), len(f.Sent()))
	}
	r = graph(t, f, tok, "POST", msgPath(mb, id, "/send"), "", nil)
	if r.status != 504 || f.Drafts(mb) != 0 || len(f.Sent()) != 1 || f.Sent()[0].Via != "draft" {
		t.Fatalf("accept-then-504 send: %d, drafts %d, sent %d", r.status, f.Drafts(mb), len(f.Sent()))
	}
	if r := graph(t, f, tok, "POST", msgPath(mb, id, "/send"), "", nil); r.status != 404 {
		t.Errorf("retry after 504: %d", r.status)
	}

	// A draft created from MIME.
	mimeID := func() string {
		r := graph(t, f, tok, "POST", "/users/"+mb+"/messages", "text/plain",
			[]byte(base64.StdEncoding.EncodeToString([]byte("To: bob@example.com\r\nSubject: M\r\n\r\nhello\r\n"))))
		if r.status != 201 {
			t.Fatalf("MIME draft: %d %s", r.status, r.body)
		}
		return r.json(t)["id"].(string)
	}()
	if r := graph(t, f, tok, "POST", msgPath(mb, mimeID, "/send"), "", nil); r.status != 202 {
		t.Fatalf("send MIME draft: %d %s", r.status, r.body)
	}
	if s := f.Sent()[1]; s.Via != "draft" || s.MIME == nil || s.Message.Subject != "M" || s.Message.To[0].Address != "bob@example.com" {
		t.Errorf("MIME draft sent as %+v", s)
	}
}
