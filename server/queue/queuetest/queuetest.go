// Package queuetest is the contract every queue.Queue implementation must pass. The
// local spool and the Redis queue run the same suite, so the embedded default behaves
// like a Redis deployment, only unshared.
package queuetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
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
		if l := lease(t, q, everyGroup); l.ID != it.ID || string(l.Body) != string(it.Body) {
			t.Errorf("leased %s with body %q, want %s with %q: a worker needs the body", l.ID, l.Body, it.ID, it.Body)
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
			{"finished set", func(it *queue.Item) { it.Finished = start }, queue.ErrInvalid},
			{"taken over set", func(it *queue.Item) { it.TakenOver = true }, queue.ErrInvalid},
			{"key with a NUL byte", func(it *queue.Item) { it.Key = "app\x00x" }, queue.ErrInvalid},
			{"group name with a NUL byte", func(it *queue.Item) { it.Group.Name = "a\x00b" }, queue.ErrInvalid},
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
		if old.TakenOver {
			t.Error("a first lease says TakenOver")
		}
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
		if !taken.TakenOver {
			t.Error("a lease that took over a lapsed one does not say TakenOver")
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

	t.Run("a settled takeover is an ordinary lease again", func(t *testing.T) {
		t.Parallel()
		q, clk, _ := setup(t)
		enqueue(t, q, item(mbox("a@example.com")))
		lease(t, q, everyGroup)
		clk.Advance(2 * time.Minute)
		taken := lease(t, q, everyGroup)
		if !taken.TakenOver {
			t.Fatal("a lease that took over a lapsed one does not say TakenOver")
		}
		if err := q.Release(ctx, taken.Lease, clk.Now()); err != nil {
			t.Fatal(err)
		}
		if again := lease(t, q, everyGroup); again.TakenOver {
			t.Error("the lease after a Release still says TakenOver")
		} else if err := q.Retry(ctx, again.Lease, clk.Now(), queue.Attempt{Time: clk.Now(), Backend: "graph", Outcome: "UNAVAILABLE"}); err != nil {
			t.Fatal(err)
		}
		if again := lease(t, q, everyGroup); again.TakenOver {
			t.Error("the lease after a Retry says TakenOver")
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

	operatorCases(t, ctx, start, setup)
}

// ends are the moves into a terminal state, by the state they end in.
var ends = map[queue.State]func(ctx context.Context, q queue.Queue, it *queue.Item, now time.Time) error{
	queue.Sent: func(ctx context.Context, q queue.Queue, it *queue.Item, now time.Time) error {
		return q.Complete(ctx, it.Lease, queue.Attempt{Time: now, Backend: "graph", Outcome: "SENT"})
	},
	queue.Failed: func(ctx context.Context, q queue.Queue, it *queue.Item, now time.Time) error {
		return q.Fail(ctx, it.Lease, queue.Attempt{Time: now, Backend: "graph", Outcome: "REJECTED", Error: "refused"})
	},
	queue.Unknown: func(ctx context.Context, q queue.Queue, it *queue.Item, now time.Time) error {
		return q.MarkUnknown(ctx, it.Lease, queue.Attempt{Time: now, Backend: "relay", Outcome: "OUTCOME_UNKNOWN"})
	},
	queue.Canceled: func(ctx context.Context, q queue.Queue, it *queue.Item, _ time.Time) error {
		return q.Cancel(ctx, it.ID)
	},
}

// operatorCases are the contract of List, Requeue, Delete, Expire and Stats, and of the
// item's metadata.
func operatorCases(t *testing.T, ctx context.Context, start time.Time, setup func(*testing.T) (queue.Queue, *Clock, func() queue.Queue)) {
	// put enqueues id in a group of its own (so that a Lease can pick it) and brings it
	// to state st at the clock's time.
	put := func(t *testing.T, q queue.Queue, clk *Clock, id string, st queue.State, edit func(*queue.Item)) *queue.Item {
		t.Helper()
		g := store.GroupID{Kind: store.Mailbox, Name: id + "@example.com"}
		it := &queue.Item{ID: id, Key: "app", Group: g, Backends: []string{"graph"}, Body: []byte("body " + id),
			Accepted: clk.Now(), Deadline: clk.Now().Add(24 * time.Hour)}
		if edit != nil {
			edit(it)
		}
		if err := q.Enqueue(ctx, it); err != nil {
			t.Fatalf("Enqueue %s: %v", id, err)
		}
		if st == queue.Queued {
			return it
		}
		if st != queue.Canceled {
			l, err := q.Lease(ctx, func(x store.GroupID) bool { return x == g }, time.Minute)
			if err != nil || l.ID != id {
				t.Fatalf("Lease of %s = %+v, %v", id, l, err)
			}
			it = l
		}
		if st != queue.Sending {
			if err := ends[st](ctx, q, it, clk.Now()); err != nil {
				t.Fatalf("ending %s %v: %v", id, st, err)
			}
		}
		got, err := q.Get(ctx, id)
		if err != nil || got.State != st {
			t.Fatalf("Get %s = %+v, %v; want %v", id, got, err, st)
		}
		return got
	}
	ids := func(items []*queue.Item) []string {
		out := make([]string, len(items))
		for i, it := range items {
			out[i] = it.ID
		}
		return out
	}
	// listAll pages through q with limit, checking each page.
	listAll := func(t *testing.T, qu queue.Queue, lq queue.ListQuery) []string {
		t.Helper()
		var all []string
		for pages := 0; ; pages++ {
			if pages > 20 {
				t.Fatalf("List %+v: more than 20 pages", lq)
			}
			items, next, err := qu.List(ctx, lq)
			if err != nil {
				t.Fatalf("List %+v: %v", lq, err)
			}
			limit := lq.Limit
			if limit == 0 {
				limit = queue.DefaultListLimit
			}
			if len(items) > limit || (next != "" && len(items) != limit) {
				t.Fatalf("List %+v: page of %d with next %q", lq, len(items), next)
			}
			for _, it := range items {
				if it.Body != nil {
					t.Errorf("List returned %s with its body", it.ID)
				}
				if it.Key != lq.Key {
					t.Errorf("List for %s returned %s of %s", lq.Key, it.ID, it.Key)
				}
			}
			all = append(all, ids(items)...)
			if next == "" {
				return all
			}
			lq.PageToken = next
		}
	}

	t.Run("metadata is kept, Finished set on ending", func(t *testing.T) {
		t.Parallel()
		for _, st := range []queue.State{queue.Sent, queue.Failed, queue.Unknown, queue.Canceled} {
			t.Run(st.String(), func(t *testing.T) {
				q, clk, reopen := setup(t)
				tags := map[string]string{"campaign": "december", "tenant": "contoso"}
				it := &queue.Item{ID: "m1", Key: "app", Group: store.GroupID{Kind: store.Mailbox, Name: "a@example.com"},
					Body: []byte("body"), Accepted: start.Add(-time.Second), Deadline: start.Add(time.Hour),
					MessageID: "<m1@mailgate.example>", From: "billing@contoso.com", Route: "default", Tags: tags,
					Recipients: []string{"alice@example.com", "bob@example.org"}}
				if err := q.Enqueue(ctx, it); err != nil {
					t.Fatal(err)
				}
				tags["campaign"] = "changed by the caller afterwards"
				check := func(what string, got *queue.Item, finished time.Time) {
					t.Helper()
					want := map[string]string{"campaign": "december", "tenant": "contoso"}
					if got.MessageID != it.MessageID || got.From != it.From || got.Route != it.Route ||
						!maps.Equal(got.Tags, want) || !slices.Equal(got.Recipients, it.Recipients) ||
						!got.Accepted.Equal(it.Accepted) || !got.Finished.Equal(finished) {
						t.Errorf("%s: %+v; want metadata of %+v, Finished %v", what, got, it, finished)
					}
				}
				got, err := q.Get(ctx, "m1")
				if err != nil {
					t.Fatal(err)
				}
				check("Get while queued", got, time.Time{})
				clk.Advance(time.Minute)
				put := got
				if st != queue.Canceled {
					if put, err = q.Lease(ctx, func(store.GroupID) bool { return true }, time.Minute); err != nil {
						t.Fatal(err)
					}
					check("Lease", put, time.Time{})
					clk.Advance(time.Minute)
				}
				if err := ends[st](ctx, q, put, clk.Now()); err != nil {
					t.Fatal(err)
				}
				q = reopen()
				got, err = q.Get(ctx, "m1")
				if err != nil {
					t.Fatal(err)
				}
				check("Get once ended", got, clk.Now())
				if string(got.Body) != "body" {
					t.Errorf("Get's body %q", got.Body)
				}
				items, _, err := q.List(ctx, queue.ListQuery{Key: "app"})
				if err != nil || len(items) != 1 {
					t.Fatalf("List = %v, %v", ids(items), err)
				}
				check("List", items[0], clk.Now())
				if items[0].State != st || items[0].Body != nil {
					t.Errorf("List: state %v, body %q", items[0].State, items[0].Body)
				}
			})
		}
	})

	t.Run("list: order, filters, range and pages", func(t *testing.T) {
		t.Parallel()
		q, clk, _ := setup(t)
		at := func(d time.Duration) func(*queue.Item) {
			return func(it *queue.Item) { it.Accepted = start.Add(d) }
		}
		tagged := func(d time.Duration, tags map[string]string) func(*queue.Item) {
			return func(it *queue.Item) { it.Accepted, it.Tags = start.Add(d), tags }
		}
		// m01 and m02 share an Accepted (the larger ID first); m00 is one nanosecond
		// newer (first although its ID is the smallest).
		put(t, q, clk, "m01", queue.Queued, func(it *queue.Item) {
			it.Accepted, it.Tags, it.Recipients = start, map[string]string{"team": "x"}, []string{"alice@example.com", "bob@example.org"}
		})
		put(t, q, clk, "m02", queue.Queued, tagged(0, map[string]string{"team": "y"}))
		put(t, q, clk, "m00", queue.Queued, at(time.Nanosecond))
		put(t, q, clk, "m03", queue.Sending, func(it *queue.Item) {
			it.Accepted, it.Tags, it.Recipients = start.Add(time.Hour), map[string]string{"team": "x", "env": "prod"}, []string{"bob@example.org"}
		})
		put(t, q, clk, "m04", queue.Canceled, at(-time.Hour))
		put(t, q, clk, "m05", queue.Queued, func(it *queue.Item) { it.Key, it.Accepted = "other", start.Add(2*time.Hour) })
		for _, tc := range []struct {
			name string
			q    queue.ListQuery
			want []string
		}{
			{"all of a key", queue.ListQuery{Key: "app"}, []string{"m03", "m00", "m02", "m01", "m04"}},
			{"another key", queue.ListQuery{Key: "other"}, []string{"m05"}},
			{"a key with none", queue.ListQuery{Key: "nobody"}, nil},
			{"queued", queue.ListQuery{Key: "app", States: []queue.State{queue.Queued}}, []string{"m00", "m02", "m01"}},
			{"sending or canceled", queue.ListQuery{Key: "app", States: []queue.State{queue.Canceled, queue.Sending}}, []string{"m03", "m04"}},
			{"sent", queue.ListQuery{Key: "app", States: []queue.State{queue.Sent}}, nil},
			{"one tag", queue.ListQuery{Key: "app", Tags: map[string]string{"team": "x"}}, []string{"m03", "m01"}},
			{"two tags", queue.ListQuery{Key: "app", Tags: map[string]string{"team": "x", "env": "prod"}}, []string{"m03"}},
			{"a tag no item has", queue.ListQuery{Key: "app", Tags: map[string]string{"team": "z"}}, nil},
			{"tag and state", queue.ListQuery{Key: "app", Tags: map[string]string{"team": "x"}, States: []queue.State{queue.Queued}}, []string{"m01"}},
			{"a recipient", queue.ListQuery{Key: "app", Recipient: "bob@example.org"}, []string{"m03", "m01"}},
			{"a recipient and a state", queue.ListQuery{Key: "app", Recipient: "bob@example.org", States: []queue.State{queue.Queued}}, []string{"m01"}},
			{"a recipient no item has", queue.ListQuery{Key: "app", Recipient: "carol@example.net"}, nil},
			{"from is inclusive, to exclusive", queue.ListQuery{Key: "app", AcceptedFrom: start, AcceptedTo: start.Add(time.Hour)}, []string{"m00", "m02", "m01"}},
			{"from a nanosecond on", queue.ListQuery{Key: "app", AcceptedFrom: start.Add(time.Nanosecond)}, []string{"m03", "m00"}},
			{"to", queue.ListQuery{Key: "app", AcceptedTo: start}, []string{"m04"}},
			{"to a nanosecond on", queue.ListQuery{Key: "app", AcceptedTo: start.Add(time.Nanosecond)}, []string{"m02", "m01", "m04"}},
		} {
			for _, limit := range []int{0, 1, 2, 3} {
				lq := tc.q
				lq.Limit = limit
				if got := listAll(t, q, lq); !slices.Equal(got, tc.want) {
					t.Errorf("%s, limit %d: %v, want %v", tc.name, limit, got, tc.want)
				}
			}
		}

		// A page token goes on from where its page ended, whatever was enqueued since:
		// m10, as old as m00 (the first page's last) but with a larger ID, comes before
		// it; m, as old with a smaller ID (a prefix of m00), after it.
		first, next, err := q.List(ctx, queue.ListQuery{Key: "app", Limit: 2})
		if err != nil || next == "" || !slices.Equal(ids(first), []string{"m03", "m00"}) {
			t.Fatalf("first page %v, %q, %v", ids(first), next, err)
		}
		put(t, q, clk, "m06", queue.Queued, at(3*time.Hour))
		put(t, q, clk, "m10", queue.Queued, at(time.Nanosecond))
		put(t, q, clk, "m", queue.Queued, at(time.Nanosecond))
		if got := listAll(t, q, queue.ListQuery{Key: "app", Limit: 2, PageToken: next}); !slices.Equal(got, []string{"m", "m02", "m01", "m04"}) {
			t.Errorf("pages after the first once more were enqueued: %v", got)
		}
	})

	t.Run("list refuses", func(t *testing.T) {
		t.Parallel()
		q, _, _ := setup(t)
		for _, tc := range []struct {
			name, field string
			q           queue.ListQuery
		}{
			{"no key", "Key", queue.ListQuery{}},
			{"negative limit", "Limit", queue.ListQuery{Key: "app", Limit: -1}},
			{"limit too large", "Limit", queue.ListQuery{Key: "app", Limit: queue.MaxListLimit + 1}},
			{"token not base64", "PageToken", queue.ListQuery{Key: "app", PageToken: "!!not a token"}},
			{"token too short", "PageToken", queue.ListQuery{Key: "app", PageToken: "AAAA"}},
			{"not a state", "States", queue.ListQuery{Key: "app", States: []queue.State{queue.Unknown + 1}}},
			{"empty range", "AcceptedTo", queue.ListQuery{Key: "app", AcceptedFrom: start, AcceptedTo: start}},
		} {
			items, next, err := q.List(ctx, tc.q)
			if !errors.Is(err, queue.ErrInvalid) || !strings.Contains(err.Error(), tc.field) || items != nil || next != "" {
				t.Errorf("%s: List = %v, %q, %v; want ErrInvalid naming %s", tc.name, items, next, err, tc.field)
			}
		}
		if items, _, err := q.List(ctx, queue.ListQuery{Key: "app", Limit: queue.MaxListLimit}); err != nil || len(items) != 0 {
			t.Errorf("List with the largest limit = %v, %v", items, err)
		}
	})

	t.Run("requeue", func(t *testing.T) {
		t.Parallel()
		q, clk, _ := setup(t)
		for _, tc := range []struct {
			from     queue.State
			attempts int
			want     error
		}{
			{queue.Failed, 1, nil}, {queue.Unknown, 1, nil}, {queue.Canceled, 0, nil},
			{queue.Sent, 1, queue.ErrNotRequeueable}, {queue.Queued, 0, queue.ErrNotRequeueable}, {queue.Sending, 0, queue.ErrNotRequeueable},
		} {
			id := "r-" + tc.from.String()
			it := put(t, q, clk, id, tc.from, nil)
			at, deadline := clk.Now().Add(10*time.Minute), clk.Now().Add(48*time.Hour)
			err := q.Requeue(ctx, id, at, deadline)
			if tc.want != nil {
				var se *queue.StateError
				if !errors.Is(err, tc.want) || !errors.As(err, &se) || se.State != tc.from {
					t.Errorf("Requeue of a %v item = %v, want %v naming %v", tc.from, err, tc.want, tc.from)
				}
				if got, _ := q.Get(ctx, id); got == nil || got.State != tc.from || !got.Finished.Equal(it.Finished) {
					t.Errorf("refused Requeue changed the item: %+v", got)
				}
				continue
			}
			if err != nil {
				t.Errorf("Requeue of a %v item: %v", tc.from, err)
				continue
			}
			got, err := q.Get(ctx, id)
			if err != nil || got.State != queue.Queued || !got.NotBefore.Equal(at) || !got.Deadline.Equal(deadline) ||
				len(got.Attempts) != tc.attempts || !got.Finished.IsZero() || !got.Lease.IsZero() || string(got.Body) != "body "+id {
				t.Errorf("after Requeue of a %v item: %+v, %v", tc.from, got, err)
			}
			own := func(g store.GroupID) bool { return g == it.Group }
			if l, err := q.Lease(ctx, own, time.Minute); !errors.Is(err, queue.ErrEmpty) {
				t.Errorf("requeued %v item leased before its time: %+v, %v", tc.from, l, err)
			}
		}
		clk.Advance(10 * time.Minute)
		for _, st := range []queue.State{queue.Failed, queue.Unknown, queue.Canceled} {
			g := store.GroupID{Kind: store.Mailbox, Name: "r-" + st.String() + "@example.com"}
			l, err := q.Lease(ctx, func(x store.GroupID) bool { return x == g }, time.Minute)
			if err != nil {
				t.Errorf("Lease of the requeued %v item: %v", st, err)
				continue
			}
			if err := q.Complete(ctx, l.Lease, queue.Attempt{Time: clk.Now(), Outcome: "SENT"}); err != nil {
				t.Fatal(err)
			}
			if got, _ := q.Get(ctx, l.ID); got == nil || got.State != queue.Sent || !got.Finished.Equal(clk.Now()) {
				t.Errorf("requeued %v item, then sent: %+v", st, got)
			}
		}
		if err := q.Requeue(ctx, "nope", clk.Now(), clk.Now().Add(time.Hour)); !errors.Is(err, queue.ErrNotFound) {
			t.Errorf("Requeue of no item = %v, want ErrNotFound", err)
		}
		failed := put(t, q, clk, "r-bad-deadline", queue.Failed, nil)
		if err := q.Requeue(ctx, failed.ID, clk.Now(), clk.Now()); !errors.Is(err, queue.ErrInvalid) {
			t.Errorf("Requeue with the deadline at at = %v, want ErrInvalid", err)
		}
	})

	t.Run("delete", func(t *testing.T) {
		t.Parallel()
		q, clk, _ := setup(t)
		for _, tc := range []struct {
			st   queue.State
			want error
		}{
			{queue.Queued, nil}, {queue.Sent, nil}, {queue.Failed, nil}, {queue.Canceled, nil}, {queue.Unknown, nil},
			{queue.Sending, queue.ErrLeased},
		} {
			id := "d-" + tc.st.String()
			it := put(t, q, clk, id, tc.st, nil)
			err := q.Delete(ctx, id)
			if tc.want != nil {
				var se *queue.StateError
				if !errors.Is(err, tc.want) || !errors.As(err, &se) || se.State != tc.st {
					t.Errorf("Delete of a %v item = %v, want %v naming %v", tc.st, err, tc.want, tc.st)
				}
				if _, err := q.Get(ctx, id); err != nil {
					t.Errorf("refused Delete removed the item: %v", err)
				}
				continue
			}
			if err != nil {
				t.Errorf("Delete of a %v item: %v", tc.st, err)
				continue
			}
			if _, err := q.Get(ctx, id); !errors.Is(err, queue.ErrNotFound) {
				t.Errorf("Get after Delete of a %v item = %v, want ErrNotFound", tc.st, err)
			}
			if err := q.Delete(ctx, id); !errors.Is(err, queue.ErrNotFound) {
				t.Errorf("second Delete of a %v item = %v, want ErrNotFound", tc.st, err)
			}
			own := func(g store.GroupID) bool { return g == it.Group }
			if l, err := q.Lease(ctx, own, time.Minute); !errors.Is(err, queue.ErrEmpty) {
				t.Errorf("deleted %v item leased: %+v, %v", tc.st, l, err)
			}
		}
		if got := listAll(t, q, queue.ListQuery{Key: "app"}); !slices.Equal(got, []string{"d-SENDING"}) {
			t.Errorf("List after the deletes: %v", got)
		}
		if n, err := q.Expire(ctx, clk.Now().Add(time.Hour), 100); n != 0 || err != nil {
			t.Errorf("Expire after the deletes = %d, %v; want nothing left to expire", n, err)
		}
		st, err := q.Stats(ctx)
		if want := (queue.Stats{Sending: 1, OldestQueued: clk.Now()}); err != nil || st != want {
			t.Errorf("Stats after the deletes = %+v, %v; want %+v", st, err, want)
		}
		// The id is free again.
		again := put(t, q, clk, "d-QUEUED", queue.Queued, nil)
		if got, err := q.Get(ctx, again.ID); err != nil || got.State != queue.Queued {
			t.Errorf("re-enqueued after Delete: %+v, %v", got, err)
		}
		if err := q.Delete(ctx, "nope"); !errors.Is(err, queue.ErrNotFound) {
			t.Errorf("Delete of no item = %v, want ErrNotFound", err)
		}
	})

	t.Run("expire", func(t *testing.T) {
		t.Parallel()
		q, clk, _ := setup(t)
		t0 := clk.Now()
		// Ended at t0, t0+1h, t0+2h; one ended at t0 then requeued; some never ended.
		put(t, q, clk, "e-sent", queue.Sent, nil)
		put(t, q, clk, "e-canceled", queue.Canceled, nil)
		put(t, q, clk, "e-requeued", queue.Failed, nil)
		if err := q.Requeue(ctx, "e-requeued", t0.Add(5*time.Hour), t0.Add(48*time.Hour)); err != nil {
			t.Fatal(err)
		}
		put(t, q, clk, "e-queued", queue.Queued, nil)
		put(t, q, clk, "e-sending", queue.Sending, nil)
		clk.Advance(time.Hour)
		put(t, q, clk, "e-failed", queue.Failed, nil)
		clk.Advance(time.Hour)
		put(t, q, clk, "e-unknown", queue.Unknown, nil)
		for _, tc := range []struct {
			before time.Time
			max    int
			want   int
			gone   []string
		}{
			{t0, 10, 0, nil}, // Finished must be before: t0 is not before t0
			{t0.Add(time.Second), 1, 1, nil},
			{t0.Add(time.Second), 10, 1, []string{"e-sent", "e-canceled"}},
			{t0.Add(time.Second), 10, 0, nil},
			{t0.Add(3 * time.Hour), 10, 2, []string{"e-failed", "e-unknown"}},
			{t0.Add(100 * time.Hour), 10, 0, nil},
		} {
			n, err := q.Expire(ctx, tc.before, tc.max)
			if err != nil || n != tc.want {
				t.Errorf("Expire(%s, %d) = %d, %v; want %d", tc.before.Sub(t0), tc.max, n, err, tc.want)
			}
			for _, id := range tc.gone {
				if _, err := q.Get(ctx, id); !errors.Is(err, queue.ErrNotFound) {
					t.Errorf("Get of expired %s = %v, want ErrNotFound", id, err)
				}
			}
		}
		if got := listAll(t, q, queue.ListQuery{Key: "app"}); !slices.Equal(got, []string{"e-sending", "e-requeued", "e-queued"}) &&
			!slices.Equal(got, []string{"e-sending", "e-queued", "e-requeued"}) {
			t.Errorf("List after Expire: %v, want the three items that did not end", got)
		}
		for _, id := range []string{"e-requeued", "e-queued", "e-sending"} {
			if _, err := q.Get(ctx, id); err != nil {
				t.Errorf("Expire removed %s, which is not ended: %v", id, err)
			}
		}
		if _, err := q.Expire(ctx, clk.Now(), 0); !errors.Is(err, queue.ErrInvalid) {
			t.Errorf("Expire of at most 0 = %v, want ErrInvalid", err)
		}
	})

	t.Run("stats", func(t *testing.T) {
		t.Parallel()
		q, clk, _ := setup(t)
		acc := func(d time.Duration) func(*queue.Item) { return func(it *queue.Item) { it.Accepted = start.Add(d) } }
		var leased *queue.Item
		for i, step := range []struct {
			do   func(t *testing.T)
			want queue.Stats
		}{
			{func(t *testing.T) {}, queue.Stats{}},
			{func(t *testing.T) { put(t, q, clk, "s-due", queue.Queued, acc(-2*time.Hour)) },
				queue.Stats{Queued: 1, Due: 1, OldestQueued: start.Add(-2 * time.Hour)}},
			{func(t *testing.T) {
				put(t, q, clk, "s-later", queue.Queued, func(it *queue.Item) {
					it.Accepted, it.NotBefore = start.Add(-time.Hour), start.Add(time.Hour)
				})
			}, queue.Stats{Queued: 2, Due: 1, OldestQueued: start.Add(-2 * time.Hour)}},
			{func(t *testing.T) { leased = put(t, q, clk, "s-sending", queue.Sending, acc(-3*time.Hour)) },
				queue.Stats{Queued: 2, Due: 1, Sending: 1, OldestQueued: start.Add(-3 * time.Hour)}},
			{func(t *testing.T) { put(t, q, clk, "s-sent", queue.Sent, acc(-4*time.Hour)) },
				queue.Stats{Queued: 2, Due: 1, Sending: 1, OldestQueued: start.Add(-3 * time.Hour)}},
			{func(t *testing.T) { clk.Advance(time.Hour) },
				queue.Stats{Queued: 2, Due: 2, Sending: 1, OldestQueued: start.Add(-3 * time.Hour)}},
			{func(t *testing.T) {
				if err := q.Complete(ctx, leased.Lease, queue.Attempt{Time: clk.Now(), Outcome: "SENT"}); err != nil {
					t.Fatal(err)
				}
			}, queue.Stats{Queued: 2, Due: 2, OldestQueued: start.Add(-2 * time.Hour)}},
			{func(t *testing.T) {
				if err := q.Cancel(ctx, "s-due"); err != nil {
					t.Fatal(err)
				}
			}, queue.Stats{Queued: 1, Due: 1, OldestQueued: start.Add(-time.Hour)}},
			{func(t *testing.T) {
				if err := q.Requeue(ctx, "s-due", clk.Now().Add(time.Minute), clk.Now().Add(time.Hour)); err != nil {
					t.Fatal(err)
				}
			}, queue.Stats{Queued: 2, Due: 1, OldestQueued: start.Add(-2 * time.Hour)}},
			{func(t *testing.T) {
				if err := q.Delete(ctx, "s-due"); err != nil {
					t.Fatal(err)
				}
				if err := q.Delete(ctx, "s-later"); err != nil {
					t.Fatal(err)
				}
			}, queue.Stats{}},
		} {
			step.do(t)
			got, err := q.Stats(ctx)
			if err != nil {
				t.Fatalf("step %d: Stats: %v", i, err)
			}
			if got.Queued != step.want.Queued || got.Due != step.want.Due || got.Sending != step.want.Sending ||
				!got.OldestQueued.Equal(step.want.OldestQueued) {
				t.Errorf("step %d: Stats = %s, want %s", i, fmtStats(got), fmtStats(step.want))
			}
		}
	})
}

func fmtStats(s queue.Stats) string {
	return fmt.Sprintf("{Queued %d Due %d Sending %d OldestQueued %s}", s.Queued, s.Due, s.Sending, s.OldestQueued.Format(time.RFC3339Nano))
}
