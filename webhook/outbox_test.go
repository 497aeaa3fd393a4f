package webhook_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/server/queue"
	"github.com/mailgate/mailgate/server/queue/spool"
	"github.com/mailgate/mailgate/webhook"
)

// counting is an endpoint that records the webhook-ids it took, the most requests it
// had at once, and answers status (after a delay).
type counting struct {
	srv       *httptest.Server
	mu        sync.Mutex
	ids       []string
	now, peak int
	status    atomic.Int32
	delay     time.Duration
	requests  atomic.Int32
}

func newCounting(t *testing.T, delay time.Duration) *counting {
	c := &counting{delay: delay}
	c.status.Store(204)
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.requests.Add(1)
		c.mu.Lock()
		c.now++
		c.peak = max(c.peak, c.now)
		c.mu.Unlock()
		time.Sleep(c.delay)
		st := int(c.status.Load())
		c.mu.Lock()
		c.now--
		if st < 300 {
			c.ids = append(c.ids, r.Header.Get(webhook.HeaderID))
		}
		c.mu.Unlock()
		w.WriteHeader(st)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func startWebhooks(t *testing.T, targets ...webhook.Target) (*webhook.Webhooks, queue.Queue) {
	t.Helper()
	q, err := spool.Open(filepath.Join(t.TempDir(), "events.db"), spool.Options{BatchDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w, err := webhook.New(webhook.Options{Targets: targets, Queue: q, Poll: 50 * time.Millisecond,
		MinBackoff: 100 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Serve() }()
	t.Cleanup(func() {
		w.Shutdown(context.Background())
		<-done
		q.Close()
	})
	return w, q
}

func target(t *testing.T, name string, c *counting) webhook.Target {
	u, _ := url.Parse(c.srv.URL)
	return webhook.Target{Endpoint: webhook.Endpoint{Name: name, URL: u, AllowPrivate: true,
		Secrets: []webhook.Secret{mustSecret(t, webhook.NewSecret())}}}
}

func event(id string, seq int, typ, key string) webhook.MessageEvent {
	return webhook.MessageEvent{Type: typ, Sequence: seq, Time: time.Now(), ID: id, Key: key, Status: "QUEUED"}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Each endpoint gets the events it asked for, of the keys it asked for, once each
// (Notify of the same event twice stores it once), never more at once than its
// MaxConcurrency.
func TestWebhooksFilterAndCap(t *testing.T) {
	t.Parallel()
	all, sentOnly := newCounting(t, 20*time.Millisecond), newCounting(t, 0)
	ta := target(t, "all", all)
	ta.MaxConcurrency = 2
	ts := target(t, "sent-of-erp", sentOnly)
	ts.Events, ts.Keys = []string{"sent"}, []string{"erp"}
	w, _ := startWebhooks(t, ta, ts)
	ctx := context.Background()
	for i := range 10 {
		id := "m" + string(rune('a'+i))
		key := map[bool]string{true: "erp", false: "crm"}[i%2 == 0]
		for _, ev := range []webhook.MessageEvent{event(id, 0, "queued", key), event(id, 1, "sent", key), event(id, 1, "sent", key)} {
			if err := w.Notify(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitUntil(t, "all events delivered", func() bool {
		all.mu.Lock()
		defer all.mu.Unlock()
		sentOnly.mu.Lock()
		defer sentOnly.mu.Unlock()
		return len(all.ids) == 20 && len(sentOnly.ids) == 5
	})
	time.Sleep(200 * time.Millisecond)
	all.mu.Lock()
	defer all.mu.Unlock()
	sentOnly.mu.Lock()
	defer sentOnly.mu.Unlock()
	if len(all.ids) != 20 || len(sentOnly.ids) != 5 {
		t.Errorf("all got %d, sent-of-erp %d; want 20 and 5", len(all.ids), len(sentOnly.ids))
	}
	if all.peak > 2 {
		t.Errorf("%d requests at once to an endpoint with max_concurrency 2", all.peak)
	}
	for _, id := range sentOnly.ids {
		if id[len(id)-2:] != "_1" {
			t.Errorf("sent-of-erp got %s, not a sent event", id)
		}
	}
}

// A failing endpoint is retried until it takes the event; one that answers 410 is
// sent nothing more, its events abandoned.
func TestWebhooksRetryAndGone(t *testing.T) {
	t.Parallel()
	c := newCounting(t, 0)
	c.status.Store(500)
	w, q := startWebhooks(t, target(t, "flaky", c))
	ctx := context.Background()
	if err := w.Notify(ctx, event("m1", 0, "queued", "app")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "two failed posts", func() bool { return c.requests.Load() >= 2 })
	c.status.Store(204)
	waitUntil(t, "the event delivered", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.ids) == 1
	})
	it, err := q.Get(ctx, "evt_m1_0/flaky")
	if err != nil || it.State != queue.Sent || len(it.Attempts) < 3 {
		t.Errorf("the event's record: %+v, %v; want SENT after 2 or more failures", it, err)
	}

	c.status.Store(410)
	w.Notify(ctx, event("m2", 0, "queued", "app"))
	waitUntil(t, "the 410", func() bool {
		it, err := q.Get(ctx, "evt_m2_0/flaky")
		return err == nil && it.State == queue.Failed
	})
	before := c.requests.Load()
	c.status.Store(204)
	w.Notify(ctx, event("m3", 0, "queued", "app"))
	waitUntil(t, "m3 abandoned", func() bool {
		it, err := q.Get(ctx, "evt_m3_0/flaky")
		return err == nil && it.State == queue.Failed && it.Attempts[0].Outcome == "GONE"
	})
	if n := c.requests.Load() - before; n != 0 {
		t.Errorf("%d posts to an endpoint that answered 410", n)
	}
}
