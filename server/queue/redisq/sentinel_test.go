package redisq_test

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/server/store/storetest"
)

// The same contract through a Sentinel, on clients built as the service builds them for
// redis.addrs with redis.master_name; a restart is a new client through the Sentinel.
func TestSentinelContract(t *testing.T) {
	t.Parallel()
	s := storetest.StartSentinel(t)
	contract(t, s.Client(t), func() redis.UniversalClient { return s.Client(t) })
}
