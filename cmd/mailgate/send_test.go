package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/config/secret"
	"github.com/mailgate/mailgate/internal/app"
	"github.com/mailgate/mailgate/senders/file"
	"github.com/mailgate/mailgate/server/apikey"
)

const sendTestKey = "mg_unit_test_key"

type sendRun struct {
	code           int
	stdout, stderr string
}

// runSendTest runs the command with MAILGATE_API_KEY set and MAILGATE_URL unset.
func runSendTest(t *testing.T, stdin io.Reader, args ...string) sendRun {
	t.Helper()
	env := func(name string) string {
		if name == "MAILGATE_API_KEY" {
			return sendTestKey
		}
		return ""
	}
	var stdout, stderr bytes.Buffer
	code := runSend(context.Background(), args, stdin, &stdout, &stderr, env)
	r := sendRun{code, stdout.String(), stderr.String()}
	if strings.Contains(r.stdout+r.stderr, sendTestKey) {
		t.Errorf("the key was printed:\n%s%s", r.stdout, r.stderr)
	}
	return r
}

var minimalSendArgs = []string{"--from", "a@example.com", "--to", "b@example.com", "--text", "hi"}

const sendOKBody = `{"id":"01m867a62qe59n7jeazqncqnfg","messageId":"<01m867a62qe59n7jeazqncqnfg@example.com>","status":"SENT"}`

// TestSendRequest checks what goes over the wire for REST: the key, and the request the
// flags describe.
func TestSendRequest(t *testing.T) {
	t.Parallel()
	var got []*mailgatev1.SendMailRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/base/v1/messages:send" ||
			r.Header.Get("Authorization") != "Bearer "+sendTestKey || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s, Authorization %q, Content-Type %q", r.Method, r.URL, r.Header.Get("Authorization"), r.Header.Get("Content-Type"))
		}
		b, _ := io.ReadAll(r.Body)
		req := new(mailgatev1.SendMailRequest)
		if err := protojson.Unmarshal(b, req); err != nil {
			t.Errorf("request body %s: %v", b, err)
		}
		got = append(got, req)
		w.Write([]byte(sendOKBody))
	}))
	defer srv.Close()

	dir := t.TempDir()
	pdf := filepath.Join(dir, "r.pdf")
	os.WriteFile(pdf, []byte("%PDF-1.4 ..."), 0o600)
	gif := filepath.Join(dir, "logo")
	os.WriteFile(gif, []byte("GIF89a......"), 0o600)
	args := []string{"--server", srv.URL + "/base/",
		"--from", "billing@example.com", "--from-name", "Billing",
		"--to", `"Doe, Jane" <jane@example.net>, bob@example.net`, "--to", "Ärger <carl@example.net>",
		"--cc", "not an address", "--reply-to", "help@example.com",
		"--subject", "S", "--header", "X-A:  1 ", "--tag", "k=v=w",
		"--attach", pdf, "--inline", gif + ":logo@x", "--save-to-sent-items", "false",
		"--idempotency-key", "auto"}
	for range 2 {
		r := runSendTest(t, strings.NewReader("body from stdin"), args...)
		if r.code != 0 || r.stdout != "01m867a62qe59n7jeazqncqnfg <01m867a62qe59n7jeazqncqnfg@example.com> SENT\n" {
			t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	}
	want := &mailgatev1.SendMailRequest{
		From: &mailgatev1.Address{Address: "billing@example.com", Name: "Billing"},
		To: []*mailgatev1.Address{{Address: "jane@example.net", Name: "Doe, Jane"}, {Address: "bob@example.net"},
			{Address: "carl@example.net", Name: "Ärger"}},
		Cc:      []*mailgatev1.Address{{Address: "not an address"}},
		ReplyTo: []*mailgatev1.Address{{Address: "help@example.com"}},
		Subject: "S",
		Text:    "body from stdin",
		Attachments: []*mailgatev1.Attachment{
			{Filename: "r.pdf", ContentType: "application/pdf", Content: []byte("%PDF-1.4 ...")},
			{Filename: "logo", ContentType: "image/gif", Content: []byte("GIF89a......"), ContentId: "logo@x"},
		},
		Headers:         map[string]string{"X-A": "1"},
		Tags:            map[string]string{"k": "v=w"},
		SaveToSentItems: wrapperspb.Bool(false),
	}
	key := got[0].GetIdempotencyKey()
	if !strings.HasPrefix(key, "auto-") || got[1].GetIdempotencyKey() != key {
		t.Errorf("idempotency keys %q and %q, want one auto- key", key, got[1].GetIdempotencyKey())
	}
	got[0].IdempotencyKey = ""
	if !proto.Equal(got[0], want) {
		t.Errorf("request\n %v\nwant\n %v", got[0], want)
	}
	// A different message gets a different auto key.
	runSendTest(t, strings.NewReader("another body"), args...)
	if got[2].GetIdempotencyKey() == key {
		t.Errorf("two messages got one auto key")
	}
}

