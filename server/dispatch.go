package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/mailerr/mailstatus"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/server/apikey"
	"github.com/mailgate/mailgate/server/policy"
	"github.com/mailgate/mailgate/server/queue"
	"github.com/mailgate/mailgate/server/store"
	"github.com/mailgate/mailgate/webhook"
)

// DispatchOptions tune a replica's delivery workers.
type DispatchOptions struct {
	// Workers is how many messages the replica sends at once; default 16.
	Workers int
	// Lease is how long a worker holds a message before it must renew its claim;
	// default 30 s. A replica that dies leaves its messages to the others after it.
	Lease time.Duration
	// MinBackoff and MaxBackoff bound the wait before retrying a transient failure;
	// defaults 1 min and 20 min.
	MinBackoff, MaxBackoff time.Duration
	// Poll is how often an idle replica looks for due messages that another replica
	// queued (its own it hears of at once); default 1 s.
	Poll time.Duration
	// Retention is how long finished messages stay in the queue; 0 keeps them.
	Retention time.Duration
}

// Dispatcher delivers queued messages: it leases due messages whose mailbox or backend
// has budget, sends each through the route's backends in order, and records the outcome.
// It is a server Adapter: Serve runs the workers, Shutdown stops taking messages and
// waits for the sends under way.
//
// Pacing is the store's: a worker takes the mailbox's budgets with Admit, as a
// synchronous send does, so queued and synchronous messages share the same windows and
// pauses across replicas. A refused message goes back to the queue without an attempt,
// and the replica holds back its group until the refusal ends, so that one throttled
// mailbox does not cost the others their turn.
type Dispatcher struct {
	svc  *Service
	q    queue.Queue
	opts DispatchOptions
	log  *slog.Logger
	wake chan struct{}

	mu       sync.Mutex
	holds    map[store.GroupID]time.Time            // group → until when this replica leaves it alone
	failing  map[store.GroupID]map[string]time.Time // group → backend → until when it is not sent through that backend
	fallback map[store.GroupID]bool                 // groups with messages another backend may carry

	stop    context.CancelFunc
	stopped chan struct{}
	ctx     context.Context
}

