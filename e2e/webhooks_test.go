package e2e

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/svixtest"
	"github.com/mailgate/mailgate/senders/graph/graphtest"
	"github.com/mailgate/mailgate/senders/smtp/smtptest"
	"github.com/mailgate/mailgate/server/store/storetest"
	"github.com/mailgate/mailgate/webhook"
)

// hookReceiver is a webhook endpoint in the test: HTTPS, recording each notification
// it answers 2xx for, or answering 503 while down.
type hookReceiver struct {
	srv     *httptest.Server
	mu      sync.Mutex
	got     []svixtest.Notification
	down    bool
	refused int
}

func newHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{}
	r.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.down {
			r.refused++
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		r.got = append(r.got, svixtest.Notification{ID: req.Header.Get(webhook.HeaderID),
			Timestamp: req.Header.Get(webhook.HeaderTimestamp), Signature: req.Header.Get(webhook.HeaderSignature), Body: body})
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *hookReceiver) caFile(t *testing.T) string {
	f := filepath.Join(t.TempDir(), "hooks-ca.pem")
	os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.srv.Certificate().Raw}), 0o600)
	return f
}

func (r *hookReceiver) setDown(down bool) {
	r.mu.Lock()
	r.down = down
	r.mu.Unlock()
}

// received is what arrived, as (message id → event types in order of arrival), with
// each notification's parsed data.
type hookEvent struct {
	Type      string
	Timestamp time.Time
	Data      struct {
		Sequence                                                   int
		ID, MessageID, Key, Route, Status, Backend, Outcome, Reply string
		NextAttemptTime                                            *time.Time
	}
}

func (r *hookReceiver) byMessage(t *testing.T) (map[string][]hookEvent, []svixtest.Notification) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]hookEvent{}
	for _, n := range r.got {
		var e hookEvent
		if err := json.Unmarshal(n.Body, &e); err != nil {
			t.Fatalf("notification body %q: %v", n.Body, err)
		}
		out[e.Data.ID] = append(out[e.Data.ID], e)
	}
	return out, slices.Clone(r.got)
}

func types(es []hookEvent) string {
	var s []string
	for _, e := range es {
		s = append(s, e.Type)
	}
	return strings.Join(s, ",")
}

// Queued messages through a relay that takes one, refuses one for good and drops the
// connection for one before taking it, and through Graph that throttles then takes one:
// the webhook endpoint gets exactly each message's events, in order, each signature
// accepted by svix. Then the endpoint is down while a message is sent: its events
// arrive once it is back, none lost.
func TestWebhooksQueuedEvents(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"local", "redis"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			extra := ""
			if store == "redis" {
				// Events wait in Redis, beside the messages' queue.
				prefix := storetest.Prefix(t, storetest.SharedRedis(t), "e2e")
				extra = fmt.Sprintf("redis: {url: \"redis://127.0.0.1:6379/0\", key_prefix: %q}\n", prefix)
			}
			testWebhooksQueuedEvents(t, extra)
		})
	}
}

