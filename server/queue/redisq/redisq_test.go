package redisq_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/server/queue"
	"github.com/mailgate/mailgate/server/queue/queuetest"
	"github.com/mailgate/mailgate/server/queue/redisq"
	"github.com/mailgate/mailgate/server/store"
	"github.com/mailgate/mailgate/server/store/storetest"
)

func open(t testing.TB, c redis.UniversalClient, prefix string, now func() time.Time) *redisq.Queue {
	t.Helper()
	q, err := redisq.New(c, redisq.Options{Prefix: prefix, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// contract runs queuetest on c; each subtest gets a prefix of its own, and a restart
// is a new Queue on a new client of the same Redis.
func contract(t *testing.T, c redis.UniversalClient, client func() redis.UniversalClient) {
	queuetest.Run(t, func(t *testing.T, now func() time.Time) (queue.Queue, func() queue.Queue) {
		prefix := storetest.Prefix(t, c, "queue")
		return open(t, c, prefix, now), func() queue.Queue { return open(t, client(), prefix, now) }
	})
}

func TestContract(t *testing.T) {
	t.Parallel()
	c := storetest.SharedRedis(t)
	contract(t, c, func() redis.UniversalClient {
		n := redis.NewClient(c.Options())
		t.Cleanup(func() { n.Close() })
		return n
	})
}

// The same contract on a three-master Redis Cluster: every script keeps to one slot.
func TestClusterContract(t *testing.T) {
	t.Parallel()
	c := storetest.StartCluster(t)
	contract(t, c, func() redis.UniversalClient {
		n := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Options().Addrs, MaxRetries: -1})
		t.Cleanup(func() { n.Close() })
		return n
	})
}

func TestNewRefusesBracedPrefix(t *testing.T) {
	t.Parallel()
	c := storetest.SharedRedis(t)
	for _, p := range []string{"mg{", "mg}:", "{mg}:"} {
		if _, err := redisq.New(c, redisq.Options{Prefix: p}); err == nil {
			t.Errorf("New with prefix %q succeeded", p)
		}
	}
}

// A second replica (its own client, its own Queue) takes over the lease of a replica
// that stopped, and the first replica's settle is then refused.
func TestReplicaTakesOverLapsedLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c1 := storetest.SharedRedis(t)
	c2 := redis.NewClient(c1.Options())
	t.Cleanup(func() { c2.Close() })
	prefix := storetest.Prefix(t, c1, "takeover")
	clk := time.Date(2026, 2, 28, 23, 59, 58, 123400000, time.UTC)
	now := func() time.Time { return clk }
	a, b := open(t, c1, prefix, now), open(t, c2, prefix, now)
	every := func(store.GroupID) bool { return true }
	it := &queue.Item{ID: "m1", Key: "app", Group: store.GroupID{Kind: store.Mailbox, Name: "a@example.com"},
		Body: []byte("x"), Deadline: clk.Add(time.Hour)}
	if err := a.Enqueue(ctx, it); err != nil {
		t.Fatal(err)
	}
	held, err := a.Lease(ctx, every, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Lease(ctx, every, time.Minute); !errors.Is(err, queue.ErrEmpty) {
		t.Fatalf("replica b leased a live lease: %+v, %v", got, err)
	}
	clk = clk.Add(time.Minute + time.Second)
	taken, err := b.Lease(ctx, every, time.Minute)
	if err != nil || taken.ID != it.ID || taken.Lease.Token <= held.Lease.Token || taken.LastError == "" {
		t.Fatalf("replica b: %+v, %v", taken, err)
	}
	if want := "lease until " + held.Lease.Until.Format(time.RFC3339Nano) + " lapsed: its worker stopped; taken over"; taken.LastError != want {
		t.Errorf("LastError %q, want %q", taken.LastError, want)
	}
	if err := a.Complete(ctx, held.Lease, queue.Attempt{Outcome: "SENT"}); !errors.Is(err, queue.ErrStaleLease) {
		t.Errorf("replica a's Complete after takeover = %v, want ErrStaleLease", err)
	}
	if err := b.Complete(ctx, taken.Lease, queue.Attempt{Outcome: "SENT"}); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Get(ctx, it.ID); err != nil || got.State != queue.Sent {
		t.Errorf("replica a sees %+v, %v", got, err)
	}
}

// Every key carries the prefix and a hash tag of its group or id: the keys are a
// stored format, and the tags keep each script on one Cluster slot.
func TestKeyLayout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := storetest.SharedRedis(t)
	prefix := storetest.Prefix(t, c, "qlayout")
	clk := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	q := open(t, c, prefix, func() time.Time { return clk })
	every := func(store.GroupID) bool { return true }
	for i, g := range []store.GroupID{{Kind: store.Mailbox, Name: "a@example.com"}, {Kind: store.Backend, Name: "relay"}, {Kind: store.Mailbox, Name: "a@example.com"}} {
		it := &queue.Item{ID: []string{"m1", "m2", "m3"}[i], Key: "app", Group: g, Body: []byte("x"), Deadline: clk.Add(time.Hour)}
		if i == 2 {
			it.NotBefore = clk.Add(time.Minute)
		}
		if err := q.Enqueue(ctx, it); err != nil {
			t.Fatal(err)
		}
	}
	l, err := q.Lease(ctx, every, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"{q:mb:a@example.com}:item:m1": "hash", "{q:mb:a@example.com}:item:m3": "hash",
		"{q:be:relay}:item:m2": "hash", "{q:mb:a@example.com}:ready": "zset",
		"{q:be:relay}:ready": "zset", "{q:" + l.Group.String() + "}:leases": "zset",
		"{qid:m1}": "string", "{qid:m2}": "string", "{qid:m3}": "string", "{q}:groups": "zset",
		"{q:mb:a@example.com}:live": "zset", "{q:be:relay}:live": "zset", "{qk:app}:items": "zset",
	}
	if l.Group.Kind == store.Backend {
		// m2 was leased: its group's ready set is empty, so gone.
		delete(want, "{q:be:relay}:ready")
	}
	shape := regexp.MustCompile(`^\{(q:[a-z]+:[^}]+|qid:[^}]+|qk:[^}]+|q)\}`)
	iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
	got := map[string]bool{}
	for iter.Next(ctx) {
		k := iter.Val()[len(prefix):]
		got[k] = true
		if !shape.MatchString(k) {
			t.Errorf("key %s does not start with the prefix and a hash tag", iter.Val())
		}
		if typ, ok := want[k]; !ok {
			t.Errorf("unexpected key %s", k)
		} else if tt := c.Type(ctx, iter.Val()).Val(); tt != typ {
			t.Errorf("%s is a %s, want %s", k, tt, typ)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	for k := range want {
		if !got[k] {
			t.Errorf("key %s missing", k)
		}
	}
	if s, err := c.ZScore(ctx, prefix+"{q:mb:a@example.com}:ready", "m3").Result(); err != nil || int64(s) != clk.Add(time.Minute).UnixMicro() {
		t.Errorf("m3's ready score = %v, %v; want its NotBefore in µs", s, err)
	}
	if s, err := c.ZScore(ctx, prefix+"{q:mb:a@example.com}:live", "m3").Result(); err != nil || int64(s) != clk.UnixMicro() {
		t.Errorf("m3's live score = %v, %v; want its Accepted in µs", s, err)
	}
	members, err := c.ZRange(ctx, prefix+"{qk:app}:items", 0, -1).Result()
	ns := fmt.Sprintf("%019d", clk.UnixNano())
	want3 := []string{ns + "\x00m1\x00mb:a@example.com", ns + "\x00m2\x00be:relay", ns + "\x00m3\x00mb:a@example.com"}
	if err != nil || !slices.Equal(members, want3) {
		t.Errorf("List index = %q, %v; want %q", members, err, want3)
	}
	if err := q.Complete(ctx, l.Lease, queue.Attempt{Outcome: "SENT"}); err != nil {
		t.Fatal(err)
	}
	g := l.Group.String()
	if s, err := c.ZScore(ctx, prefix+"{q:"+g+"}:finished", l.ID).Result(); err != nil || int64(s) != clk.UnixMicro() {
		t.Errorf("%s's finished score = %v, %v; want its Finished in µs", l.ID, s, err)
	}
	if n, err := c.Exists(ctx, prefix+"{q:"+g+"}:live").Result(); err != nil || (g == "be:relay" && n != 0) {
		t.Errorf("live set of %s after its one item ended: exists %d, %v", g, n, err)
	}
}

// A Delete or Expire that failed after removing the item leaves its List entry (another
// slot): List skips it and removes it.
func TestListDropsEntriesOfItemsGone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := storetest.SharedRedis(t)
	prefix := storetest.Prefix(t, c, "qstale")
	clk := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	q := open(t, c, prefix, func() time.Time { return clk })
	for i, id := range []string{"m1", "m2", "m3"} {
		it := &queue.Item{ID: id, Key: "app", Group: store.GroupID{Kind: store.Mailbox, Name: "a@example.com"},
			Body: []byte("x"), Accepted: clk.Add(time.Duration(i) * time.Second), Deadline: clk.Add(time.Hour)}
		if err := q.Enqueue(ctx, it); err != nil {
			t.Fatal(err)
		}
	}
	// What a Delete of m2 that failed after its script leaves behind.
	if err := c.Del(ctx, prefix+"{q:mb:a@example.com}:item:m2").Err(); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{1, 2} {
		items, next, err := q.List(ctx, queue.ListQuery{Key: "app", Limit: limit})
		if err != nil || len(items) != limit || items[0].ID != "m3" || (limit == 2 && (items[1].ID != "m1" || next != "")) {
			t.Fatalf("List limit %d = %+v, %q, %v", limit, items, next, err)
		}
	}
	if n, err := c.ZCard(ctx, prefix+"{qk:app}:items").Result(); err != nil || n != 2 {
		t.Errorf("List index holds %d entries, %v; want the gone item's removed", n, err)
	}
}

// An Enqueue that failed part-way is finished by its retry: the id's claim written but
// not the item, or the item written but not the group's index entry.
func TestEnqueueRetryCompletes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := storetest.SharedRedis(t)
	every := func(store.GroupID) bool { return true }
	clk := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		damage func(q *redisq.Queue, prefix string, it *queue.Item)
		want   error
	}{
		{"claim only", func(q *redisq.Queue, prefix string, it *queue.Item) {
			c.Set(ctx, prefix+"{qid:"+it.ID+"}", it.Group.String(), 0)
		}, nil},
		{"no index entry", func(q *redisq.Queue, prefix string, it *queue.Item) {
			if err := q.Enqueue(ctx, it); err != nil {
				t.Fatal(err)
			}
			c.Del(ctx, prefix+"{q}:groups")
		}, queue.ErrExists},
		{"id held by another group", func(q *redisq.Queue, prefix string, it *queue.Item) {
			c.Set(ctx, prefix+"{qid:"+it.ID+"}", "mb:other@example.com", 0)
		}, queue.ErrExists},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := storetest.Prefix(t, c, "retry")
			q := open(t, c, prefix, func() time.Time { return clk })
			it := func() *queue.Item {
				return &queue.Item{ID: "m1", Key: "app", Group: store.GroupID{Kind: store.Mailbox, Name: "a@example.com"},
					Body: []byte("x"), Deadline: clk.Add(time.Hour)}
			}
			tc.damage(q, prefix, it())
			if err := q.Enqueue(ctx, it()); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("retried Enqueue = %v, want %v", err, tc.want)
			}
			l, err := q.Lease(ctx, every, time.Minute)
			if tc.name == "id held by another group" {
				if !errors.Is(err, queue.ErrEmpty) {
					t.Fatalf("Lease = %+v, %v; want ErrEmpty", l, err)
				}
				return
			}
			if err != nil || l.ID != "m1" {
				t.Fatalf("Lease after the retry = %+v, %v", l, err)
			}
		})
	}
}
