package app

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/server"
	"github.com/mailgate/mailgate/server/apikey"
	"github.com/mailgate/mailgate/server/store/storetest"
)

func TestKeyringAndRouter(t *testing.T) {
	t.Parallel()
	c, err := ParseAndValidate([]byte(`
keys:
  - name: billing-app
    hash: `+apikey.Hash("mg_test")+`
    senders: ["billing@contoso.com", "*@notify.contoso.com"]
routes:
  - {match: "scanner@contoso.com", backend: outbox}
  - {name: everyone, match: "*", backend: sink, mailbox: noreply@contoso.com}
backends:
  outbox: {type: file, dir: /tmp/outbox}
  sink: {type: discard}
`), "test")
	if err != nil {
		t.Fatal(err)
	}
	router, err := Router(c)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := router.Route("someone@fabrikam.com"); r.Backend != "sink" || r.Mailbox != "noreply@contoso.com" {
		t.Errorf("router: %+v", r)
	}
	keys, err := Keyring(c)
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := keys.Lookup("mg_test"); !ok || k.Name != "billing-app" {
		t.Errorf("keyring: %v %v", k, ok)
	}
}

// Every type is listed under its own name, and the names are the documented ones.
func TestBackendTypes(t *testing.T) {
	t.Parallel()
	types := BackendTypes()
	want := []string{"direct_send", "discard", "file", "graph", "relay", "smtp_auth"}
	if got := types.Names(); !slices.Equal(got, want) {
		t.Errorf("backend types %v, want %v", got, want)
	}
	for name, typ := range types {
		if typ.Name != name || typ.NewConfig == nil || typ.NewConfig() == nil {
			t.Errorf("type %q: %+v", name, typ)
		}
	}
}

// config validates limits.max_inflight_bytes against the largest request the server
// takes: the two must agree.
func TestLargestRequestAgrees(t *testing.T) {
	t.Parallel()
	for _, n := range []int64{1, 1 << 20, 35 << 20} {
		if c, s := config.LargestRequest(n), server.LargestRequest(n); c != s {
			t.Errorf("max_message_bytes %d: config says %d, server %d", n, c, s)
		}
	}
}

// serve with a configuration watches its Redis at redis.check_interval.
func TestFromConfigWatchesRedis(t *testing.T) {
	t.Parallel()
	redisSrv := storetest.StartRedis(t)
	cfg, err := ParseAndValidate([]byte(`
keys: [{name: app, hash: "`+apikey.Hash("mg_app-test-key")+`", senders: ["*"]}]
routes: [{match: "*", backend: sink}]
backends: {sink: {type: discard}}
redis: {url: "`+redisSrv.URL()+`", check_interval: 100ms}
`), "test")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	url := "http://" + ln.Addr().String() + "/readyz"
	eventually(t, "ready", func() bool { code, _ := get(t, url); return code == 200 })
	redisSrv.Stop(t)
	redisSrv.Start(t) // without persistence: empty
	eventually(t, "not ready after Redis restarted empty", func() bool {
		_, body := get(t, url)
		return strings.Contains(body, "Redis lost mailgate's data")
	})
}

// Serve closes what NewServer opened once it has drained: the Redis client too.
func TestServeClosesStore(t *testing.T) {
	t.Parallel()
	redisSrv := storetest.StartRedis(t)
	cfg, err := ParseAndValidate([]byte(`
keys: [{name: app, hash: "`+apikey.Hash("mg_app-test-key")+`", senders: ["*"]}]
routes: [{match: "*", backend: sink}]
backends: {sink: {type: discard}}
redis: {url: "`+redisSrv.URL()+`"}
`), "test")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := srv.Serve(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.parts.store.Close(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("the Redis client after Serve: Close says %v, want it closed already", err)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within 10s", what)
		}
	}
}

// A backend's settings say its scope before it is opened (check-config prints it), and
// the backend opened from them says the same (the service pauses by it).
func TestScopeKnownBeforeOpening(t *testing.T) {
	t.Parallel()
	cfg, err := ParseAndValidate([]byte(`
keys: [{name: app, hash: "`+apikey.Hash("mg_app-test-key")+`", senders: ["*"]}]
routes: [{match: "*@contoso.com", backend: relay}]
backends:
  outbox: {type: file, dir: `+t.TempDir()+`}
  sink: {type: discard}
  graph: {type: graph, tenant_id: t, client_id: c, client_secret: s}
  submission: {type: smtp_auth, tenant_id: t, client_id: c, client_secret: s}
  relay: {type: relay, address: "127.0.0.1:25", accepted_domains: [contoso.com]}
  direct: {type: direct_send, address: "127.0.0.1:25", accepted_domains: [contoso.com]}
`), "test")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]senders.Scope{"outbox": senders.ScopeMailbox, "sink": senders.ScopeMailbox, "graph": senders.ScopeMailbox,
		"submission": senders.ScopeMailbox, "relay": senders.ScopeBackend, "direct": senders.ScopeBackend}
	for name, b := range cfg.Backends {
		s, err := b.Settings.Open(senders.Env{Name: name})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Cleanup(func() { s.Close() })
		if b.Settings.Scope() != want[name] || s.Scope() != want[name] {
			t.Errorf("%s: settings say scope %v, the backend %v, want %v", name, b.Settings.Scope(), s.Scope(), want[name])
		}
	}
}
