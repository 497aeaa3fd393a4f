package spool_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/mailgate/mailgate/server/queue"
	"github.com/mailgate/mailgate/server/queue/queuetest"
	"github.com/mailgate/mailgate/server/queue/spool"
)

func open(t *testing.T, path string, now func() time.Time) *spool.Spool {
	t.Helper()
	s, err := spool.Open(path, spool.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, func(t *testing.T, now func() time.Time) (queue.Queue, func() queue.Queue) {
		path := filepath.Join(t.TempDir(), "queue.db")
		s := open(t, path, now)
		cur := s
		t.Cleanup(func() { cur.Close() })
		return s, func() queue.Queue {
			if err := cur.Close(); err != nil {
				t.Fatal(err)
			}
			cur = open(t, path, now)
			return cur
		}
	})
}
