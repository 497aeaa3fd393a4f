package spool_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/server/queue"
	"github.com/mailgate/mailgate/server/queue/spool"
	"github.com/mailgate/mailgate/server/store"
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
		par := bc.par
		b.Run(bc.name, func(b *testing.B) {
			s, err := spool.Open(filepath.Join(b.TempDir(), "queue.db"), spool.Options{BatchDelay: bc.batch})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var n atomic.Int64
			lat := make([]time.Duration, 0, b.N)
			latc := make(chan time.Duration, 1024)
			done := make(chan struct{})
			go func() {
				for d := range latc {
					lat = append(lat, d)
				}
				close(done)
			}()
			body := make([]byte, 2048)
			enq := func() {
				it := &queue.Item{ID: fmt.Sprintf("m%09d", n.Add(1)), Key: "app",
					Group: store.GroupID{Kind: store.Mailbox, Name: "a@example.com"},
					Body:  body, Deadline: time.Now().Add(time.Hour)}
				t0 := time.Now()
				if err := s.Enqueue(context.Background(), it); err != nil {
					b.Fatal(err)
				}
				latc <- time.Since(t0)
			}
			b.ResetTimer()
			if par {
				b.SetParallelism(16)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						enq()
					}
				})
			} else {
				for b.Loop() {
					enq()
				}
			}
			b.StopTimer()
			close(latc)
			<-done
			slices.Sort(lat)
			b.ReportMetric(float64(len(lat))/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
