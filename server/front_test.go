package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/senders"
)

// Bad REST requests are refused with a message and, where a field is at fault, a field
// violation naming it; nothing reaches the backend.
func TestRESTBadInput(t *testing.T) {
	t.Parallel()
	sent := make(chan *senders.Message, 100)
	srv := startServerWith(t, nil, func(o *Options) { o.Service.Backends["ok"] = &scriptedSender{sent: sent} })
	const ok = `{"from":{"address":"app@example.com"},"to":[{"address":"bob@example.com"}],"text":"hi"}`
	tests := []struct {
		name    string
		header  http.Header
		body    string
		status  int
		message string // a part of the message
		field   string // a field violation, when one is named
	}{
		{"trailing garbage", nil, ok + "xyz", 400, "data after the JSON object", ""},
		{"two objects", nil, ok + ok, 400, "data after the JSON object", ""},
		{"array", nil, "[" + ok + "]", 400, "must be a JSON object, not an array", ""},
		{"to as a string", nil, strings.Replace(ok, `[{"address":"bob@example.com"}]`, `"bob@example.com"`, 1), 400,
			`to: must be a JSON array of objects, not a string, e.g. [{"address": "bob@example.com"}]`, "to"},
		{"from as a string", nil, strings.Replace(ok, `{"address":"app@example.com"}`, `"app@example.com"`, 1), 400,
			"from: must be a JSON object, not a string", "from"},
		{"tags as a list", nil, strings.Replace(ok, `"text"`, `"tags":["a","b"],"text"`, 1), 400,
			"tags: must be a JSON object of string values, not an array", "tags"},
		{"content not base64", nil, strings.Replace(ok, `"text"`, `"attachments":[{"filename":"a.pdf","content":"%%%"}],"text"`, 1), 400,
			"attachments[0].content: not base64", "attachments[0].content"},
		{"unknown field", nil, strings.Replace(ok, `"text"`, `"frm":1,"text"`, 1), 400, "frm: unknown field", "frm"},
		{"number for a string", nil, strings.Replace(ok, `"hi"`, `7`, 1), 400, "text: must be a string, not a number", "text"},
		{"truncated", nil, ok[:30], 400, "the JSON ends early", ""},
		{"form-encoded", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, "from=app@example.com&to=bob@example.com", 400,
			"send JSON with Content-Type: application/json (this body is application/x-www-form-urlencoded)", ""},
		{"non-ASCII Idempotency-Key", http.Header{"Idempotency-Key": {"k\xc3\xa9y"}}, ok, 400, "printable ASCII", "Idempotency-Key"},
		{"conflicting Idempotency-Key spellings", http.Header{"Idempotency-Key": {"one"}, "Grpc-Metadata-Idempotency-Key": {"two"}}, ok, 400,
			"differs from the Idempotency-Key header", "Grpc-Metadata-Idempotency-Key"},
		{"key without Bearer", http.Header{"X-Api-Key": nil, "Authorization": {appKey}}, ok, 401, "has an API key but no scheme", ""},
		{"Basic auth", http.Header{"X-Api-Key": nil, "Authorization": {"Basic YTpi"}}, ok, 401, "scheme must be Bearer, not `Basic`", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, e := postWith(t, srv.url, tt.header, tt.body)
			if status != tt.status || !strings.Contains(e.Message, tt.message) {
				t.Fatalf("%d %q, want %d with %q", status, e.Message, tt.status, tt.message)
			}
			if tt.field != "" && !hasViolation(e, tt.field) {
				t.Errorf("no field violation for %s in %+v", tt.field, e)
			}
		})
	}
	// The same key twice, in both spellings, is one key.
	h := http.Header{"Idempotency-Key": {"same"}, "Grpc-Metadata-Idempotency-Key": {"same"}}
	if status, e := postWith(t, srv.url, h, ok); status != 200 {
		t.Errorf("one key in both spellings: %d %+v", status, e)
	}
	if n := len(sent); n != 1 {
		t.Errorf("%d messages reached the backend, want 1", n)
	}
}

func postWith(t *testing.T, url string, header http.Header, body string) (int, restError) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/v1/messages:send", strings.NewReader(body))
	req.Header.Set("X-API-Key", appKey)
	for k, v := range header {
		req.Header.Del(k)
		for _, x := range v {
			req.Header.Add(k, x)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e restError
	if resp.StatusCode != 200 {
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("error body is not JSON: %q", b)
		}
	}
	return resp.StatusCode, e
}

func hasViolation(e restError, field string) bool {
	for _, d := range e.Details {
		for _, f := range d.FieldViolations {
			if f.Field == field {
				return true
			}
		}
	}
	return false
}

