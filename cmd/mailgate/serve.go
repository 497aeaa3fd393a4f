package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/config/secret"
	"github.com/mailgate/mailgate/internal/app"
	"github.com/mailgate/mailgate/server/apikey"
	"github.com/mailgate/mailgate/shim"
)

// devKeyName is the name of the development key of `serve` without --config.
const devKeyName = "dev"

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	path := fs.String("config", "", "configuration `FILE` (default: the embedded default)")
	flagValues := map[string]*string{}
	embedded := app.Default()
	for _, o := range listenOverrides {
		flagValues[o.flag] = fs.String(o.flag, "", fmt.Sprintf("embedded default only: %s at `ADDR` instead of %s, or off (default: $%s)", o.what, *o.field(embedded), o.env))
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "serve: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	given := map[string]string{}
	fs.Visit(func(f *flag.Flag) {
		if p, ok := flagValues[f.Name]; ok {
			given[f.Name] = *p
		}
	})

	var cfg *config.Config
	var devKey string
	var overridden []listenOverride
	if *path != "" {
		for _, o := range listenOverrides {
			if _, ok := given[o.flag]; ok {
				fmt.Fprintf(stderr, "serve: --%s is for the embedded default; with --config, set %s in %s (it may say ${%s})\n", o.flag, o.path, *path, o.env)
				return errUsage
			}
		}
		var err error
		if cfg, err = app.Load(*path); err != nil {
			return fmt.Errorf("%s:\n%w", *path, err)
		}
	} else {
		cfg = app.Default()
		overridden = applyListenOverrides(cfg, given, os.Getenv)
		var hash string
		devKey, hash = developmentKey()
		cfg.Keys = []config.Key{{Name: devKeyName, Hash: secret.New(hash), Senders: []string{"*"}}}
		if err := cfg.Validate(); err != nil {
			if len(overridden) == 0 {
				return fmt.Errorf("embedded default: %w", err)
			}
			for _, line := range overrideErrors(err, overridden) {
				fmt.Fprintln(stderr, "serve: "+line)
			}
			return errUsage
		}
	}

	log := newLogger(cfg.Log, stderr)
	defer ignoreSIGHUP(log)()
	if *path != "" {
		for _, o := range listenOverrides {
			if os.Getenv(o.env) != "" {
				log.Warn(o.env+" is ignored with --config: it changes the embedded default only; set "+o.path+" in the file (it may say ${"+o.env+"})", "config", *path)
			}
		}
	}
	for _, o := range overridden {
		if addr := *o.field(cfg); addr != "" && !loopbackOnly(addr) {
			log.Warn("the embedded default is for trying mailgate out: its development key may send as any address, and "+o.from+" opens it beyond this host",
				o.path, addr)
		}
	}
	// go-redis logs through a package-level logger of its own; send it to ours, so that
	// a JSON log stays JSON.
	redis.SetLogger(redisLogger{log.With("component", "redis")})
	srv, err := app.NewServer(cfg, log)
	if err != nil {
		return err
	}
	var httpLn, grpcLn net.Listener
	listenErr := func(setting string, err error) error {
		if *path != "" {
			return err
		}
		return embeddedListenError(setting, err, overridden)
	}
	if cfg.Listen.HTTP != "" {
		if httpLn, err = net.Listen("tcp", cfg.Listen.HTTP); err != nil {
			return listenErr("listen.http", fmt.Errorf("listen.http: %w", err))
		}
	}
	if cfg.Listen.GRPC != "" {
		if grpcLn, err = net.Listen("tcp", cfg.Listen.GRPC); err != nil {
			return listenErr("listen.grpc", fmt.Errorf("listen.grpc: %w", err))
		}
	}
	attrs := []any{"version", version}
	if cfg.Shim.Enabled() {
		a, err := newShim(cfg, srv.Local(), localDevices(cfg), shim.NewMetrics(srv.Registerer()), log)
		if err != nil {
			return listenErr("shim.listen", err)
		}
		srv.Attach(a)
		attrs = append(attrs, a.Addrs()...)
	}
	if httpLn != nil {
		attrs = append(attrs, "http", httpLn.Addr().String())
	}
	if grpcLn != nil {
		attrs = append(attrs, "grpc", grpcLn.Addr().String())
	}
	if *path == "" {
		attrs = append(attrs, "config", "embedded default", "outbox", "./outbox")
	} else {
		attrs = append(attrs, "config", *path)
	}
	log.Info("mailgate listening", attrs...)
	if devKey != "" {
		// The one place a key is ever printed: the development key of the embedded
		// default, on the terminal of the person trying mailgate out.
		fmt.Fprintf(stderr, "\n  development API key (this run only; set MAILGATE_DEV_KEY to fix it):\n  %s\n\n", devKey)
	}
	if err := srv.Serve(ctx, httpLn, grpcLn); err != nil {
		return err
	}
	log.Info("mailgate stopped")
	return nil
}

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, fmt.Sprintf(format, v...))
}

