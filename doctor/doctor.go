// Package doctor checks, for each backend of a configuration, that its setup works
// against the real endpoints, the way Microsoft's own connectivity diagnostics do: DNS,
// the TCP connection, the SMTP greeting and EHLO, STARTTLS, the TLS version and the
// server's certificate, the AUTH mechanisms, an Entra ID token and an AUTH with it, the
// relay's client certificate and the inbound connector's answer, Direct Send's answer,
// Graph's token and its roles, the file backend's directory.
//
// Nothing is ever sent: an SMTP check ends with RSET and QUIT at the latest after
// RCPT TO, and Graph is asked for nothing but a token. Each failed check carries the
// fix, in the words of docs/microsoft365-smtp.md and docs/microsoft365-graph.md.
//
// This package runs the checks and reports them, and checks the shared Redis; the
// checks of each kind of backend are in a package below it (smtpcheck, graphcheck,
// filecheck), which the program hands to Run by backend type.
package doctor

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/mailaddr"
	"github.com/mailgate/mailgate/senders"
)

// Status is the outcome of one check.
type Status string

const (
	Pass Status = "PASS"
	Fail Status = "FAIL"
	// Skip: the check could not run (an earlier one failed, or nothing to check). It
	// does not count as a failure.
	Skip Status = "SKIP"
	// Warn: it works, but not safely (a Redis without persistence). It does not count as
	// a failure.
	Warn Status = "WARN"
)

// Check is the outcome of one check of one backend.
type Check struct {
	// Backend is the backend's name; empty for the checks of Redis (Type "redis").
	Backend string `json:"backend,omitempty"`
	Type    string `json:"type"`
	Name    string `json:"name"`
	Status  Status `json:"status"`
	// Detail says what was found: "TLS 1.3 (TLS_AES_128_GCM_SHA256)", a server's reply.
	Detail string `json:"detail,omitempty"`
	// Fix is what an operator must change, for a failed check.
	Fix string `json:"fix,omitempty"`
}

// OK reports whether the check did not fail.
func (c Check) OK() bool { return c.Status != Fail }

// Report is every check of every backend, grouped by backend (in name order), each
// backend's checks in the order they ran.
type Report struct {
	Checks []Check `json:"checks"`
}

// OK reports whether no check failed: `mailgate doctor` exits 0 only then.
func (r Report) OK() bool { return r.Failed() == 0 }

// Failed is the number of failed checks.
func (r Report) Failed() int { return r.count(Fail) }

// Skipped is the number of checks that could not run.
func (r Report) Skipped() int { return r.count(Skip) }

func (r Report) count(st Status) int {
	n := 0
	for _, c := range r.Checks {
		if c.Status == st {
			n++
		}
	}
	return n
}

// Options tune a run. The zero value checks every backend with a 15-second limit on
// each network step.
type Options struct {
	// Backends limits the run to these backends; empty: all of them.
	Backends []string
	// Timeout bounds each network step (a DNS lookup, the TCP connection, one SMTP
	// command, a token request); 0 means 15 seconds.
	Timeout time.Duration
	// Mailbox is the mailbox an smtp_auth backend with auth: xoauth2 signs in as for
	// the AUTH check, instead of the mailboxes its routes name.
	Mailbox string
	// From is the MAIL FROM of the relay and direct_send checks; default
	// postmaster@<the backend's first accepted domain>.
	From string
	// Rcpt is the RCPT TO of the direct_send check; default postmaster@<the backend's
	// first accepted domain>.
	Rcpt string
	// GraphRBAC says that Graph's Mail.Send is granted with RBAC for Applications in
	// Exchange Online rather than in Entra ID. The token then carries no role, so the
	// check of its roles is skipped.
	GraphRBAC bool
	// RedisClient makes a client of the configured Redis, for the checks of the shared
	// store (app.NewRedisClient); without it they fail, saying so.
	RedisClient func(config.Redis) (goredis.UniversalClient, error)

	// MXPort replaces port 25 for the MX hosts of a bare-domain address: for tests,
	// which cannot listen on 25.
	MXPort string
}

func (o Options) timeout() time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return 15 * time.Second
}

// Checker runs the checks of one type of backend. A backend package's checks live in a
// package of their own below doctor (smtpcheck, graphcheck, filecheck), so that the
// doctor itself knows no backend; the program lists them by type (package app).
type Checker func(ctx context.Context, b *Backend)

