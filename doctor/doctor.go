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
package doctor

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/mailaddr"
	"github.com/mailgate/mailgate/senders/discard"
	"github.com/mailgate/mailgate/senders/file"
	"github.com/mailgate/mailgate/senders/graph"
	"github.com/mailgate/mailgate/senders/smtp"
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

	// mxPort replaces port 25 for the MX hosts of a bare-domain address (tests).
	mxPort string
}

func (o Options) timeout() time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return 15 * time.Second
}

// Run checks the backends of cfg and, in a full run (no opts.Backends), its Redis, all at
// once, and returns when every check has ended (or ctx is done). cfg should have been
// validated (config.Load does).
func Run(ctx context.Context, cfg *config.Config, opts Options) Report {
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
			d := &doctor{cfg: cfg, opts: opts, b: &backendRun{name: name}}
			d.run(ctx)
			results[i] = d.b.checks
		})
	}
	// The shared store is checked with a full run, not when only some backends are.
	var store []Check
	if len(opts.Backends) == 0 && cfg.Redis.Enabled() {
		wg.Go(func() {
			d := &doctor{cfg: cfg, opts: opts, b: &backendRun{typ: redisSection}}
			d.redis(ctx)
			store = d.b.checks
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

// backendRun collects the checks of one backend.
type backendRun struct {
	name, typ string
	checks    []Check
}

func (b *backendRun) add(name string, st Status, detail, fix string) {
	if st != Fail {
		fix = ""
	}
	b.checks = append(b.checks, Check{Backend: b.name, Type: b.typ, Name: name, Status: st, Detail: detail, Fix: fix})
}

func (b *backendRun) pass(name, detail string)      { b.add(name, Pass, detail, "") }
func (b *backendRun) fail(name, detail, fix string) { b.add(name, Fail, detail, fix) }
func (b *backendRun) skip(name, detail string)      { b.add(name, Skip, detail, "") }
func (b *backendRun) warn(name, detail string)      { b.add(name, Warn, detail, "") }

// doctor checks one backend.
type doctor struct {
	cfg  *config.Config
	opts Options
	b    *backendRun
}

func (d *doctor) run(ctx context.Context) {
	be, ok := d.cfg.Backends[d.b.name]
	if !ok || be == nil {
		d.b.fail("backend", "no backend of this name in the configuration", "check the name given to --backend")
		return
	}
	d.b.typ = be.Type
	switch s := be.Settings.(type) {
	case *smtp.AuthConfig:
		d.smtpAuth(ctx, s)
	case *smtp.RelayConfig:
		d.relay(ctx, s)
	case *smtp.DirectSendConfig:
		d.directSend(ctx, s)
	case *graph.Config:
		d.graph(ctx, s)
	case *file.Config:
		d.file(s)
	case *discard.Config:
		d.b.pass("discard", "accepts and drops every message: nothing to check")
	default:
		d.b.skip("backend", "the doctor has no checks for type "+be.Type)
	}
}

// routeMailboxes are the mailboxes the routes to the backend sign in as: each route's
// mailbox, or its match when that is one address. Routes for a whole domain send as
// each From address, which the doctor cannot guess.
func (d *doctor) routeMailboxes() []string {
	var out []string
	for _, r := range d.cfg.Routes {
		if r.Backend != d.b.name {
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
