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
func (d *doctor) redis(ctx context.Context) {
	fail := func(detail, fix string) {
		d.b.fail("connect", detail, fix)
		d.b.skip("persistence, data", "Redis did not answer")
	}
	if d.opts.RedisClient == nil {
		fail("no Redis client was given to the doctor", "run the checks with `mailgate doctor`")
		return
	}
	c, err := d.opts.RedisClient(d.cfg.Redis)
	if err != nil {
		fail(err.Error(), "fix redis.url (mailgate check-config says how)")
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, d.opts.timeout())
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		fail(err.Error(), "check redis.url or redis.addrs, the password, and that this machine reaches Redis: mailgate is not ready while Redis does not answer")
		return
	}
	d.b.pass("connect", "PING answered")
	st := store.NewRedis(c, d.cfg.Redis.KeyPrefix)
	ps, err := st.Persistence(ctx)
	switch {
	case err != nil:
		d.b.warn("persistence", fmt.Sprintf("not checked: %v", err))
	default:
		for _, p := range ps {
			if problem := p.Problem(); problem != "" {
				d.b.warn("persistence", p.Addr+": "+problem)
			} else {
				d.b.pass("persistence", p.Addr+": "+p.String())
			}
		}
	}
	switch l, err := st.DataLoss(ctx); {
	case err != nil:
		d.b.fail("data", err.Error(), "check the Redis user's permissions: mailgate reads and writes keys under "+d.cfg.Redis.KeyPrefix)
	case l != nil:
		d.b.fail("data", "Redis lost mailgate's data: "+l.String()+"; every replica is not ready",
			"idempotency records were lost, so retried requests may have been sent twice: check the recipients' side, make Redis persist (appendonly yes), then run `mailgate admin store-ack FILE`")
	default:
		d.b.pass("data", "no loss of Redis's data is recorded")
	}
}