// Checkers are the Checkers by backend type.
type Checkers map[string]Checker

// For makes a Checker of a check of the backend's own settings type.
func For[C senders.Config](check func(ctx context.Context, b *Backend, c C)) Checker {
	return func(ctx context.Context, b *Backend) {
		c, ok := b.Settings.(C)
		if !ok {
			b.Skip("backend", fmt.Sprintf("the doctor's checks for type %s are for %T settings, not %T", b.Type, c, b.Settings))
			return
		}
		check(ctx, b, c)
	}
}

// Run checks the backends of cfg with the checkers of their types and, in a full run (no
// opts.Backends), its Redis, all at once, and returns when every check has ended (or ctx
// is done). cfg should have been validated (config.Load does).
func Run(ctx context.Context, cfg *config.Config, checkers Checkers, opts Options) Report {
	names := opts.Backends
	if len(names) == 0 {
		for name := range cfg.Backends {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)

	results := make([][]Check, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			b := &Backend{Name: name, Config: cfg, Options: opts}
			b.run(ctx, checkers)
			results[i] = b.checks
		})
	}
	// The shared store is checked with a full run, not when only some backends are.
	var store []Check
	if len(opts.Backends) == 0 && cfg.Redis.Enabled() {
		wg.Go(func() {
			b := &Backend{Type: redisSection, Config: cfg, Options: opts}
			b.redis(ctx)
			store = b.checks
		})
	}
	wg.Wait()
	var r Report
	for _, cs := range results {
		r.Checks = append(r.Checks, cs...)
	}
	r.Checks = append(r.Checks, store...)
	return r
}

// Backend is one backend under check: its settings, and where its checks are recorded,
// in the order they ran.
type Backend struct {
	// Name is the backend's name in the configuration; Type its type.
	Name, Type string
	Settings   senders.Config
	// Config is the whole configuration (its routes to the backend, its limits).
	Config  *config.Config
	Options Options
	checks  []Check
}

// Checks are the checks recorded so far.
func (b *Backend) Checks() []Check { return b.checks }

// Add records a check. fix is kept for a failed check only.
func (b *Backend) Add(name string, st Status, detail, fix string) {
	if st != Fail {
		fix = ""
	}
	b.checks = append(b.checks, Check{Backend: b.Name, Type: b.Type, Name: name, Status: st, Detail: detail, Fix: fix})
}

// Pass, Fail, Skip and Warn record a check with that status.
func (b *Backend) Pass(name, detail string)      { b.Add(name, Pass, detail, "") }
func (b *Backend) Fail(name, detail, fix string) { b.Add(name, Fail, detail, fix) }
func (b *Backend) Skip(name, detail string)      { b.Add(name, Skip, detail, "") }
func (b *Backend) Warn(name, detail string)      { b.Add(name, Warn, detail, "") }

// Timeout bounds each network step (Options.Timeout, default 15 s).
func (b *Backend) Timeout() time.Duration { return b.Options.timeout() }

func (b *Backend) run(ctx context.Context, checkers Checkers) {
	be, ok := b.Config.Backends[b.Name]
	if !ok || be == nil {
		b.Fail("backend", "no backend of this name in the configuration", "check the name given to --backend")
		return
	}
	b.Type, b.Settings = be.Type, be.Settings
	check, ok := checkers[be.Type]
	if !ok {
		b.Skip("backend", "the doctor has no checks for type "+be.Type)
		return
	}
	check(ctx, b)
}

// RouteMailboxes are the mailboxes the routes to the backend sign in as: each route's
// mailbox, or its match when that is one address. Routes for a whole domain send as
// each From address, which the doctor cannot guess.
func (b *Backend) RouteMailboxes() []string {
	var out []string
	for _, r := range b.Config.Routes {
		if !slices.Contains(r.BackendNames(), b.Name) {
			continue
		}
		mb := r.Mailbox
		if mb == "" && r.Match != "*" && !strings.HasPrefix(r.Match, "*@") {
			mb = r.Match
		}
		if mb != "" && !slices.ContainsFunc(out, func(s string) bool { return mailaddr.Equal(s, mb) }) {
			out = append(out, mb)
		}
	}
	return slices.SortedFunc(slices.Values(out), func(a, b string) int { return cmp.Compare(mailaddr.Key(a), mailaddr.Key(b)) })
}