// TestSendRESTErrors checks the exit status and message for each class of answer:
// the service's google.rpc.Status, a proxy's, or another server's.
func TestSendRESTErrors(t *testing.T) {
	t.Parallel()
	const notMailgate = "this is not a mailgate REST endpoint; check --server"
	status := func(code int, reason, msg, extra string) string {
		return `{"code":` + strconv.Itoa(code) + `,"message":"` + msg + `","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"` +
			reason + `","domain":"mailgate"}` + extra + `]}`
	}
	cases := []struct {
		name   string
		http   int
		header map[string]string
		body   string
		code   int
		stderr []string
	}{
		{"invalid", 400, nil, status(3, "INVALID_ARGUMENT", "invalid request: to: x",
			`,{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"to","description":"x"},{"field":"text","description":"y"}]}`),
			65, []string{"invalid request (INVALID_ARGUMENT):\n  to: x\n  text: y\n"}},
		{"too large", 413, nil, status(3, "MESSAGE_TOO_LARGE", "request body too large", ""), 65, []string{"request body too large (MESSAGE_TOO_LARGE)"}},
		{"proxy too large", 413, nil, "<html>413 Request Entity Too Large</html>", 65, []string{"HTTP 413"}},
		{"key reused", 422, nil, status(9, "IDEMPOTENCY_KEY_REUSED", "reused", ""), 65, []string{"IDEMPOTENCY_KEY_REUSED"}},
		{"unauthenticated", 401, nil, status(16, "UNAUTHENTICATED", "unknown API key", ""), 77, []string{"unknown API key (UNAUTHENTICATED)"}},
		{"no route", 403, nil, status(7, "NO_ROUTE", "no route", ""), 77, []string{"NO_ROUTE"}},
		{"throttled", 429, map[string]string{"Retry-After": "38"}, status(8, "THROTTLED", "mailbox limit; retry in 37.2s",
			`,{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37.200s"}`), 75, []string{"THROTTLED", "retry after 38s\n"}},
		{"throttled by Retry-After", 429, map[string]string{"Retry-After": "7"}, "slow down", 75, []string{"retry after 7s\n"}},
		{"in flight", 409, nil, status(10, "IDEMPOTENCY_KEY_IN_FLIGHT", "in flight", ""), 75, []string{"IDEMPOTENCY_KEY_IN_FLIGHT"}},
		{"unavailable", 503, nil, status(14, "BACKEND_AUTH_FAILED", "backend down", ""), 75, []string{"BACKEND_AUTH_FAILED"}},
		{"outcome unknown", 503, nil, status(14, "OUTCOME_UNKNOWN", "may have been sent", ""), 75, []string{"OUTCOME_UNKNOWN", "--idempotency-key"}},
		{"bad gateway", 502, nil, "<html>Bad Gateway</html>", 75, []string{"HTTP 502 Bad Gateway (not a mailgate answer"}},
		{"rejected", 422, nil, status(9, "BACKEND_REJECTED", "550 5.7.1 no", ""), 69, []string{"550 5.7.1 no (BACKEND_REJECTED)"}},
		{"internal", 500, nil, status(13, "INTERNAL", "bug", ""), 70, []string{"bug (INTERNAL)"}},
		{"proxy unavailable", 503, nil, "<html>503 Service Unavailable</html>", 75, []string{"HTTP 503", "proxy"}},
		{"proxy timeout", 504, nil, "", 75, []string{"HTTP 504"}},
		{"wrong path", 404, nil, "404 page not found", 76, []string{notMailgate, "HTTP 404 Not Found: 404 page not found"}},
		{"wrong path, mailgate's", 404, nil, `{"code":5,"message":"no such endpoint: /x/v1/messages:send","details":[]}`, 76, []string{notMailgate, "no such endpoint"}},
		{"wrong method, mailgate's", 405, nil, `{"code":12,"message":"GET is not allowed","details":[]}`, 76, []string{notMailgate, "GET is not allowed"}},
		{"redirect", 301, map[string]string{"Location": "https://mail.example.com/"}, "", 76, []string{notMailgate, "https://mail.example.com/"}},
		{"not a response", 200, nil, "<html>hello</html>", 76, []string{notMailgate, "not a SendMail response", "may have been sent"}},
		{"another server's 500", 500, nil, "<html>Internal Server Error</html>", 76, []string{notMailgate, "HTTP 500"}},
		{"another server's 401", 401, map[string]string{"WWW-Authenticate": "Basic"}, "Unauthorized", 76, []string{notMailgate, "HTTP 401 Unauthorized: Unauthorized"}},
		{"another server's 400", 400, nil, "Client sent an HTTP request to an HTTPS server.", 76, []string{notMailgate, "HTTPS server"}},
		{"another server's JSON", 400, nil, `{"error":"bad request"}`, 76, []string{notMailgate}},
		{"JSON with a code that is not gRPC's", 404, nil, `{"code":404,"message":"not found"}`, 76, []string{notMailgate}},
		{"a status that is not JSON", 503, map[string]string{"Content-Type": "text/html"}, status(14, "UNAVAILABLE", "down", ""), 75, []string{"proxy"}},
		{"a status as text", 401, map[string]string{"Content-Type": "text/plain"}, status(16, "UNAUTHENTICATED", "no", ""), 76, []string{notMailgate}},
		{"gRPC with TLS", 415, map[string]string{"Grpc-Status": "3"}, "", 76, []string{notMailgate, "grpcs://"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(c.body, "{") {
					w.Header().Set("Content-Type", "application/json")
				}
				for k, v := range c.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(c.http)
				w.Write([]byte(c.body))
			}))
			defer srv.Close()
			r := runSendTest(t, nil, append(minimalSendArgs, "--server", srv.URL)...)
			if r.code != c.code || r.stdout != "" {
				t.Errorf("exit %d, stdout %q; want %d and nothing", r.code, r.stdout, c.code)
			}
			for _, s := range c.stderr {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
				}
			}
		})
	}
}

