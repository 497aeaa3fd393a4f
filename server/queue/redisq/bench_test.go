package redisq_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/server/queue"
	"github.com/mailgate/mailgate/server/store"
	"github.com/mailgate/mailgate/server/store/storetest"
)

// BenchmarkEnqueue measures accepting a 2 KB message into the Redis on 127.0.0.1:6379:
// a SET NX, a script and a ZADD, each a round trip. Serial is one caller at a time;
// Parallel is 16 per core at once. It reports p99 latency alongside ops/s, as the
// spool's benchmark does. What is on disk when Enqueue returns is the Redis's
// persistence settings' business: the shared Redis may keep no log at all, so the
// -fsync cases run a private redis-server (on a unix socket) with appendfsync always,
// where every write is on disk before its reply.
func BenchmarkEnqueue(b *testing.B) {
	for _, bc := range []struct {
		name  string
		par   bool
		fsync bool
	}{{"serial", false, false}, {"parallel", true, false}, {"serial-fsync", false, true}, {"parallel-fsync", true, true}} {
		b.Run(bc.name, func(b *testing.B) {
			var c redis.UniversalClient = storetest.SharedRedis(b)
			if bc.fsync {
				c = storetest.StartRedis(b, "--appendonly", "yes", "--appendfsync", "always").Client(b)
			}
			q := open(b, c, storetest.Prefix(b, c, "bench"), nil)
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
				if err := q.Enqueue(context.Background(), it); err != nil {
					b.Fatal(err)
				}
				latc <- time.Since(t0)
			}
			b.ResetTimer()
			if bc.par {
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
