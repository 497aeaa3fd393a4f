package config

import (
	"crypto/tls"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// NewClient returns a client of the configured Redis: a standalone server (url), a
// Sentinel group (addrs with master_name) or a Cluster (addrs). It does not connect yet.
// Commands are never retried by the client: a retried script could take a budget twice;
// the caller's own retry is safe instead. Every step of a call is bounded by Timeout,
// and by the caller's context deadline when that is sooner.
func (r Redis) NewClient() (goredis.UniversalClient, error) {
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
		Password:         r.Password.Value(),
		SentinelPassword: r.SentinelPassword.Value(),
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
