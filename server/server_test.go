package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/mailaddr"
	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/mailerr/mailstatus"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/server/apikey"
	"github.com/mailgate/mailgate/server/policy"
)

const (
	appKey   = "mg_app-test-key"
	otherKey = "mg_other-test-key"
)

// scriptedSender is a backend whose answer the test chooses.
type scriptedSender struct {
	senders.SenderDefaults
	err  error
	sent chan *senders.Message
}

func (s *scriptedSender) Send(ctx context.Context, msg *senders.Message) (*senders.Result, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.sent != nil {
		s.sent <- msg
	}
	return &senders.Result{Status: senders.Sent, Accepted: msg.Recipients}, nil
}

type testServer struct {
	srv  *Server
	grpc *grpc.ClientConn
	url  string
	mail mailgatev1.MailServiceClient
}

// startServer runs a Server on loopback listeners with two keys and one route per
// backend: "ok@example.com" → ok, "fail@example.com" → the failing backend.
func startServer(t testing.TB, failWith error) *testServer {
	t.Helper()
	return startServerWith(t, failWith, nil)
}

// startServerWith lets a test adjust the options before the server starts.
func startServerWith(t testing.TB, failWith error, adjust func(*Options)) *testServer {
	t.Helper()
	keys := testKeys()
	router := policy.NewRouter([]policy.Route{
		{Name: "failing", Match: mailaddr.MustParsePattern("fail@example.com"), Backend: "fail"},
		{Name: "main", Match: mailaddr.MustParsePattern("*@example.com"), Backend: "ok"},
	})
	opts := Options{
		Service: ServiceOptions{
			Router:   router,
			Backends: map[string]senders.Sender{"ok": &scriptedSender{}, "fail": &scriptedSender{err: failWith}},
			Limits:   Limits{MaxMessageBytes: 64 << 10, MaxRecipients: 10},
		},
		Keys: keys,
	}
	if adjust != nil {
		adjust(&opts)
	}
	ts, _ := runServer(t, opts)
	return ts
}

func withAPIKey(key string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+key)
}

func errorInfo(t *testing.T, err error) (codes.Code, *errdetails.ErrorInfo, *status.Status) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("not a status: %v", err)
	}
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return st.Code(), ei, st
		}
	}
	t.Fatalf("status %v has no ErrorInfo", st)
	return 0, nil, nil
}

func TestGRPCErrors(t *testing.T) {
	t.Parallel()
	srv := startServer(t, mailerr.New(mailerr.Rejected, "550 5.7.1 no").WithReason("BACKEND_REJECTED"))
	tests := []struct {
		name   string
		ctx    context.Context
		modify func(*mailgatev1.SendMailRequest)
		code   codes.Code
		reason string
	}{
		{"no key", context.Background(), nil, codes.Unauthenticated, "UNAUTHENTICATED"},
		{"unknown key", withAPIKey("mg_nope"), nil, codes.Unauthenticated, "UNAUTHENTICATED"},
		{"x-api-key works", metadata.AppendToOutgoingContext(context.Background(), "x-api-key", appKey), nil, codes.OK, ""},
		{"sender not allowed", withAPIKey(appKey), func(r *mailgatev1.SendMailRequest) { r.From = addr("app@elsewhere.org") }, codes.PermissionDenied, "SENDER_NOT_ALLOWED"},
		{"no route", withAPIKey(otherKey), func(r *mailgatev1.SendMailRequest) { r.From = addr("x@unrouted.org") }, codes.PermissionDenied, "NO_ROUTE"},
		{"invalid", withAPIKey(appKey), func(r *mailgatev1.SendMailRequest) { r.To = nil }, codes.InvalidArgument, "INVALID_ARGUMENT"},
		{"too large", withAPIKey(appKey), func(r *mailgatev1.SendMailRequest) { r.Text = strings.Repeat("x", 80<<10) }, codes.InvalidArgument, "MESSAGE_TOO_LARGE"},
		{"backend rejects", withAPIKey(appKey), func(r *mailgatev1.SendMailRequest) { r.From = addr("fail@example.com") }, codes.FailedPrecondition, "BACKEND_REJECTED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := validRequest()
			if tt.modify != nil {
				tt.modify(req)
			}
			resp, err := srv.mail.SendMail(tt.ctx, req)
			if tt.code == codes.OK {
				if err != nil || resp.GetStatus() != mailgatev1.Status_SENT {
					t.Fatalf("SendMail = %v, %v", resp, err)
				}
				return
			}
			code, info, _ := errorInfo(t, err)
			if code != tt.code || info.GetReason() != tt.reason || info.GetDomain() != mailerr.Domain {
				t.Errorf("got %v %s/%s, want %v %s", code, info.GetDomain(), info.GetReason(), tt.code, tt.reason)
			}
		})
	}
}

