package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	spb "google.golang.org/genproto/googleapis/rpc/status"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/mailerr/mailstatus"
	"github.com/mailgate/mailgate/senders"
)

// statusJSON is the documented REST error body, with every field a client reads.
type statusJSON struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type            string            `json:"@type"`
		Reason          string            `json:"reason"`
		Domain          string            `json:"domain"`
		Metadata        map[string]string `json:"metadata"`
		FieldViolations []struct {
			Field       string `json:"field"`
			Description string `json:"description"`
		} `json:"fieldViolations"`
	} `json:"details"`
}

// errorCall is an error as a client of either API reads it.
type errorCall struct {
	code       codes.Code
	message    string
	reason     string // "" when there is no mailgate ErrorInfo
	metadata   map[string]string
	violations []mailerr.FieldViolation
}

// restCall sends a REST request and reads its error body, failing unless the answer is
// the documented JSON.
func restCall(t *testing.T, method, url string, header http.Header, body string) (*http.Response, errorCall) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %.80s: %d with Content-Type %q, want application/json: %.300q", method, url, resp.StatusCode, ct, b)
	}
	var st statusJSON
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("%s %.80s: the error body is not JSON (%v): %.300q", method, url, err, b)
	}
	e := errorCall{code: codes.Code(st.Code), message: st.Message}
	for _, d := range st.Details {
		switch d.Type {
		case "type.googleapis.com/google.rpc.ErrorInfo":
			if d.Domain == mailerr.Domain {
				e.reason, e.metadata = d.Reason, d.Metadata
			}
		case "type.googleapis.com/google.rpc.BadRequest":
			for _, f := range d.FieldViolations {
				e.violations = append(e.violations, mailerr.FieldViolation{Field: f.Field, Description: f.Description})
			}
		}
	}
	return resp, e
}

func grpcCall(err error) errorCall {
	st := status.Convert(err)
	e := errorCall{code: st.Code(), message: st.Message()}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() == mailerr.Domain {
				e.reason, e.metadata = d.GetReason(), d.GetMetadata()
			}
		case *errdetails.BadRequest:
			for _, f := range d.GetFieldViolations() {
				e.violations = append(e.violations, mailerr.FieldViolation{Field: f.GetField(), Description: f.GetDescription()})
			}
		}
	}
	return e
}

// checkFit fails unless every text of e is UTF-8 and within its bound.
func checkFit(t *testing.T, e errorCall) {
	t.Helper()
	fit := func(what, s string, limit int) {
		if !utf8.ValidString(s) || len(s) > limit {
			t.Errorf("%s is %d bytes (limit %d), UTF-8 %v: %.200q", what, len(s), limit, utf8.ValidString(s), s)
		}
	}
	fit("message", e.message, mailstatus.MaxMessage)
	for k, v := range e.metadata {
		fit("metadata key", k, mailstatus.MaxDetail)
		fit("metadata "+k, v, mailstatus.MaxDetail)
	}
	for _, f := range e.violations {
		fit("violation field", f.Field, mailstatus.MaxDetail)
		fit("violation of "+f.Field, f.Description, mailstatus.MaxDetail)
	}
}

// echoingSender refuses every message as a relay's content filter might, quoting the
// message's Subject line in its reply, whatever bytes it has.
func echoingSender(_ context.Context, m *senders.Message) (*senders.Result, error) {
	var buf bytes.Buffer
	m.WriteTo(&buf)
	var line string
	for l := range strings.SplitSeq(buf.String(), "\n") {
		if strings.HasPrefix(l, "Subject:") || strings.HasPrefix(l, "From:") && line == "" {
			line = strings.TrimRight(l, "\r") // the Subject, else the From
		}
	}
	reply := "550 5.7.1 refused by content filter: " + line
	e := mailerr.New(mailerr.Rejected, "relay.example.com refused end of DATA: %s", reply)
	e.Metadata = map[string]string{"smtpReply": reply, "smtpCommand": "end of DATA"}
	return nil, e
}