// TestSendLocal checks what is decided before anything is sent.
func TestSendLocal(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("a request was sent")
	}))
	defer srv.Close()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	for _, c := range []struct {
		name  string
		args  []string
		stdin io.Reader
		code  int
		want  string
	}{
		{"not UTF-8", []string{"--from", "a@example.com", "--text", "-"}, strings.NewReader("caf\xe9"), 65, "text is not UTF-8"},
		{"missing attachment", []string{"--attach", filepath.Join(dir, "nope")}, nil, 66, "--attach: open "},
		{"missing raw", []string{"--raw", filepath.Join(dir, "nope")}, nil, 66, "--raw: open "},
		{"missing key file", []string{"--key-file", filepath.Join(dir, "nope")}, nil, 66, "--key-file: open "},
		{"empty key file", []string{"--key-file", empty}, nil, 77, "is empty"},
		{"bad CA file", []string{"--server", "https://127.0.0.1:1", "--ca-file", empty}, nil, 66, "holds no PEM"},
		{"CA file for http", []string{"--ca-file", empty}, nil, 2, "--ca-file is for https://"},
		{"two keys", []string{"--key", "x", "--key-file", empty}, nil, 2, "not both"},
		{"stdin twice", []string{"--html", "-", "--raw", "-"}, nil, 2, "stdin can be read once"},
		{"grpc without port", []string{"--server", "grpc://localhost"}, nil, 2, "give the port"},
		{"no scheme", []string{"--server", "localhost:8080"}, nil, 2, "--server"},
		{"bad tag", []string{"--tag", "novalue"}, nil, 2, "NAME=VALUE"},
		{"header twice", []string{"--header", "X-A: 1", "--header", "x-a: 2"}, nil, 2, "given twice"},
		{"bad bool", []string{"--save-to-sent-items", "maybe"}, nil, 2, "true or false"},
		{"bad inline", []string{"--inline", "logo.png"}, nil, 2, "FILE:CID"},
		{"positional", []string{"bob@example.com"}, nil, 2, "--to"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"--server", srv.URL}, c.args...)
			r := runSendTest(t, c.stdin, args...)
			if r.code != c.code || !strings.Contains(r.stderr, c.want) {
				t.Errorf("exit %d, want %d; stderr lacks %q:\n%s", r.code, c.code, c.want, r.stderr)
			}
		})
	}
}

