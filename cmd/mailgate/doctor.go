package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/mailgate/mailgate/doctor"
	"github.com/mailgate/mailgate/internal/app"
)

const doctorUsage = `usage: mailgate doctor FILE [flags]

Checks each backend of FILE against the real endpoints, as Microsoft's own diagnostics
do, and (without --backend) its Redis: that it answers, persists its data and has not
lost it. Prints PASS, FAIL, WARN or SKIP for each check, with the fix for each failure.
Nothing is sent: SMTP checks end with RSET and QUIT, Graph is asked only for a token.
Exit status: 0 when no check failed, 1 when one failed (or FILE is invalid), 2 for a
usage mistake. Warnings and skipped checks do not fail the run: a skipped check could
not run (an earlier check failed, it needs a flag such as --mailbox, or there is
nothing to check), and its SKIP line says why. --json counts them in "skipped".

Flags:
`

// backendNames is the repeatable --backend flag.
type backendNames []string

func (l *backendNames) String() string { return strings.Join(*l, ",") }

func (l *backendNames) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func doctorCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("doctor", stderr)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	var backends backendNames
	fs.Var(&backends, "backend", "check only backend `NAME` (repeatable, or comma-separated)")
	timeout := fs.Duration("timeout", 15*time.Second, "limit for each network step (DNS lookup, connection, SMTP command, token request)")
	mailbox := fs.String("mailbox", "", "smtp_auth (xoauth2): sign in as `ADDRESS` instead of the mailboxes the routes name")
	from := fs.String("from", "", "relay, direct_send: MAIL FROM `ADDRESS` (default postmaster@<first accepted domain>)")
	rcpt := fs.String("rcpt", "", "direct_send: RCPT TO `ADDRESS` (default postmaster@<first accepted domain>); relay: also check RCPT TO this (external) address")
	rbac := fs.Bool("rbac", false, "graph: Mail.Send is granted with RBAC for Applications in Exchange, so the token carries no role to check")
	fs.Usage = func() {
		fmt.Fprint(stderr, doctorUsage)
		fs.PrintDefaults()
	}

	// FILE may come before or after the flags.
	var file string
	for {
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if file != "" {
			fmt.Fprintf(stderr, "doctor: unexpected argument %q\n", rest[0])
			return errUsage
		}
		file, args = rest[0], rest[1:]
	}
	if file == "" {
		fs.Usage()
		return errUsage
	}
	if *timeout <= 0 {
		fmt.Fprintln(stderr, "doctor: --timeout must be positive")
		return errUsage
	}

	cfg, err := loadConfig(file, stderr, "configuration check failed (see mailgate check-config)")
	if err != nil {
		return err
	}
	for _, name := range backends {
		if _, ok := cfg.Backends[name]; !ok {
			var have []string
			for n := range cfg.Backends {
				have = append(have, n)
			}
			slices.Sort(have)
			fmt.Fprintf(stderr, "doctor: no backend named %q in %s (have: %s)\n", name, file, strings.Join(have, ", "))
			return errUsage
		}
	}

	quietRedis()
	report := doctor.Run(ctx, cfg, app.DoctorCheckers(), doctor.Options{
		Backends:  backends,
		Timeout:   *timeout,
		Mailbox:   *mailbox,
		From:      *from,
		Rcpt:      *rcpt,
		GraphRBAC: *rbac,

		RedisClient: app.NewRedisClient,
	})
	if *asJSON {
		err = report.WriteJSON(stdout)
	} else {
		err = report.WriteText(stdout)
	}
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("doctor: interrupted: %w", err)
	}
	if n := report.Failed(); n > 0 {
		if n == 1 {
			return errors.New("doctor: 1 check failed")
		}
		return fmt.Errorf("doctor: %d checks failed", n)
	}
	return nil
}