// A gRPC request whose string field is not UTF-8 is the caller's error, named by field,
// not a server error.
func TestGRPCInvalidUTF8(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	valid, _ := proto.Marshal(&mailgatev1.SendMailRequest{From: addr("app@example.com"), To: []*mailgatev1.Address{addr("bob@example.com")}})
	tests := []struct {
		name  string
		wire  []byte
		field string
	}{
		{"subject", protowire.AppendString(protowire.AppendTag(bytes.Clone(valid), 6, protowire.BytesType), "caf\xe9"), "subject"},
		{"second to's name", appendAddress(appendAddress(bytes.Clone(valid), 2, "a@example.com", "ok"), 2, "b@example.com", "M\xfcller"), "to[2].name"},
		{"tag value", appendTag(bytes.Clone(valid), "k", "v\xff"), "tags (a value)"},
	}
	for _, tt := range tests {
		var out mailgatev1.SendMailResponse
		err := srv.grpc.Invoke(withAPIKey(appKey), mailgatev1.MailService_SendMail_FullMethodName, wireMessage(tt.wire), &out, grpc.ForceCodecV2(rawCodec{}))
		code, info, st := errorInfo(t, err)
		if code != codes.InvalidArgument || info.GetReason() != "INVALID_ARGUMENT" || !strings.Contains(st.Message(), tt.field+": not valid UTF-8") {
			t.Errorf("%s: %v %q, want INVALID_ARGUMENT naming %s", tt.name, code, st.Message(), tt.field)
		}
		if !statusHasViolation(st, tt.field) {
			t.Errorf("%s: no field violation for %s", tt.name, tt.field)
		}
	}
}

func appendAddress(b []byte, num protowire.Number, address, name string) []byte {
	a, _ := proto.Marshal(&mailgatev1.Address{Address: address})
	a = protowire.AppendString(protowire.AppendTag(a, 2, protowire.BytesType), name)
	return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), a)
}

func appendTag(b []byte, k, v string) []byte {
	var e []byte
	e = protowire.AppendString(protowire.AppendTag(e, 1, protowire.BytesType), k)
	e = protowire.AppendString(protowire.AppendTag(e, 2, protowire.BytesType), v)
	return protowire.AppendBytes(protowire.AppendTag(b, 12, protowire.BytesType), e)
}

func statusHasViolation(st *status.Status, field string) bool {
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == field {
					return true
				}
			}
		}
	}
	return false
}

// A request without a valid key is refused from its headers: the server never reads
// the body. The client here sends the headers and then waits; the refusal must arrive
// while it waits.
func TestUnauthenticatedBodyNotRead(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	for _, auth := range []string{"", "Bearer mg_nope"} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(srv.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		req := "POST /v1/messages:send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40000\r\n"
		if auth != "" {
			req += "Authorization: " + auth + "\r\n"
		}
		io.WriteString(conn, req+"\r\n{")
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%q: no answer before the body was sent: %v", auth, err)
		}
		if resp.StatusCode != 401 {
			t.Errorf("%q: status %d, want 401", auth, resp.StatusCode)
		}
		conn.Close()
	}

	// gRPC: the call is refused before its message is read, so a message over gRPC's
	// receive limit still gets UNAUTHENTICATED, not RESOURCE_EXHAUSTED.
	big := &mailgatev1.SendMailRequest{From: addr("app@example.com"), Text: strings.Repeat("x", 1<<20)}
	_, err := srv.mail.SendMail(withAPIKey("mg_nope"), big)
	if code, _, st := errorInfo(t, err); code != codes.Unauthenticated || st.Message() != "unknown API key" {
		t.Errorf("gRPC: %v %q, want UNAUTHENTICATED", code, st.Message())
	}
}

// The in-flight budget refuses what it cannot hold, over gRPC and REST, with SERVER_BUSY
// and a retry delay, and holds nothing once requests end.
func TestInflightBudget(t *testing.T) {
	t.Parallel()
	const maxMessage = 64 << 10
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	srv := startServerWith(t, nil, func(o *Options) {
		o.MaxInflightBytes = LargestRequest(maxMessage)
		o.inflightWait = 200 * time.Millisecond
		o.Service.Backends["ok"] = senderFunc(func(ctx context.Context, m *senders.Message) (*senders.Result, error) {
			started <- struct{}{}
			<-release
			return &senders.Result{Status: senders.Sent, Accepted: m.Recipients}, nil
		})
	})
	req := func(text string) *mailgatev1.SendMailRequest {
		return &mailgatev1.SendMailRequest{From: addr("app@example.com"), To: []*mailgatev1.Address{addr("bob@example.com")}, Text: text}
	}
	first := make(chan error, 1)
	go func() {
		_, err := srv.mail.SendMail(withAPIKey(appKey), req(strings.Repeat("x", 50<<10)))
		first <- err
	}()
	select { // the first call holds its 50 KB, so a largest request no longer fits
	case <-started:
	case err := <-first:
		t.Fatalf("first call: %v", err)
	}

	_, err := srv.mail.SendMail(withAPIKey(appKey), req("small"))
	if code, info, _ := errorInfo(t, err); code != codes.Unavailable || info.GetReason() != "SERVER_BUSY" {
		t.Errorf("gRPC while the budget is spent: %v %s, want UNAVAILABLE SERVER_BUSY", code, info.GetReason())
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	maxBody := maxMessage*4/3 + 1<<20
	fmt.Fprintf(conn, "POST /v1/messages:send HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\nContent-Length: %d\r\n\r\n", appKey, maxBody)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("REST while the budget is spent: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first call: %v", err)
	}
	if _, err := srv.mail.SendMail(withAPIKey(appKey), req("after")); err != nil {
		t.Errorf("after the first call ended: %v", err)
	}
}

type wireMessage []byte

type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(wireMessage))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}
func (rawCodec) Name() string { return "proto" }
