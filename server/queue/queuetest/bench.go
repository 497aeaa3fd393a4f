package queuetest

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/mailgate/server/queue"
	"github.com/mailgate/mailgate/server/store"
)

// BenchEnqueue measures accepting 2 KB messages into q, as a service answering QUEUED
// does: one caller at a time, or with parallel, 16 per core at once. Besides ns/op it
// reports msgs/s and the 99th percentile latency of one Enqueue (p99-ms), which is what a
// caller waits for its answer. Both queue implementations run it, so their numbers
// compare.
func BenchEnqueue(b *testing.B, q queue.Queue, parallel bool) {
	b.Helper()
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
	if parallel {
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
}
