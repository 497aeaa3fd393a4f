package doctor

import (
	"context"
	"fmt"

	"github.com/mailgate/mailgate/server/store"
)

// redisSection groups the checks of the shared store in a report (Check.Type); their
// Backend is empty.
const redisSection = "redis"

// redis checks the shared store: that it answers, that each server persists its data
// (a warning when not: a restart would forget the idempotency records), and that no loss
// of its data is recorded. It reads, and writes nothing.
func (b *Backend) redis(ctx context.Context) {
	fail := func(detail, fix string) {
		b.Fail("connect", detail, fix)
		b.Skip("persistence, data", "Redis did not answer")
	}
	if b.Options.RedisClient == nil {
		fail("no Redis client was given to the doctor", "run the checks with `mailgate doctor`")
		return
	}
	c, err := b.Options.RedisClient(b.Config.Redis)
	if err != nil {
		fail(err.Error(), "fix redis.url (mailgate check-config says how)")
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, b.Timeout())
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		fail(err.Error(), "check redis.url or redis.addrs, the password, and that this machine reaches Redis: mailgate is not ready while Redis does not answer")
		return
	}
	b.Pass("connect", "PING answered")
	st := store.NewRedis(c, b.Config.Redis.KeyPrefix)
	ps, err := st.Persistence(ctx)
	switch {
	case err != nil:
		b.Warn("persistence", fmt.Sprintf("not checked: %v", err))
	default:
		for _, p := range ps {
			if problem := p.Problem(); problem != "" {
				b.Warn("persistence", p.Addr+": "+problem)
			} else {
				b.Pass("persistence", p.Addr+": "+p.String())
			}
		}
	}
	switch l, err := st.DataLoss(ctx); {
	case err != nil:
		b.Fail("data", err.Error(), "check the Redis user's permissions: mailgate reads and writes keys under "+b.Config.Redis.KeyPrefix)
	case l != nil:
		b.Fail("data", "Redis lost mailgate's data: "+l.String()+"; every replica is not ready",
			"idempotency records were lost, so retried requests may have been sent twice: check the recipients' side, make Redis persist (appendonly yes), then run `mailgate admin store-ack FILE`")
	default:
		b.Pass("data", "no loss of Redis's data is recorded")
	}
}
