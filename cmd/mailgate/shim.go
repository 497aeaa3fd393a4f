package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/internal/app"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/shim"
)

// shimAdapter serves the SMTP shim on its listeners: attached to `mailgate serve`, or
// alone in `mailgate shim`.
type shimAdapter struct {
	srv             *shim.Server
	plain, implicit net.Listener
}

// newShim opens the shim's listeners and builds it over sub.
func newShim(cfg *config.Config, sub shim.Submitter, devices []shim.Device, metrics *shim.Metrics, log *slog.Logger) (*shimAdapter, error) {
	c := cfg.Shim
	hostname := c.Hostname
	if hostname == "" {
		hostname, _ = os.Hostname()
	}
	tlsCfg := &tls.Config{MinVersion: c.TLSVersion()}
	if c.TLS.Enabled() {
		cert, err := config.LoadKeyPair(c.TLS)
		if err != nil {
			return nil, fmt.Errorf("shim.tls: %w", err)
		}
		tlsCfg.Certificates = []tls.Certificate{cert}
	} else {
		certs, err := shim.SelfSigned(hostname)
		if err != nil {
			return nil, err
		}
		tlsCfg.Certificates = certs
		log.Warn("shim: no certificate configured (shim.tls); STARTTLS uses a self-signed one", "hostname", hostname)
	}
	if c.TLSVersion() < tls.VersionTLS12 {
		// Devices that old often know only RSA key exchange (some, such as Windows XP's,
		// only with 3DES), which Go leaves out of its defaults since 1.22: offer every
		// suite crypto/tls implements but RC4. Go still prefers the strong ones, so
		// newer clients are not weakened.
		for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
			if !strings.Contains(cs.Name, "RC4") {
				tlsCfg.CipherSuites = append(tlsCfg.CipherSuites, cs.ID)
			}
		}
		log.Warn("shim: TLS versions below 1.2 accepted (shim.min_tls); keep the shim on a trusted network", "min_tls", c.MinTLS)
	}
	maxBytes := c.MaxMessageBytes
	if maxBytes == 0 {
		maxBytes = cfg.Limits.MaxMessageBytes
	}
	a := &shimAdapter{srv: shim.New(shim.Options{
		Submitter:                 sub,
		TLS:                       tlsCfg,
		AllowInsecureAuth:         c.AllowInsecureAuth,
		Hostname:                  hostname,
		MaxMessageBytes:           maxBytes,
		MaxRecipients:             cfg.Limits.Mailbox.RecipientsPerMessage,
		MaxConnections:            c.MaxConnections,
		MaxConnectionsPerSource:   c.MaxConnectionsPerSource,
		ReservedDeviceConnections: c.ReservedDeviceConnections,
		AuthTimeout:               c.AuthTimeout,
		ReadTimeout:               c.ReadTimeout,
		WriteTimeout:              c.WriteTimeout,
		SubmitTimeout:             cfg.Limits.SendTimeout + 30*time.Second,
		Devices:                   devices,
		Metrics:                   metrics,
		Logger:                    log.With("component", "shim"),
	})}
	var err error
	if c.Listen != "" {
		if a.plain, err = net.Listen("tcp", c.Listen); err != nil {
			return nil, fmt.Errorf("shim.listen: %w", err)
		}
	}
	if c.ImplicitTLSListen != "" {
		if a.implicit, err = net.Listen("tcp", c.ImplicitTLSListen); err != nil {
			if a.plain != nil {
				a.plain.Close()
			}
			return nil, fmt.Errorf("shim.implicit_tls_listen: %w", err)
		}
	}
	return a, nil
}

// addrs are the listeners' addresses, for the start-up log line.
func (a *shimAdapter) addrs() []any {
	var attrs []any
	if a.plain != nil {
		attrs = append(attrs, "smtp", a.plain.Addr().String())
	}
	if a.implicit != nil {
		attrs = append(attrs, "smtps", a.implicit.Addr().String())
	}
	return attrs
}

func (a *shimAdapter) Serve() error {
	errc := make(chan error, 2)
	n := 0
	for _, l := range []struct {
		ln       net.Listener
		implicit bool
	}{{a.plain, false}, {a.implicit, true}} {
		if l.ln == nil {
			continue
		}
		n++
		go func() { errc <- a.srv.Serve(l.ln, l.implicit) }()
	}
	var errs []error
	for range n {
		errs = append(errs, <-errc)
	}
	return errors.Join(errs...)
}

func (a *shimAdapter) Shutdown(ctx context.Context) error { return a.srv.Shutdown(ctx) }

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
	log.Info("mailgate shim listening", append(a.addrs(), "upstream", u.GRPC, "version", version)...)
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