func testWebhooksQueuedEvents(t *testing.T, extra string) {
	g := graphtest.New(t)
	relay := smtptest.New(t, smtptest.Options{Mode: smtptest.Relay, AcceptedDomains: []string{"contoso.com"}})
	hooks := newHookReceiver(t)
	secret := webhook.NewSecret()
	dir := t.TempDir()
	secretFile := graphSecretFile(t, dir)
	hookSecretFile := filepath.Join(dir, "hook-secret")
	os.WriteFile(hookSecretFile, []byte(secret+"\n"), 0o600)
	cas := relay.CAFileWith(t, g.CAFile(t))
	p := serveConfigFunc(t, dir, func(httpAddr, grpcAddr string) string {
		return fmt.Sprintf(`listen: {http: %q, grpc: %q, shutdown_timeout: %s}
keys:
  - {name: app, hash: %q, senders: ["*@contoso.com"]}
routes:
  - {name: reports, match: "reports@contoso.com", backend: m365, delivery: queued}
  - {name: mx, match: "*@contoso.com", backend: mx, delivery: queued}
backends:
  m365: {type: graph, tenant_id: %s, client_id: %s, client_secret_file: %s, graph_url: %s, authority_url: %s, ca_file: %s}
  mx: {type: relay, address: %s, accepted_domains: [contoso.com], ca_file: %s}
queue: {min_backoff: 1s, max_backoff: 2s}
webhooks:
  app-events:
    url: %s/hooks
    secret_file: %s
    ca_file: %s
    allow_private: true
    events: [queued, deferred, sent, failed, canceled, unknown]
%slog: {format: json}
`, httpAddr, grpcAddr, shutdownTimeout, keys["app"].Hash, graphtest.TenantID, graphtest.ClientID, secretFile,
			g.GraphURL(), g.AuthorityURL(), cas, relay.Addr(), cas, hooks.srv.URL, hookSecretFile, hooks.caFile(t), extra)
	})
	send := func(from, testID string) string { return queueOne(t, p, from, testID) }
	want := map[string]struct{ id, types, final string }{}
	run := func(testID, from, wantTypes, final string, script func()) {
		t.Helper()
		if script != nil {
			script()
		}
		id := send(from, testID)
		if st := finalStatus(t, p, id, 30*time.Second); st != final {
			t.Fatalf("%s: %s, want %s", testID, st, final)
		}
		want[testID] = struct{ id, types, final string }{id, wantTypes, final}
	}
	run("ok", "app@contoso.com", "message.queued,message.sent", "SENT", nil)
	run("refused", "app@contoso.com", "message.queued,message.failed", "FAILED", func() {
		relay.Script(smtptest.StageMail, smtptest.Reply{Code: 550, Enhanced: "5.7.64", Text: "TenantAttribution; Relay Access Denied"})
	})
	run("dropped", "app@contoso.com", "message.queued,message.deferred,message.sent", "SENT", func() {
		relay.Script(smtptest.StageMail, smtptest.Reply{Hangup: true})
	})
	run("throttled", "reports@contoso.com", "message.queued,message.deferred,message.sent", "SENT", func() {
		g.Script("reports@contoso.com", graphtest.Throttle("3"))
	})

	// The endpoint down while a message goes out: its events wait, and arrive after.
	hooks.setDown(true)
	run("while-down", "app@contoso.com", "message.queued,message.sent", "SENT", nil)
	time.Sleep(2 * time.Second)
	hooks.mu.Lock()
	refused := hooks.refused
	hooks.mu.Unlock()
	hooks.setDown(false)
	if refused == 0 {
		t.Errorf("the endpoint, down, was not tried")
	}

	var got map[string][]hookEvent
	var all []svixtest.Notification
	if err := waitFor(t.Context(), 40*time.Second, func() bool {
		got, all = hooks.byMessage(t)
		for _, w := range want {
			if types(got[w.id]) != w.types {
				return false
			}
		}
		return true
	}); err != nil {
		for testID, w := range want {
			t.Errorf("%s: events %q, want %q", testID, types(got[w.id]), w.types)
		}
		t.FailNow()
	}
	time.Sleep(time.Second) // any duplicate would have come by now
	got, all = hooks.byMessage(t)
	testIDs := slices.Sorted(func(yield func(string) bool) {
		for k := range want {
			if !yield(k) {
				return
			}
		}
	})
	for _, testID := range testIDs {
		w := want[testID]
		es := got[w.id]
		if types(es) != w.types {
			t.Errorf("%s: events %q, want exactly %q", testID, types(es), w.types)
			continue
		}
		for i, e := range es {
			if i > 0 && e.Data.Sequence <= es[i-1].Data.Sequence {
				t.Errorf("%s: event %d has sequence %d after %d", testID, i, e.Data.Sequence, es[i-1].Data.Sequence)
			}
			if e.Data.Key != "app" || e.Data.MessageID == "" {
				t.Errorf("%s: event %+v: want key app and the Message-ID", testID, e)
			}
		}
		last := es[len(es)-1].Data
		if last.Status != w.final {
			t.Errorf("%s: last event's status %s, want %s", testID, last.Status, w.final)
		}
		if testID == "refused" && !strings.Contains(last.Reply, "5.7.64") {
			t.Errorf("refused: failed event's reply %q, want the relay's 5.7.64", last.Reply)
		}
		if testID == "throttled" && (es[1].Data.Outcome != "THROTTLED" || es[1].Data.NextAttemptTime == nil) {
			t.Errorf("throttled: deferred event %+v, want THROTTLED with its next attempt", es[1].Data)
		}
	}
	for i, err := range svixtest.Verify(t, secret, all...) {
		if err != nil {
			t.Errorf("notification %d (%s): %v", i, all[i].ID, err)
		}
	}
	ids := map[string]int{}
	for _, n := range all {
		ids[n.ID]++
	}
	var dups []string
	for id, n := range ids {
		if n > 1 {
			dups = append(dups, id)
		}
	}
	sort.Strings(dups)
	if len(dups) > 0 {
		t.Errorf("delivered more than once: %v", dups)
	}
	t.Logf("%d notifications; the endpoint refused %d while down", len(all), refused)
}
