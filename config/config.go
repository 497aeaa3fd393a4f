// Package config loads mailgate's YAML configuration, once, and validates all of it
// before anything starts: every error names the offending field by its path
// (`backends.outbox.dir`), and problems found while reading the YAML also by line.
//
// Beyond plain YAML: `${VAR}` (and `${VAR:-default}`) in any value is replaced from the
// environment, `$$` stands for a literal `$`; every secret field `foo` may instead be
// read from a file with `foo_file`; durations are Go durations (`30s`, `24h`); unknown
// fields are errors.
package config

import (
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"

	"github.com/mailgate/mailgate/config/secret"
	"github.com/mailgate/mailgate/mailaddr"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/server/apikey"
)

// Config is the whole configuration.
type Config struct {
	Listen      Listen              `yaml:"listen"`
	Redis       Redis               `yaml:"redis"`
	Keys        []Key               `yaml:"keys"`
	Routes      []Route             `yaml:"routes"`
	Backends    map[string]*Backend `yaml:"backends"`
	Limits      Limits              `yaml:"limits"`
	Idempotency Idempotency         `yaml:"idempotency"`
	Records     Records             `yaml:"records"`
	Shim        Shim                `yaml:"shim"`
	Queue       Queue               `yaml:"queue"`
	Webhooks    map[string]*Webhook `yaml:"webhooks"`
	Log         Log                 `yaml:"log"`
}

// Delivery is when a message is sent: at once (sync, the answer is the backend's) or by
// the queue's workers (queued, the answer is QUEUED once the message is durable).
type Delivery string

const (
	DeliverySync   Delivery = "sync"
	DeliveryQueued Delivery = "queued"
)

