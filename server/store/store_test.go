package store_test

import (
	"context"
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