// TestSendTimeout: no answer within --timeout is temporary, and may have sent.
func TestSendTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	r := runSendTest(t, nil, append(minimalSendArgs, "--server", srv.URL, "--timeout", "200ms")...)
	if r.code != 75 || !strings.Contains(r.stderr, "no answer within --timeout 200ms") || !strings.Contains(r.stderr, "--idempotency-key") {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

// fakeMailService is a MailService that answers with err, or a response, and records the
// metadata it got.
type fakeMailService struct {
	mailgatev1.UnimplementedMailServiceServer
	err  error
	auth chan []string
}

func (f *fakeMailService) SendMail(ctx context.Context, req *mailgatev1.SendMailRequest) (*mailgatev1.SendMailResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.auth <- md.Get("authorization")
	if f.err != nil {
		return nil, f.err
	}
	return &mailgatev1.SendMailResponse{Id: "id1", MessageId: "<id1@example.com>", Status: mailgatev1.Status_QUEUED,
		RejectedRecipients: []*mailgatev1.RejectedRecipient{{Address: "x@example.com", Reply: "550 5.1.1 unknown"}}}, nil
}

func fakeGRPCServer(t *testing.T, creds credentials.TransportCredentials, svc mailgatev1.MailServiceServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	s := grpc.NewServer(opts...)
	if svc != nil {
		mailgatev1.RegisterMailServiceServer(s, svc)
	}
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

func mailStatusErr(t *testing.T, code codes.Code, reason, msg string, retry time.Duration) error {
	st, err := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: "mailgate"})
	if err != nil {
		t.Fatal(err)
	}
	if retry > 0 {
		st, _ = st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)})
	}
	return st.Err()
}

func TestSendGRPC(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		err  error
		code int
		want string
	}{
		{"queued, one recipient refused", nil, 0, "warning: x@example.com was refused: 550 5.1.1 unknown"},
		{"rejected", mailStatusErr(t, codes.FailedPrecondition, "BACKEND_REJECTED", "550 no", 0), 69, "550 no (BACKEND_REJECTED)"},
		{"outcome unknown", mailStatusErr(t, codes.Unavailable, "OUTCOME_UNKNOWN", "maybe", 0), 75, "may have been sent"},
		{"throttled", mailStatusErr(t, codes.ResourceExhausted, "THROTTLED", "limit", 90*time.Second), 75, "retry after 1m30s"},
		{"too large for gRPC", status.Error(codes.ResourceExhausted, "grpc: received message larger than max"), 65, "larger than max"},
		{"send as denied", mailStatusErr(t, codes.PermissionDenied, "SEND_AS_DENIED", "no", 0), 77, "SEND_AS_DENIED"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeMailService{err: c.err, auth: make(chan []string, 1)}
			addr := fakeGRPCServer(t, nil, f)
			r := runSendTest(t, nil, append(minimalSendArgs, "--server", "grpc://"+addr)...)
			if r.code != c.code || !strings.Contains(r.stderr, c.want) {
				t.Errorf("exit %d, want %d; stderr lacks %q:\n%s", r.code, c.code, c.want, r.stderr)
			}
			if c.code == 0 && r.stdout != "id1 <id1@example.com> QUEUED\n" {
				t.Errorf("stdout %q", r.stdout)
			}
			if got := <-f.auth; !slices.Equal(got, []string{"Bearer " + sendTestKey}) {
				t.Errorf("authorization metadata %q", got)
			}
		})
	}
	t.Run("not mailgate", func(t *testing.T) {
		t.Parallel()
		r := runSendTest(t, nil, append(minimalSendArgs, "--server", "grpc://"+fakeGRPCServer(t, nil, nil))...)
		if r.code != 76 || !strings.Contains(r.stderr, "check --server") {
			t.Errorf("exit %d, want 76; stderr:\n%s", r.code, r.stderr)
		}
	})
}