// Errors that quote what the caller sent (or what a server answered about it) keep their
// documented form whatever the bytes: JSON with ErrorInfo over REST, a status with its
// details over gRPC, each text UTF-8 (other bytes as \xNN) and cut to its bound.
func TestQuotedInputErrors(t *testing.T) {
	t.Parallel()
	srv := startServerWith(t, nil, func(o *Options) { o.Service.Backends["fail"] = senderFunc(echoingSender) })
	huge := strings.Repeat("a", 52<<10)
	var foldedTo strings.Builder
	foldedTo.WriteString("From: app@example.com\r\nTo: bob@example.com")
	for foldedTo.Len() < 52<<10 {
		// Latin-1 names, read as windows-1252; the unquoted comma makes the field fail to
		// parse, and a raw message without to, cc or bcc is refused for it.
		foldedTo.WriteString(",\r\n M\xfcller, Hans <mueller@example.com>")
	}
	foldedTo.WriteString("\r\n\r\nhi\r\n")
	raw := func(s string) *mailgatev1.SendMailRequest { return &mailgatev1.SendMailRequest{RawMime: []byte(s)} }
	structured := func(modify func(*mailgatev1.SendMailRequest)) *mailgatev1.SendMailRequest {
		r := validRequest()
		modify(r)
		return r
	}
	tests := []struct {
		name     string
		req      *mailgatev1.SendMailRequest // sent over both APIs
		restBody string                      // instead, REST only: a body protojson cannot write
		header   http.Header                 // REST only
		httpCode int
		code     codes.Code
		reasons  []string // the ErrorInfo reason is one of these
		contains string   // in the message
		field    string   // a field violation, when one is named
	}{
		{name: "Latin-1 Subject line quoted by the backend",
			req:      raw("From: fail@example.com\r\nTo: bob@example.com\r\nSubject: Gr\xfc\xdfe aus M\xfcnchen\r\n\r\nhi\r\n"),
			httpCode: 422, code: codes.FailedPrecondition, reasons: []string{"BACKEND_REJECTED"}, contains: `Subject: Gr\xfc\xdfe aus M\xfcnchen`},
		// A Latin-1 display name in From is re-encoded before any backend sees it: the
		// backend quotes RFC 2047 words, nothing to escape.
		{name: "Latin-1 From display name",
			req:      raw("From: M\xfcller <fail@example.com>\r\nTo: bob@example.com\r\n\r\nhi\r\n"),
			httpCode: 422, code: codes.FailedPrecondition, reasons: []string{"BACKEND_REJECTED"}, contains: `From: =?utf-8?q?M=C3=BCller?=`},
		{name: "52 KB To field of Latin-1 names", req: raw(foldedTo.String()),
			httpCode: 400, code: codes.InvalidArgument, reasons: []string{"INVALID_ARGUMENT"}, field: "rawMime"},
		{name: "52 KB custom header name", req: structured(func(r *mailgatev1.SendMailRequest) { r.Headers = map[string]string{"X-" + huge + " ": "v"} }),
			httpCode: 400, code: codes.InvalidArgument, reasons: []string{"INVALID_ARGUMENT"}, contains: "bytes more)"},
		{name: "52 KB tag name", req: structured(func(r *mailgatev1.SendMailRequest) { r.Tags = map[string]string{huge: "v"} }),
			httpCode: 400, code: codes.InvalidArgument, reasons: []string{"INVALID_ARGUMENT"}, contains: "bytes more)", field: "tags"},
		{name: "address with a byte that is not UTF-8 in JSON",
			restBody: `{"from":{"address":"app@example.com"},"to":[{"address":"b` + "\xff" + `b@example.com"}],"text":"hi"}`,
			httpCode: 400, code: codes.InvalidArgument, reasons: []string{"INVALID_ARGUMENT"}, contains: "to[0].address: not valid UTF-8", field: "to[0].address"},
		{name: "tag name with a byte that is not UTF-8 in JSON",
			restBody: `{"from":{"address":"app@example.com"},"to":[{"address":"bob@example.com"}],"text":"hi","tags":{"k` + "\xe9" + `y":"v"}}`,
			httpCode: 400, code: codes.InvalidArgument, reasons: []string{"INVALID_ARGUMENT"}, contains: "the name is not valid UTF-8", field: "tags.k\ufffdy"},
		{name: "Latin-1 Authorization scheme",
			header:   http.Header{"Authorization": {"Cl\xe9 " + appKey}, "X-Api-Key": nil},
			restBody: `{"from":{"address":"app@example.com"},"to":[{"address":"bob@example.com"}],"text":"hi"}`,
			httpCode: 401, code: codes.Unauthenticated, reasons: []string{"UNAUTHENTICATED"}, contains: "`Cl\\xe9`"},
	}
	for _, tt := range tests {
		check := func(t *testing.T, httpCode int, e errorCall) {
			t.Helper()
			checkFit(t, e)
			if !slices.Contains(tt.reasons, e.reason) {
				t.Fatalf("%v %q: reason %q, want one of %v (details lost?)", e.code, e.message, e.reason, tt.reasons)
			}
			want := map[string]codes.Code{"INVALID_ARGUMENT": codes.InvalidArgument, "BACKEND_REJECTED": codes.FailedPrecondition}
			if tt.code != 0 && e.code != tt.code || tt.code == 0 && e.code != want[e.reason] {
				t.Errorf("code %v, want %v for %s", e.code, tt.code, e.reason)
			}
			if httpCode != 0 && tt.httpCode != 0 && httpCode != tt.httpCode {
				t.Errorf("HTTP %d, want %d", httpCode, tt.httpCode)
			}
			if !strings.Contains(e.message, tt.contains) {
				t.Errorf("message %.300q does not contain %q", e.message, tt.contains)
			}
			if tt.field != "" && !slices.ContainsFunc(e.violations, func(f mailerr.FieldViolation) bool { return f.Field == tt.field }) {
				t.Errorf("no violation of %s in %+v", tt.field, e.violations)
			}
			if e.reason == "BACKEND_REJECTED" && strings.Contains(tt.contains, `\x`) && !strings.Contains(e.metadata["smtpReply"], `\x`) {
				t.Errorf("metadata %v: the reply is not quoted, escaped", e.metadata)
			}
		}
		t.Run(tt.name+"/REST", func(t *testing.T) {
			t.Parallel()
			body := tt.restBody
			if tt.req != nil {
				b, err := protojson.Marshal(tt.req)
				if err != nil {
					t.Fatal(err)
				}
				body = string(b)
			}
			header := http.Header{"X-Api-Key": {appKey}, "Content-Type": {"application/json"}}
			for k, v := range tt.header {
				header[k] = v
			}
			resp, e := restCall(t, "POST", srv.url+"/v1/messages:send", header, body)
			check(t, resp.StatusCode, e)
		})
		if tt.req == nil {
			continue
		}
		t.Run(tt.name+"/gRPC", func(t *testing.T) {
			t.Parallel()
			_, err := srv.mail.SendMail(withAPIKey(appKey), tt.req)
			if err == nil {
				t.Fatal("SendMail succeeded")
			}
			check(t, 0, grpcCall(err))
		})
	}
}

