// Package storetest is the contract every store.Store implementation must pass. The
// in-process and the Redis stores run the same suite, so the embedded default behaves
// like a Redis deployment, only unshared.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/server/store"
)

// Run runs the contract against the store s. Keys are unique per run, so s may be shared
// with other tests (a Redis server, say).
func Run(t *testing.T, s store.Store) {
	ctx := context.Background()
	uniq := func(name string) string {
		var b [6]byte
		rand.Read(b[:])
		return name + "-" + hex.EncodeToString(b[:])
	}
	claim := func(key, fp string) *store.Claim {
		return &store.Claim{Scope: "app", Key: key, Fingerprint: fp, LockTTL: time.Minute}
	}
	admit := func(t *testing.T, a *store.Admission) *store.Ticket {
		t.Helper()
		tk, err := s.Admit(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	complete := func(t *testing.T, tk *store.Ticket, c store.Completion) {
		t.Helper()
		if err := s.Complete(ctx, tk, c); err != nil {
			t.Fatal(err)
		}
	}
	// want checks the decision, and what goes with it: a Refusal exactly when Throttled,
	// a RetryAfter only when Throttled or InFlight.
	want := func(t *testing.T, tk *store.Ticket, d store.Decision) {
		t.Helper()
		if tk.Decision != d {
			t.Fatalf("decision %v, want %v (%+v)", tk.Decision, d, tk)
		}
		if (tk.Refused != nil) != (d == store.Throttled) {
			t.Errorf("%v ticket with Refused %v", d, tk.Refused)
		}
		if d != store.Throttled && d != store.InFlight && tk.RetryAfter != 0 {
			t.Errorf("%v ticket with RetryAfter %v", d, tk.RetryAfter)
		}
	}
	// refusedBy checks a Throttled ticket's Refusal.
	refusedBy := func(t *testing.T, tk *store.Ticket, r store.Refusal) {
		t.Helper()
		want(t, tk, store.Throttled)
		if *tk.Refused != r {
			t.Errorf("refused by %v (%+v), want %v (%+v)", tk.Refused, *tk.Refused, r, r)
		}
	}
	// hourly is a limit that does not refill during a test.
	hourly := func(id store.LimitID, count, cost int) store.Limit {
		return store.Limit{ID: id, Count: count, Period: time.Hour, Cost: cost}
	}
	// slots is a Concurrent limit of n requests at once, each holding its slot for at
	// most period.
	slots := func(n int, period time.Duration) store.Limit {
		return store.Limit{ID: store.Concurrent, Count: n, Period: period, Cost: 1}
	}

	t.Run("replay after completion", func(t *testing.T) {
		t.Parallel()
		c := claim(uniq("k"), "fp1")
		tk := admit(t, &store.Admission{Claim: c})
		want(t, tk, store.Proceed)
		complete(t, tk, store.Completion{Outcome: []byte("R\x00binary\xff"), Retention: time.Hour})
		again := admit(t, &store.Admission{Claim: c})
		want(t, again, store.Replay)
		if string(again.Outcome) != "R\x00binary\xff" {
			t.Errorf("replayed outcome %q", again.Outcome)
		}
	})

	t.Run("in flight while pending", func(t *testing.T) {
		t.Parallel()
		c := claim(uniq("k"), "fp1")
		want(t, admit(t, &store.Admission{Claim: c}), store.Proceed)
		tk := admit(t, &store.Admission{Claim: c})
		want(t, tk, store.InFlight)
		if tk.RetryAfter <= 0 || tk.RetryAfter > time.Minute {
			t.Errorf("RetryAfter %v, want within the lock TTL", tk.RetryAfter)
		}
	})

	t.Run("other fingerprint is a mismatch, pending or done", func(t *testing.T) {
		t.Parallel()
		key := uniq("k")
		tk := admit(t, &store.Admission{Claim: claim(key, "fp1")})
		want(t, admit(t, &store.Admission{Claim: claim(key, "fp2")}), store.Mismatch)
		complete(t, tk, store.Completion{Outcome: []byte("R"), Retention: time.Hour})
		want(t, admit(t, &store.Admission{Claim: claim(key, "fp2")}), store.Mismatch)
	})

	t.Run("scopes are separate", func(t *testing.T) {
		t.Parallel()
		key := uniq("k")
		want(t, admit(t, &store.Admission{Claim: claim(key, "fp1")}), store.Proceed)
		other := claim(key, "fp1")
		other.Scope = "other"
		want(t, admit(t, &store.Admission{Claim: other}), store.Proceed)
	})

	t.Run("released claim lets a retry through", func(t *testing.T) {
		t.Parallel()
		c := claim(uniq("k"), "fp1")
		tk := admit(t, &store.Admission{Claim: c})
		complete(t, tk, store.Completion{Outcome: nil, Refund: true})
		want(t, admit(t, &store.Admission{Claim: c}), store.Proceed)
	})

	t.Run("expired lock is fenced", func(t *testing.T) {
		t.Parallel()
		c := claim(uniq("k"), "fp1")
		c.LockTTL = 50 * time.Millisecond
		first := admit(t, &store.Admission{Claim: c})
		time.Sleep(120 * time.Millisecond) // the first request "crashed" and its lock ran out
		second := admit(t, &store.Admission{Claim: c})
		want(t, second, store.Proceed)
		complete(t, first, store.Completion{Outcome: []byte("first"), Retention: time.Hour})
		want(t, admit(t, &store.Admission{Claim: c}), store.InFlight) // still the second's
		complete(t, second, store.Completion{Outcome: []byte("second"), Retention: time.Hour})
		if got := admit(t, &store.Admission{Claim: c}); string(got.Outcome) != "second" {
			t.Errorf("stored outcome %q, want the second request's", got.Outcome)
		}
	})

	t.Run("messages limit", func(t *testing.T) {
		t.Parallel()
		g := store.Group{Kind: store.Mailbox, Name: uniq("a@example.com"), Limits: []store.Limit{hourly(store.MessagesPerMinute, 3, 1)}}
		for range 3 {
			want(t, admit(t, &store.Admission{Groups: []store.Group{g}}), store.Proceed)
		}
		tk := admit(t, &store.Admission{Groups: []store.Group{g}})
		refusedBy(t, tk, store.Refusal{Group: g.ID(), Limit: store.MessagesPerMinute})
		if tk.RetryAfter < 59*time.Minute || tk.RetryAfter > time.Hour {
			t.Errorf("retry after %v; want about 1h (when the first of the 3 leaves the window)", tk.RetryAfter)
		}
	})

	// At most Count in any span of Period: a burst of 3 is followed by nothing until the
	// first of them is a whole period old (a token bucket would refill one every 100 ms).
	t.Run("sliding window", func(t *testing.T) {
		t.Parallel()
		g := store.Group{Kind: store.Mailbox, Name: uniq("a"), Limits: []store.Limit{{ID: store.MessagesPerMinute, Count: 3, Period: 400 * time.Millisecond, Cost: 1}}}
		start := time.Now()
		for range 3 {
			want(t, admit(t, &store.Admission{Groups: []store.Group{g}}), store.Proceed)
		}
		time.Sleep(200 * time.Millisecond)
		tk := admit(t, &store.Admission{Groups: []store.Group{g}})
		if time.Since(start) < 350*time.Millisecond { // not too late to tell
			want(t, tk, store.Throttled)
		}
		time.Sleep(time.Until(start.Add(450 * time.Millisecond)))
		for range 3 {
			want(t, admit(t, &store.Admission{Groups: []store.Group{g}}), store.Proceed)
		}
	})

	// A refusal still forgets what has left the window: the next request that fits goes.
	t.Run("refusal keeps pruning", func(t *testing.T) {
		t.Parallel()
		l := store.Limit{ID: store.RecipientsPerDay, Count: 3, Period: 300 * time.Millisecond}
		g := func(cost int) store.Group {
			l := l
			l.Cost = cost
			return store.Group{Kind: store.Mailbox, Name: "prune-" + t.Name(), Limits: []store.Limit{l}}
		}
		start := time.Now()
		want(t, admit(t, &store.Admission{Groups: []store.Group{g(2)}}), store.Proceed)
		time.Sleep(150 * time.Millisecond)
		want(t, admit(t, &store.Admission{Groups: []store.Group{g(1)}}), store.Proceed)
		time.Sleep(time.Until(start.Add(350 * time.Millisecond))) // the 2 have left, the 1 not
		want(t, admit(t, &store.Admission{Groups: []store.Group{g(3)}}), store.Throttled)
		if time.Since(start) < 440*time.Millisecond { // the 1 is still in the window
			want(t, admit(t, &store.Admission{Groups: []store.Group{g(2)}}), store.Proceed)
		}
	})

	// Refused by two limits at once: the wait is the longer one.
	t.Run("wait covers every refusing limit", func(t *testing.T) {
		t.Parallel()
		mb := store.Group{Kind: store.Mailbox, Name: uniq("a"), Limits: []store.Limit{
			{ID: store.MessagesPerMinute, Count: 1, Period: time.Minute, Cost: 1},
			{ID: store.RecipientsPerDay, Count: 1, Period: time.Hour, Cost: 1},
		}}
		want(t, admit(t, &store.Admission{Groups: []store.Group{mb}}), store.Proceed)
		tk := admit(t, &store.Admission{Groups: []store.Group{mb}})
		refusedBy(t, tk, store.Refusal{Group: mb.ID(), Limit: store.RecipientsPerDay})
		if tk.RetryAfter < 59*time.Minute {
			t.Errorf("retry after %v, want about an hour", tk.RetryAfter)
		}
	})

	t.Run("cost per recipient", func(t *testing.T) {
		t.Parallel()
		g := store.Group{Kind: store.Mailbox, Name: uniq("a@example.com"), Limits: []store.Limit{hourly(store.RecipientsPerDay, 10, 4)}}
		want(t, admit(t, &store.Admission{Groups: []store.Group{g}}), store.Proceed)
		want(t, admit(t, &store.Admission{Groups: []store.Group{g}}), store.Proceed)
		want(t, admit(t, &store.Admission{Groups: []store.Group{g}}), store.Throttled) // 12 > 10
		g.Limits[0].Cost = 2
		want(t, admit(t, &store.Admission{Groups: []store.Group{g}}), store.Proceed) // exactly 10
	})

	t.Run("all or nothing across groups", func(t *testing.T) {
		t.Parallel()
		a := store.Group{Kind: store.APIKey, Name: uniq("a"), Limits: []store.Limit{hourly(store.MessagesPerMinute, 2, 1)}}
		b := store.Group{Kind: store.Mailbox, Name: uniq("b"), Limits: []store.Limit{hourly(store.MessagesPerMinute, 1, 1)}}
		want(t, admit(t, &store.Admission{Groups: []store.Group{b}}), store.Proceed) // b is spent
		tk := admit(t, &store.Admission{Groups: []store.Group{a, b}})
		refusedBy(t, tk, store.Refusal{Group: b.ID(), Limit: store.MessagesPerMinute})
		// a gave nothing to the refused request: both of its units are still there.
		want(t, admit(t, &store.Admission{Groups: []store.Group{a}}), store.Proceed)
		want(t, admit(t, &store.Admission{Groups: []store.Group{a}}), store.Proceed)
		want(t, admit(t, &store.Admission{Groups: []store.Group{a}}), store.Throttled)
	})

	t.Run("refund gives budget back", func(t *testing.T) {
		t.Parallel()
		g := store.Group{Kind: store.Mailbox, Name: uniq("a"), Limits: []store.Limit{hourly(store.MessagesPerMinute, 1, 1), hourly(store.RecipientsPerDay, 5, 5)}}
		tk := admit(t, &store.Admission{Groups: []store.Group{g}})
		want(t, tk, store.Proceed)
		complete(t, tk, store.Completion{Refund: true})
		want(t, admit(t, &store.Admission{Groups: []store.Group{g}}), store.Proceed)
	})

	t.Run("unlimited limits are skipped", func(t *testing.T) {
		t.Parallel()
		g := store.Group{Kind: store.Mailbox, Name: uniq("a"), Limits: []store.Limit{{ID: store.MessagesPerMinute, Count: 0, Period: time.Minute, Cost: 1}}}
		for range 5 {
			want(t, admit(t, &store.Admission{Groups: []store.Group{g}}), store.Proceed)
		}
	})

	t.Run("pause", func(t *testing.T) {
		t.Parallel()
		g := store.Group{Kind: store.Mailbox, Name: uniq("a"), Limits: []store.Limit{hourly(store.MessagesPerMinute, 100, 1)}}
		if err := s.Pause(ctx, g.ID(), 2*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := s.Pause(ctx, g.ID(), 10*time.Millisecond); err != nil { // must not shorten
			t.Fatal(err)
		}
		tk := admit(t, &store.Admission{Groups: []store.Group{g}})
		refusedBy(t, tk, store.Refusal{Group: g.ID(), Paused: true})
		if tk.RetryAfter < time.Second || tk.RetryAfter > 2*time.Second {
			t.Errorf("retry after %v, want within 2s", tk.RetryAfter)
		}
		short := store.Group{Kind: store.Mailbox, Name: uniq("b")}
		s.Pause(ctx, short.ID(), 50*time.Millisecond)
		time.Sleep(120 * time.Millisecond)
		want(t, admit(t, &store.Admission{Groups: []store.Group{short}}), store.Proceed)
	})

	// Of a pause and a limit in different groups, the refusal is the one that lasts
	// longer, whichever of them it is.
	t.Run("longest refusal across pause and limit", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name          string
			pause, period time.Duration
			paused        bool
		}{
			{"limit lasts longer", 2 * time.Second, time.Hour, false},
			{"pause lasts longer", time.Hour, time.Minute, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				mb := store.Group{Kind: store.Mailbox, Name: uniq("a@example.com")}
				key := store.Group{Kind: store.APIKey, Name: uniq("app"), Limits: []store.Limit{{ID: store.MessagesPerMinute, Count: 1, Period: tc.period, Cost: 1}}}
				want(t, admit(t, &store.Admission{Groups: []store.Group{key}}), store.Proceed)
				if err := s.Pause(ctx, mb.ID(), tc.pause); err != nil {
					t.Fatal(err)
				}
				tk := admit(t, &store.Admission{Groups: []store.Group{mb, key}, PauseTarget: mb.ID()})
				r := store.Refusal{Group: key.ID(), Limit: store.MessagesPerMinute}
				if tc.paused {
					r = store.Refusal{Group: mb.ID(), Paused: true}
				}
				refusedBy(t, tk, r)
				if longest := max(tc.pause, tc.period); tk.RetryAfter < longest-time.Minute || tk.RetryAfter > longest {
					t.Errorf("retry after %v, want about %v", tk.RetryAfter, longest)
				}
			})
		}
	})

	// A group is its kind and its name: a mailbox and an API key of the same name share
	// neither budgets nor pauses.
	t.Run("kinds are separate", func(t *testing.T) {
		t.Parallel()
		name := uniq("same")
		limits := []store.Limit{hourly(store.MessagesPerMinute, 1, 1)}
		mb := store.Group{Kind: store.Mailbox, Name: name, Limits: limits}
		key := store.Group{Kind: store.APIKey, Name: name, Limits: limits}
		be := store.Group{Kind: store.Backend, Name: name}
		want(t, admit(t, &store.Admission{Groups: []store.Group{mb}}), store.Proceed)
		want(t, admit(t, &store.Admission{Groups: []store.Group{key}}), store.Proceed)
		if err := s.Pause(ctx, be.ID(), time.Hour); err != nil {
			t.Fatal(err)
		}
		refusedBy(t, admit(t, &store.Admission{Groups: []store.Group{be}}), store.Refusal{Group: be.ID(), Paused: true})
		refusedBy(t, admit(t, &store.Admission{Groups: []store.Group{mb}}), store.Refusal{Group: mb.ID(), Limit: store.MessagesPerMinute})
		refusedBy(t, admit(t, &store.Admission{Groups: []store.Group{key}}), store.Refusal{Group: key.ID(), Limit: store.MessagesPerMinute})
	})

	// What the store cannot carry out is refused with ErrInvalid before anything is
	// taken: neither a budget nor the claim.
	t.Run("invalid admission", func(t *testing.T) {
		t.Parallel()
		ok := store.Limit{ID: store.MessagesPerMinute, Count: 1, Period: time.Hour, Cost: 1}
		// with returns the good group with other limits.
		with := func(g store.Group, l store.Limit) []store.Group {
			g.Limits = []store.Limit{ok, l}
			return []store.Group{g}
		}
		for _, tc := range []struct {
			name   string
			groups func(good store.Group) []store.Group // in the admission after the key's group
			target func(good store.Group) store.GroupID // default: good's
		}{
			{name: "no kind", groups: func(g store.Group) []store.Group { g.Kind = 0; return []store.Group{g} }},
			{name: "unknown kind", groups: func(g store.Group) []store.Group { g.Kind = 99; return []store.Group{g} }},
			{name: "no name", groups: func(g store.Group) []store.Group { g.Name = ""; return []store.Group{g} }},
			{name: "group twice", groups: func(g store.Group) []store.Group { return []store.Group{g, g} }},
			{name: "unknown limit", groups: func(g store.Group) []store.Group {
				return with(g, store.Limit{ID: 0, Count: 5, Period: time.Hour, Cost: 1})
			}},
			{name: "no period", groups: func(g store.Group) []store.Group {
				return with(g, store.Limit{ID: store.RecipientsPerDay, Count: 5, Cost: 1})
			}},
			{name: "negative cost", groups: func(g store.Group) []store.Group {
				return with(g, store.Limit{ID: store.RecipientsPerDay, Count: 5, Period: time.Hour, Cost: -1})
			}},
			{name: "limit twice", groups: func(g store.Group) []store.Group {
				return with(g, store.Limit{ID: store.MessagesPerMinute, Count: 5, Period: time.Minute, Cost: 1})
			}},
			{name: "concurrent cost of 2", groups: func(g store.Group) []store.Group {
				return with(g, store.Limit{ID: store.Concurrent, Count: 3, Period: time.Minute, Cost: 2})
			}},
			{name: "concurrent cost of 0", groups: func(g store.Group) []store.Group {
				return with(g, store.Limit{ID: store.Concurrent, Count: 3, Period: time.Minute})
			}},
			{name: "pause target not a group", target: func(g store.Group) store.GroupID {
				return store.GroupID{Kind: store.Backend, Name: g.Name}
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				good := store.Group{Kind: store.Mailbox, Name: uniq("a@example.com"), Limits: []store.Limit{ok}}
				key := store.Group{Kind: store.APIKey, Name: uniq("app"), Limits: []store.Limit{ok}}
				groups, target := []store.Group{key, good}, good.ID()
				if tc.groups != nil {
					groups = append([]store.Group{key}, tc.groups(good)...)
				}
				if tc.target != nil {
					target = tc.target(good)
				}
				c := claim(uniq("k"), "fp1")
				tk, err := s.Admit(ctx, &store.Admission{Claim: c, Groups: groups, PauseTarget: target})
				if !errors.Is(err, store.ErrInvalid) {
					t.Fatalf("Admit = %+v, %v; want ErrInvalid", tk, err)
				}
				// Nothing was taken: the key's single unit and the claim are still free.
				want(t, admit(t, &store.Admission{Claim: c, Groups: []store.Group{key, good}, PauseTarget: good.ID()}), store.Proceed)
			})
		}
		for _, g := range []store.GroupID{{Name: "a@example.com"}, {Kind: 99, Name: "a@example.com"}, {Kind: store.Mailbox}} {
			if err := s.Pause(ctx, g, time.Minute); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("Pause(%+v) = %v, want ErrInvalid", g, err)
			}
		}
	})

	// The claim decides first: a request that is in flight, or a reuse of its key, is
	// told so, not that a limit refused it, and takes nothing.
	t.Run("claim decides before the budgets", func(t *testing.T) {
		t.Parallel()
		g := store.Group{Kind: store.Mailbox, Name: uniq("a"), Limits: []store.Limit{hourly(store.MessagesPerMinute, 2, 1)}}
		c := claim(uniq("k"), "fp1")
		want(t, admit(t, &store.Admission{Claim: c, Groups: []store.Group{g}}), store.Proceed)
		want(t, admit(t, &store.Admission{Groups: []store.Group{g}}), store.Proceed) // g is spent
		tk := admit(t, &store.Admission{Claim: c, Groups: []store.Group{g}})
		want(t, tk, store.InFlight)
		if tk.RetryAfter <= 0 || tk.RetryAfter > time.Minute {
			t.Errorf("RetryAfter %v, want within the lock TTL", tk.RetryAfter)
		}
		want(t, admit(t, &store.Admission{Claim: claim(c.Key, "fp2"), Groups: []store.Group{g}}), store.Mismatch)
	})

	t.Run("throttled claim is released", func(t *testing.T) {
		t.Parallel()
		g := store.Group{Kind: store.Mailbox, Name: uniq("a"), Limits: []store.Limit{hourly(store.MessagesPerMinute, 1, 1)}}
		want(t, admit(t, &store.Admission{Groups: []store.Group{g}}), store.Proceed)
		c := claim(uniq("k"), "fp1")
		want(t, admit(t, &store.Admission{Claim: c, Groups: []store.Group{g}}), store.Throttled)
		want(t, admit(t, &store.Admission{Claim: c}), store.Proceed) // not "in flight"
	})

	t.Run("replay wins over throttling and takes nothing", func(t *testing.T) {
		t.Parallel()
		g := store.Group{Kind: store.Mailbox, Name: uniq("a"), Limits: []store.Limit{hourly(store.MessagesPerMinute, 1, 1)}}
		c := claim(uniq("k"), "fp1")
		tk := admit(t, &store.Admission{Claim: c, Groups: []store.Group{g}})
		complete(t, tk, store.Completion{Outcome: []byte("R"), Retention: time.Hour})
		want(t, admit(t, &store.Admission{Claim: c, Groups: []store.Group{g}}), store.Replay)
		other := store.Group{Kind: store.Mailbox, Name: uniq("b"), Limits: []store.Limit{hourly(store.MessagesPerMinute, 1, 1)}}
		want(t, admit(t, &store.Admission{Claim: c, Groups: []store.Group{other}}), store.Replay)
		want(t, admit(t, &store.Admission{Groups: []store.Group{other}}), store.Proceed) // untouched
	})

	t.Run("records", func(t *testing.T) {
		t.Parallel()
		key := uniq("msg:app:id")
		if _, err := s.GetRecord(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing record: %v", err)
		}
		complete(t, &store.Ticket{}, store.Completion{Record: &store.Record{Key: key, Value: []byte("v\x00"), TTL: time.Hour}})
		if v, err := s.GetRecord(ctx, key); err != nil || string(v) != "v\x00" {
			t.Errorf("GetRecord = %q, %v", v, err)
		}
		short := uniq("msg:app:short")
		complete(t, &store.Ticket{}, store.Completion{Record: &store.Record{Key: short, Value: []byte("x"), TTL: 50 * time.Millisecond}})
		if _, err := s.GetRecord(ctx, short); err != nil {
			t.Errorf("record stored by Complete: %v", err)
		}
		time.Sleep(120 * time.Millisecond)
		if _, err := s.GetRecord(ctx, short); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("expired record: %v", err)
		}
	})

	t.Run("concurrent slots: n proceed, the next is throttled", func(t *testing.T) {
		t.Parallel()
		g := store.Group{Kind: store.Mailbox, Name: uniq("a@example.com"), Limits: []store.Limit{slots(3, time.Hour)}}
		var held []*store.Ticket
		for range 3 {
			tk := admit(t, &store.Admission{Groups: []store.Group{g}})
			want(t, tk, store.Proceed)
			held = append(held, tk)
		}
		tk := admit(t, &store.Admission{Groups: []store.Group{g}})
		refusedBy(t, tk, store.Refusal{Group: g.ID(), Limit: store.Concurrent})
		// The oldest slot lapses in an hour; a slot is freed sooner by its Complete.
		if tk.RetryAfter != store.ConcurrentRetry {
			t.Errorf("retry after %v, want %v", tk.RetryAfter, store.ConcurrentRetry)
		}
		complete(t, held[1], store.Completion{Outcome: []byte("R"), Retention: time.Hour})
		want(t, admit(t, &store.Admission{Groups: []store.Group{g}}), store.Proceed)
		want(t, admit(t, &store.Admission{Groups: []store.Group{g}}), store.Throttled)
	})

	// A completed request no longer runs: its slot is free, but without Refund the
	// windows keep what it took.
	t.Run("complete frees slots without refund", func(t *testing.T) {
		t.Parallel()
		g := store.Group{Kind: store.Mailbox, Name: uniq("a@example.com"), Limits: []store.Limit{
			slots(1, time.Hour), hourly(store.MessagesPerMinute, 2, 1),
		}}
		first := admit(t, &store.Admission{Groups: []store.Group{g}})
		want(t, first, store.Proceed)
		refusedBy(t, admit(t, &store.Admission{Groups: []store.Group{g}}), store.Refusal{Group: g.ID(), Limit: store.Concurrent})
		complete(t, first, store.Completion{Outcome: []byte("R"), Retention: time.Hour})
		second := admit(t, &store.Admission{Groups: []store.Group{g}})
		want(t, second, store.Proceed)
		complete(t, second, store.Completion{})
		tk := admit(t, &store.Admission{Groups: []store.Group{g}})
		refusedBy(t, tk, store.Refusal{Group: g.ID(), Limit: store.MessagesPerMinute})
		if tk.RetryAfter < 59*time.Minute {
			t.Errorf("retry after %v, want about an hour: the window was not refunded", tk.RetryAfter)
		}
	})

	// Refund gives back the windows and the slot; a refusal by both a window and the
	// slots names the window, which lasts longer than a slot's retry, even when the
	// slot's period is longer still.
	t.Run("refund gives back windows and slots", func(t *testing.T) {
		t.Parallel()
		g := store.Group{Kind: store.Mailbox, Name: uniq("a@example.com"), Limits: []store.Limit{
			slots(1, 2*time.Hour), hourly(store.MessagesPerMinute, 1, 1),
		}}
		tk := admit(t, &store.Admission{Groups: []store.Group{g}})
		want(t, tk, store.Proceed)
		complete(t, tk, store.Completion{Refund: true})
		want(t, admit(t, &store.Admission{Groups: []store.Group{g}}), store.Proceed)
		tk = admit(t, &store.Admission{Groups: []store.Group{g}})
		refusedBy(t, tk, store.Refusal{Group: g.ID(), Limit: store.MessagesPerMinute})
		if tk.RetryAfter < 59*time.Minute || tk.RetryAfter > time.Hour {
			t.Errorf("retry after %v, want about an hour", tk.RetryAfter)
		}
	})

	// A holder that never completes (its process died) frees its slot after the period;
	// its late Complete does not free the slot another request holds since.
	t.Run("lapsed slot frees after its period", func(t *testing.T) {
		t.Parallel()
		const period = 300 * time.Millisecond
		g := store.Group{Kind: store.Mailbox, Name: uniq("a@example.com"), Limits: []store.Limit{slots(1, period)}}
		lost := admit(t, &store.Admission{Groups: []store.Group{g}})
		want(t, lost, store.Proceed)
		admitted := time.Now()
		tk := admit(t, &store.Admission{Groups: []store.Group{g}})
		if time.Since(admitted) < period-50*time.Millisecond { // not too late to tell
			refusedBy(t, tk, store.Refusal{Group: g.ID(), Limit: store.Concurrent})
			if tk.RetryAfter <= 0 || tk.RetryAfter > period {
				t.Errorf("retry after %v, want within the period of %v", tk.RetryAfter, period)
			}
		}
		time.Sleep(time.Until(admitted.Add(period + 50*time.Millisecond)))
		next := admit(t, &store.Admission{Groups: []store.Group{g}})
		want(t, next, store.Proceed)
		complete(t, lost, store.Completion{})
		refusedBy(t, admit(t, &store.Admission{Groups: []store.Group{g}}), store.Refusal{Group: g.ID(), Limit: store.Concurrent})
		complete(t, next, store.Completion{})
		want(t, admit(t, &store.Admission{Groups: []store.Group{g}}), store.Proceed)
	})

	t.Run("concurrent slots: exactly n hold at once", func(t *testing.T) {
		t.Parallel()
		const n = 4
		g := store.Group{Kind: store.Mailbox, Name: uniq("a@example.com"), Limits: []store.Limit{slots(n, time.Minute)}}
		adm := &store.Admission{Groups: []store.Group{g}}

		// 50 at once: exactly n get a slot.
		var mu sync.Mutex
		var held []*store.Ticket
		counts := race(t, 50, func() store.Decision {
			tk, err := s.Admit(ctx, adm)
			if err != nil {
				t.Error(err)
				return 0
			}
			if tk.Decision == store.Proceed {
				mu.Lock()
				held = append(held, tk)
				mu.Unlock()
			}
			return tk.Decision
		})
		if counts[store.Proceed] != n || counts[store.Throttled] != 50-n {
			t.Errorf("decisions %v, want %d proceed and %d throttled", counts, n, 50-n)
		}
		for _, tk := range held {
			complete(t, tk, store.Completion{})
		}

		// Workers that take turns: never more than n at once, and every one gets its
		// turns, so the slots are freed as their requests complete.
		const workers, turns = 8, 10
		var (
			inside        sync.Mutex
			running, most int
			done          atomic.Int64
		)
		deadline := time.Now().Add(10 * time.Second)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for sent := 0; sent < turns && time.Now().Before(deadline); {
					tk, err := s.Admit(ctx, adm)
					if err != nil {
						t.Error(err)
						return
					}
					if tk.Decision != store.Proceed {
						time.Sleep(time.Millisecond)
						continue
					}
					// Counted inside the slot: the count can only be below what the store holds.
					inside.Lock()
					running++
					most = max(most, running)
					inside.Unlock()
					time.Sleep(2 * time.Millisecond)
					inside.Lock()
					running--
					inside.Unlock()
					if err := s.Complete(ctx, tk, store.Completion{}); err != nil {
						t.Error(err)
						return
					}
					sent++
					done.Add(1)
				}
			})
		}
		wg.Wait()
		if most > n {
			t.Errorf("%d requests held a slot at once, want at most %d", most, n)
		}
		if done.Load() != workers*turns {
			t.Errorf("%d requests completed, want %d: slots were not freed", done.Load(), workers*turns)
		}
	})

	// Slots are taken all or nothing with another group's window, either way round.
	t.Run("all or nothing across slots and windows", func(t *testing.T) {
		t.Parallel()
		mb := store.Group{Kind: store.Mailbox, Name: uniq("a@example.com"), Limits: []store.Limit{slots(1, time.Hour)}}
		key := store.Group{Kind: store.APIKey, Name: uniq("app"), Limits: []store.Limit{hourly(store.MessagesPerMinute, 1, 1)}}
		want(t, admit(t, &store.Admission{Groups: []store.Group{key}}), store.Proceed) // key is spent
		refusedBy(t, admit(t, &store.Admission{Groups: []store.Group{mb, key}}), store.Refusal{Group: key.ID(), Limit: store.MessagesPerMinute})
		// The refused request kept no slot.
		want(t, admit(t, &store.Admission{Groups: []store.Group{mb}}), store.Proceed) // mb's slot is held
		other := store.Group{Kind: store.APIKey, Name: uniq("app"), Limits: []store.Limit{hourly(store.MessagesPerMinute, 1, 1)}}
		refusedBy(t, admit(t, &store.Admission{Groups: []store.Group{other, mb}}), store.Refusal{Group: mb.ID(), Limit: store.Concurrent})
		// A refusal by the slots took nothing from the other group's window.
		want(t, admit(t, &store.Admission{Groups: []store.Group{other}}), store.Proceed)
	})

	t.Run("concurrent claims: exactly one proceeds", func(t *testing.T) {
		t.Parallel()
		c := claim(uniq("k"), "fp1")
		counts := race(t, 50, func() store.Decision { return admit(t, &store.Admission{Claim: c}).Decision })
		if counts[store.Proceed] != 1 || counts[store.InFlight] != 49 {
			t.Errorf("decisions %v, want 1 proceed and 49 in flight", counts)
		}
	})

	t.Run("concurrent budget: exactly the limit proceeds", func(t *testing.T) {
		t.Parallel()
		g := store.Group{Kind: store.Mailbox, Name: uniq("a"), Limits: []store.Limit{hourly(store.MessagesPerMinute, 30, 1)}}
		counts := race(t, 50, func() store.Decision { return admit(t, &store.Admission{Groups: []store.Group{g}}).Decision })
		if counts[store.Proceed] != 30 || counts[store.Throttled] != 20 {
			t.Errorf("decisions %v, want 30 proceed and 20 throttled", counts)
		}
	})
}

func race(t *testing.T, n int, f func() store.Decision) map[store.Decision]int {
	var mu sync.Mutex
	counts := map[store.Decision]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			d := f()
			mu.Lock()
			counts[d]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return counts
}
