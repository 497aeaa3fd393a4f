package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"

	"github.com/mailgate/mailgate/senders/graph/graphtest"
)

// graphServer runs `mailgate serve` with one route, "*@contoso.com", to a Graph backend
// pointed at the fake Microsoft 365, on the in-process store.
func graphServer(t testing.TB, f *graphtest.Fake, limits string) *proc {
	t.Helper()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "graph-secret")
	os.WriteFile(secretFile, []byte(graphtest.ClientSecret+"\n"), 0o600)
	cfg := fmt.Sprintf(`listen: {http: "%%s", grpc: "%%s", shutdown_timeout: 10s}
keys:
  - {name: app, hash: %s, senders: ["*@contoso.com"]}
routes:
  - {name: graph, match: "*@contoso.com", backend: m365}
backends:
  m365:
    type: graph
    tenant_id: %s
    client_id: %s
    client_secret_file: %s
    graph_url: %s
    authority_url: %s
    ca_file: %s
%s
log: {format: json, level: info}
`, keys["app"].Hash, graphtest.TenantID, graphtest.ClientID, secretFile, f.GraphURL(), f.AuthorityURL(), f.CAFile(t), limits)
	return serveConfig(t, dir, cfg)
}

func TestGraphEndToEnd(t *testing.T) {
	t.Parallel()
	f := graphtest.New(t)
	p := graphServer(t, f, "")
	pdf := make([]byte, 200_000)
	rand.Read(pdf)
	body := mustJSON(t, map[string]any{
		"from":        map[string]string{"address": "billing@contoso.com", "name": "Billing"},
		"to":          []map[string]string{{"address": "alice@example.com"}},
		"bcc":         []map[string]string{{"address": "audit@contoso.com"}},
		"subject":     "Invoice",
		"html":        "<p>attached</p>",
		"attachments": []map[string]any{{"filename": "invoice.pdf", "content": pdf}},
	})
	resp := sendOK(t, p, bearer(keys["app"].Key), body)
	if resp.GetBackend() != "m365" || resp.GetRoute() != "graph" {
		t.Errorf("response %v", resp)
	}
	sent := f.Sent()
	if len(sent) != 1 || sent[0].Via != "json" || !strings.EqualFold(sent[0].Mailbox, "billing@contoso.com") {
		t.Fatalf("Graph received %+v", sent)
	}
	m := sent[0].Message
	if len(m.Bcc) != 1 || m.Bcc[0].Address != "audit@contoso.com" || len(m.Attachments) != 1 || !bytes.Equal(m.Attachments[0].Content, pdf) {
		t.Errorf("message %+v", m)
	}

	// Microsoft's Send As refusal reaches the caller as 403 with Microsoft's code.
	f.Script("billing@contoso.com", graphtest.SendAsDenied())
	r := sendREST(t, p, bearer(keys["app"].Key), body)
	checkRESTError(t, r, wantError{http: 403, code: codes.PermissionDenied, reason: "SEND_AS_DENIED"})
	if !strings.Contains(string(r.Body), `"graphCode":"ErrorSendAsDenied"`) {
		t.Errorf("no Microsoft code in %s", r.Body)
	}

	// Microsoft's 429 pauses the mailbox: the next message is refused without reaching
	// Graph, with the remaining time.
	f.Script("billing@contoso.com", graphtest.Throttle("2.128"))
	r = sendREST(t, p, bearer(keys["app"].Key), body)
	if r.Status != 429 || r.Header.Get("Retry-After") != "3" {
		t.Fatalf("Graph 429: %d Retry-After %q %s", r.Status, r.Header.Get("Retry-After"), r.Body)
	}
	before := len(f.Requests())
	r = sendREST(t, p, bearer(keys["app"].Key), body)
	if r.Status != 429 || len(f.Requests()) != before {
		t.Errorf("paused mailbox: %d, %d requests reached Graph", r.Status, len(f.Requests())-before)
	}
}

// BenchmarkGraphLarge measures one large message over REST to the fake Graph: the wall
// time and the server's peak RSS. Run with -benchtime 1x:
//
//	go test -run '^$' -bench GraphLarge -benchtime 1x ./e2e/
func BenchmarkGraphLarge(b *testing.B) {
	for _, tc := range []struct {
		api  string
		size int
	}{{"REST", 30 << 20}, {"REST", 150 << 20}, {"gRPC", 150 << 20}} {
		size := tc.size
		b.Run(tc.api+"/"+strconv.Itoa(size>>20)+"MB", func(b *testing.B) {
			f := graphtest.New(b)
			p := graphServer(b, f, "limits: {max_message_bytes: 230000000, mailbox: {messages_per_minute: 0, recipients_per_day: 0}}")
			content := make([]byte, size)
			rand.Read(content)
			body := mustJSON(b, map[string]any{
				"from":        map[string]string{"address": "billing@contoso.com"},
				"to":          []map[string]string{{"address": "alice@example.com"}},
				"subject":     "large",
				"text":        "see attached",
				"attachments": []map[string]any{{"filename": "large.bin", "content": content}},
			})
			b.SetBytes(int64(size))
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if tc.api == "gRPC" {
					req := &mailgatev1.SendMailRequest{
						From: &mailgatev1.Address{Address: "billing@contoso.com"}, To: []*mailgatev1.Address{{Address: "alice@example.com"}},
						Subject: "large", Text: "see attached",
						Attachments: []*mailgatev1.Attachment{{Filename: "large.bin", Content: content}},
					}
					if _, err := dial(b, p).SendMail(rpcContext(b, bearer(keys["app"].Key)), req, grpc.MaxCallSendMsgSize(1<<30)); err != nil {
						b.Fatal(err)
					}
					continue
				}
				if r := sendREST(b, p, bearer(keys["app"].Key), body); r.Status != 200 {
					b.Fatalf("%d %s", r.Status, r.Body)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(b.N), "ms/msg")
			b.ReportMetric(float64(peakRSS(b, p))/(1<<20), "peak-RSS-MB")
			if s := f.Sent(); len(s) == 0 || s[0].Via != "draft" || !s[0].Message.Attachments[0].ViaUploadSession {
				b.Fatalf("not sent through an upload session: %+v", s)
			}
		})
	}
}

// peakRSS reads the process's high-water mark of resident memory (VmHWM).
func peakRSS(t testing.TB, p *proc) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}
