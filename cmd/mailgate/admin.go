package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/internal/app"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/server/apikey"
	"github.com/mailgate/mailgate/server/store"
)

func keys(args []string, stdout, stderr io.Writer) error {
	if len(args) != 2 || args[0] != "new" {
		fmt.Fprintln(stderr, "usage: mailgate keys new NAME")
		return errUsage
	}
	name := args[1]
	if !config.ValidKeyName(name) {
		fmt.Fprintf(stderr, "keys new: %q: a key name is up to 64 letters, digits, '.', '_' or '-'\n", name)
		return errUsage
	}
	key, hash := apikey.Generate()
	fmt.Fprintf(stdout, `# API key %q. It is shown only this once: give it to the client now.
%s

# Add this to the keys: list of the configuration (only the hash is stored):
  - name: %s
    hash: %s
    senders: ["*"]   # narrow this to the From addresses %s may use
`, name, key, name, hash, name)
	return nil
}

func checkConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: mailgate check-config FILE")
		return errUsage
	}
	cfg, err := loadConfig(args[0], stderr, "configuration check failed")
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: OK\n\n", args[0])
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROUTE\tMATCH\tBACKEND\tTYPE\tSENDS AS\tDELIVERY")
	for i, r := range cfg.Routes {
		delivery := string(r.Delivery)
		if delivery == "" {
			delivery = string(config.DeliverySync)
		}
		for j, name := range r.BackendNames() {
			mailbox := r.Mailbox
			switch {
			case cfg.Backends[name].Settings.Scope() == senders.ScopeBackend:
				mailbox = "(no mailbox: relays)"
			case mailbox == "":
				mailbox = "(the From address)"
			}
			if j == 0 {
				fmt.Fprintf(tw, "%d. %s\t%s\t%s\t%s\t%s\t%s\n", i+1, r.RouteName(), r.Match, name, cfg.Backends[name].Type, mailbox, delivery)
			} else {
				// A fallback: queued messages only.
				fmt.Fprintf(tw, "\t\tthen %s\t%s\t%s\t(queued only)\n", name, cfg.Backends[name].Type, mailbox)
			}
		}
	}
	tw.Flush()
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tMAY SEND AS")
	for _, k := range cfg.Keys {
		fmt.Fprintf(tw, "%s\t%s\n", k.Name, strings.Join(k.Senders, ", "))
	}
	tw.Flush()
	var unused []string
	for name := range cfg.Backends {
		used := false
		for _, r := range cfg.Routes {
			used = used || slices.Contains(r.BackendNames(), name)
		}
		if !used {
			unused = append(unused, name)
		}
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		fmt.Fprintf(stdout, "\nnote: no route uses backend(s) %s\n", strings.Join(unused, ", "))
	}
	fmt.Fprintln(stdout, "\nRoutes are tried in order; the first whose match fits the From address wins.")
	if cfg.Redis.Enabled() {
		fmt.Fprintln(stdout)
		checkPersistence(ctx, cfg, stdout)
	}
	return nil
}

// checkPersistence prints how the configured Redis persists its data, with a warning
// for each server that would forget idempotency records on a restart. It never fails:
// the check-config verdict is about the file, and the Redis may not be reachable from
// where it runs.
func checkPersistence(ctx context.Context, cfg *config.Config, w io.Writer) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ps, err := redisPersistence(ctx, cfg)
	if err != nil {
		fmt.Fprintf(w, "note: redis: persistence not checked: %v\n", err)
		return
	}
	for _, p := range ps {
		if problem := p.Problem(); problem != "" {
			fmt.Fprintf(w, "warning: redis %s: %s\n", p.Addr, problem)
		} else {
			fmt.Fprintf(w, "redis %s: %s\n", p.Addr, p)
		}
	}
}

// quietRedis keeps go-redis's own log lines (its pool's dial failures) off a command's
// stderr: the command reports the error itself, once.
func quietRedis() {
	quietOnce.Do(func() { redis.SetLogger(redisLogger{slog.New(slog.DiscardHandler)}) })
}

var quietOnce sync.Once

func redisPersistence(ctx context.Context, cfg *config.Config) ([]store.Persistence, error) {
	quietRedis()
	c, err := app.NewRedisClient(cfg.Redis)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return store.NewRedis(c, cfg.Redis.KeyPrefix).Persistence(ctx)
}

const adminUsage = `usage: mailgate admin COMMAND FILE

Commands:
  store-status FILE   say whether a loss of Redis's data is recorded
  store-ack FILE      acknowledge a recorded loss of Redis's data, for every replica:
                      they become ready again at their next check (redis.check_interval)

A loss is recorded when a replica finds mailgate's marker key gone from Redis: Redis
restarted without persistence, was flushed, or evicted keys. Idempotency records went with
it, so retried requests may have been sent twice. See docs/operations.md.
`

func admin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) != 2 || (args[0] != "store-ack" && args[0] != "store-status") {
		fmt.Fprint(stderr, adminUsage)
		return errUsage
	}
	cmd, file := args[0], args[1]
	cfg, err := loadConfig(file, stderr, "configuration check failed (see mailgate check-config)")
	if err != nil {
		return err
	}
	if !cfg.Redis.Enabled() {
		return fmt.Errorf("%s: %s has no redis section: the in-process store has no marker to check", cmd, file)
	}
	quietRedis()
	c, err := app.NewRedisClient(cfg.Redis)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	defer c.Close()
	st := store.NewRedis(c, cfg.Redis.KeyPrefix)
	if host, err := os.Hostname(); err == nil {
		st.SetReplica(host + " (mailgate admin)")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if cmd == "store-status" {
		l, err := st.DataLoss(ctx)
		switch {
		case err != nil:
			return fmt.Errorf("store-status: %w", err)
		case l == nil:
			fmt.Fprintln(stdout, "no loss of Redis's data is recorded")
		default:
			fmt.Fprintf(stdout, "Redis lost mailgate's data: %s\nEvery replica is not ready until `mailgate admin store-ack %s`.\n", l, file)
		}
		return nil
	}
	l, err := st.AckDataLoss(ctx)
	if err != nil {
		return fmt.Errorf("store-ack: %w", err)
	}
	if l == nil {
		fmt.Fprintln(stdout, "no loss of Redis's data was recorded: nothing to acknowledge")
		return nil
	}
	fmt.Fprintf(stdout, "acknowledged: Redis lost mailgate's data: %s\nEvery replica is ready again within redis.check_interval (%s).\n", l, cfg.Redis.CheckInterval)
	return nil
}

// flatten lists the errors joined in err.
// loadConfig loads and validates file; when it is invalid, it prints every problem on
// stderr, one a line, and returns failure as the command's error.
func loadConfig(file string, stderr io.Writer, failure string) (*config.Config, error) {
	cfg, err := app.Load(file)
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid configuration:\n", file)
		for _, e := range flatten(err) {
			fmt.Fprintln(stderr, "  "+e.Error())
		}
		return nil, errors.New(failure)
	}
	return cfg, nil
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