// TestSendTLS reaches https:// and grpcs:// servers with a private CA (--ca-file), and
// refuses them without it.
func TestSendTLS(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(sendOKBody))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	grpcAddr := fakeGRPCServer(t, credentials.NewServerTLSFromCert(&srv.TLS.Certificates[0]), &fakeMailService{auth: make(chan []string, 2)})
	for _, server := range []string{srv.URL, "grpcs://" + grpcAddr} {
		if r := runSendTest(t, nil, append(minimalSendArgs, "--server", server, "--ca-file", caFile)...); r.code != 0 {
			t.Errorf("%s with --ca-file: exit %d; stderr:\n%s", server, r.code, r.stderr)
		}
		if r := runSendTest(t, nil, append(minimalSendArgs, "--server", server)...); r.code != 75 || !strings.Contains(r.stderr, "certificate") {
			t.Errorf("%s without --ca-file: exit %d, want 75 and a certificate error; stderr:\n%s", server, r.code, r.stderr)
		}
	}
}

func TestSplitAddresses(t *testing.T) {
	t.Parallel()
	for in, want := range map[string][]string{
		"a@x":                  {"a@x"},
		"a@x,b@y":              {"a@x", "b@y"},
		`"Doe, J" <j@x>, b@y`:  {`"Doe, J" <j@x>`, " b@y"},
		`"a \" , b" <a@x>`:     {`"a \" , b" <a@x>`},
		`<"odd,local"@x>, c@z`: {`<"odd,local"@x>`, " c@z"},
		"Name <a@x>,,":         {"Name <a@x>", "", ""},
	} {
		if got := splitAddresses(in); !slices.Equal(got, want) {
			t.Errorf("splitAddresses(%q) = %q, want %q", in, got, want)
		}
	}
}

