package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mailgate/mailgate/server/store"
	"github.com/mailgate/mailgate/server/store/storetest"
)

func TestMemoryContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, store.NewMemory())
}

func TestRedisContract(t *testing.T) {
	t.Parallel()
	c := storetest.SharedRedis(t)
	storetest.Run(t, store.NewRedis(c, storetest.Prefix(t, c, "contract")))
}

// An outage fails calls (so nothing is sent), and the same store works again once Redis
// is back, without being rebuilt.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	srv := storetest.StartRedis(t)
	s := store.NewRedis(srv.Client(t), "mg:")
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t)
	adm := &store.Admission{Claim: &store.Claim{Scope: "a", Key: "k", Fingerprint: "f", LockTTL: time.Minute}}
	if _, err := s.Admit(ctx, adm); err == nil {
		t.Fatal("Admit succeeded with Redis down")
	}
	if err := s.Ping(ctx); err == nil {
		t.Fatal("Ping succeeded with Redis down")
	}
	srv.Start(t)
	tk, err := s.Admit(ctx, adm)
	if err != nil || tk.Decision != store.Proceed {
		t.Fatalf("after restart: %v, %v", tk, err)
	}
}

// The same contract on a three-master Redis Cluster: every script keeps to one slot.
func TestRedisClusterContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, store.NewRedis(storetest.StartCluster(t), "mg:"))
}

// The same contract through a Sentinel, on a client built as the service builds one for
// redis.addrs with redis.master_name.
func TestRedisSentinelContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, store.NewRedis(storetest.StartSentinel(t).Client(t), "mg:"))
}

