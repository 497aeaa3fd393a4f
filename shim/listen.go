package shim

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
)

// ListenConfig is where a shim listens and with which certificates; Listen opens it.
type ListenConfig struct {
	// Plain is the address of the SMTP listener, with STARTTLS; empty: none.
	Plain string
	// Implicit is the address of the listener with TLS from the first byte (port 465
	// style); empty: none.
	Implicit string
	// Certificates serve STARTTLS and implicit TLS; none: a self-signed certificate
	// for the hostname, made now.
	Certificates []tls.Certificate
	// MinVersion is the oldest TLS version accepted; 0: TLS 1.2.
	MinVersion uint16
}

// listener is one of the listeners Listen opened.
type listener struct {
	ln          net.Listener
	implicitTLS bool
	name        string // smtp, smtps: its key in the start-up log line
}

// Listen opens lc's listeners and returns a shim over them, for Serve. It sets
// opts.TLS from lc, and opts.Hostname, when empty, to the machine's name.
func Listen(lc ListenConfig, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Hostname == "" {
		opts.Hostname, _ = os.Hostname()
	}
	tlsCfg, err := tlsPolicy(lc, opts.Hostname, opts.Logger)
	if err != nil {
		return nil, err
	}
	opts.TLS = tlsCfg
	s := New(opts)
	for _, l := range []struct {
		addr, setting string
		implicitTLS   bool
		name          string
	}{
		{lc.Plain, "shim.listen", false, "smtp"},
		{lc.Implicit, "shim.implicit_tls_listen", true, "smtps"},
	} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("%s: %w", l.setting, err)
		}
		s.listeners = append(s.listeners, listener{ln: ln, implicitTLS: l.implicitTLS, name: l.name})
	}
	return s, nil
}

// tlsPolicy is the shim's TLS configuration: lc's certificates or a self-signed one, and
// below TLS 1.2 the cipher suites of old devices.
func tlsPolicy(lc ListenConfig, hostname string, log *slog.Logger) (*tls.Config, error) {
	minVersion := lc.MinVersion
	if minVersion == 0 {
		minVersion = tls.VersionTLS12
	}
	cfg := &tls.Config{MinVersion: minVersion, Certificates: lc.Certificates}
	if len(cfg.Certificates) == 0 {
		certs, err := SelfSigned(hostname)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = certs
		log.Warn("shim: no certificate configured (shim.tls); STARTTLS uses a self-signed one", "hostname", hostname)
	}
	if minVersion < tls.VersionTLS12 {
		// Devices that old often know only RSA key exchange (some, such as Windows XP's,
		// only with 3DES), which Go leaves out of its defaults since 1.22: offer every
		// suite crypto/tls implements but RC4. Go still prefers the strong ones, so
		// newer clients are not weakened.
		for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
			if !strings.Contains(cs.Name, "RC4") {
				cfg.CipherSuites = append(cfg.CipherSuites, cs.ID)
			}
		}
		log.Warn("shim: TLS versions below 1.2 accepted (shim.min_tls); keep the shim on a trusted network",
			"min_tls", strings.TrimPrefix(tls.VersionName(minVersion), "TLS "))
	}
	return cfg, nil
}

// Addrs are the addresses of the listeners Listen opened, as log attributes: smtp for
// the plain one, smtps for implicit TLS.
func (s *Server) Addrs() []any {
	var attrs []any
	for _, l := range s.listeners {
		attrs = append(attrs, l.name, l.ln.Addr().String())
	}
	return attrs
}

// Serve serves the listeners Listen opened until Shutdown, which makes the shim a
// server.Adapter. It returns once every listener has stopped.
func (s *Server) Serve() error {
	if len(s.listeners) == 0 {
		return errors.New("shim: no listener (see Listen)")
	}
	errc := make(chan error, len(s.listeners))
	for _, l := range s.listeners {
		go func() { errc <- s.ServeListener(l.ln, l.implicitTLS) }()
	}
	var errs []error
	for range s.listeners {
		errs = append(errs, <-errc)
	}
	return errors.Join(errs...)
}

func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		l.ln.Close()
	}
}
