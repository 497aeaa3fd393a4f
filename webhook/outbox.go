package webhook

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailgate/mailgate/server/queue"
	"github.com/mailgate/mailgate/server/store"
)

// Target is an endpoint and what it is sent.
type Target struct {
	Endpoint Endpoint
	// Events are the event types it is sent (queued, sent, ...); empty: all.
	Events []string
	// Keys are the API keys whose messages' events it is sent; empty: all.
	Keys []string
	// MaxConcurrency is how many events are posted to it at once by this replica;
	// default 4.
	MaxConcurrency int
}

func (t *Target) wants(ev MessageEvent) bool {
	return (len(t.Events) == 0 || slices.Contains(t.Events, ev.Type)) &&
		(len(t.Keys) == 0 || slices.Contains(t.Keys, ev.Key))
}

// Options configure Webhooks.
type Options struct {
	Targets []Target
	// Queue keeps the events until their endpoint has them: a queue of its own (the
	// messages' queue implementation, in its own file or key prefix), so that events
	// are as durable as messages and never listed among them.
	Queue  queue.Queue
	Logger *slog.Logger
	// Lifetime is how long an event is retried; default 24 h.
	Lifetime time.Duration
	// MinBackoff and MaxBackoff bound the wait after an endpoint failed: it doubles
	// from MinBackoff with each failure in a row, up to MaxBackoff, with jitter; a
	// Retry-After the endpoint gave is waited out when longer. Defaults 5 s and 10 min.
	MinBackoff, MaxBackoff time.Duration
	// Retention is how long a delivered or abandoned event stays in the queue; default 24 h.
	Retention time.Duration
	// Poll is how often an idle replica looks for events another replica queued;
	// default 1 s.
	Poll time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Webhooks tells endpoints what happens to queued messages. Notify stores an event for
// each endpoint that wants it; Serve posts them, signed, at least once each, retrying
// an endpoint that fails with backoff until Lifetime. While an endpoint fails, its
// events wait (after each backoff, up to one per share probes it), and the others' go
// on. An endpoint that answers 410 is sent nothing more until the next start. It is a
// server adapter.
type Webhooks struct {
	opts    Options
	log     *slog.Logger
	targets map[string]*target
	shares  []*share
	metrics *metrics

	mu      sync.Mutex
	sending map[string]bool // endpoint/message group → an event being posted

	ctx     context.Context
	stop    context.CancelFunc
	stopped chan struct{}
}

type target struct {
	Target
	client *Client
	// Guarded by Webhooks.mu.
	failures int       // failed posts in a row
	heldTill time.Time // no post before this, after a failure
	gone     bool      // it answered 410
}

// New returns the webhooks of opts.Targets, storing events in opts.Queue.
func New(opts Options) (*Webhooks, error) {
	if opts.Queue == nil {
		return nil, errors.New("webhooks: no queue to keep events in")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Lifetime <= 0 {
		opts.Lifetime = 24 * time.Hour
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 5 * time.Second
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(opts.MinBackoff, 10*time.Minute)
	}
	if opts.Retention <= 0 {
		opts.Retention = 24 * time.Hour
	}
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	w := &Webhooks{opts: opts, log: opts.Logger, targets: map[string]*target{},
		sending: map[string]bool{}, stopped: make(chan struct{}), metrics: newMetrics()}
	for k := range leasers {
		w.shares = append(w.shares, &share{k: k, inflight: map[string]int{}, wake: make(chan struct{}, 1)})
	}
	for _, t := range opts.Targets {
		if t.Endpoint.Name == "" || strings.Contains(t.Endpoint.Name, "/") {
			return nil, fmt.Errorf("webhooks: endpoint name %q: want a name without '/'", t.Endpoint.Name)
		}
		if t.MaxConcurrency <= 0 {
			t.MaxConcurrency = 4
		}
		w.targets[t.Endpoint.Name] = &target{Target: t, client: NewClient(t.Endpoint, opts.Now)}
	}
	w.ctx, w.stop = context.WithCancel(context.Background())
	return w, nil
}

// Register registers the webhooks' metrics with reg.
func (w *Webhooks) Register(reg prometheus.Registerer) error { return w.metrics.register(reg) }

// Notify stores ev for every endpoint that wants it, and returns once they are durable
// (an error: some may not be). The same event stored twice is stored once.
func (w *Webhooks) Notify(ctx context.Context, ev MessageEvent) error {
	body, err := Event{Type: "message." + ev.Type, Timestamp: ev.Time.UTC(), Data: ev}.Body()
	if err != nil {
		return err
	}
	now := w.opts.Now()
	var errs []error
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range w.targets {
			if !yield(n) {
				return
			}
		}
	}) {
		t := w.targets[name]
		if !t.wants(ev) {
			continue
		}
		it := &queue.Item{
			ID:  ev.EventID() + "/" + name,
			Key: ev.Key,
			// One group per endpoint and message: a message's events go one at a time,
			// in the order they happened.
			Group:     store.GroupID{Kind: store.Backend, Name: name + "/" + ev.ID},
			Backends:  []string{name},
			Body:      body,
			Accepted:  now,
			NotBefore: ev.Time,
			Deadline:  now.Add(w.opts.Lifetime),
			MessageID: ev.MessageID, From: ev.From, Route: ev.Route,
		}
		switch err := w.opts.Queue.Enqueue(ctx, it); {
		case err == nil:
			w.metrics.events.WithLabelValues(name, ev.Type).Inc()
		case errors.Is(err, queue.ErrExists):
		default:
			errs = append(errs, fmt.Errorf("webhook %s: %w", name, err))
		}
	}
	for _, sh := range w.shares {
		select {
		case sh.wake <- struct{}{}:
		default:
		}
	}
	return errors.Join(errs...)
}

