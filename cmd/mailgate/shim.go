package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/internal/app"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/server"
	"github.com/mailgate/mailgate/shim"
)

// The shim in the same process submits to the server's Local, and is served as one of
// the server's adapters; neither package imports the other.
var (
	_ shim.Submitter = (*server.Local)(nil)
	_ server.Adapter = (*shim.Server)(nil)
)

// newShim opens the shim's listeners, as cfg's shim section says, and builds it over sub:
// attached to `mailgate serve`, or alone in `mailgate shim`.
func newShim(cfg *config.Config, sub shim.Submitter, devices []shim.Device, metrics *shim.Metrics, log *slog.Logger) (*shim.Server, error) {
	c := cfg.Shim
	lc := shim.ListenConfig{Plain: c.Listen, Implicit: c.ImplicitTLSListen, MinVersion: c.TLSVersion()}
	if c.TLS.Enabled() {
		cert, err := config.LoadKeyPair(c.TLS)
		if err != nil {
			return nil, fmt.Errorf("shim.tls: %w", err)
		}
		lc.Certificates = []tls.Certificate{cert}
	}
	maxBytes := c.MaxMessageBytes
	if maxBytes == 0 {
		maxBytes = cfg.Limits.MaxMessageBytes
	}
	return shim.Listen(lc, shim.Options{
		Submitter:                 sub,
		AllowInsecureAuth:         c.AllowInsecureAuth,
		Hostname:                  c.Hostname,
		MaxMessageBytes:           maxBytes,
		MaxRecipients:             cfg.Limits.Mailbox.RecipientsPerMessage,
		MaxConnections:            c.MaxConnections,
		MaxConnectionsPerSource:   c.MaxConnectionsPerSource,
		ReservedDeviceConnections: c.ReservedDeviceConnections,
		AuthTimeout:               c.AuthTimeout,
		ReadTimeout:               c.ReadTimeout,
		WriteTimeout:              c.WriteTimeout,
		SubmitTimeout:             cfg.Limits.SendTimeout + 30*time.Second,
		Queued:                    c.Delivery == config.DeliveryQueued,
		Devices:                   devices,
		Metrics:                   metrics,
		Logger:                    log.With("component", "shim"),
	})
}

// localDevices maps the configured devices to the keys they send as, in process.
func localDevices(cfg *config.Config) []shim.Device {
	var out []shim.Device
	for _, d := range cfg.Shim.Devices {
		out = append(out, shim.Device{Prefix: d.Prefix(), Principal: shim.Principal{Name: d.Key}})
	}
	return out
}

// shimCommand runs a separate shim that sends to a remote mailgate over gRPC.
func shimCommand(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("shim", stderr)
	path := fs.String("config", "", "configuration `FILE` with a shim section and its upstream (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: mailgate shim --config FILE")
		return errUsage
	}
	b, err := os.ReadFile(*path)
	if err != nil {
		return err
	}
	cfg, err := app.Parse(b, *path)
	if err == nil {
		err = cfg.ValidateShim()
	}
	if err != nil {
		return fmt.Errorf("%s:\n%w", *path, err)
	}
	log := newLogger(cfg.Log, stderr)
	defer ignoreSIGHUP(log)()
	u := cfg.Shim.Upstream
	creds := insecure.NewCredentials()
	if u.TLS {
		roots, err := senders.RootCAs(u.CAFile)
		if err != nil {
			return fmt.Errorf("shim.upstream.ca_file: %w", err)
		}
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots})
	}
	cc, err := grpc.NewClient(u.GRPC, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(int(2*cfg.Limits.MaxMessageBytes+1<<20))))
	if err != nil {
		return fmt.Errorf("shim.upstream.grpc: %w", err)
	}
	defer cc.Close()
	var devices []shim.Device
	for _, d := range cfg.Shim.Devices {
		devices = append(devices, shim.Device{Prefix: d.Prefix(), Principal: shim.Principal{Name: u.KeyName, Secret: u.APIKey.Value()}})
	}
	a, err := newShim(cfg, shim.NewRemote(cc), devices, nil, log)
	if err != nil {
		return err
	}
	log.Info("mailgate shim listening", append(a.Addrs(), "upstream", u.GRPC, "version", version)...)
	errc := make(chan error, 1)
	go func() { errc <- a.Serve() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("draining")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Listen.ShutdownTimeout)
	defer cancel()
	err = a.Shutdown(sctx)
	<-errc
	log.Info("mailgate shim stopped")
	return err
}
