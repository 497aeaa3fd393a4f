package spool_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/mailgate/mailgate/server/queue"
	"github.com/mailgate/mailgate/server/queue/queuetest"
	"github.com/mailgate/mailgate/server/queue/spool"
)

func open(t testing.TB, path string, now func() time.Time) *spool.Spool {
	t.Helper()
	return openWith(t, path, spool.Options{Now: now})
}

func openWith(t testing.TB, path string, opts spool.Options) *spool.Spool {
	t.Helper()
	s, err := spool.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		batch time.Duration
	}{{"one transaction per enqueue", 0}, {"batched enqueues", time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			queuetest.Run(t, func(t *testing.T, now func() time.Time) (queue.Queue, func() queue.Queue) {
				path := filepath.Join(t.TempDir(), "queue.db")
				opts := spool.Options{Now: now, BatchDelay: tc.batch}
				cur := openWith(t, path, opts)
				t.Cleanup(func() { cur.Close() })
				return cur, func() queue.Queue {
					if err := cur.Close(); err != nil {
						t.Fatal(err)
					}
					cur = openWith(t, path, opts)
					return cur
				}
			})
		})
	}
}