// Queue configures queued delivery: where accepted messages are kept and how workers
// retry them. With Redis configured the queue is in Redis and shared by every replica;
// without, it is a file in Dir.
type Queue struct {
	// Dir holds the local queue (one bbolt file, queue.db) when there is no Redis.
	Dir string `yaml:"dir"`
	// MaxLifetime is how long a message is retried before it is FAILED.
	MaxLifetime time.Duration `yaml:"max_lifetime"`
	// MaxSchedule is how far ahead sendAt may be.
	MaxSchedule time.Duration `yaml:"max_schedule"`
	// Workers is how many messages one replica sends at once.
	Workers int `yaml:"workers"`
	// MinBackoff and MaxBackoff bound the wait before retrying a transient failure: it
	// doubles from MinBackoff with each attempt, up to MaxBackoff, with jitter; a
	// Retry-After from Microsoft is waited out when it is longer.
	MinBackoff time.Duration `yaml:"min_backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// Lease is how long a worker holds a message without renewing its claim; a replica
	// that dies leaves its messages to the others after this.
	Lease time.Duration `yaml:"lease"`
	// Retention is how long a finished message (SENT, FAILED, CANCELED, UNKNOWN) stays
	// in the queue for GetMessage and ListMessages; default idempotency.ttl.
	Retention time.Duration `yaml:"retention"`
}

// Redis is where replicas share idempotency records, rate budgets and message records.
// Without it, state lives in the process: fine for one replica, wrong for two.
type Redis struct {
	// URL is a standalone server: redis://[user:password@]host:port/db, rediss:// for
	// TLS, or unix:///path/to/socket.
	URL string `yaml:"url"`
	// Addrs are Sentinel addresses (with MasterName) or Cluster seed nodes (without; one
	// is enough, the client learns the others).
	Addrs      []string `yaml:"addrs"`
	MasterName string   `yaml:"master_name"`
	Username   string   `yaml:"username"`
	// Password, for Addrs; a URL carries its own.
	Password secret.String `yaml:"password"`
	// SentinelPassword is the Sentinels' own password, when they require one.
	SentinelPassword secret.String `yaml:"sentinel_password"`
	DB               int           `yaml:"db"`
	// TLS, for Addrs: connect with TLS (a rediss:// URL says so itself).
	TLS bool `yaml:"tls"`
	// KeyPrefix starts every key, so that deployments can share one Redis.
	KeyPrefix string `yaml:"key_prefix"`
	// Timeout bounds every Redis call (connecting, writing, reading, waiting for a pooled
	// connection), so that a frozen Redis fails requests fast with UNAVAILABLE instead of
	// holding them for as long as it stalls.
	Timeout time.Duration `yaml:"timeout"`
	// CheckInterval is how often each replica checks that Redis still holds mailgate's
	// marker, i.e. that it did not lose its data.
	CheckInterval time.Duration `yaml:"check_interval"`
}

// Enabled reports whether a Redis is configured.
func (r Redis) Enabled() bool { return r.URL != "" || len(r.Addrs) > 0 }

// Idempotency configures the published idempotency policy.
// Records configures what is kept of each message for GetMessage and ListMessages.
type Records struct {
	// Retention is how long a message's record is kept after it was sent or ended
	// (its idempotency replay lasts idempotency.ttl).
	Retention time.Duration `yaml:"retention"`
}

type Idempotency struct {
	// TTL is how long a completed request's response is replayed for its key.
	TTL time.Duration `yaml:"ttl"`
}

// Listen says where the service listens.
type Listen struct {
	// HTTP serves REST, /metrics, /healthz, /readyz and /openapi.json; empty: off.
	HTTP string `yaml:"http"`
	// GRPC serves the gRPC API; empty: off.
	GRPC string `yaml:"grpc"`
	// TLS, when both files are set, applies to both listeners.
	TLS TLSFiles `yaml:"tls"`
	// ShutdownTimeout bounds how long in-flight requests may take to finish on SIGTERM.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// TLSFiles names a certificate chain and its private key, both PEM.
type TLSFiles struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether TLS is configured.
func (t TLSFiles) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// Key is an API key: its name, the hash of its secret, and what it may send as.
type Key struct {
	Name string `yaml:"name"`
	// Hash is "sha256:<hex>", from `mailgate keys new`.
	Hash secret.String `yaml:"hash"`
	// Senders are the From patterns the key may use: address, *@domain or *.
	Senders []string  `yaml:"senders"`
	Limits  KeyLimits `yaml:"limits"`
}

// KeyLimits bound what one API key may send, across all its senders.
type KeyLimits struct {
	// MessagesPerMinute is the key's own rate; 0 means no limit of its own.
	MessagesPerMinute int `yaml:"messages_per_minute"`
}

// Route sends matching From addresses through a backend.
type Route struct {
	// Name identifies the route in responses; default: the match pattern.
	Name    string `yaml:"name"`
	Match   string `yaml:"match"`
	Backend string `yaml:"backend"`
	// Backends, instead of Backend, lists backends in order: a queued message goes
	// through the first that is not paused, throttled or failing.
	Backends []string `yaml:"backends"`
	// Mailbox is the mailbox to send as; default: the From address.
	Mailbox string `yaml:"mailbox"`
	// Delivery is sync (the default) or queued, for API requests that do not say.
	Delivery Delivery `yaml:"delivery"`
}

// BackendNames are the route's backends in order: Backends, or Backend alone.
func (r Route) BackendNames() []string {
	if len(r.Backends) > 0 {
		return r.Backends
	}
	if r.Backend == "" {
		return nil
	}
	return []string{r.Backend}
}

// Backend is one delivery backend: its type and that type's settings.
type Backend struct {
	Type string
	// Settings are nil when Type is not one of the known types.
	Settings senders.Config
	node     *yaml.Node // the section, until Settings are decoded from it
}

// Limits bound what one message may be.
type Limits struct {
	Mailbox MailboxLimits `yaml:"mailbox"`
	// MaxMessageBytes is the largest message accepted, measured as encoded MIME.
	MaxMessageBytes int64 `yaml:"max_message_bytes"`
	// MaxInflightBytes bounds the request bytes the server holds at once, over REST and
	// gRPC together; 0: four of the largest requests (LargestRequest).
	MaxInflightBytes int64 `yaml:"max_inflight_bytes"`
	// SendTimeout bounds one backend send. A send that has started runs to the end even
	// if the caller goes away, so that its outcome is recorded.
	SendTimeout time.Duration `yaml:"send_timeout"`
}

// MailboxLimits mirror Exchange Online's per-mailbox limits, enforced per sending
// mailbox across every replica, before Microsoft enforces them.
type MailboxLimits struct {
	// MessagesPerMinute is Exchange Online's 30; 0 turns the limit off.
	MessagesPerMinute int `yaml:"messages_per_minute"`
	// RecipientsPerDay is Exchange Online's 10,000 (each recipient counts); 0 turns it off.
	RecipientsPerDay int `yaml:"recipients_per_day"`
	// RecipientsPerMessage is Exchange Online's 500 by default.
	RecipientsPerMessage int `yaml:"recipients_per_message"`
}

// Log configures the service's log.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is json or text; empty: text on a terminal, json otherwise.
	Format string `yaml:"format"`
}

// LargestRequest is the most bytes one API request may take: a gRPC message, which
// leaves room for attachments' base64 growth that validation measures (a REST body,
// maxMessage*4/3 and the JSON around it, is smaller).
func LargestRequest(maxMessage int64) int64 { return 2*maxMessage + 1<<20 }

func defaults() *Config {
	return &Config{
		Listen: Listen{HTTP: "127.0.0.1:8080", GRPC: "127.0.0.1:9090", ShutdownTimeout: 30 * time.Second},
		Redis:  Redis{KeyPrefix: "mg:", Timeout: 2 * time.Second, CheckInterval: 5 * time.Second},
		Limits: Limits{
			Mailbox:         MailboxLimits{MessagesPerMinute: 30, RecipientsPerDay: 10_000, RecipientsPerMessage: 500},
			MaxMessageBytes: 35 << 20, // Exchange Online's default send limit (35 MB)
			SendTimeout:     2 * time.Minute,
		},
		Idempotency: Idempotency{TTL: 24 * time.Hour},
		Records:     Records{Retention: 7 * 24 * time.Hour},
		Queue: Queue{Dir: "./spool", MaxLifetime: 24 * time.Hour, MaxSchedule: 30 * 24 * time.Hour, Workers: 16,
			MinBackoff: time.Minute, MaxBackoff: 20 * time.Minute, Lease: 30 * time.Second},
		Shim: Shim{Delivery: DeliveryQueued, MinTLS: "1.2", MaxConnections: 100, MaxConnectionsPerSource: 10, ReservedDeviceConnections: 10,
			AuthTimeout: 30 * time.Second, ReadTimeout: 5 * time.Minute, WriteTimeout: time.Minute},
		Log: Log{Level: "info"},
	}
}

//go:embed default.yaml
var defaultYAML []byte

// Default is the embedded configuration `mailgate serve` uses without a file: loopback
// listeners and the file backend writing to ./outbox. It has no keys; the caller adds
// the development key. types must know the file backend.
func Default(types senders.Types) *Config {
	c, err := Parse(defaultYAML, "(embedded default)", types)
	if err != nil {
		panic("embedded default configuration is invalid: " + err.Error())
	}
	return c
}

// Load reads, parses and validates a configuration file, whose backends are of types.
func Load(path string, types senders.Types) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseAndValidate(b, path, types)
}

// ParseAndValidate parses YAML text and validates the result.
func ParseAndValidate(b []byte, name string, types senders.Types) (*Config, error) {
	c, err := Parse(b, name, types)
	var perr *parseErrors
	if errors.As(err, &perr) {
		// Report validation problems beside the parse errors, except those the parse
		// errors already explain.
		errs := perr.errs
		for _, e := range unjoin(c.Validate()) {
			var fe *FieldError
			if errors.As(e, &fe) && perr.covers(fe.Path) {
				continue
			}
			errs = append(errs, e)
		}
		return nil, errors.Join(errs...)
	}
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// FieldError is a problem with one field of the configuration.
type FieldError struct {
	Path string // e.g. "backends.outbox.dir"
	Line int    // 0 when unknown
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s (line %d): %s", e.Path, e.Line, e.Msg)
	}
	return e.Path + ": " + e.Msg
}

// Validate checks everything that can be checked without connecting anywhere. The
// returned error joins one *FieldError per problem.
func (c *Config) Validate() error {
	var v validator
	c.validateListen(&v)
	c.validateKeys(&v)
	c.validateBackends(&v)
	c.validateRoutes(&v)
	if c.Limits.MaxMessageBytes <= 0 {
		v.add("limits.max_message_bytes", "must be positive")
	}
	c.validateLimits(&v)
	c.validateRedis(&v)
	if c.Idempotency.TTL < time.Minute {
		v.add("idempotency.ttl", "must be at least 1m (the published default is 24h)")
	}
	if c.Records.Retention < time.Minute {
		v.add("records.retention", "must be at least 1m (default 168h, 7 days)")
	}
	c.validateShim(&v, true)
	c.validateQueue(&v)
	c.validateWebhooks(&v)
	c.validateLog(&v)
	return v.err()
}

func (c *Config) validateQueue(v *validator) {
	q := c.Queue
	if q.Dir == "" && !c.Redis.Enabled() {
		v.add("queue.dir", "required without redis: the directory of the local queue (default ./spool)")
	}
	if q.MaxLifetime < time.Minute {
		v.add("queue.max_lifetime", "must be at least 1m (default 24h)")
	}
	if q.MaxSchedule < 0 {
		v.add("queue.max_schedule", "must not be negative (default 720h, 30 days; 0 refuses sendAt)")
	}
	if q.Workers < 1 || q.Workers > 1000 {
		v.add("queue.workers", "must be 1 to 1000 (default 16), not %d", q.Workers)
	}
	if q.MinBackoff < time.Second {
		v.add("queue.min_backoff", "must be at least 1s (default 1m)")
	}
	if q.MaxBackoff < q.MinBackoff {
		v.add("queue.max_backoff", "must be at least queue.min_backoff (%s)", q.MinBackoff)
	}
	if q.Lease < 5*time.Second {
		v.add("queue.lease", "must be at least 5s (default 30s): workers renew it every third of it")
	}
	if q.Retention < 0 {
		v.add("queue.retention", "must not be negative (0: records.retention)")
	}
}

// Retention is how long finished queued messages are kept: Queue.Retention, or
// Records.Retention when that is 0.
func (c *Config) Retention() time.Duration {
	if c.Queue.Retention > 0 {
		return c.Queue.Retention
	}
	return c.Records.Retention
}

func (c *Config) validateLog(v *validator) {
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.add("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "", "json", "text":
	default:
		v.add("log.format", "must be json or text, not %q", c.Log.Format)
	}
}

func (c *Config) validateListen(v *validator) {
	if c.Listen.HTTP == "" && c.Listen.GRPC == "" {
		v.add("listen", "at least one of http and grpc must be set")
	}
	for _, l := range []struct{ path, addr string }{{"listen.http", c.Listen.HTTP}, {"listen.grpc", c.Listen.GRPC}} {
		if l.addr == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(l.addr); err != nil || port == "" {
			v.add(l.path, "want host:port (e.g. 127.0.0.1:8080 or :8080), not %q", l.addr)
		} else if !validPort(port) {
			v.add(l.path, "%q: the port must be a number from 0 to 65535 (0: any free port)", l.addr)
		}
	}
	if t := c.Listen.TLS; t.Enabled() {
		if t.CertFile == "" || t.KeyFile == "" {
			v.add("listen.tls", "cert_file and key_file go together")
		} else if _, err := LoadKeyPair(t); err != nil {
			v.add("listen.tls", "%v", err)
		}
	}
	if c.Listen.ShutdownTimeout <= 0 {
		v.add("listen.shutdown_timeout", "must be a positive duration such as 30s")
	}
}

// validPort reports whether a listener's port is a number net.Listen takes; a service
// name would depend on the machine's /etc/services.
func validPort(port string) bool {
	_, err := strconv.ParseUint(port, 10, 16)
	return err == nil
}

func (c *Config) validateLimits(v *validator) {
	m := c.Limits.Mailbox
	if m.RecipientsPerMessage <= 0 {
		v.add("limits.mailbox.recipients_per_message", "must be positive")
	}
	if m.MessagesPerMinute < 0 {
		v.add("limits.mailbox.messages_per_minute", "must not be negative (0 turns the limit off)")
	}
	if m.RecipientsPerDay < 0 {
		v.add("limits.mailbox.recipients_per_day", "must not be negative (0 turns the limit off)")
	} else if m.RecipientsPerDay > 0 && m.RecipientsPerDay < m.RecipientsPerMessage {
		v.add("limits.mailbox.recipients_per_day", "%d is less than recipients_per_message (%d): a full message could never pass",
			m.RecipientsPerDay, m.RecipientsPerMessage)
	}
	if n, min := c.Limits.MaxInflightBytes, LargestRequest(c.Limits.MaxMessageBytes); n < 0 {
		v.add("limits.max_inflight_bytes", "must not be negative (0: four of the largest requests)")
	} else if n > 0 && n < min {
		v.add("limits.max_inflight_bytes", "%d is less than the largest request, %d bytes (2 × limits.max_message_bytes + 1 MiB): it could never be read", n, min)
	}
	if c.Limits.SendTimeout < time.Second {
		v.add("limits.send_timeout", "must be at least 1s")
	}
	for i, k := range c.Keys {
		if k.Limits.MessagesPerMinute < 0 {
			v.add(fmt.Sprintf("keys[%d].limits.messages_per_minute", i), "must not be negative (0: no limit of its own)")
		}
	}
}

func (c *Config) validateRedis(v *validator) {
	r := c.Redis
	switch {
	case r.URL != "" && len(r.Addrs) > 0:
		v.add("redis", "give url (one server) or addrs (Sentinel or Cluster), not both")
	case r.URL != "":
		if _, err := goredis.ParseURL(r.URL); err != nil {
			// The parser's error quotes the URL (or parts of it), and a URL may hold the
			// password: say what is wanted instead.
			v.add("redis.url", "%s is not a Redis URL: want redis://[user:password@]host:port/db, rediss://... for TLS, or unix:///path/to/socket", redactURL(r.URL))
		}
		if r.MasterName != "" || r.Username != "" || !r.Password.IsZero() || r.DB != 0 || r.TLS {
			v.add("redis", "with url, put credentials, database and TLS in the URL (master_name needs addrs)")
		}
		if u, err := url.Parse(r.URL); err == nil {
			for _, opt := range []string{"dial_timeout", "read_timeout", "write_timeout", "pool_timeout"} {
				if u.Query().Has(opt) {
					v.add("redis.url", "%s in the URL is replaced by redis.timeout, one bound for every Redis call: remove it, and set redis.timeout (default 2s)", opt)
				}
			}
		}
	case len(r.Addrs) > 0:
		for i, a := range r.Addrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				v.add(fmt.Sprintf("redis.addrs[%d]", i), "want host:port, not %q", a)
			}
		}
		if r.MasterName == "" && r.DB != 0 {
			v.add("redis.db", "a Cluster has only database 0")
		}
	case r.MasterName != "":
		v.add("redis.addrs", "master_name needs the Sentinel addresses in addrs")
	}
	if !r.SentinelPassword.IsZero() && r.MasterName == "" {
		v.add("redis.sentinel_password", "is for Sentinel: set master_name and the Sentinels in addrs")
	}
	if r.Timeout < 10*time.Millisecond || r.Timeout > time.Minute {
		v.add("redis.timeout", "must be between 10ms and 1m (default 2s): how long a Redis call may take before the request fails with UNAVAILABLE")
	}
	if r.CheckInterval < 100*time.Millisecond || r.CheckInterval > time.Hour {
		v.add("redis.check_interval", "must be between 100ms and 1h (default 5s): it bounds how long a Redis that lost its data goes unnoticed")
	}
}

// redactURL hides the password in a URL for an error message.
func redactURL(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		return scheme + "://[credentials]@" + rest[at+1:]
	}
	return s
}

var keyName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidKeyName reports whether name may name a key: it becomes an SMTP AUTH user name and
// a metrics label, so it is kept to letters, digits, '.', '_' and '-'.
func ValidKeyName(name string) bool { return keyName.MatchString(name) }

func (c *Config) validateKeys(v *validator) {
	if len(c.Keys) == 0 {
		v.add("keys", "at least one key is required (make one with `mailgate keys new NAME`)")
	}
	names := map[string]bool{}
	hashes := map[string]string{}
	for i, k := range c.Keys {
		p := fmt.Sprintf("keys[%d]", i)
		switch {
		case k.Name == "":
			v.add(p+".name", "required")
		case !ValidKeyName(k.Name):
			v.add(p+".name", "%q: use up to 64 letters, digits, '.', '_' or '-'", k.Name)
		case names[k.Name]:
			v.add(p+".name", "%q is used by another key", k.Name)
		}
		names[k.Name] = true
		if k.Hash.IsZero() {
			v.add(p+".hash", "required (the hash: line printed by `mailgate keys new`)")
		} else if _, err := apikey.ParseHash(k.Hash.Value()); err != nil {
			v.add(p+".hash", "%v", err)
		} else if other, dup := hashes[k.Hash.Value()]; dup {
			v.add(p+".hash", "same key as %s: give each client its own key", other)
		} else {
			hashes[k.Hash.Value()] = k.Name
		}
		if len(k.Senders) == 0 {
			v.add(p+".senders", "list the From addresses this key may use (address, *@domain or *)")
		}
		for j, s := range k.Senders {
			if _, err := mailaddr.ParsePattern(s); err != nil {
				v.add(fmt.Sprintf("%s.senders[%d]", p, j), "%v", err)
			}
		}
	}
}

var backendName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (c *Config) validateBackends(v *validator) {
	if len(c.Backends) == 0 {
		v.add("backends", "at least one backend is required")
	}
	for _, name := range sortedKeys(c.Backends) {
		p := "backends." + name
		if !backendName.MatchString(name) {
			v.add(p, "name: use up to 64 letters, digits, '.', '_' or '-'")
		}
		b := c.Backends[name]
		if b == nil || b.Settings == nil {
			continue // reported while parsing
		}
		for _, err := range unjoin(b.Settings.Validate()) {
			if fe, ok := errors.AsType[*senders.FieldError](err); ok {
				v.add(p+"."+fe.Field, "%v", fe.Err)
			} else {
				v.add(p, "%v", err)
			}
		}
	}
}

func (c *Config) validateRoutes(v *validator) {
	if len(c.Routes) == 0 {
		v.add("routes", "at least one route is required (e.g. {match: \"*\", backend: NAME})")
	}
	names := map[string]bool{}
	for i, r := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		if r.Match == "" {
			v.add(p+".match", "required: an address, *@domain or *")
		} else if _, err := mailaddr.ParsePattern(r.Match); err != nil {
			v.add(p+".match", "%v", err)
		}
		switch {
		case r.Backend != "" && len(r.Backends) > 0:
			v.add(p+".backends", "give backend or backends, not both")
		case r.Backend == "" && len(r.Backends) == 0:
			v.add(p+".backend", "required (or backends: [NAME, FALLBACK...])")
		}
		field := p + ".backend"
		seen := map[string]bool{}
		for j, name := range r.BackendNames() {
			if len(r.Backends) > 0 {
				field = fmt.Sprintf("%s.backends[%d]", p, j)
			}
			if seen[name] {
				v.add(field, "%q is listed twice", name)
				continue
			}
			seen[name] = true
			if b, ok := c.Backends[name]; !ok {
				v.add(field, "no backend named %q (have: %s)", name, strings.Join(sortedKeys(c.Backends), ", "))
			} else if b != nil && b.Settings != nil {
				for _, err := range b.Settings.CheckRoute(r.Match, r.Mailbox) {
					if fe, ok := errors.AsType[*senders.FieldError](err); ok {
						v.add(p+"."+fe.Field, "%v (backend %s)", fe.Err, name)
					} else {
						v.add(p, "%v (backend %s)", err, name)
					}
				}
			}
		}
		switch r.Delivery {
		case "", DeliverySync, DeliveryQueued:
		default:
			v.add(p+".delivery", "must be sync or queued, not %q", r.Delivery)
		}
		if r.Mailbox != "" {
			if _, err := mailaddr.ParsePattern(r.Mailbox); err != nil || strings.Contains(r.Mailbox, "*") {
				v.add(p+".mailbox", "want a mailbox address such as noreply@contoso.com, not %q", r.Mailbox)
			}
		}
		name := r.RouteName()
		if names[name] {
			v.add(p+".name", "%q names another route too", name)
		}
		names[name] = true
	}
}

// RouteName is the route's name, defaulting to its match pattern.
func (r Route) RouteName() string {
	if r.Name != "" {
		return r.Name
	}
	return r.Match
}

type validator struct {
	errs []error
}

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) err() error { return errors.Join(v.errs...) }
