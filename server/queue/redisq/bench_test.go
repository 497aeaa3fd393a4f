package redisq_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/server/queue/queuetest"
	"github.com/mailgate/mailgate/server/store/storetest"
)

// BenchmarkEnqueue measures accepting a 2 KB message into the Redis on 127.0.0.1:6379:
// a SET NX, a script, then two ZADDs (readiness index, List index) pipelined: three
// round trips. Serial is one caller at a time;
// Parallel is 16 per core at once. It reports p99 latency alongside ops/s, as the
// spool's benchmark does. What is on disk when Enqueue returns is the Redis's
// persistence settings' business: the shared Redis may keep no log at all, so the
// -fsync cases run a private redis-server (on a unix socket) with appendfsync always,
// where every write is on disk before its reply. The private Redis holds nothing else,
// so the -fsync cases also report its used_memory growth per queued message.
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
			before := usedMemory(b, c)
			queuetest.BenchEnqueue(b, q, bc.par)
			if bc.fsync {
				b.ReportMetric(float64(usedMemory(b, c)-before)/float64(b.N), "redis-B/msg")
			}
		})
	}
}

// usedMemory is the Redis's INFO memory used_memory, in bytes.
func usedMemory(b *testing.B, c redis.UniversalClient) int64 {
	info, err := c.Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatalf("no used_memory in INFO memory: %q", info)
	return 0
}