// leasers is how many Leases a replica has under way at once (a Lease is a durable
// write; several share syncs). Each leaser takes only the groups of its own share and
// keeps its part of each endpoint's MaxConcurrency, so that what ready counts in flight
// stays true without holding a lock across a Lease.
const leasers = 4

// share is one leaser's part: an endpoint's groups are spread over min(leasers,
// MaxConcurrency) shares by a hash of the group, and each of those may have its part of
// MaxConcurrency in flight.
type share struct {
	k        int
	inflight map[string]int // endpoint → this share's events being posted; under Webhooks.mu
	wake     chan struct{}
}

// Serve implements the server's Adapter: it posts events until Shutdown.
func (w *Webhooks) Serve() error {
	defer close(w.stopped)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(w.expire)
	lease := 10 * time.Second
	for _, t := range w.targets {
		lease = max(lease, 2*t.client.ep.Timeout+10*time.Second)
	}
	for _, sh := range w.shares {
		wg.Go(func() { w.lease(sh, lease, &wg) })
	}
	<-w.ctx.Done()
	return nil
}

// lease is one leaser's loop: Lease an event of its share, post it, and again.
func (w *Webhooks) lease(sh *share, d time.Duration, wg *sync.WaitGroup) {
	idle := time.NewTimer(0)
	defer idle.Stop()
	ready := func(g store.GroupID) bool { return w.ready(sh, g) }
	for {
		it, err := w.opts.Queue.Lease(w.ctx, ready, d)
		if err != nil {
			if w.ctx.Err() != nil {
				return
			}
			if !errors.Is(err, queue.ErrEmpty) {
				w.log.Error("webhooks: cannot take events; retrying", "error", err)
			}
			idle.Reset(w.opts.Poll)
			select {
			case <-w.ctx.Done():
				return
			case <-sh.wake:
			case <-idle.C:
			}
			continue
		}
		name := endpointOf(it)
		w.mu.Lock()
		sh.inflight[name]++
		w.sending[it.Group.Name] = true
		w.mu.Unlock()
		wg.Go(func() {
			defer func() {
				w.mu.Lock()
				sh.inflight[name]--
				delete(w.sending, it.Group.Name)
				w.mu.Unlock()
				select { // a slot is free: look again
				case sh.wake <- struct{}{}:
				default:
				}
			}()
			w.deliver(it, name)
		})
	}
}