// developmentKey returns the key of the embedded default and its hash. The key is
// returned only when it was generated here and must be shown to the user.
func developmentKey() (shown, hash string) {
	if k := os.Getenv("MAILGATE_DEV_KEY"); k != "" {
		return "", apikey.Hash(k)
	}
	return apikey.Generate()
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level)) // validated
	opts := &slog.HandlerOptions{Level: level}
	format := c.Format
	if format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// listenOverride is a listener of the embedded default that a flag of `mailgate serve`
// or the environment may move, so that trying mailgate out needs no file when a port is
// taken.
type listenOverride struct {
	flag, env  string // listen-http, MAILGATE_LISTEN_HTTP
	path, what string // the configuration setting it replaces, and what listens there
	field      func(*config.Config) *string
	// from names where the value came from, once applied: "--listen-http" or
	// "MAILGATE_LISTEN_HTTP".
	from string
}

var listenOverrides = []listenOverride{
	{flag: "listen-http", env: "MAILGATE_LISTEN_HTTP", path: "listen.http", what: "REST, /healthz and /metrics",
		field: func(c *config.Config) *string { return &c.Listen.HTTP }},
	{flag: "listen-grpc", env: "MAILGATE_LISTEN_GRPC", path: "listen.grpc", what: "gRPC",
		field: func(c *config.Config) *string { return &c.Listen.GRPC }},
	{flag: "listen-smtp", env: "MAILGATE_LISTEN_SMTP", path: "shim.listen", what: "the SMTP shim",
		field: func(c *config.Config) *string { return &c.Shim.Listen }},
}

// applyListenOverrides sets the listeners of cfg (the embedded default) from the flags
// given (by name) and else the environment; "off" turns a listener off. It returns the
// ones it set.
func applyListenOverrides(cfg *config.Config, given map[string]string, getenv func(string) string) []listenOverride {
	var out []listenOverride
	for _, o := range listenOverrides {
		v, ok := given[o.flag]
		o.from = "--" + o.flag
		if !ok {
			if v = getenv(o.env); v == "" {
				continue
			}
			o.from = o.env
		}
		if v == "off" {
			v = ""
		}
		*o.field(cfg) = v
		out = append(out, o)
	}
	return out
}

// overrideErrors words the validation errors of the embedded default for the flags and
// variables that caused them: `--listen-http (listen.http): want host:port …`.
func overrideErrors(err error, overridden []listenOverride) []string {
	var lines []string
	for _, e := range flatten(err) {
		var fe *config.FieldError
		if !errors.As(e, &fe) {
			lines = append(lines, e.Error())
			continue
		}
		var from []string
		for _, o := range overridden {
			if o.path == fe.Path || fe.Path == "listen" && strings.HasPrefix(o.path, "listen.") {
				from = append(from, o.from)
			}
		}
		if len(from) == 0 {
			lines = append(lines, "embedded default: "+fe.Error())
			continue
		}
		lines = append(lines, fmt.Sprintf("%s (%s): %s", strings.Join(from, " and "), fe.Path, fe.Msg))
	}
	return lines
}

// loopbackOnly reports whether a listener address is reachable from this host only.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// embeddedListenError says, for a listener of the embedded default that cannot be
// opened (a port in use), what set its address, or how to move it.
func embeddedListenError(setting string, err error, overridden []listenOverride) error {
	for _, o := range overridden {
		if o.path == setting {
			return fmt.Errorf("%w (set with %s)", err, o.from)
		}
	}
	for _, o := range listenOverrides {
		if o.path == setting {
			return fmt.Errorf("%w (the embedded default's %s: give another address with --%s or %s, or off)", err, setting, o.flag, o.env)
		}
	}
	return err
}