// NewDispatcher returns the dispatcher of the service's queue. There is at most one
// per service: the service wakes it when it queues a message.
func (s *Service) NewDispatcher(opts DispatchOptions) (*Dispatcher, error) {
	if s.queue == nil {
		return nil, errors.New("the service has no queue to dispatch")
	}
	if opts.Workers <= 0 {
		opts.Workers = 16
	}
	if opts.Lease <= 0 {
		opts.Lease = 30 * time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Minute
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(opts.MinBackoff, 20*time.Minute)
	}
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	d := &Dispatcher{
		svc: s, q: s.queue, opts: opts, log: s.log,
		wake:     make(chan struct{}, 1),
		holds:    make(map[store.GroupID]time.Time),
		failing:  make(map[store.GroupID]map[string]time.Time),
		fallback: make(map[store.GroupID]bool),
		stopped:  make(chan struct{}),
	}
	d.ctx, d.stop = context.WithCancel(context.Background())
	s.wake = func() {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
	return d, nil
}

// leasers is how many Lease calls a replica has under way at once. Each Lease is a
// durable write (an fsync for the local queue, an AOF write for Redis): one at a time
// bounds the drain at one message per disk sync, while a few at once share syncs (bbolt's
// Batch, Redis's one fsync per event-loop pass).
const leasers = 4

// Serve implements Adapter: it runs the workers until Shutdown.
func (d *Dispatcher) Serve() error {
	defer close(d.stopped)
	var wg sync.WaitGroup
	defer wg.Wait()
	if d.opts.Retention > 0 {
		wg.Go(d.expire)
	}
	slots := make(chan struct{}, d.opts.Workers)                 // a worker's turn: lease, then send
	leasing := make(chan struct{}, min(leasers, d.opts.Workers)) // a Lease under way
	idle := time.NewTimer(0)
	defer idle.Stop()
	// dry is set by a Lease that found nothing due (or failed): the loop then waits for
	// a wake (this replica queued a message) or the poll before leasing again. A wake
	// sent while that Lease ran is buffered, so it is not lost.
	var dry atomic.Bool
	var errMu sync.Mutex
	var lastErr time.Time
	for {
		select {
		case slots <- struct{}{}:
		case <-d.ctx.Done():
			return nil
		}
		if dry.Load() {
			idle.Reset(d.opts.Poll)
			select {
			case <-d.ctx.Done():
				<-slots
				return nil
			case <-d.wake:
			case <-idle.C:
			}
			dry.Store(false)
		}
		select {
		case leasing <- struct{}{}:
		case <-d.ctx.Done():
			<-slots
			return nil
		}
		wg.Go(func() {
			defer func() { <-slots }()
			it, err := d.q.Lease(d.ctx, d.ready, d.opts.Lease)
			<-leasing
			if err != nil {
				dry.Store(true)
				if d.ctx.Err() == nil && !errors.Is(err, queue.ErrEmpty) {
					d.svc.metrics.queueErrors.WithLabelValues("lease").Inc()
					errMu.Lock()
					if now := time.Now(); now.Sub(lastErr) > time.Minute {
						lastErr = now
						d.log.Error("queue: cannot take messages; retrying", "error", err)
					}
					errMu.Unlock()
				}
				return
			}
			d.handle(it)
		})
	}
}

// Shutdown implements Adapter: no message is taken after it is called; it returns once
// the sends under way have been recorded, or when ctx is done (their leases then lapse,
// and another replica or the next start takes the messages over).
func (d *Dispatcher) Shutdown(ctx context.Context) error {
	d.stop()
	select {
	case <-d.stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("queue workers still sending: %w", ctx.Err())
	}
}

// ready is Lease's predicate: a group this replica holds back (whole, or on a backend
// that failed) is skipped, unless its messages have another backend to try.
func (d *Dispatcher) ready(g store.GroupID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.svc.now()
	held := now.Before(d.holds[g])
	for _, until := range d.failing[g] {
		held = held || now.Before(until)
	}
	return !held || d.fallback[g]
}

// held reports whether group g is held back for backend: the whole group (a pause, no
// budget), or that backend for it (it failed), and until when.
func (d *Dispatcher) held(g store.GroupID, backend string, now time.Time) (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var until time.Time
	if u, ok := d.holds[g]; ok {
		if now.Before(u) {
			until = u
		} else {
			delete(d.holds, g)
		}
	}
	if u, ok := d.failing[g][backend]; ok {
		if now.Before(u) {
			until = later(until, u)
		} else {
			delete(d.failing[g], backend)
			if len(d.failing[g]) == 0 {
				delete(d.failing, g)
			}
		}
	}
	return until, !until.IsZero()
}

// hold leaves group g alone until then: for every backend when backend is "" (Microsoft
// paused it, or it has no budget), else for that backend only (it failed for the group),
// so that a fallback that sends as the same mailbox may still carry its messages.
func (d *Dispatcher) hold(g store.GroupID, backend string, until time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if backend == "" {
		if until.After(d.holds[g]) {
			d.holds[g] = until
		}
		return
	}
	if d.failing[g] == nil {
		d.failing[g] = make(map[string]time.Time)
	}
	if until.After(d.failing[g][backend]) {
		d.failing[g][backend] = until
	}
}

// handle takes a leased message to its next state.
func (d *Dispatcher) handle(it *queue.Item) {
	s := d.svc
	now := s.now()
	w := &work{d: d, it: it, lease: it.Lease, log: s.log.With("id", it.ID, "key", it.Key)}
	if !now.Before(it.Deadline) {
		w.settle(queue.Failed, now, queue.Attempt{Time: now, Outcome: "EXPIRED",
			Error: "not delivered within queue.max_lifetime (" + humanDuration(s.queueOpts.MaxLifetime) + ")" + lastErrorSuffix(it)})
		return
	}
	if it.TakenOver {
		// Its worker stopped (its replica died, or lost the queue for longer than the
		// lease) with the message in hand, perhaps after it went out: no backend can say
		// whether it arrived, so it is not sent a second time.
		w.settle(queue.Unknown, now, queue.Attempt{Time: now, Outcome: string(mailerr.ReasonOutcomeUnknown),
			Error: "the worker sending it stopped before recording the outcome (" + it.LastError + "); it may have been delivered, so mailgate does not send it again"})
		return
	}
	req, accepted, err := decodeQueued(it.Body)
	if err != nil {
		w.settle(queue.Failed, now, queue.Attempt{Time: now, Outcome: string(mailerr.ReasonInternal), Error: err.Error()})
		return
	}
	msg, err := normalize(req, it.ID, accepted, s.limits)
	if err != nil {
		// Only a change of limits since it was accepted makes a valid message invalid.
		e := mailerr.Classify(err, mailerr.Invalid)
		w.settle(queue.Failed, now, queue.Attempt{Time: now, Outcome: string(e.ReasonOrDefault()), Error: e.Msg})
		return
	}
	route, ok := s.router.ByName(it.Route)
	if !ok {
		route, ok = s.router.Route(msg.From.Address)
	}
	if !ok {
		w.settle(queue.Failed, now, queue.Attempt{Time: now, Outcome: string(mailerr.ReasonNoRoute),
			Error: fmt.Sprintf("no route for From %s any more: the configuration changed after it was queued", msg.From.Address)})
		return
	}
	msg.Mailbox = route.Mailbox
	w.msg, w.req, w.route = msg, req, route
	backends := route.Backends()
	if len(backends) > 1 {
		d.mu.Lock()
		d.fallback[it.Group] = true
		d.mu.Unlock()
	}

	// The first backend with budget takes it; the others are fallbacks.
	var wait time.Time
	for i, name := range backends {
		snd := s.backends[name]
		adm := s.admission(nil, msg, name)
		if n := snd.Concurrency(); n > 0 && adm.Groups[0].Kind == store.Mailbox {
			adm.Groups[0].Limits = append(adm.Groups[0].Limits, store.Limit{
				ID: store.Concurrent, Count: n, Period: s.sendTimeout + 30*time.Second, Cost: 1})
		}
		g := adm.PauseTarget
		if until, held := d.held(g, name, now); held {
			wait = earliest(wait, until)
			continue
		}
		if d.ctx.Err() != nil {
			break // shutting down: put it back untried
		}
		ticket, err := s.store.Admit(d.ctx, adm)
		if err != nil {
			// The store is down: nothing can be paced, so nothing is sent.
			s.metrics.storeErrors.WithLabelValues("admit").Inc()
			w.log.Warn("queue: cannot take the mailbox's budget; the message waits", "error", err)
			wait = earliest(wait, now.Add(5*time.Second))
			break
		}
		if ticket.Decision != store.Proceed {
			// Throttled: there is no claim, so no other decision.
			s.metrics.waits.WithLabelValues(refusalScope(*ticket.Refused), refusalLimit(*ticket.Refused)).Inc()
			d.hold(g, "", now.Add(ticket.RetryAfter))
			wait = earliest(wait, now.Add(ticket.RetryAfter))
			continue
		}
		w.attempt(name, snd, adm, ticket, backends[i+1:])
		return
	}
	if wait.IsZero() {
		wait = now
	}
	w.release(wait)
}

// work is one leased message on its way through handle.
type work struct {
	d     *Dispatcher
	it    *queue.Item
	lease queue.Lease
	log   *slog.Logger
	req   *mailgatev1.SendMailRequest
	msg   *senders.Message
	route policy.Route
}

// attempt sends through backend name with the budget ticket holds, and settles the
// message by the outcome. rest are the backends a transient failure fails over to.
func (w *work) attempt(name string, snd senders.Sender, adm *store.Admission, ticket *store.Ticket, rest []string) {
	d, s := w.d, w.d.svc
	sendCtx, cancel := context.WithTimeout(context.Background(), s.sendTimeout)
	defer cancel()
	renewed := w.keepLease(sendCtx)
	start := s.now()
	res, sendErr := snd.Send(sendCtx, w.msg)
	w.lease = renewed()
	now := s.now()
	a := queue.Attempt{Time: start, Backend: name}
	if sendErr == nil {
		s.metrics.backend.WithLabelValues(name, res.Status.String()).Observe(now.Sub(start).Seconds())
		resp := &mailgatev1.SendMailResponse{
			Id: w.it.ID, MessageId: w.msg.MessageID, Route: w.route.Name, Backend: name,
			Status: mailgatev1.Status_SENT, AcceptedRecipients: res.Accepted,
		}
		for _, r := range res.Rejected {
			resp.RejectedRecipients = append(resp.RejectedRecipients, &mailgatev1.RejectedRecipient{Address: r.Recipient, Reply: mailstatus.Text(r.Reply, mailstatus.MaxDetail)})
		}
		s.complete(sendCtx, ticket, store.Completion{
			Retention: s.retention,
			Record:    s.record(&apikey.Key{Name: w.it.Key}, w.msg, w.req, resp, w.it.Accepted),
		})
		a.Outcome = mailgatev1.Status_SENT.String()
		// From acceptance or sendAt: NotBefore is the last retry's time by now.
		due := w.it.Accepted
		if at := w.req.GetSendAt(); at != nil {
			due = later(due, at.AsTime())
		}
		s.metrics.latency.Observe(now.Sub(due).Seconds())
		w.settle(queue.Sent, now, a)
		return
	}
	e := mailerr.Classify(sendErr, mailerr.Unavailable)
	s.metrics.backend.WithLabelValues(name, string(e.ReasonOrDefault())).Observe(now.Sub(start).Seconds())
	a.Outcome, a.Reply, a.Error = string(e.ReasonOrDefault()), e.Remote(), e.Msg
	if e.Kind == mailerr.Throttled && e.RetryAfter > 0 {
		// As a synchronous send does: Microsoft throttled the group, so every replica
		// leaves it alone for as long as it said.
		if err := s.store.Pause(sendCtx, adm.PauseTarget, e.RetryAfter); err != nil {
			s.metrics.storeErrors.WithLabelValues("pause").Inc()
			w.log.Warn("could not pause sending", "group", adm.PauseTarget.String(), "error", err)
		}
	}
	s.complete(sendCtx, ticket, store.Completion{Refund: e.Kind != mailerr.OutcomeUnknown, Retention: s.retention})

	switch next := disposition(e.Kind); next {
	case queue.Queued:
	default:
		w.settle(next, now, a)
		return
	}
	// A transient failure: the group is left alone for a while, and the message tried
	// again then, or at once through a fallback that is not held back.
	var at time.Time
	if e.Kind == mailerr.Throttled {
		at = now.Add(max(e.RetryAfter, time.Second))
		if e.RetryAfter <= 0 {
			at = now.Add(d.opts.MinBackoff)
		}
	} else {
		at = now.Add(d.backoff(failures(w.it.Attempts) + 1))
	}
	if e.Kind == mailerr.Throttled {
		d.hold(adm.PauseTarget, "", at)
	} else {
		d.hold(adm.PauseTarget, name, at)
	}
	for _, b := range rest {
		if _, held := d.held(s.admission(nil, w.msg, b).PauseTarget, b, now); !held {
			at = now
			break
		}
	}
	if !at.Before(w.it.Deadline) {
		a.Error += fmt.Sprintf(" (no more retries: queue.max_lifetime ends %s)", w.it.Deadline.UTC().Format(time.RFC3339))
		w.settle(queue.Failed, now, a)
		return
	}
	w.retry(at, a)
}

// disposition is what a failed attempt of a kind means for a queued message: Queued to
// retry, or the final state. Only failures after which nothing was sent are retried; an
// attempt that may have delivered the message is never repeated on mailgate's own.
func disposition(k mailerr.Kind) queue.State {
	switch k {
	case mailerr.Throttled, mailerr.Unavailable, mailerr.InFlight, mailerr.Canceled:
		return queue.Queued
	case mailerr.OutcomeUnknown, mailerr.DeadlineExceeded:
		// A send that ran out of time may have gone out.
		return queue.Unknown
	}
	// Rejected, Invalid, TooLarge, PermissionDenied (an operator must grant Send As and
	// then retry it with `mailgate queue retry`), and Internal (a bug stays a bug).
	return queue.Failed
}

// failures counts the attempts that failed for another reason than a throttle: a
// throttled attempt says nothing about the message, so it does not grow the backoff.
func failures(as []queue.Attempt) int {
	n := 0
	for _, a := range as {
		if a.Outcome != string(mailerr.ReasonThrottled) && a.Outcome != mailgatev1.Status_SENT.String() {
			n++
		}
	}
	return n
}

// backoff is the wait before the nth retry of a transient failure.
func (d *Dispatcher) backoff(n int) time.Duration {
	return queue.Backoff(d.opts.MinBackoff, d.opts.MaxBackoff, n)
}

// keepLease renews the lease every third of its length while the send runs, so that no
// other replica takes over a message that is being sent. The returned func stops it and
// gives the lease as last renewed.
func (w *work) keepLease(ctx context.Context) func() queue.Lease {
	d := w.d
	var mu sync.Mutex
	lease := w.lease
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(d.opts.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			mu.Lock()
			l := lease
			mu.Unlock()
			ectx, cancel := context.WithTimeout(context.Background(), d.opts.Lease/3)
			nl, err := d.q.Extend(ectx, l, d.opts.Lease)
			cancel()
			switch {
			case errors.Is(err, queue.ErrStaleLease):
				w.log.Error("queue: the message's lease was taken over while it was being sent; it may be sent twice")
				return
			case err != nil:
				d.svc.metrics.queueErrors.WithLabelValues("extend").Inc()
				w.log.Warn("queue: could not renew the message's lease", "error", err)
			default:
				mu.Lock()
				lease = nl
				mu.Unlock()
			}
		}
	}()
	return func() queue.Lease {
		close(done)
		<-stopped
		mu.Lock()
		defer mu.Unlock()
		return lease
	}
}