// Shutdown implements the server's Adapter: no event is taken after it is called; it
// returns once the posts under way are recorded, or when ctx is done (their leases then
// lapse, and the events are posted again later: at least once).
func (w *Webhooks) Shutdown(ctx context.Context) error {
	w.stop()
	select {
	case <-w.stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("webhooks still posting: %w", ctx.Err())
	}
}

func endpointOf(it *queue.Item) string {
	name, _, _ := strings.Cut(it.Group.Name, "/")
	return name
}

// ready is share sh's Lease predicate: a group of another share waits for its own; an
// endpoint that is held back after a failure, or has sh's part of its MaxConcurrency in
// flight, waits; so does a message with an event in flight.
func (w *Webhooks) ready(sh *share, g store.GroupID) bool {
	name, _, _ := strings.Cut(g.Name, "/")
	w.mu.Lock()
	defer w.mu.Unlock()
	t := w.targets[name]
	if t == nil || t.gone {
		// To be settled at once, by the group's share.
		return shareOf(g.Name, leasers) == sh.k && !w.sending[g.Name]
	}
	n := min(leasers, t.MaxConcurrency)
	if shareOf(g.Name, n) != sh.k {
		return false
	}
	part := t.MaxConcurrency / n
	if sh.k < t.MaxConcurrency%n {
		part++
	}
	return !w.sending[g.Name] && sh.inflight[name] < part && !w.opts.Now().Before(t.heldTill)
}

func shareOf(group string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(group))
	return int(h.Sum32() % uint32(n))
}

// deliver posts one event and records the outcome.
func (w *Webhooks) deliver(it *queue.Item, name string) {
	now := w.opts.Now()
	log := w.log.With("webhook", name, "event", strings.TrimSuffix(it.ID, "/"+name), "id", messageOf(it))
	t := w.targets[name]
	a := queue.Attempt{Time: now, Backend: name}
	w.mu.Lock()
	gone := t != nil && t.gone
	w.mu.Unlock()
	switch {
	case t == nil:
		a.Outcome, a.Error = "NO_ENDPOINT", "the webhook is no longer in the configuration"
		w.settle(it, a, queue.Failed, log)
		return
	case gone:
		a.Outcome, a.Error = "GONE", "the endpoint answered 410 Gone earlier; it is sent nothing more until mailgate restarts"
		w.settle(it, a, queue.Failed, log)
		return
	case !now.Before(it.Deadline):
		a.Outcome, a.Error = "EXPIRED", fmt.Sprintf("not delivered within %s", w.opts.Lifetime)
		w.settle(it, a, queue.Failed, log)
		return
	}
	ctx, cancel := context.WithTimeout(w.ctx, t.client.ep.Timeout+time.Second)
	err := t.client.Post(ctx, strings.TrimSuffix(it.ID, "/"+name), it.Body)
	cancel()
	took := w.opts.Now().Sub(now)
	w.metrics.seconds.WithLabelValues(name).Observe(took.Seconds())
	if err == nil {
		w.mu.Lock()
		t.failures = 0
		w.mu.Unlock()
		a.Outcome = "DELIVERED"
		w.metrics.deliveries.WithLabelValues(name, "delivered").Inc()
		w.settle(it, a, queue.Sent, log)
		return
	}
	if w.ctx.Err() != nil {
		// Shutting down: the post was cut short; its lease lapses and it goes again.
		return
	}
	a.Outcome, a.Error = "FAILED", err.Error()
	var se *StatusError
	if errors.As(err, &se) {
		a.Reply = fmt.Sprintf("%d %s", se.Status, se.Body)
	}
	if errors.Is(err, ErrGone) {
		w.mu.Lock()
		t.gone = true
		w.mu.Unlock()
		a.Outcome = "GONE"
		w.metrics.deliveries.WithLabelValues(name, "gone").Inc()
		log.Error("webhook endpoint answered 410 Gone: it is sent nothing more until mailgate restarts; remove it from the configuration or fix it",
			"url", t.client.ep.URL.Redacted())
		w.settle(it, a, queue.Failed, log)
		return
	}
	w.mu.Lock()
	t.failures++
	wait := queue.Backoff(w.opts.MinBackoff, w.opts.MaxBackoff, t.failures)
	if se != nil && se.RetryAfter > wait {
		wait = min(se.RetryAfter, w.opts.MaxBackoff)
	}
	at := w.opts.Now().Add(wait)
	t.heldTill = at
	failures := t.failures
	w.mu.Unlock()
	w.metrics.deliveries.WithLabelValues(name, "retry").Inc()
	log.Warn("webhook endpoint did not take an event; it is tried again", "url", t.client.ep.URL.Redacted(),
		"error", err.Error(), "failures_in_a_row", failures, "next_attempt", at.UTC().Format(time.RFC3339))
	if !at.Before(it.Deadline) {
		a.Error += fmt.Sprintf(" (no more retries: not delivered within %s)", w.opts.Lifetime)
		w.settle(it, a, queue.Failed, log)
		return
	}
	// Back at its own time, not at: it stays its message's earliest event, so that the
	// message's later events, due sooner, do not overtake it. The endpoint's hold is
	// what makes this replica wait until at.
	w.write(log, func(ctx context.Context) error { return w.opts.Queue.Retry(ctx, it.Lease, it.NotBefore, a) })
}

