package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/config/secret"
	"github.com/mailgate/mailgate/server"
	"github.com/mailgate/mailgate/server/apikey"
	"github.com/mailgate/mailgate/shim"
)

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	path := fs.String("config", "", "configuration `FILE` (default: the embedded default)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "serve: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}

	var cfg *config.Config
	var devKey string
	if *path != "" {
		var err error
		if cfg, err = config.Load(*path); err != nil {
			return fmt.Errorf("%s:\n%w", *path, err)
		}
	} else {
		cfg = config.Default()
		var hash string
		devKey, hash = developmentKey()
		cfg.Keys = []config.Key{{Name: "dev", Hash: secret.New(hash), Senders: []string{"*"}}}
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("embedded default: %w", err)
		}
	}

	log := newLogger(cfg.Log, stderr)
	defer ignoreSIGHUP(log)()
	// go-redis logs through a package-level logger of its own; send it to ours, so that
	// a JSON log stays JSON.
	redis.SetLogger(redisLogger{log.With("component", "redis")})
	srv, err := server.NewFromConfig(cfg, log)
	if err != nil {
		return err
	}
	var httpLn, grpcLn net.Listener
	if cfg.Listen.HTTP != "" {
		if httpLn, err = net.Listen("tcp", cfg.Listen.HTTP); err != nil {
			return fmt.Errorf("listen.http: %w", err)
		}
	}
	if cfg.Listen.GRPC != "" {
		if grpcLn, err = net.Listen("tcp", cfg.Listen.GRPC); err != nil {
			return fmt.Errorf("listen.grpc: %w", err)
		}
	}
	attrs := []any{"version", version}
	if cfg.Shim.Enabled() {
		a, err := newShim(cfg, shim.InProcess(srv.Local()), localDevices(cfg), shim.NewMetrics(srv.Registerer()), log)
		if err != nil {
			return err
		}
		srv.Attach(a)
		attrs = append(attrs, a.addrs()...)
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
