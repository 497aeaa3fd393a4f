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
	}}
	apiKey := store.Group{Kind: store.APIKey, Name: "billing-app", Limits: []store.Limit{{ID: store.MessagesPerMinute, Count: 10, Period: time.Minute, Cost: 1}}}
	if tk, err := s.Admit(ctx, &store.Admission{Groups: []store.Group{mailbox, apiKey}}); err != nil || tk.Decision != store.Proceed {
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
		"{key:billing-app}:msgs:sum":    "1",
		"{mb:paused@example.com}:pause": "1",
		"{be:relay}:pause":              "1",
	} {
		if got, err := c.Get(ctx, prefix+key).Result(); err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", key, got, err, want)
		}
	}
	for _, key := range []string{"{mb:a@example.com}:msgs", "{mb:a@example.com}:rcpts", "{key:billing-app}:msgs"} {
		if n, err := c.LLen(ctx, prefix+key).Result(); err != nil || n != 1 {
			t.Errorf("%s holds %d entries, %v; want 1", key, n, err)
		}
	}

	// What a running deployment already holds is read the same way.
	now := time.Now().UnixMilli()
	c.Set(ctx, prefix+"{mb:old@example.com}:pause", "1", time.Minute)
	c.RPush(ctx, prefix+"{key:old-app}:msgs", fmt.Sprintf("%d:1:0123456789abcdef", now))
	c.Set(ctx, prefix+"{key:old-app}:msgs:sum", "1", time.Minute)
	for _, tc := range []struct {
		group   store.Group
		refused store.Refusal
	}{
		{store.Group{Kind: store.Mailbox, Name: "old@example.com"},
			store.Refusal{Group: store.GroupID{Kind: store.Mailbox, Name: "old@example.com"}, Paused: true}},
		{store.Group{Kind: store.APIKey, Name: "old-app", Limits: []store.Limit{{ID: store.MessagesPerMinute, Count: 1, Period: time.Minute, Cost: 1}}},
			store.Refusal{Group: store.GroupID{Kind: store.APIKey, Name: "old-app"}, Limit: store.MessagesPerMinute}},
	} {
		tk, err := s.Admit(ctx, &store.Admission{Groups: []store.Group{tc.group}})
		if err != nil || tk.Decision != store.Throttled || *tk.Refused != tc.refused || tk.RetryAfter < 50*time.Second {
			t.Errorf("%s: %+v, %v; want refused by %s for about a minute", tc.group.ID(), tk, err, tc.refused)
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
		{store.LimitID(7), "LimitID(7)"},
		{store.Refusal{Group: mb, Limit: store.RecipientsPerDay}, "mb:billing@contoso.com/rcpts"},
		{store.Refusal{Group: mb, Paused: true}, "mb:billing@contoso.com/pause"},
	} {
		if s := tc.got.String(); s != tc.want {
			t.Errorf("%#v: %q, want %q", tc.got, s, tc.want)
		}
	}
}