// rawServer accepts connections and answers each with greeting: a server of another
// protocol. Without a greeting, it reads the request and hangs up.
func rawServer(t *testing.T, wrap func(net.Conn) net.Conn, greeting string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if wrap != nil {
					c = wrap(c)
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if greeting == "" {
					c.Read(make([]byte, 1024))
					return
				}
				io.WriteString(c, greeting)
				// Read the request until the client gives up, as a server that waits for
				// its own protocol's next command does.
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestSendNotMailgate: a --server that is not mailgate's listener for the transport
// asked (the gRPC port over REST, an SMTP port, TLS where there is none, another HTTP
// server) exits 76 and says to check --server, so that a cron job does not retry it
// forever; real network failures and mailgate's own 503 stay 75.
func TestSendNotMailgate(t *testing.T) {
	t.Parallel()
	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(sendOKBody))
	}))
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the plain-HTTP request is expected
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	cert := tlsSrv.TLS.Certificates[0]
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	plainSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(sendOKBody))
	}))
	t.Cleanup(plainSrv.Close)

	grpcAddr := fakeGRPCServer(t, nil, &fakeMailService{auth: make(chan []string, 10)})
	grpcTLSAddr := fakeGRPCServer(t, credentials.NewServerTLSFromCert(&cert), &fakeMailService{auth: make(chan []string, 10)})
	smtpAddr := rawServer(t, nil, "220 mx.example.com ESMTP ready\r\n")
	smtpsAddr := rawServer(t, func(c net.Conn) net.Conn {
		return tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
	}, "220 mx.example.com ESMTP ready\r\n")
	hangUp := rawServer(t, nil, "")
	closed := closedPort(t)

	const notREST = "this is not a mailgate REST endpoint; check --server"
	const notGRPC = "this is not a mailgate gRPC endpoint; check --server"
	for _, c := range []struct {
		name   string
		server string
		code   int
		want   []string
	}{
		{"REST to the gRPC port", "http://" + grpcAddr, 76, []string{notREST, "HTTP/2 without TLS", "grpc://" + grpcAddr}},
		{"REST with TLS to the gRPC port", "https://" + grpcAddr, 76, []string{notREST, "grpc://" + grpcAddr}},
		{"REST with TLS to the gRPC port with TLS", "https://" + grpcTLSAddr, 76, []string{notREST, "grpcs://" + grpcTLSAddr}},
		{"REST to an SMTP server", "http://" + smtpAddr, 76, []string{notREST, `"220 mx.example.com ESMTP ready"`, "listen.http"}},
		{"REST with TLS to an SMTP server", "https://" + smtpAddr, 76, []string{notREST, "SMTP"}},
		{"REST with TLS to an SMTP server with TLS", "https://" + smtpsAddr, 76, []string{notREST, "inside TLS", "SMTP"}},
		{"REST with TLS to a server without TLS", "https://" + plainSrv.Listener.Addr().String(), 76, []string{notREST, "without TLS: give http://"}},
		{"REST without TLS to a server with TLS", "http://" + tlsSrv.Listener.Addr().String(), 76, []string{notREST, "HTTP 400"}},
		{"gRPC to a REST server", "grpc://" + plainSrv.Listener.Addr().String(), 76, []string{notGRPC, "HTTP/1.x", "http://" + plainSrv.Listener.Addr().String()}},
		{"gRPC to an SMTP server", "grpc://" + smtpAddr, 76, []string{notGRPC, "SMTP", "listen.grpc"}},
		// A TLS server hangs up on a request without TLS without a word, as a network
		// failure does: that cannot be told apart.
		{"gRPC without TLS to a server with TLS", "grpc://" + grpcTLSAddr, 75, []string{"cannot reach the service"}},
		{"gRPC with TLS to a server without TLS", "grpcs://" + grpcAddr, 76, []string{notGRPC, "grpc://" + grpcAddr}},
		{"gRPC with TLS to an HTTPS server", "grpcs://" + tlsSrv.Listener.Addr().String(), 76, []string{notGRPC, "not HTTP/2", "https://" + tlsSrv.Listener.Addr().String()}},

		{"REST, connection refused", "http://" + closed, 75, []string{"cannot reach the service", "connection refused"}},
		{"REST with TLS, connection refused", "https://" + closed, 75, []string{"connection refused"}},
		{"REST, closed without an answer", "http://" + hangUp, 75, []string{"cannot reach the service"}},
		{"gRPC, connection refused", "grpc://" + closed, 75, []string{"connection refused"}},
		{"gRPC, closed without an answer", "grpc://" + hangUp, 75, []string{"cannot reach the service"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			args := append(minimalSendArgs, "--server", c.server, "--timeout", "10s")
			if strings.HasPrefix(c.server, "https:") || strings.HasPrefix(c.server, "grpcs:") {
				args = append(args, "--ca-file", caFile)
			}
			r := runSendTest(t, nil, args...)
			if r.code != c.code || r.stdout != "" {
				t.Errorf("exit %d, stdout %q; want %d; stderr:\n%s", r.code, r.stdout, c.code, r.stderr)
			}
			for _, s := range c.want {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
				}
			}
		})
	}
}