func TestGetMessageScopedByKey(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	req := validRequest()
	req.Tags = map[string]string{"job": "invoice-7"}
	sent, err := srv.mail.SendMail(withAPIKey(appKey), req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := srv.mail.GetMessage(withAPIKey(appKey), &mailgatev1.GetMessageRequest{Id: sent.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetMessageId() != sent.GetMessageId() || got.GetFrom() != "app@example.com" || got.GetTags()["job"] != "invoice-7" || got.GetStatus() != mailgatev1.Status_SENT {
		t.Errorf("GetMessage = %v", got)
	}
	_, err = srv.mail.GetMessage(withAPIKey(otherKey), &mailgatev1.GetMessageRequest{Id: sent.GetId()})
	if code, info, _ := errorInfo(t, err); code != codes.NotFound || info.GetReason() != "NOT_FOUND" {
		t.Errorf("another key reading the message: %v %s", code, info.GetReason())
	}
	_, err = srv.mail.GetMessage(withAPIKey(appKey), &mailgatev1.GetMessageRequest{Id: "../../etc"})
	if code, _, _ := errorInfo(t, err); code != codes.InvalidArgument {
		t.Errorf("malformed id: %v", code)
	}
}

func TestHealthNeedsNoKey(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	resp, err := healthpb.NewHealthClient(srv.grpc).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", resp, err)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/openapi.json"} {
		r, err := http.Get(srv.url + path)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != 200 {
			t.Errorf("GET %s = %d", path, r.StatusCode)
		}
	}
}

type restError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type            string `json:"@type"`
		Reason          string `json:"reason"`
		FieldViolations []struct {
			Field string `json:"field"`
		} `json:"fieldViolations"`
		RetryDelay string `json:"retryDelay"`
	} `json:"details"`
}

func (e restError) reason() string {
	for _, d := range e.Details {
		if d.Type == "type.googleapis.com/google.rpc.ErrorInfo" {
			return d.Reason
		}
	}
	return ""
}

func post(t *testing.T, url, key, body string) (*http.Response, restError) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/v1/messages:send", strings.NewReader(body))
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e restError
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("error body is not JSON: %q", b)
		}
	}
	return resp, e
}

func TestRESTErrors(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	const ok = `{"from":{"address":"app@example.com"},"to":[{"address":"bob@example.com"}],"text":"hi"}`
	tests := []struct {
		name, key, body string
		status          int
		reason, field   string
	}{
		{"sent", appKey, ok, 200, "", ""},
		{"proto names accepted", appKey, `{"from":{"address":"app@example.com"},"to":[{"address":"bob@example.com"}],"text":"hi","save_to_sent_items":true}`, 200, "", ""},
		{"no key", "", ok, 401, "UNAUTHENTICATED", ""},
		{"forbidden", appKey, strings.Replace(ok, "app@example.com", "app@elsewhere.org", 1), 403, "SENDER_NOT_ALLOWED", ""},
		{"field violation", appKey, strings.Replace(ok, "bob@example.com", "bob", 1), 400, "INVALID_ARGUMENT", "to[0].address"},
		{"unknown field", appKey, `{"frm":1}`, 400, "INVALID_ARGUMENT", ""},
		{"not JSON", appKey, `{`, 400, "INVALID_ARGUMENT", ""},
		{"message too large", appKey, strings.Replace(ok, `"hi"`, `"`+strings.Repeat("x", 80<<10)+`"`, 1), 413, "MESSAGE_TOO_LARGE", "text"},
		// Quoted-printable triples non-ASCII bytes: 25 KB of kana is over 64 KB encoded.
		{"non-ASCII too large", appKey, strings.Replace(ok, `"hi"`, `"`+strings.Repeat("メ", 8<<10)+`"`, 1), 413, "MESSAGE_TOO_LARGE", "text"},
		{"body too large", appKey, strings.Replace(ok, `"hi"`, `"`+strings.Repeat("x", 2<<20)+`"`, 1), 413, "MESSAGE_TOO_LARGE", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, e := post(t, srv.url, tt.key, tt.body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (%+v)", resp.StatusCode, tt.status, e)
			}
			if tt.status == 200 {
				return
			}
			if e.reason() != tt.reason || e.Message == "" {
				t.Errorf("reason %q message %q, want reason %s", e.reason(), e.Message, tt.reason)
			}
			if tt.field != "" {
				found := false
				for _, d := range e.Details {
					for _, f := range d.FieldViolations {
						found = found || f.Field == tt.field
					}
				}
				if !found {
					t.Errorf("no field violation for %s in %+v", tt.field, e)
				}
			}
		})
	}
}

