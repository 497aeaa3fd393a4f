package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/mailgate/mailgate/server/store"
	"github.com/mailgate/mailgate/server/store/storetest"
)

// get returns the status and body of a GET.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	r, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}

// eventually retries cond for up to 10 s (the checks run every 20 ms).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A Redis that lost its data makes every replica not ready, and says so in /metrics,
// until an operator acknowledges it once.
func TestDataLossMakesEveryReplicaNotReady(t *testing.T) {
	t.Parallel()
	client := storetest.SharedRedis(t)
	prefix := storetest.Prefix(t, client, "datawatch")
	start := func() *testServer {
		return startWithBackend(t, &countingSender{}, func(o *Options) {
			o.Service.Store = store.NewRedis(client, prefix)
			o.DataCheckInterval = 20 * time.Millisecond
		})
	}
	a, b := start(), start()
	for _, srv := range []*testServer{a, b} {
		eventually(t, "ready", func() bool { code, _ := get(t, srv.url+"/readyz"); return code == 200 })
	}

	client.Del(context.Background(), prefix+"{meta}:marker")

	for _, srv := range []*testServer{a, b} {
		eventually(t, "not ready after the loss", func() bool { code, _ := get(t, srv.url+"/readyz"); return code == 503 })
		if _, body := get(t, srv.url+"/readyz"); !strings.Contains(body, "Redis lost mailgate's data") || !strings.Contains(body, "mailgate admin store-ack") {
			t.Errorf("/readyz says %q", body)
		}
		if _, m := get(t, srv.url+"/metrics"); !strings.Contains(m, "mailgate_store_data_lost 1") {
			t.Errorf("/metrics lacks mailgate_store_data_lost 1")
		}
		h, err := healthpb.NewHealthClient(srv.grpc).Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("gRPC health %v, %v; want NOT_SERVING", h.GetStatus(), err)
		}
	}
	// Exactly one of the two noticed first; the other reports the recorded loss.
	var noticed int
	for _, srv := range []*testServer{a, b} {
		_, m := get(t, srv.url+"/metrics")
		if strings.Contains(m, "mailgate_store_data_loss_total 1") {
			noticed++
		}
	}
	if noticed != 1 {
		t.Errorf("%d replicas count the loss as theirs, want 1", noticed)
	}

	if l, err := store.NewRedis(client, prefix).AckDataLoss(context.Background()); err != nil || l == nil {
		t.Fatalf("ack: %v, %v", l, err)
	}
	for _, srv := range []*testServer{a, b} {
		eventually(t, "ready after the acknowledgement", func() bool { code, _ := get(t, srv.url+"/readyz"); return code == 200 })
		if _, m := get(t, srv.url+"/metrics"); !strings.Contains(m, "mailgate_store_data_lost 0") {
			t.Errorf("/metrics lacks mailgate_store_data_lost 0 after the ack")
		}
		h, err := healthpb.NewHealthClient(srv.grpc).Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("gRPC health after the ack %v, %v", h.GetStatus(), err)
		}
	}
}

type fakeWatcher struct{ states []store.DataState }

func (f *fakeWatcher) CheckData(context.Context) (store.DataState, error) {
	st := f.states[0]
	f.states = f.states[1:]
	return st, nil
}

// One error line per loss: a second loss recorded while the first is not acknowledged
// (Redis lost the first record with the rest) is logged too; the same record seen again
// is not.
func TestDataWatchLogsEachLoss(t *testing.T) {
	t.Parallel()
	first := &store.Loss{At: time.Unix(1000, 0), Reason: "first"}
	second := &store.Loss{At: time.Unix(2000, 0), Reason: "second"}
	w := &fakeWatcher{states: []store.DataState{
		{}, {Lost: first, Detected: true}, {Lost: first}, {Lost: second, Detected: true}, {Lost: second}, {},
	}}
	var logs strings.Builder
	var health []healthpb.HealthCheckResponse_ServingStatus
	d := &dataWatch{
		w: w, interval: time.Second, timeout: time.Second, metrics: newMetrics(),
		log:       slog.New(slog.NewTextHandler(&logs, nil)),
		setHealth: func(s healthpb.HealthCheckResponse_ServingStatus) { health = append(health, s) },
	}
	for range 6 {
		d.check(context.Background())
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 2 {
		t.Errorf("%d error lines, want 2:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "acknowledged") {
		t.Errorf("no line for the acknowledgement:\n%s", logs.String())
	}
	if checked, lost := d.state(); !checked || lost != nil {
		t.Errorf("state %v %v after the acknowledgement", checked, lost)
	}
	if len(health) == 0 || health[len(health)-1] != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health %v, want SERVING last", health)
	}
}
