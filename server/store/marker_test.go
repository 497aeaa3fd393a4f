package store_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/server/store"
	"github.com/mailgate/mailgate/server/store/storetest"
)

func check(t *testing.T, r *store.Redis) store.DataState {
	t.Helper()
	st, err := r.CheckData(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func replica(c redis.UniversalClient, prefix, name string) *store.Redis {
	r := store.NewRedis(c, prefix)
	r.SetReplica(name)
	return r
}

func TestDataLossMarker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := storetest.SharedRedis(t)

	tests := []struct {
		name string
		// lose plays the loss, with replicas a and b running (both have seen the marker).
		lose func(t *testing.T, prefix string, a, b *store.Redis)
		// wantLost is what a and b report at their next check.
		wantLost bool
		reason   string
	}{
		{"nothing happens", func(*testing.T, string, *store.Redis, *store.Redis) {}, false, ""},
		{"marker deleted", func(t *testing.T, prefix string, _, _ *store.Redis) {
			c.Del(ctx, prefix+"{meta}:marker")
		}, true, "is gone"},
		{"a replica starting on the empty Redis writes the marker first", func(t *testing.T, prefix string, _, _ *store.Redis) {
			c.Del(ctx, prefix+"{meta}:marker")
			if st := check(t, replica(c, prefix, "new")); st.Lost != nil || len(st.Created) != 1 {
				t.Fatalf("new replica: %+v, want the marker created and no loss known yet", st)
			}
		}, true, "written again"},
		{"acknowledged at once, before b looked", func(t *testing.T, prefix string, a, _ *store.Redis) {
			c.Del(ctx, prefix+"{meta}:marker")
			if st := check(t, a); !st.Detected {
				t.Fatalf("a: %+v, want the loss detected", st)
			}
			if l, err := replica(c, prefix, "ack").AckDataLoss(ctx); err != nil || l == nil || l.By != "a" {
				t.Fatalf("ack: %v, %v", l, err)
			}
		}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			prefix := storetest.Prefix(t, c, "marker")
			a, b := replica(c, prefix, "a"), replica(c, prefix, "b")
			if st := check(t, a); st.Lost != nil || st.Detected || len(st.Created) != 1 {
				t.Fatalf("first check: %+v, want the marker created", st)
			}
			if st := check(t, b); st.Lost != nil || len(st.Created) != 0 {
				t.Fatalf("b's first check: %+v, want the marker found", st)
			}
			tt.lose(t, prefix, a, b)
			for _, r := range []*store.Redis{a, b, a, b, replica(c, prefix, "late")} {
				st := check(t, r)
				if (st.Lost != nil) != tt.wantLost {
					t.Fatalf("state %+v, want lost %v", st, tt.wantLost)
				}
				if tt.wantLost && !strings.Contains(st.Lost.Reason, tt.reason) {
					t.Errorf("reason %q, want it to say %q", st.Lost.Reason, tt.reason)
				}
			}
			if !tt.wantLost {
				return
			}
			// Every replica reports the loss until it is acknowledged, once, anywhere.
			l, err := replica(c, prefix, "ops").AckDataLoss(ctx)
			if err != nil || l == nil || !strings.Contains(l.Reason, tt.reason) {
				t.Fatalf("ack: %+v, %v", l, err)
			}
			for _, r := range []*store.Redis{a, b, replica(c, prefix, "late")} {
				if st := check(t, r); st.Lost != nil || st.Detected {
					t.Fatalf("after the ack: %+v", st)
				}
			}
			if l, err := a.AckDataLoss(ctx); err != nil || l != nil {
				t.Errorf("second ack: %v, %v, want nothing to acknowledge", l, err)
			}
		})
	}
}

// A Redis without persistence restarts empty: the replica that watched it says so, and
// names the restart.
func TestDataLossOnRestart(t *testing.T) {
	t.Parallel()
	srv := storetest.StartRedis(t)
	r := replica(srv.Client(t), "mg:", "a")
	check(t, r)
	srv.Stop(t)
	if _, err := r.CheckData(context.Background()); err == nil {
		t.Fatal("check succeeded with Redis down")
	}
	srv.Start(t)
	st := check(t, r)
	if !st.Detected || st.Lost == nil || !strings.Contains(st.Lost.Reason, "restarted") || st.Lost.By != "a" {
		t.Fatalf("after a restart without persistence: %+v", st)
	}
}

// On a Cluster each master holds a marker of its own: losing any one master's data is
// seen.
func TestDataLossCluster(t *testing.T) {
	t.Parallel()
	cc := storetest.StartCluster(t)
	ctx := context.Background()
	a := replica(cc, "mg:", "a")
	if st := check(t, a); len(st.Created) != 3 {
		t.Fatalf("created %v, want one marker on each of the 3 masters", st.Created)
	}
	var once sync.Once
	var flushed bool
	cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		if n.DBSize(ctx).Val() != 1 { // each master holds its marker, and only that
			return nil
		}
		var err error
		once.Do(func() { flushed, err = true, n.FlushAll(ctx).Err() })
		return err
	})
	if !flushed {
		t.Fatal("no master holds exactly one key (its marker)")
	}
	if st := check(t, a); !st.Detected || st.Lost == nil {
		t.Fatalf("after one master lost its data: %+v", st)
	}
	if st := check(t, replica(cc, "mg:", "b")); st.Lost == nil {
		t.Fatalf("another replica: %+v, want the recorded loss", st)
	}
}