// The gateway error handler writes what gRPC cannot say: 422 and Retry-After.
func TestGatewayErrorHandler(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err        *mailerr.Error
		status     int
		retryAfter string
	}{
		{&mailerr.Error{Kind: mailerr.Throttled, Msg: "slow down", RetryAfter: 1500 * time.Millisecond}, 429, "2"},
		{&mailerr.Error{Kind: mailerr.Throttled, Msg: "slow down", RetryAfter: 10 * time.Millisecond}, 429, "1"},
		{&mailerr.Error{Kind: mailerr.KeyReused, Msg: "reused"}, 422, ""},
		{&mailerr.Error{Kind: mailerr.Rejected, Msg: "550 5.7.1"}, 422, ""},
		{&mailerr.Error{Kind: mailerr.InFlight, Msg: "in flight"}, 409, ""},
		{&mailerr.Error{Kind: mailerr.OutcomeUnknown, Msg: "unknown"}, 503, ""},
	}
	for _, tt := range tests {
		rec := &recorder{header: http.Header{}}
		r, _ := http.NewRequest("POST", "/v1/messages:send", nil)
		gatewayErrorHandler(context.Background(), nil, nil, rec, r, mailstatus.Err(tt.err))
		if rec.status != tt.status || rec.header.Get("Retry-After") != tt.retryAfter {
			t.Errorf("%v: status %d Retry-After %q, want %d %q", tt.err.Kind, rec.status, rec.header.Get("Retry-After"), tt.status, tt.retryAfter)
		}
		var e restError
		if err := json.Unmarshal(rec.body.Bytes(), &e); err != nil || e.reason() != string(tt.err.Kind.Reason()) {
			t.Errorf("%v: body %s", tt.err.Kind, rec.body.String())
		}
	}
}

type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(s int)           { r.status = s }