// settle records an attempt and the message's final state.
func (w *work) settle(st queue.State, now time.Time, a queue.Attempt) {
	s := w.d.svc
	var op func(ctx context.Context) error
	switch st {
	case queue.Sent:
		op = func(ctx context.Context) error { return w.d.q.Complete(ctx, w.lease, a) }
	case queue.Failed:
		op = func(ctx context.Context) error { return w.d.q.Fail(ctx, w.lease, a) }
	case queue.Unknown:
		op = func(ctx context.Context) error { return w.d.q.MarkUnknown(ctx, w.lease, a) }
	}
	if a.Backend != "" || a.Outcome != "" {
		s.metrics.attempts.WithLabelValues(a.Backend, a.Outcome).Inc()
	}
	s.notify(eventType[st], w.it, st, len(w.it.Attempts)+1, now, a, time.Time{})
	if !w.write(op) {
		return
	}
	s.metrics.delivered.WithLabelValues(stateStatus[st].String()).Inc()
	attrs := []any{"route", w.it.Route, "backend", a.Backend, "outcome", a.Outcome, "status", stateStatus[st].String(),
		"attempts", len(w.it.Attempts) + 1, "queued_ms", now.Sub(w.it.Accepted).Milliseconds()}
	if a.Reply != "" {
		attrs = append(attrs, "remote", a.Reply)
	}
	if a.Error != "" {
		attrs = append(attrs, "error", a.Error)
	}
	switch st {
	case queue.Sent:
		w.log.Info("queued message sent", attrs...)
	case queue.Unknown:
		w.log.Warn("queued message may or may not have been delivered; it is not sent again", attrs...)
	default:
		w.log.Warn("queued message failed", attrs...)
	}
}

