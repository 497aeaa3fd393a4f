package spool_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/mailgate/mailgate/server/queue/queuetest"
	"github.com/mailgate/mailgate/server/queue/spool"
)

// BenchmarkEnqueue measures accepting a 2 KB message: one fsynced bbolt transaction
// each. Serial is one caller at a time; Parallel is many at once (as a busy service
// has), each still its own transaction. It reports p99 latency alongside ops/s.
func BenchmarkEnqueue(b *testing.B) {
	for _, bc := range []struct {
		name  string
		par   bool
		batch time.Duration
	}{
		{"serial", false, 0},
		{"parallel", true, 0},
		{"serial-batch1ms", false, time.Millisecond},
		{"parallel-batch1ms", true, time.Millisecond},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := spool.Open(filepath.Join(b.TempDir(), "queue.db"), spool.Options{BatchDelay: bc.batch})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			queuetest.BenchEnqueue(b, s, bc.par)
		})
	}
}
