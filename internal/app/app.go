// Package app is mailgate's composition root: the one place that knows every backend
// type and builds the running parts (store, backends, service, server) from a validated
// configuration. Package config parses and validates; it constructs nothing.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/doctor"
	"github.com/mailgate/mailgate/doctor/filecheck"
	"github.com/mailgate/mailgate/doctor/graphcheck"
	"github.com/mailgate/mailgate/doctor/smtpcheck"
	"github.com/mailgate/mailgate/mailaddr"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/senders/discard"
	"github.com/mailgate/mailgate/senders/file"
	"github.com/mailgate/mailgate/senders/graph"
	"github.com/mailgate/mailgate/senders/smtp"
	"github.com/mailgate/mailgate/server"
	"github.com/mailgate/mailgate/server/apikey"
	"github.com/mailgate/mailgate/server/policy"
	"github.com/mailgate/mailgate/server/queue"
	"github.com/mailgate/mailgate/server/queue/queuectl"
	"github.com/mailgate/mailgate/server/queue/redisq"
	"github.com/mailgate/mailgate/server/queue/spool"
	"github.com/mailgate/mailgate/server/store"
	"github.com/mailgate/mailgate/webhook"
)

// BackendTypes are the backend types mailgate knows, by their `type:` name. A new
// backend is its package below senders and one entry here.
func BackendTypes() senders.Types {
	return senders.NewTypes(
		file.Type,
		discard.Type,
		graph.Type,
		smtp.AuthType,
		smtp.RelayType,
		smtp.DirectSendType,
	)
}

// DoctorCheckers are the checks `mailgate doctor` runs for each backend type; a type
// without any is reported as skipped.
func DoctorCheckers() doctor.Checkers {
	return doctor.Checkers{
		file.Type.Name:           doctor.For(filecheck.Check),
		discard.Type.Name:        checkDiscard,
		graph.Type.Name:          doctor.For(graphcheck.Check),
		smtp.AuthType.Name:       doctor.For(smtpcheck.Auth),
		smtp.RelayType.Name:      doctor.For(smtpcheck.Relay),
		smtp.DirectSendType.Name: doctor.For(smtpcheck.DirectSend),
	}
}

func checkDiscard(_ context.Context, b *doctor.Backend) {
	b.Pass("discard", "accepts and drops every message: nothing to check")
}

// Load reads, parses and validates a configuration file.
func Load(path string) (*config.Config, error) { return config.Load(path, BackendTypes()) }

// Parse parses a configuration without validating it (config.Parse).
func Parse(b []byte, name string) (*config.Config, error) {
	return config.Parse(b, name, BackendTypes())
}

// ParseAndValidate parses and validates a configuration.
func ParseAndValidate(b []byte, name string) (*config.Config, error) {
	return config.ParseAndValidate(b, name, BackendTypes())
}

// Default is the embedded default configuration (config.Default).
func Default() *config.Config { return config.Default(BackendTypes()) }

// Server is a mailgate server built from a configuration, with what it opened.
type Server struct {
	*server.Server
	parts *parts
}

// parts are what NewServer opened, closed in one place, in one order.
type parts struct {
	control  func() error // the local queue's control socket; nil: none
	events   io.Closer    // the webhooks' queue; nil: no webhooks
	queue    io.Closer    // closed first: it may use the Redis client
	store    io.Closer    // the Redis client; nil: in-process
	backends map[string]senders.Sender
}