// Drain: a request in flight when shutdown starts still gets its answer.
func TestServeDrainsInFlight(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan struct{})
	blocking := senderFunc(func(ctx context.Context, msg *senders.Message) (*senders.Result, error) {
		close(started)
		<-release
		return &senders.Result{Status: senders.Sent, Accepted: msg.Recipients}, nil
	})
	keys := apikey.NewKeyring()
	keys.Add(&apikey.Key{Name: "app", Senders: []mailaddr.Pattern{mailaddr.MustParsePattern("*")}}, apikey.Hash(appKey))
	srv, err := New(Options{
		Service: ServiceOptions{
			Router:   policy.NewRouter([]policy.Route{{Name: "r", Match: mailaddr.MustParsePattern("*"), Backend: "b"}}),
			Backends: map[string]senders.Sender{"b": blocking},
			Limits:   Limits{MaxMessageBytes: 1 << 20, MaxRecipients: 10},
		},
		Keys: keys, ShutdownTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	grpcLn, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, nil, grpcLn) }()
	conn, _ := grpc.NewClient(grpcLn.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer conn.Close()
	result := make(chan error, 1)
	go func() {
		_, err := mailgatev1.NewMailServiceClient(conn).SendMail(withAPIKey(appKey), validRequest())
		result <- err
	}()
	<-started
	cancel() // shutdown begins with the request in flight
	select {
	case err := <-done:
		t.Fatalf("Serve returned before the in-flight request finished: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-result; err != nil {
		t.Errorf("in-flight request failed during drain: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	// New connections are refused once drained.
	if c, err := net.DialTimeout("tcp", grpcLn.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("listener still accepts connections after drain")
	}
}

type senderFunc func(context.Context, *senders.Message) (*senders.Result, error)

func (f senderFunc) Send(ctx context.Context, m *senders.Message) (*senders.Result, error) {
	return f(ctx, m)
}

func (senderFunc) Scope() senders.Scope { return senders.ScopeMailbox }
func (senderFunc) Concurrency() int     { return 0 }
func (senderFunc) Close() error         { return nil }

func TestKeyFromHeaders(t *testing.T) {
	t.Parallel()
	keys := apikey.NewKeyring()
	keys.Add(&apikey.Key{Name: "app"}, apikey.Hash("mg_abc"))
	tests := []struct {
		authz, xKey []string
		want        string // key name, or a part of the refusal
	}{
		{[]string{"Bearer mg_abc"}, nil, "app"},
		{[]string{"bearer   mg_abc "}, nil, "app"},
		{nil, []string{" mg_abc "}, "app"},
		{[]string{"Basic x"}, []string{"mg_abc"}, "app"},
		{[]string{"mg_abc"}, nil, "has an API key but no scheme"},
		{[]string{"Basic dXNlcjpwYXNz"}, nil, "scheme must be Bearer, not `Basic`"},
		{[]string{"Bearer "}, nil, "no key after it"},
		{[]string{""}, nil, "Authorization header is empty"},
		{[]string{"Bearer mg_other"}, nil, "unknown API key"},
		{nil, nil, "no API key: send `Authorization: Bearer <key>`"},
	}
	for _, tt := range tests {
		k, err := keyFromHeaders(tt.authz, tt.xKey, keys)
		got := ""
		if err != nil {
			got = err.Msg
			if err.Kind != mailerr.Unauthenticated {
				t.Errorf("%q %q: kind %v", tt.authz, tt.xKey, err.Kind)
			}
		} else {
			got = k.Name
		}
		if !strings.Contains(got, tt.want) || strings.Contains(got, "mg_abc") {
			t.Errorf("%q %q: %q, want %q (and never the key)", tt.authz, tt.xKey, got, tt.want)
		}
	}
}

func TestIDs(t *testing.T) {
	t.Parallel()
	now := time.Now()
	a, b := newID(now), newID(now.Add(time.Millisecond))
	if !validID(a) || !validID(b) || a >= b {
		t.Errorf("ids %q, %q: want valid and time-ordered", a, b)
	}
	for _, bad := range []string{"", "../../etc/passwd", strings.Repeat("u", 26), "8" + a[1:], a + "0"} {
		if validID(bad) {
			t.Errorf("validID(%q) = true", bad)
		}
	}
}

// A key allowed billing@contoso.com and *@kb.contoso.com may not send as addresses that
// only Unicode case folding makes equal to them (U+017F LONG S, U+212A KELVIN SIGN),
// over gRPC, REST, structured or raw; nothing reaches the backend.
func TestHomographSendersRefused(t *testing.T) {
	t.Parallel()
	const billingKey = "mg_billing-test-key"
	sent := make(chan *senders.Message, 10)
	srv := startServerWith(t, nil, func(o *Options) {
		o.Keys.Add(&apikey.Key{Name: "billing", Senders: []mailaddr.Pattern{
			mailaddr.MustParsePattern("billing@contoso.com"), mailaddr.MustParsePattern("*@kb.contoso.com")}}, apikey.Hash(billingKey))
		o.Service.Router = policy.NewRouter([]policy.Route{{Name: "all", Match: mailaddr.MustParsePattern("*"), Backend: "ok"}})
		o.Service.Backends["ok"] = &scriptedSender{sent: sent}
	})
	for _, from := range []string{"billing@contoſo.com", "x@\u212Ab.contoso.com", "biſſing@contoso.com"} {
		_, err := srv.mail.SendMail(withAPIKey(billingKey), &mailgatev1.SendMailRequest{
			From: addr(from), To: []*mailgatev1.Address{addr("a@contoso.com")}, Text: "x"})
		if code, info, _ := errorInfo(t, err); code == codes.OK || info.GetReason() == "" {
			t.Errorf("gRPC from %q: %v", from, err)
		}
		body := `{"from":{"address":"` + from + `"},"to":[{"address":"a@contoso.com"}],"text":"x"}`
		if resp, e := post(t, srv.url, billingKey, body); resp.StatusCode < 400 {
			t.Errorf("REST from %q: %d %+v", from, resp.StatusCode, e)
		}
		raw := &mailgatev1.SendMailRequest{RawMime: []byte("From: " + from + "\r\nTo: a@contoso.com\r\n\r\nx\r\n")}
		if _, err := srv.mail.SendMail(withAPIKey(billingKey), raw); status.Code(err) == codes.OK {
			t.Errorf("raw from %q accepted", from)
		}
	}
	// The real addresses still go through, in any ASCII case.
	for _, from := range []string{"billing@contoso.com", "Billing@CONTOSO.com", "x@KB.contoso.com"} {
		if _, err := srv.mail.SendMail(withAPIKey(billingKey), &mailgatev1.SendMailRequest{
			From: addr(from), To: []*mailgatev1.Address{addr("a@contoso.com")}, Text: "x"}); err != nil {
			t.Errorf("from %q: %v", from, err)
		}
		<-sent
	}
	select {
	case m := <-sent:
		t.Errorf("a homograph reached the backend: %s", m.From.Address)
	default:
	}
}
