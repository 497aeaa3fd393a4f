package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/server/queue/spool"
	"github.com/mailgate/mailgate/webhook"
)

// BenchmarkQueuedWebhooks queues b.N messages from 8 callers to a backend that takes
// each at once, and waits until all are sent, with webhooks off and with one endpoint
// (an HTTP server in the benchmark) sent every event (queued and sent: 2 per message),
// waiting then for those too. msgs/s is messages over the whole time; events/s, with
// webhooks, the events the endpoint took over the same time.
//
//	go test -run '^$' -bench QueuedWebhooks -benchtime 2000x ./server/
func BenchmarkQueuedWebhooks(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(map[bool]string{false: "webhooks=off", true: "webhooks=on"}[on], func(b *testing.B) {
			var took atomic.Int64
			rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				took.Add(1)
				w.WriteHeader(http.StatusNoContent)
			}))
			defer rcv.Close()
			snd := &scriptSender{name: "mx", scope: senders.ScopeMailbox}
			// Both queues as the service opens them: concurrent writes share a sync.
			open := func(name string) *spool.Spool {
				sp, err := spool.Open(filepath.Join(b.TempDir(), name), spool.Options{BatchDelay: time.Millisecond})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { sp.Close() })
				return sp
			}
			setup := queuedSetup{backends: map[string]senders.Sender{"mx": snd}, q: open("queue.db"),
				dispatch: &DispatchOptions{Workers: 16, Lease: 30 * time.Second, MinBackoff: time.Second, MaxBackoff: 2 * time.Second, Poll: 20 * time.Millisecond}}
			if on {
				u, _ := url.Parse(rcv.URL)
				sec, _ := webhook.ParseSecret(webhook.NewSecret())
				hooks, err := webhook.New(webhook.Options{Queue: open("events.db"), Poll: 20 * time.Millisecond,
					Targets: []webhook.Target{{Endpoint: webhook.Endpoint{Name: "bench", URL: u, AllowPrivate: true, Secrets: []webhook.Secret{sec}}, MaxConcurrency: 8}}})
				if err != nil {
					b.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- hooks.Serve() }()
				defer func() { hooks.Shutdown(context.Background()); <-done }()
				setup.notifier = hooks
			}
			ts := startQueued(b, setup)
			b.SetParallelism(4) // 8 callers on 2 cores
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					enqueue(b, ts, queuedRequest("app@example.com", "x@example.org"))
				}
			})
			deadline := time.Now().Add(5 * time.Minute)
			for {
				snd.mu.Lock()
				sent := len(snd.calls)
				snd.mu.Unlock()
				if sent >= b.N && (!on || took.Load() >= int64(2*b.N)) {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("after 5 min: %d of %d sent, %d events taken", sent, b.N, took.Load())
				}
				time.Sleep(5 * time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			if on {
				b.ReportMetric(float64(took.Load())/elapsed.Seconds(), "events/s")
			}
		})
	}
}