func messageOf(it *queue.Item) string {
	_, id, _ := strings.Cut(it.Group.Name, "/")
	return id
}

func (w *Webhooks) settle(it *queue.Item, a queue.Attempt, st queue.State, log *slog.Logger) {
	if st == queue.Failed && a.Outcome != "GONE" {
		w.metrics.deliveries.WithLabelValues(a.Backend, "abandoned").Inc()
		log.Error("webhook event abandoned", "outcome", a.Outcome, "error", a.Error)
	}
	w.write(log, func(ctx context.Context) error {
		if st == queue.Sent {
			return w.opts.Queue.Complete(ctx, it.Lease, a)
		}
		return w.opts.Queue.Fail(ctx, it.Lease, a)
	})
}

// write records an outcome (queue.Record); unrecorded, the event is posted again when
// its lease lapses.
func (w *Webhooks) write(log *slog.Logger, op func(context.Context) error) {
	if err := queue.Record(op); err != nil && !errors.Is(err, queue.ErrStaleLease) && !errors.Is(err, queue.ErrNotFound) {
		log.Error("webhooks: outcome not recorded; the event is posted again when its lease lapses", "error", err)
	}
}

// expire removes delivered and abandoned events older than the retention.
func (w *Webhooks) expire() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-t.C:
		}
		for {
			ctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
			n, err := w.opts.Queue.Expire(ctx, w.opts.Now().Add(-w.opts.Retention), 1000)
			cancel()
			if err != nil || n < 1000 {
				break
			}
		}
	}
}

type metrics struct {
	events     *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	seconds    *prometheus.HistogramVec
}

func newMetrics() *metrics {
	return &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_webhook_events_total",
			Help: "Events stored for a webhook endpoint, by endpoint and event type.",
		}, []string{"webhook", "type"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailgate_webhook_deliveries_total",
			Help: "Posts of events to webhook endpoints, by endpoint and outcome (delivered, retry, gone, abandoned).",
		}, []string{"webhook", "outcome"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mailgate_webhook_delivery_seconds",
			Help:    "Time a webhook endpoint took to answer a post, by endpoint.",
			Buckets: prometheus.DefBuckets,
		}, []string{"webhook"}),
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.events, m.deliveries, m.seconds} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