// TestSendMailgateUnavailable runs the real service with a file backend that cannot
// write: its 503 UNAVAILABLE is mailgate's own, so it stays "retry later" (75) over both
// transports, as an unknown key stays 77.
func TestSendMailgateUnavailable(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "outbox")
	cfg := app.Default()
	cfg.Backends["outbox"].Settings.(*file.Config).Dir = dir
	cfg.Keys = []config.Key{{Name: "dev", Hash: secret.New(apikey.Hash(sendTestKey)), Senders: []string{"*"}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := app.NewServer(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// The backend made its directory when it opened: a file in its place fails each write.
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, httpLn, grpcLn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	for _, url := range []string{"http://" + httpLn.Addr().String(), "grpc://" + grpcLn.Addr().String()} {
		r := runSendTest(t, nil, append(minimalSendArgs, "--server", url)...)
		if r.code != 75 || !strings.Contains(r.stderr, "(UNAVAILABLE)") {
			t.Errorf("%s: exit %d, want 75 and UNAVAILABLE; stderr:\n%s", url, r.code, r.stderr)
		}
		r = runSendTest(t, nil, append(minimalSendArgs, "--server", url, "--key", "mg_not_a_key")...)
		if r.code != 77 || !strings.Contains(r.stderr, "UNAUTHENTICATED") {
			t.Errorf("%s with an unknown key: exit %d, want 77; stderr:\n%s", url, r.code, r.stderr)
		}
	}
}

// --queued, --sync and --send-at become the request's delivery and sendAt; the
// combinations that cannot work are usage errors that say why.
func TestSendDeliveryFlags(t *testing.T) {
	t.Parallel()
	var got []*mailgatev1.SendMailRequest
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		req := new(mailgatev1.SendMailRequest)
		if err := protojson.Unmarshal(b, req); err != nil {
			t.Errorf("request body %s: %v", b, err)
		}
		mu.Lock()
		got = append(got, req)
		mu.Unlock()
		w.Write([]byte(sendOKBody))
	}))
	defer srv.Close()
	base := []string{"--server", srv.URL, "--from", "a@example.com", "--to", "b@example.com", "--text", "x"}
	before := time.Now()
	for _, tc := range []struct {
		flags    []string
		delivery mailgatev1.SendMailRequest_Delivery
		sendAt   func(time.Time) bool
	}{
		{nil, mailgatev1.SendMailRequest_DELIVERY_UNSPECIFIED, nil},
		{[]string{"--queued"}, mailgatev1.SendMailRequest_QUEUED, nil},
		{[]string{"--sync"}, mailgatev1.SendMailRequest_SYNC, nil},
		{[]string{"--send-at", "2h"}, mailgatev1.SendMailRequest_DELIVERY_UNSPECIFIED, func(at time.Time) bool {
			return at.After(before.Add(2*time.Hour-time.Second)) && at.Before(time.Now().Add(2*time.Hour+time.Second))
		}},
		{[]string{"--send-at", "2026-12-24T08:00:00Z", "--idempotency-key", "auto"}, mailgatev1.SendMailRequest_DELIVERY_UNSPECIFIED, func(at time.Time) bool {
			return at.Equal(time.Date(2026, 12, 24, 8, 0, 0, 0, time.UTC))
		}},
	} {
		n := len(got)
		if r := runSendTest(t, nil, append(base, tc.flags...)...); r.code != 0 {
			t.Fatalf("%v: exit %d, %s", tc.flags, r.code, r.stderr)
		}
		req := got[n]
		if req.GetDelivery() != tc.delivery || (tc.sendAt == nil) != (req.GetSendAt() == nil) ||
			tc.sendAt != nil && !tc.sendAt(req.GetSendAt().AsTime()) {
			t.Errorf("%v: delivery %v, sendAt %v", tc.flags, req.GetDelivery(), req.GetSendAt())
		}
	}
	for _, tc := range []struct {
		flags []string
		says  string
	}{
		{[]string{"--queued", "--sync"}, "not both"},
		{[]string{"--sync", "--send-at", "1h"}, "cannot be --sync"},
		{[]string{"--send-at", "1h", "--idempotency-key", "auto"}, "not a duration"},
		{[]string{"--send-at", "tomorrow"}, "RFC 3339"},
	} {
		r := runSendTest(t, nil, append(base, tc.flags...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.says) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.flags, r.code, r.stderr, tc.says)
		}
	}
}
