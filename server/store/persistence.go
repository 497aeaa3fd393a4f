package store

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Persistence is how one Redis server keeps its data across a restart, as it says
// itself: INFO persistence, and CONFIG GET where it is allowed (managed Redis services
// often refuse CONFIG).
type Persistence struct {
	// Addr is the server's address as the client knows it.
	Addr string
	// AOF is INFO's aof_enabled; AOFKnown is false when INFO did not say.
	AOF, AOFKnown bool
	// Fsync is the appendfsync setting; "" when CONFIG GET was refused.
	Fsync string
	// Save is the RDB save setting ("" for none); SaveKnown is false when CONFIG GET
	// was refused.
	Save      string
	SaveKnown bool
	// ConfigErr is why CONFIG GET failed, if it did.
	ConfigErr error
}

const persistFix = "set appendonly yes and appendfsync everysec (or always) in redis.conf (docs/operations.md#redis)"

// Problem says, for a warning, how the server may lose idempotency records on a
// restart; "" when it keeps them (AOF, with appendfsync everysec or always, or an
// appendfsync it would not tell).
func (p Persistence) Problem() string {
	switch {
	case !p.AOFKnown:
		return "INFO persistence does not say whether AOF is on (no aof_enabled): unless your provider keeps the data otherwise, a restart of Redis forgets the idempotency records and retried requests are sent a second time; " + persistFix
	case p.AOF && p.Fsync == "no":
		return "AOF with appendfsync no: a crash of the machine may lose the last 30 s or so of writes, and retries of those requests are sent a second time; set appendfsync everysec (or always) (docs/operations.md#redis)"
	case p.AOF:
		return ""
	case !p.SaveKnown:
		return fmt.Sprintf("AOF is off (aof_enabled:0) and the RDB snapshot setting could not be read (CONFIG GET: %v): unless your provider keeps the data otherwise, a restart of Redis forgets the idempotency records and retried requests are sent a second time; %s", p.ConfigErr, persistFix)
	case p.Save == "":
		return `no persistence (aof_enabled:0, save ""): a restart of Redis forgets every idempotency record, and retried requests are sent a second time; ` + persistFix
	default:
		return fmt.Sprintf("only RDB snapshots (save %q), no AOF: a restart of Redis loses what was written since the last snapshot, and retries of those requests are sent a second time; %s", p.Save, persistFix)
	}
}

// String describes the setting, for a report.
func (p Persistence) String() string {
	switch {
	case p.AOF && p.Fsync != "":
		return "AOF on, appendfsync " + p.Fsync
	case p.AOF:
		return "AOF on (appendfsync not readable: CONFIG GET refused)"
	case !p.AOFKnown:
		return "persistence unknown"
	case p.SaveKnown && p.Save != "":
		return fmt.Sprintf("AOF off, RDB save %q", p.Save)
	case p.SaveKnown:
		return "AOF off, no RDB snapshots"
	default:
		return "AOF off"
	}
}

// Persistence reports how each server holding mailgate's data persists it: the one
// server, or every master of a Cluster.
func (r *Redis) Persistence(ctx context.Context) ([]Persistence, error) {
	var mu sync.Mutex
	var out []Persistence
	one := func(ctx context.Context, c *redis.Client) error {
		p, err := persistence(ctx, c)
		if err != nil {
			return err
		}
		mu.Lock()
		out = append(out, p)
		mu.Unlock()
		return nil
	}
	var err error
	switch c := r.c.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, one)
	case *redis.Client:
		err = one(ctx, c)
	default:
		err = fmt.Errorf("store: persistence: unsupported client %T", r.c)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

func persistence(ctx context.Context, c *redis.Client) (Persistence, error) {
	p := Persistence{Addr: c.Options().Addr}
	info, err := c.Info(ctx, "persistence").Result()
	if err != nil {
		return p, fmt.Errorf("INFO persistence on %s: %w", p.Addr, err)
	}
	if v := infoField(info, "aof_enabled"); v != "" {
		p.AOF, p.AOFKnown = v == "1", true
	}
	cfg, err := c.ConfigGet(ctx, "save").Result()
	if err == nil {
		p.Save, p.SaveKnown = strings.TrimSpace(cfg["save"]), true
		if cfg, err = c.ConfigGet(ctx, "appendfsync").Result(); err == nil {
			p.Fsync = cfg["appendfsync"]
		}
	}
	p.ConfigErr = err
	return p, nil
}
