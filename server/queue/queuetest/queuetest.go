// Package queuetest is the contract every queue.Queue implementation must pass. The
// local spool and the Redis queue run the same suite, so the embedded default behaves
// like a Redis deployment, only unshared.
package queuetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/server/queue"
	"github.com/mailgate/mailgate/server/store"
)

// Clock is the time the queue under test sees; tests move it.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// Opener opens a fresh, empty queue whose clock is now, and returns it with reopen,
// which closes it and opens the same storage again (a restart).
type Opener func(t *testing.T, now func() time.Time) (q queue.Queue, reopen func() queue.Queue)

// Run runs the contract against the queues open makes; each subtest has its own.
func Run(t *testing.T, open Opener) {
	ctx := context.Background()
	start := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	setup := func(t *testing.T) (queue.Queue, *Clock, func() queue.Queue) {
		clk := &Clock{t: start}
		q, reopen := open(t, clk.Now)
		return q, clk, reopen
	}
	uniq := func(name string) string {
		var b [6]byte
		rand.Read(b[:])
		return name + "-" + hex.EncodeToString(b[:])
	}
	mbox := func(name string) store.GroupID { return store.GroupID{Kind: store.Mailbox, Name: name} }
	item := func(g store.GroupID) *queue.Item {
		return &queue.Item{ID: uniq("id"), Key: "app", Group: g, Backends: []string{"graph", "relay"},
			Body: []byte("body\x00\xff"), Accepted: start, Deadline: start.Add(24 * time.Hour)}
	}
	enqueue := func(t *testing.T, q queue.Queue, it *queue.Item) *queue.Item {
		t.Helper()
		if err := q.Enqueue(ctx, it); err != nil {
			t.Fatal(err)
		}
		return it
	}
	everyGroup := func(store.GroupID) bool { return true }
	lease := func(t *testing.T, q queue.Queue, ready func(store.GroupID) bool) *queue.Item {
		t.Helper()
		it, err := q.Lease(ctx, ready, time.Minute)
		if err != nil {
			t.Fatalf("Lease: %v", err)
		}
		if it.State != queue.Sending || it.Lease.ID != it.ID || it.Lease.Token == 0 {
			t.Fatalf("leased item state %v lease %+v", it.State, it.Lease)
		}
		return it
	}
	empty := func(t *testing.T, q queue.Queue, ready func(store.GroupID) bool) {
		t.Helper()
		if it, err := q.Lease(ctx, ready, time.Minute); !errors.Is(err, queue.ErrEmpty) {
			t.Fatalf("Lease = %+v, %v; want ErrEmpty", it, err)
		}
	}
	get := func(t *testing.T, q queue.Queue, id string) *queue.Item {
		t.Helper()
		it, err := q.Get(ctx, id)
		if err != nil {
			t.Fatalf("Get %s: %v", id, err)
		}
		return it
	}

	t.Run("enqueue is durable across reopen", func(t *testing.T) {
		t.Parallel()
		q, _, reopen := setup(t)
		it := enqueue(t, q, item(mbox("a@example.com")))
		q = reopen()
		got := get(t, q, it.ID)
		if got.State != queue.Queued || string(got.Body) != string(it.Body) || got.Key != "app" ||
			got.Group != it.Group || len(got.Backends) != 2 || !got.Deadline.Equal(it.Deadline) {
			t.Errorf("after reopen %+v, want %+v", got, it)
		}
		if l := lease(t, q, everyGroup); l.ID != it.ID {
			t.Errorf("leased %s, want %s", l.ID, it.ID)
		}
	})

	t.Run("enqueue refuses", func(t *testing.T) {
		t.Parallel()
		q, _, _ := setup(t)
		dup := enqueue(t, q, item(mbox("a@example.com")))
		for _, tc := range []struct {
			name string
			edit func(*queue.Item)
			want error
		}{
			{"taken id", func(it *queue.Item) { it.ID = dup.ID }, queue.ErrExists},
			{"no id", func(it *queue.Item) { it.ID = "" }, queue.ErrInvalid},
			{"no key", func(it *queue.Item) { it.Key = "" }, queue.ErrInvalid},
			{"no group", func(it *queue.Item) { it.Group = store.GroupID{} }, queue.ErrInvalid},
			{"bad group kind", func(it *queue.Item) { it.Group.Kind = 9 }, queue.ErrInvalid},
			{"no body", func(it *queue.Item) { it.Body = nil }, queue.ErrInvalid},
			{"deadline before not-before", func(it *queue.Item) { it.NotBefore = it.Deadline }, queue.ErrInvalid},
			{"state set", func(it *queue.Item) { it.State = queue.Sent }, queue.ErrInvalid},
			{"attempts set", func(it *queue.Item) { it.Attempts = []queue.Attempt{{}} }, queue.ErrInvalid},
		} {
			it := item(mbox("a@example.com"))
			tc.edit(it)
			if err := q.Enqueue(ctx, it); !errors.Is(err, tc.want) {
				t.Errorf("%s: Enqueue = %v, want %v", tc.name, err, tc.want)
			}
		}
		if _, err := q.Get(ctx, "nope"); !errors.Is(err, queue.ErrNotFound) {
			t.Errorf("Get of no item = %v, want ErrNotFound", err)
		}
		if _, err := q.Lease(ctx, nil, time.Minute); !errors.Is(err, queue.ErrInvalid) {
			t.Errorf("Lease without a predicate = %v, want ErrInvalid", err)
		}
		if _, err := q.Lease(ctx, everyGroup, 0); !errors.Is(err, queue.ErrInvalid) {
			t.Errorf("Lease for 0s = %v, want ErrInvalid", err)
		}
		if err := q.Complete(ctx, queue.Lease{ID: "nope", Token: 1}, queue.Attempt{}); !errors.Is(err, queue.ErrNotFound) {
			t.Errorf("Complete of no item = %v, want ErrNotFound", err)
		}
	})

	t.Run("concurrent leasers never share an item", func(t *testing.T) {
		t.Parallel()
		q, _, _ := setup(t)
		const n = 40
		for i := range n {
			enqueue(t, q, item(mbox([]string{"a@x", "b@x", "c@x"}[i%3])))
		}
		var (
			mu   sync.Mutex
			seen = map[string]int{}
			wg   sync.WaitGroup
			errs atomic.Int32
		)
		for range 8 {
			wg.Go(func() {
				for {
					it, err := q.Lease(ctx, everyGroup, time.Minute)
					if errors.Is(err, queue.ErrEmpty) {
						return
					}
					if err != nil {
						errs.Add(1)
						return
					}
					mu.Lock()
					seen[it.ID]++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if errs.Load() != 0 {
			t.Fatalf("%d leasers failed", errs.Load())
		}
		if len(seen) != n {
			t.Errorf("leased %d items, want %d", len(seen), n)
		}
		for id, c := range seen {
			if c != 1 {
				t.Errorf("%s leased %d times", id, c)
			}
		}
	})

	t.Run("a throttled group does not block the others", func(t *testing.T) {
		t.Parallel()
		q, _, _ := setup(t)
		busy, free := mbox("busy@example.com"), mbox("free@example.com")
		var asked []store.GroupID
		for range 3 {
			enqueue(t, q, item(busy))
		}
		want := enqueue(t, q, item(free))
		ready := func(g store.GroupID) bool { asked = append(asked, g); return g != busy }
		if got := lease(t, q, ready); got.ID != want.ID {
			t.Errorf("leased %s of %v, want %s", got.ID, got.Group, want.ID)
		}
		for _, g := range asked {
			if g != busy && g != free {
				t.Errorf("predicate asked about %v", g)
			}
		}
		empty(t, q, ready)
		if got := get(t, q, want.ID); got.State != queue.Sending || len(got.Attempts) != 0 {
			t.Errorf("free item %v with %d attempts", got.State, len(got.Attempts))
		}
	})

	t.Run("not before, earliest first within a group", func(t *testing.T) {
		t.Parallel()
		q, clk, _ := setup(t)
		g := mbox("a@example.com")
		late := item(g)
		late.NotBefore = start.Add(2 * time.Hour)
		enqueue(t, q, late)
		early := item(g)
		early.NotBefore = start.Add(time.Hour)
		enqueue(t, q, early)
		empty(t, q, everyGroup)
		clk.Advance(time.Hour)
		first := lease(t, q, everyGroup)
		if first.ID != early.ID {
			t.Errorf("leased %s, want the earlier %s", first.ID, early.ID)
		}
		empty(t, q, everyGroup)
		if err := q.Complete(ctx, first.Lease, queue.Attempt{Time: clk.Now(), Backend: "graph", Outcome: "SENT"}); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Hour)
		if got := lease(t, q, everyGroup); got.ID != late.ID {
			t.Errorf("leased %s, want %s", got.ID, late.ID)
		}
	})

	t.Run("retry at records the attempt", func(t *testing.T) {
		t.Parallel()
		q, clk, _ := setup(t)
		it := enqueue(t, q, item(mbox("a@example.com")))
		l := lease(t, q, everyGroup)
		a := queue.Attempt{Time: clk.Now(), Backend: "graph", Outcome: "THROTTLED", Reply: "429 ApplicationThrottled", Error: "Microsoft throttled the mailbox"}
		if err := q.Retry(ctx, l.Lease, start.Add(5*time.Minute), a); err != nil {
			t.Fatal(err)
		}
		got := get(t, q, it.ID)
		if got.State != queue.Queued || len(got.Attempts) != 1 || got.Attempts[0].Reply != a.Reply ||
			got.LastError != a.Error || !got.NotBefore.Equal(start.Add(5*time.Minute)) || !got.Lease.IsZero() {
			t.Errorf("after Retry %+v", got)
		}
		empty(t, q, everyGroup)
		clk.Advance(5 * time.Minute)
		l2 := lease(t, q, everyGroup)
		if l2.Lease.Token <= l.Lease.Token {
			t.Errorf("second lease token %d not after %d", l2.Lease.Token, l.Lease.Token)
		}
		if err := q.Release(ctx, l2.Lease, clk.Now()); err != nil {
			t.Fatal(err)
		}
		if got := get(t, q, it.ID); got.State != queue.Queued || len(got.Attempts) != 1 {
			t.Errorf("Release recorded an attempt or left %v: %+v", got.State, got.Attempts)
		}
		l3 := lease(t, q, everyGroup)
		if err := q.Complete(ctx, l3.Lease, queue.Attempt{Time: clk.Now(), Backend: "relay", Outcome: "SENT", Reply: "250 OK"}); err != nil {
			t.Fatal(err)
		}
		if got := get(t, q, it.ID); got.State != queue.Sent || len(got.Attempts) != 2 || got.Attempts[1].Backend != "relay" {
			t.Errorf("after Complete %+v", got)
		}
	})

	t.Run("lapsed lease is taken over and the old token refused", func(t *testing.T) {
		t.Parallel()
		q, clk, _ := setup(t)
		it := enqueue(t, q, item(mbox("a@example.com")))
		old := lease(t, q, everyGroup)
		empty(t, q, everyGroup)
		clk.Advance(30 * time.Second)
		ext, err := q.Extend(ctx, old.Lease, time.Minute)
		if err != nil || ext.Token != old.Lease.Token || !ext.Until.Equal(clk.Now().Add(time.Minute)) {
			t.Fatalf("Extend = %+v, %v", ext, err)
		}
		clk.Advance(59 * time.Second)
		empty(t, q, everyGroup)
		clk.Advance(2 * time.Second)
		taken := lease(t, q, everyGroup)
		if taken.ID != it.ID || taken.Lease.Token == old.Lease.Token {
			t.Fatalf("took over %s token %d (old %d)", taken.ID, taken.Lease.Token, old.Lease.Token)
		}
		a := queue.Attempt{Time: clk.Now(), Backend: "graph", Outcome: "SENT"}
		for name, call := range map[string]func() error{
			"Complete":    func() error { return q.Complete(ctx, old.Lease, a) },
			"Fail":        func() error { return q.Fail(ctx, old.Lease, a) },
			"MarkUnknown": func() error { return q.MarkUnknown(ctx, old.Lease, a) },
			"Retry":       func() error { return q.Retry(ctx, old.Lease, clk.Now(), a) },
			"Release":     func() error { return q.Release(ctx, old.Lease, clk.Now()) },
			"Extend":      func() error { _, err := q.Extend(ctx, old.Lease, time.Minute); return err },
		} {
			if err := call(); !errors.Is(err, queue.ErrStaleLease) {
				t.Errorf("%s with the taken-over lease = %v, want ErrStaleLease", name, err)
			}
		}
		if err := q.MarkUnknown(ctx, taken.Lease, queue.Attempt{Time: clk.Now(), Backend: "relay", Outcome: "OUTCOME_UNKNOWN"}); err != nil {
			t.Fatal(err)
		}
		if err := q.Fail(ctx, taken.Lease, a); !errors.Is(err, queue.ErrStaleLease) {
			t.Errorf("Fail after MarkUnknown = %v, want ErrStaleLease", err)
		}
		got := get(t, q, it.ID)
		if got.State != queue.Unknown || len(got.Attempts) != 1 {
			t.Errorf("after takeover and MarkUnknown %+v", got)
		}
	})

	t.Run("cancel only what is queued", func(t *testing.T) {
		t.Parallel()
		q, clk, _ := setup(t)
		g := mbox("a@example.com")
		scheduled := item(g)
		scheduled.NotBefore = start.Add(24 * time.Hour)
		scheduled.Deadline = start.Add(48 * time.Hour)
		enqueue(t, q, scheduled)
		leased := enqueue(t, q, item(g))
		held := lease(t, q, everyGroup)
		if held.ID != leased.ID {
			t.Fatalf("leased %s, want %s", held.ID, leased.ID)
		}
		sent := enqueue(t, q, item(mbox("b@example.com")))
		l := lease(t, q, everyGroup)
		if err := q.Complete(ctx, l.Lease, queue.Attempt{Time: clk.Now(), Backend: "graph", Outcome: "SENT"}); err != nil {
			t.Fatal(err)
		}
		if err := q.Cancel(ctx, scheduled.ID); err != nil {
			t.Fatalf("Cancel of a scheduled item: %v", err)
		}
		for _, tc := range []struct {
			id    string
			state queue.State
		}{{leased.ID, queue.Sending}, {sent.ID, queue.Sent}, {scheduled.ID, queue.Canceled}} {
			err := q.Cancel(ctx, tc.id)
			var se *queue.StateError
			if !errors.Is(err, queue.ErrNotCancelable) || !errors.As(err, &se) || se.State != tc.state {
				t.Errorf("Cancel of a %v item = %v, want ErrNotCancelable naming %v", tc.state, err, tc.state)
			}
		}
		if err := q.Cancel(ctx, "nope"); !errors.Is(err, queue.ErrNotFound) {
			t.Errorf("Cancel of no item = %v, want ErrNotFound", err)
		}
		if err := q.Fail(ctx, held.Lease, queue.Attempt{Time: clk.Now(), Backend: "graph", Outcome: "REJECTED"}); err != nil {
			t.Fatal(err)
		}
		clk.Advance(25 * time.Hour)
		empty(t, q, everyGroup)
		if got := get(t, q, scheduled.ID); got.State != queue.Canceled {
			t.Errorf("canceled item is %v", got.State)
		}
	})

	t.Run("terminal states are kept", func(t *testing.T) {
		t.Parallel()
		q, clk, reopen := setup(t)
		want := map[string]queue.State{}
		for _, st := range []queue.State{queue.Sent, queue.Failed, queue.Unknown} {
			it := enqueue(t, q, item(mbox("a@example.com")))
			l := lease(t, q, everyGroup)
			a := queue.Attempt{Time: clk.Now(), Backend: "graph", Outcome: st.String(), Reply: "550 5.7.1 refused", Error: "refused"}
			var err error
			switch st {
			case queue.Sent:
				err = q.Complete(ctx, l.Lease, a)
			case queue.Failed:
				err = q.Fail(ctx, l.Lease, a)
			case queue.Unknown:
				err = q.MarkUnknown(ctx, l.Lease, a)
			}
			if err != nil {
				t.Fatal(err)
			}
			want[it.ID] = st
		}
		empty(t, q, everyGroup)
		q = reopen()
		clk.Advance(48 * time.Hour)
		empty(t, q, everyGroup)
		for id, st := range want {
			got := get(t, q, id)
			if got.State != st || !got.State.Terminal() || len(got.Attempts) != 1 || got.Attempts[0].Reply != "550 5.7.1 refused" {
				t.Errorf("%s: %+v, want %v", id, got, st)
			}
		}
	})
}
