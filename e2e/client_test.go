package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
)

// requestTimeout bounds every call; the slowest backend in the tests takes 2 s.
const requestTimeout = 20 * time.Second

var httpClient = &http.Client{Timeout: requestTimeout}

// auth is how a request presents its key: a header (REST) or metadata entry (gRPC).
type auth struct {
	name, value string // empty name: no key at all
}

func xAPIKey(key string) auth { return auth{"X-API-Key", key} }
func bearer(key string) auth  { return auth{"Authorization", "Bearer " + key} }

// restResponse is what a REST call returned.
type restResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

// rest makes one REST call. A non-nil body is sent as JSON.
func rest(t testing.TB, method, url string, a auth, body io.Reader) restResponse {
	t.Helper()
	r, err := doREST(method, url, a, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// doREST is rest for goroutines other than the test's: it returns its error.
func doREST(method, url string, a auth, body io.Reader) (restResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return restResponse{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.name != "" {
		req.Header.Set(a.name, a.value)
	}
	return doRequest(req)
}

// doRequest sends a request the caller built, within requestTimeout.
func doRequest(req *http.Request) (restResponse, error) {
	ctx, cancel := context.WithTimeout(req.Context(), requestTimeout)
	defer cancel()
	method, url := req.Method, req.URL.String()
	resp, err := httpClient.Do(req.WithContext(ctx))
	if err != nil {
		return restResponse{}, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return restResponse{}, fmt.Errorf("%s %s: reading the response: %w", method, url, err)
	}
	return restResponse{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// decodeSend parses a SendMail response body.
func decodeSend(t testing.TB, body []byte) *mailgatev1.SendMailResponse {
	t.Helper()
	resp := new(mailgatev1.SendMailResponse)
	if err := protojson.Unmarshal(body, resp); err != nil {
		t.Fatalf("SendMail response %q: %v", body, err)
	}
	return resp
}

// sendREST posts a SendMail JSON body to /v1/messages:send.
func sendREST(t testing.TB, p *proc, a auth, jsonBody []byte) restResponse {
	t.Helper()
	return rest(t, http.MethodPost, p.baseURL+"/v1/messages:send", a, bytes.NewReader(jsonBody))
}

// sendOK posts a SendMail JSON body and decodes the 200 response.
func sendOK(t testing.TB, p *proc, a auth, jsonBody []byte) *mailgatev1.SendMailResponse {
	t.Helper()
	r := sendREST(t, p, a, jsonBody)
	if r.Status != http.StatusOK {
		t.Fatalf("POST /v1/messages:send: HTTP %d, want 200: %s", r.Status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	resp := new(mailgatev1.SendMailResponse)
	if err := protojson.Unmarshal(r.Body, resp); err != nil {
		t.Fatalf("response is not a SendMailResponse: %v: %s", err, r.Body)
	}
	return resp
}

// mustJSON marshals v with encoding/json (for hand-written REST bodies).
func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// protoJSON renders a request as the REST API's JSON (lowerCamelCase names).
func protoJSON(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// statusBody is a google.rpc.Status as the REST API writes it.
type statusBody struct {
	Code    int            `json:"code"`
	Message string         `json:"message"`
	Details []statusDetail `json:"details"`
}

// statusDetail is one of the details: ErrorInfo, BadRequest or RetryInfo, told apart by @type.
type statusDetail struct {
	Type            string            `json:"@type"`
	Reason          string            `json:"reason"`
	Domain          string            `json:"domain"`
	Metadata        map[string]string `json:"metadata"`
	FieldViolations []struct {
		Field       string `json:"field"`
		Description string `json:"description"`
	} `json:"fieldViolations"`
}

const (
	typeErrorInfo  = "type.googleapis.com/google.rpc.ErrorInfo"
	typeBadRequest = "type.googleapis.com/google.rpc.BadRequest"
)

// wantError is the error a request must get, on both transports.
type wantError struct {
	http   int
	code   codes.Code
	reason string
	// fields must all be among the BadRequest field violations.
	fields []string
}

// checkRESTError checks an error response: HTTP status, JSON body with code, message,
// an ErrorInfo with the reason (domain mailgate), and the field violations.
func checkRESTError(t testing.TB, r restResponse, want wantError) {
	t.Helper()
	if r.Status != want.http {
		t.Errorf("HTTP %d, want %d; body: %s", r.Status, want.http, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var st statusBody
	if err := json.Unmarshal(r.Body, &st); err != nil {
		t.Fatalf("error body is not a JSON google.rpc.Status: %v: %s", err, r.Body)
	}
	if st.Code != int(want.code) {
		t.Errorf("body code %d (%s), want %d (%s); body: %s", st.Code, codes.Code(st.Code), want.code, want.code, r.Body)
	}
	if st.Message == "" {
		t.Errorf("body has no message: %s", r.Body)
	}
	var reasons, fields []string
	for _, d := range st.Details {
		switch d.Type {
		case typeErrorInfo:
			reasons = append(reasons, d.Reason)
			if d.Domain != "mailgate" {
				t.Errorf("ErrorInfo domain %q, want mailgate", d.Domain)
			}
		case typeBadRequest:
			for _, f := range d.FieldViolations {
				fields = append(fields, f.Field)
				if f.Description == "" {
					t.Errorf("field violation %s has no description", f.Field)
				}
			}
		}
	}
	if len(reasons) != 1 || reasons[0] != want.reason {
		t.Errorf("ErrorInfo reasons %q, want exactly [%s]; body: %s", reasons, want.reason, r.Body)
	}
	for _, f := range want.fields {
		if !slices.Contains(fields, f) {
			t.Errorf("field violations %q lack %q; body: %s", fields, f, r.Body)
		}
	}
}

// dial opens a MailService client to the process.
func dial(t testing.TB, p *proc) mailgatev1.MailServiceClient {
	return mailgatev1.NewMailServiceClient(dialConn(t, p))
}

// dialConn opens a gRPC client connection to the process.
func dialConn(t testing.TB, p *proc) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// rpcContext is a bounded context carrying the key as gRPC metadata.
func rpcContext(t testing.TB, a auth) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	t.Cleanup(cancel)
	switch a.name {
	case "":
		return ctx
	case "X-API-Key":
		return metadata.AppendToOutgoingContext(ctx, "x-api-key", a.value)
	default:
		return metadata.AppendToOutgoingContext(ctx, "authorization", a.value)
	}
}

// checkGRPCError checks a gRPC error's code, ErrorInfo reason and field violations.
func checkGRPCError(t testing.TB, err error, want wantError) {
	t.Helper()
	if err == nil {
		t.Fatalf("call succeeded, want %s %s", want.code, want.reason)
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("not a gRPC status: %v", err)
	}
	if st.Code() != want.code {
		t.Errorf("code %s, want %s (%v)", st.Code(), want.code, err)
	}
	if st.Message() == "" {
		t.Errorf("status has no message")
	}
	var reasons, fields []string
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			reasons = append(reasons, d.GetReason())
			if d.GetDomain() != "mailgate" {
				t.Errorf("ErrorInfo domain %q, want mailgate", d.GetDomain())
			}
		case *errdetails.BadRequest:
			for _, f := range d.GetFieldViolations() {
				fields = append(fields, f.GetField())
			}
		case error:
			t.Errorf("undecodable status detail: %v", d)
		}
	}
	if len(reasons) != 1 || reasons[0] != want.reason {
		t.Errorf("ErrorInfo reasons %q, want exactly [%s] (%v)", reasons, want.reason, err)
	}
	for _, f := range want.fields {
		if !slices.Contains(fields, f) {
			t.Errorf("field violations %q lack %q (%v)", fields, f, err)
		}
	}
}