// A refusal that quotes bytes that are not UTF-8 is stored for its idempotency key like
// any other, and a retry gets it back whole, over either API.
func TestQuotedErrorReplayed(t *testing.T) {
	t.Parallel()
	srv := startServerWith(t, nil, func(o *Options) { o.Service.Backends["fail"] = senderFunc(echoingSender) })
	req := &mailgatev1.SendMailRequest{RawMime: []byte("From: fail@example.com\r\nTo: bob@example.com\r\nSubject: Gr\xfc\xdfe\r\n\r\nhi\r\n")}
	body, _ := protojson.Marshal(req)
	var first errorCall
	for i, via := range []string{"gRPC", "gRPC", "REST"} {
		var e errorCall
		if via == "gRPC" {
			_, err := srv.mail.SendMail(withIdemKey(withAPIKey(appKey), "latin-1"), req)
			e = grpcCall(err)
		} else {
			_, e = restCall(t, "POST", srv.url+"/v1/messages:send", http.Header{"X-Api-Key": {appKey}, "Idempotency-Key": {"latin-1"}}, string(body))
		}
		if e.reason != "BACKEND_REJECTED" || e.metadata["smtpReply"] == "" {
			t.Fatalf("attempt %d (%s): %v %s %q metadata %v, want BACKEND_REJECTED with the reply", i+1, via, e.code, e.reason, e.message, e.metadata)
		}
		if i == 0 {
			first = e
		} else if e.message != first.message || e.metadata["smtpReply"] != first.metadata["smtpReply"] {
			t.Errorf("attempt %d (%s) = %q %v, want the first answer %q %v", i+1, via, e.message, e.metadata, first.message, first.metadata)
		}
	}
}

// A status protojson cannot write (a detail of a type it does not know) still goes out
// as the documented JSON, with its code, message and an ErrorInfo, never as plain text.
func TestWriteStatusFallback(t *testing.T) {
	t.Parallel()
	st := status.FromProto(&spb.Status{Code: int32(codes.FailedPrecondition), Message: "550 5.7.1 no, M\xfcller",
		Details: []*anypb.Any{{TypeUrl: "type.googleapis.com/example.Unknown", Value: []byte{1, 2, 3}}}})
	rec := &recorder{header: http.Header{}}
	writeStatus(rec, 422, st)
	var got statusJSON
	if err := json.Unmarshal(rec.body.Bytes(), &got); err != nil || rec.header.Get("Content-Type") != "application/json" {
		t.Fatalf("%q %q: not the JSON error body (%v)", rec.header.Get("Content-Type"), rec.body.String(), err)
	}
	if rec.status != 422 || got.Code != int(codes.FailedPrecondition) || got.Message != `550 5.7.1 no, M\xfcller` ||
		len(got.Details) != 1 || got.Details[0].Reason != "BACKEND_REJECTED" || got.Details[0].Domain != mailerr.Domain {
		t.Errorf("%d %+v", rec.status, got)
	}
}