// close closes the store's client, then each backend (in name order): after the
// server has drained, so that no send is still using them.
func (p *parts) close() error {
	var errs []error
	if p.control != nil {
		if err := p.control(); err != nil {
			errs = append(errs, fmt.Errorf("queue control socket: %w", err))
		}
	}
	if p.events != nil {
		if err := p.events.Close(); err != nil {
			errs = append(errs, fmt.Errorf("webhook events: %w", err))
		}
	}
	if p.queue != nil {
		if err := p.queue.Close(); err != nil {
			errs = append(errs, fmt.Errorf("queue: %w", err))
		}
	}
	if p.store != nil {
		if err := p.store.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.backends)) {
		if err := p.backends[name].Close(); err != nil {
			errs = append(errs, fmt.Errorf("backend %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// NewServer builds a server, and opens its backends and store, from a validated
// configuration. Serve closes them once it has drained.
func NewServer(cfg *config.Config, log *slog.Logger) (*Server, error) {
	keys, err := Keyring(cfg)
	if err != nil {
		return nil, err
	}
	router, err := Router(cfg)
	if err != nil {
		return nil, err
	}
	p := &parts{backends: make(map[string]senders.Sender, len(cfg.Backends))}
	fail := func(err error) (*Server, error) {
		p.close()
		return nil, err
	}
	for name, b := range cfg.Backends {
		snd, err := b.Settings.Open(senders.Env{Name: name, Logger: log.With("backend", name)})
		if err != nil {
			return fail(fmt.Errorf("backends.%s: %w", name, err))
		}
		p.backends[name] = snd
	}
	st := store.Store(store.NewMemory())
	if cfg.Redis.Enabled() {
		client, err := NewRedisClient(cfg.Redis)
		if err != nil {
			return fail(fmt.Errorf("redis: %w", err))
		}
		r := store.NewRedis(client, cfg.Redis.KeyPrefix)
		if host, err := os.Hostname(); err == nil {
			r.SetReplica(host)
		}
		st, p.store = r, client
	}
	q, err := openQueue(cfg, p.store)
	if err != nil {
		return fail(err)
	}
	p.queue = q
	if _, local := q.(*spool.Spool); local {
		// Only this process may open the file: `mailgate queue` asks it instead.
		stop, err := queuectl.Serve(context.Background(), filepath.Join(cfg.Queue.Dir, queuectl.SocketName), q)
		if err != nil {
			return fail(fmt.Errorf("queue.dir: %w", err))
		}
		p.control = stop
	}
	hooks, err := openWebhooks(cfg, p, log)
	if err != nil {
		return fail(err)
	}
	opts := server.Options{
		Service: server.ServiceOptions{
			Router:   router,
			Backends: p.backends,
			Store:    st,
			Limits: server.Limits{
				MaxMessageBytes: cfg.Limits.MaxMessageBytes,
				MaxRecipients:   cfg.Limits.Mailbox.RecipientsPerMessage,
			},
			Mailbox: server.MailboxLimits{
				MessagesPerMinute: cfg.Limits.Mailbox.MessagesPerMinute,
				RecipientsPerDay:  cfg.Limits.Mailbox.RecipientsPerDay,
			},
			Retention:       cfg.Idempotency.TTL,
			RecordRetention: cfg.Records.Retention,
			SendTimeout:     cfg.Limits.SendTimeout,
			Logger:          log,
			Queue:           q,
			Notifier:        notifier(hooks),
			QueueOptions: server.QueueOptions{
				MaxLifetime: cfg.Queue.MaxLifetime,
				MaxSchedule: cfg.Queue.MaxSchedule,
			},
		},
		Dispatch: server.DispatchOptions{
			Workers:    cfg.Queue.Workers,
			Lease:      cfg.Queue.Lease,
			MinBackoff: cfg.Queue.MinBackoff,
			MaxBackoff: cfg.Queue.MaxBackoff,
			Retention:  cfg.Retention(),
		},
		Keys:              keys,
		MaxInflightBytes:  cfg.Limits.MaxInflightBytes,
		ShutdownTimeout:   cfg.Listen.ShutdownTimeout,
		DataCheckInterval: cfg.Redis.CheckInterval,
		Logger:            log,
	}
	if cfg.Listen.TLS.Enabled() {
		cert, err := config.LoadKeyPair(cfg.Listen.TLS)
		if err != nil {
			return fail(err)
		}
		opts.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	srv, err := server.New(opts)
	if err != nil {
		return fail(err)
	}
	if hooks != nil {
		if err := hooks.Register(srv.Registerer()); err != nil {
			return fail(err)
		}
		srv.Attach(hooks)
	}
	return &Server{Server: srv, parts: p}, nil
}

// notifier is hooks as the service's Notifier: nil (no interface holding a nil
// pointer) when there are no webhooks.
func notifier(hooks *webhook.Webhooks) server.Notifier {
	if hooks == nil {
		return nil
	}
	return hooks
}

// EventsFile is the webhooks' local queue in queue.dir; with Redis, their queue is under
// the key prefix followed by EventsPrefix.
const (
	EventsFile   = "events.db"
	EventsPrefix = "wh:"
)

// openWebhooks opens the configured webhooks and the queue their events wait in (in
// Redis beside the messages' queue, or a file of its own beside queue.db); nil when the
// configuration has none.
func openWebhooks(cfg *config.Config, p *parts, log *slog.Logger) (*webhook.Webhooks, error) {
	if len(cfg.Webhooks) == 0 {
		return nil, nil
	}
	var targets []webhook.Target
	for _, name := range slices.Sorted(maps.Keys(cfg.Webhooks)) {
		w := cfg.Webhooks[name]
		ep, err := w.Endpoint(name)
		if err != nil {
			return nil, fmt.Errorf("webhooks.%s: %w", name, err)
		}
		targets = append(targets, webhook.Target{Endpoint: ep, Events: w.Events, Keys: w.Keys, MaxConcurrency: w.MaxConcurrency})
	}
	var q queue.Queue
	if c, ok := p.store.(goredis.UniversalClient); ok {
		rq, err := redisq.New(c, redisq.Options{Prefix: cfg.Redis.KeyPrefix + EventsPrefix})
		if err != nil {
			return nil, fmt.Errorf("webhooks: %w", err)
		}
		q = rq
	} else {
		sq, err := spool.Open(filepath.Join(cfg.Queue.Dir, EventsFile), spool.Options{BatchDelay: time.Millisecond})
		if err != nil {
			return nil, fmt.Errorf("queue.dir: %w", err)
		}
		q = sq
	}
	p.events = q
	// Delivered and abandoned events are kept for webhook.Options' default retention
	// (24 h), not records.retention: they are only there to be delivered.
	return webhook.New(webhook.Options{Targets: targets, Queue: q, Logger: log.With("component", "webhooks")})
}

// Serve runs the server until ctx is done and it has drained (server.Server.Serve), then
// closes the store and the backends.
func (s *Server) Serve(ctx context.Context, httpLn, grpcLn net.Listener) error {
	err := s.Server.Serve(ctx, httpLn, grpcLn)
	return errors.Join(err, s.parts.close())
}

// openQueue opens the queue of queued delivery: in Redis when one is configured (client
// is then its client), shared by every replica; else the local spool in queue.dir.
func openQueue(cfg *config.Config, client io.Closer) (queue.Queue, error) {
	if c, ok := client.(goredis.UniversalClient); ok {
		q, err := redisq.New(c, redisq.Options{Prefix: cfg.Redis.KeyPrefix})
		if err != nil {
			return nil, fmt.Errorf("queue: %w", err)
		}
		return q, nil
	}
	if err := os.MkdirAll(cfg.Queue.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("queue.dir: %w", err)
	}
	// Concurrent callers (devices through the shim, a busy API) share one fsync; a
	// lone caller waits at most a millisecond for company.
	q, err := spool.Open(filepath.Join(cfg.Queue.Dir, SpoolFile), spool.Options{BatchDelay: time.Millisecond})
	if err != nil {
		return nil, fmt.Errorf("queue.dir: %w", err)
	}
	return q, nil
}

// OpenQueueOps opens the configured queue for an operator's command: Redis when the
// configuration has one; else the local queue through the control socket of the
// mailgate serve that holds it, or the file itself when none does.
func OpenQueueOps(ctx context.Context, cfg *config.Config) (queuectl.Ops, func() error, error) {
	if cfg.Redis.Enabled() {
		client, err := NewRedisClient(cfg.Redis)
		if err != nil {
			return nil, nil, fmt.Errorf("redis: %w", err)
		}
		q, err := openQueue(cfg, client)
		if err != nil {
			client.Close()
			return nil, nil, err
		}
		return q, client.Close, nil
	}
	sock := filepath.Join(cfg.Queue.Dir, queuectl.SocketName)
	c := queuectl.Dial(sock)
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := c.Ping(pctx); err == nil {
		return c, func() error { return nil }, nil
	}
	file := filepath.Join(cfg.Queue.Dir, SpoolFile)
	if _, err := os.Stat(file); err != nil {
		return nil, nil, fmt.Errorf("queue.dir: no local queue at %s: %w", file, err)
	}
	q, err := spool.Open(file, spool.Options{})
	if err != nil {
		return nil, nil, fmt.Errorf("queue.dir: %w (a process holds the file but does not answer on %s)", err, sock)
	}
	return q, q.Close, nil
}

// SpoolFile is the local queue's file in queue.dir.
const SpoolFile = "queue.db"

// NewRedisClient returns a client of the configured Redis (store.NewRedisClient).
func NewRedisClient(r config.Redis) (goredis.UniversalClient, error) {
	return store.NewRedisClient(store.RedisOptions{
		URL: r.URL, Addrs: r.Addrs, MasterName: r.MasterName,
		Username: r.Username, Password: r.Password.Value(), SentinelPassword: r.SentinelPassword.Value(),
		DB: r.DB, TLS: r.TLS, Timeout: r.Timeout,
	})
}

// Keyring builds the keyring of a validated configuration.
func Keyring(c *config.Config) (*apikey.Keyring, error) {
	kr := apikey.NewKeyring()
	for _, k := range c.Keys {
		key := &apikey.Key{Name: k.Name, MessagesPerMinute: k.Limits.MessagesPerMinute}
		for _, s := range k.Senders {
			p, err := mailaddr.ParsePattern(s)
			if err != nil {
				return nil, fmt.Errorf("key %s: %w", k.Name, err)
			}
			key.Senders = append(key.Senders, p)
		}
		if err := kr.Add(key, k.Hash.Value()); err != nil {
			return nil, fmt.Errorf("key %s: %w", k.Name, err)
		}
	}
	return kr, nil
}

// Router builds the router of a validated configuration.
func Router(c *config.Config) (*policy.Router, error) {
	routes := make([]policy.Route, 0, len(c.Routes))
	for _, r := range c.Routes {
		p, err := mailaddr.ParsePattern(r.Match)
		if err != nil {
			return nil, err
		}
		names := r.BackendNames()
		routes = append(routes, policy.Route{
			Name: r.RouteName(), Match: p, Backend: names[0], Fallbacks: names[1:],
			Mailbox: r.Mailbox, Queued: r.Delivery == config.DeliveryQueued,
		})
	}
	return policy.NewRouter(routes), nil
}