// eventType is the webhook event of a final state.
var eventType = map[queue.State]string{queue.Sent: webhook.EventSent, queue.Failed: webhook.EventFailed, queue.Unknown: webhook.EventUnknown}

// retry records a failed attempt and queues the message again for at.
func (w *work) retry(at time.Time, a queue.Attempt) {
	w.d.svc.metrics.attempts.WithLabelValues(a.Backend, a.Outcome).Inc()
	w.d.svc.notify(webhook.EventDeferred, w.it, queue.Queued, len(w.it.Attempts)+1, a.Time, a, at)
	if w.write(func(ctx context.Context) error { return w.d.q.Retry(ctx, w.lease, at, a) }) {
		w.log.Info("queued message deferred", "route", w.it.Route, "backend", a.Backend, "outcome", a.Outcome,
			"remote", a.Reply, "error", a.Error, "next_attempt", at.UTC().Format(time.RFC3339))
	}
}

// release puts the message back untried, to be taken at notBefore.
func (w *work) release(notBefore time.Time) {
	w.write(func(ctx context.Context) error { return w.d.q.Release(ctx, w.lease, notBefore) })
}

// write records an outcome (queue.Record), and reports whether it was recorded.
func (w *work) write(op func(context.Context) error) bool {
	err := queue.Record(op)
	switch {
	case err == nil:
		return true
	case errors.Is(err, queue.ErrStaleLease) || errors.Is(err, queue.ErrNotFound):
		w.log.Error("queue: the message was taken over by another worker (its lease had lapsed); this outcome is not recorded", "error", err)
	default:
		w.d.svc.metrics.queueErrors.WithLabelValues("settle").Inc()
		w.log.Error("queue: outcome not recorded; the message will be tried again when its lease lapses", "error", err)
	}
	return false
}

// expire removes finished messages older than the retention, once a minute.
func (d *Dispatcher) expire() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		}
		// Every replica sweeps; each Expire removes what another has not yet.
		for {
			ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
			n, err := d.q.Expire(ctx, d.svc.now().Add(-d.opts.Retention), 1000)
			cancel()
			if err != nil {
				if d.ctx.Err() == nil {
					d.svc.metrics.queueErrors.WithLabelValues("expire").Inc()
					d.log.Warn("queue: could not remove finished messages past queue.retention", "error", err)
				}
				break
			}
			if n < 1000 {
				break
			}
		}
	}
}

func lastErrorSuffix(it *queue.Item) string {
	if it.LastError == "" {
		return ""
	}
	return "; last error: " + it.LastError
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}
