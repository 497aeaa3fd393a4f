package store

import (
	"crypto/tls"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// RedisOptions say which Redis to use and how long a call may take (the redis section of
// the configuration).
type RedisOptions struct {
	// URL is a standalone server: redis://, rediss:// or unix://.
	URL string
	// Addrs are Sentinel addresses (with MasterName) or Cluster seed nodes (without).
	Addrs            []string
	MasterName       string
	Username         string
	Password         string
	SentinelPassword string
	DB               int
	// TLS, for Addrs.
	TLS bool
	// Timeout bounds every step of a call; 0: 2 s.
	Timeout time.Duration
}

// NewRedisClient returns a client of the configured Redis: a standalone server (url), a
// Sentinel group (addrs with master_name) or a Cluster (addrs). It does not connect yet.
// Commands are never retried by the client: a retried script could take a budget twice;
// the caller's own retry is safe instead. Every step of a call is bounded by Timeout,
// and by the caller's context deadline when that is sooner.
func NewRedisClient(r RedisOptions) (goredis.UniversalClient, error) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	if r.URL != "" {
		opts, err := goredis.ParseURL(r.URL)
		if err != nil {
			return nil, err
		}
		opts.MaxRetries = -1
		opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = timeout, timeout, timeout, timeout
		opts.ContextTimeoutEnabled = true
		return goredis.NewClient(opts), nil
	}
	opts := &goredis.UniversalOptions{
		Addrs:            r.Addrs,
		MasterName:       r.MasterName,
		Username:         r.Username,
		Password:         r.Password,
		SentinelPassword: r.SentinelPassword,
		DB:               r.DB,
		// Addrs without master_name are a Cluster even with one seed node (go-redis
		// would otherwise take a single address for a standalone server).
		IsClusterMode:         r.MasterName == "",
		MaxRetries:            -1,
		DialTimeout:           timeout,
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		PoolTimeout:           timeout,
		ContextTimeoutEnabled: true,
	}
	if r.TLS {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return goredis.NewUniversalClient(opts), nil
}