// The Redis keys are a stored format: a replica of a new release reads the budgets and
// pauses an older one wrote, and the other way round, so that a rolling upgrade shares
// one set of limits. docs/configuration.md lists the same keys.
func TestRedisKeyLayout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := storetest.SharedRedis(t)
	prefix := storetest.Prefix(t, c, "layout")
	s := store.NewRedis(c, prefix)
	mailbox := store.Group{Kind: store.Mailbox, Name: "a@example.com", Limits: []store.Limit{
		{ID: store.MessagesPerMinute, Count: 30, Period: time.Minute, Cost: 1},
		{ID: store.RecipientsPerDay, Count: 10000, Period: 24 * time.Hour, Cost: 3},
		{ID: store.Concurrent, Count: 3, Period: 10 * time.Minute, Cost: 1},
	}}
	apiKey := store.Group{Kind: store.APIKey, Name: "billing-app", Limits: []store.Limit{{ID: store.MessagesPerMinute, Count: 10, Period: time.Minute, Cost: 1}}}
	tk, err := s.Admit(ctx, &store.Admission{Groups: []store.Group{mailbox, apiKey}})
	if err != nil || tk.Decision != store.Proceed {
		t.Fatalf("Admit: %v, %v", tk, err)
	}
	if err := s.Pause(ctx, store.GroupID{Kind: store.Mailbox, Name: "paused@example.com"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Pause(ctx, store.GroupID{Kind: store.Backend, Name: "relay"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"{mb:a@example.com}:msgs:sum":   "1",
		"{mb:a@example.com}:rcpts:sum":  "3",
		"{mb:a@example.com}:conc:sum":   "1",
		"{key:billing-app}:msgs:sum":    "1",
		"{mb:paused@example.com}:pause": "1",
		"{be:relay}:pause":              "1",
	} {
		if got, err := c.Get(ctx, prefix+key).Result(); err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", key, got, err, want)
		}
	}
	for _, key := range []string{"{mb:a@example.com}:msgs", "{mb:a@example.com}:rcpts", "{mb:a@example.com}:conc", "{key:billing-app}:msgs"} {
		if n, err := c.LLen(ctx, prefix+key).Result(); err != nil || n != 1 {
			t.Errorf("%s holds %d entries, %v; want 1", key, n, err)
		}
	}
	// The slot lapses with its period, as a window's entry does: a holder that dies
	// leaves nothing behind for longer.
	if ttl, err := c.PTTL(ctx, prefix+"{mb:a@example.com}:conc").Result(); err != nil || ttl <= 9*time.Minute || ttl > 10*time.Minute {
		t.Errorf("{mb:a@example.com}:conc expires in %v, %v; want the period of 10m", ttl, err)
	}
	// Complete frees the slot without a refund; the windows keep their entries.
	if err := s.Complete(ctx, tk, store.Completion{}); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]int64{"{mb:a@example.com}:conc": 0, "{mb:a@example.com}:conc:sum": 0, "{mb:a@example.com}:msgs": 1} {
		if n, err := c.Exists(ctx, prefix+key).Result(); err != nil || n != want {
			t.Errorf("after Complete, %s exists: %d, %v; want %d", key, n, err, want)
		}
	}

	// What a running deployment already holds is read the same way.
	now := time.Now().UnixMilli()
	c.Set(ctx, prefix+"{mb:old@example.com}:pause", "1", time.Minute)
	c.RPush(ctx, prefix+"{key:old-app}:msgs", fmt.Sprintf("%d:1:0123456789abcdef", now))
	c.Set(ctx, prefix+"{key:old-app}:msgs:sum", "1", time.Minute)
	c.RPush(ctx, prefix+"{mb:busy@example.com}:conc", fmt.Sprintf("%d:1:0123456789abcdef", now))
	c.Set(ctx, prefix+"{mb:busy@example.com}:conc:sum", "1", time.Minute)
	for _, tc := range []struct {
		group       store.Group
		refused     store.Refusal
		least, most time.Duration // the RetryAfter
	}{
		{store.Group{Kind: store.Mailbox, Name: "old@example.com"},
			store.Refusal{Group: store.GroupID{Kind: store.Mailbox, Name: "old@example.com"}, Paused: true}, 50 * time.Second, time.Minute},
		{store.Group{Kind: store.APIKey, Name: "old-app", Limits: []store.Limit{{ID: store.MessagesPerMinute, Count: 1, Period: time.Minute, Cost: 1}}},
			store.Refusal{Group: store.GroupID{Kind: store.APIKey, Name: "old-app"}, Limit: store.MessagesPerMinute}, 50 * time.Second, time.Minute},
		{store.Group{Kind: store.Mailbox, Name: "busy@example.com", Limits: []store.Limit{{ID: store.Concurrent, Count: 1, Period: time.Minute, Cost: 1}}},
			store.Refusal{Group: store.GroupID{Kind: store.Mailbox, Name: "busy@example.com"}, Limit: store.Concurrent}, store.ConcurrentRetry, store.ConcurrentRetry},
	} {
		tk, err := s.Admit(ctx, &store.Admission{Groups: []store.Group{tc.group}})
		if err != nil || tk.Decision != store.Throttled || *tk.Refused != tc.refused || tk.RetryAfter < tc.least || tk.RetryAfter > tc.most {
			t.Errorf("%s: %+v, %v; want refused by %s for %v to %v", tc.group.ID(), tk, err, tc.refused, tc.least, tc.most)
		}
	}
}

// The names in logs, which are also the tags in Redis keys.
func TestNames(t *testing.T) {
	t.Parallel()
	mb := store.GroupID{Kind: store.Mailbox, Name: "billing@contoso.com"}
	for _, tc := range []struct {
		got  fmt.Stringer
		want string
	}{
		{mb, "mb:billing@contoso.com"},
		{store.GroupID{Kind: store.Backend, Name: "relay"}, "be:relay"},
		{store.GroupID{Kind: store.APIKey, Name: "billing-app"}, "key:billing-app"},
		{store.GroupKind(0), "GroupKind(0)"},
		{store.MessagesPerMinute, "msgs"},
		{store.RecipientsPerDay, "rcpts"},
		{store.Concurrent, "conc"},
		{store.LimitID(7), "LimitID(7)"},
		{store.Refusal{Group: mb, Limit: store.RecipientsPerDay}, "mb:billing@contoso.com/rcpts"},
		{store.Refusal{Group: mb, Paused: true}, "mb:billing@contoso.com/pause"},
		{store.Refusal{Group: mb, Limit: store.Concurrent}, "mb:billing@contoso.com/conc"},
	} {
		if s := tc.got.String(); s != tc.want {
			t.Errorf("%#v: %q, want %q", tc.got, s, tc.want)
		}
	}
}
