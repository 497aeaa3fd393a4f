package shim

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
)

// TLS modes, in the log line and the metric of a failed handshake.
const (
	modeSTARTTLS = "starttls"
	modeImplicit = "implicit"
)

// offer is what a client's ClientHello offered. It is named only for a log line: most
// handshakes succeed.
type offer struct {
	versions, ciphers []uint16
}

// recordingHellos returns a copy of cfg that keeps, on each admitted connection, what
// the client offered: crypto/tls's error says what failed ("client offered only
// unsupported versions: [302 301]"), not what the client could have done instead.
func recordingHellos(cfg *tls.Config) *tls.Config {
	if cfg == nil {
		return nil
	}
	cfg = cfg.Clone()
	next := cfg.GetConfigForClient
	cfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		if lc := limitedOf(h.Conn); lc != nil {
			lc.setOffer(offer{slices.Clone(h.SupportedVersions), slices.Clone(h.CipherSuites)})
		}
		if next != nil {
			return next(h)
		}
		return nil, nil
	}
	return cfg
}

// names names ids, with name (crypto/tls's, IANA's for cipher suites); an id that
// crypto/tls does not know is in hex.
func names(ids []uint16, name func(uint16) string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !grease(id) {
			out = append(out, name(id))
		}
	}
	return out
}

// grease reports whether v is one of the values RFC 8701 has clients offer at random
// to keep servers tolerant; none is a real version or cipher suite.
func grease(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

// handshakeFailed logs and counts a failed TLS handshake, implicit or after STARTTLS;
// go-smtp then closes the connection, which frees its slot. conn is the connection
// under TLS.
func (s *Server) handshakeFailed(conn net.Conn, err error) {
	mode, o, seen := modeSTARTTLS, offer{}, false
	if lc := limitedOf(conn); lc != nil {
		if lc.implicitTLS {
			mode = modeImplicit
		}
		o, seen = lc.offered()
	}
	attrs := []any{"remote", conn.RemoteAddr().String(), "mode", mode, "error", err.Error()}
	if !seen && errors.Is(err, io.EOF) {
		// Closed before a ClientHello: a port check (a load balancer's, a scanner's),
		// not a client that tried TLS.
		s.log.Debug("smtp tls handshake not started", attrs...)
		return
	}
	if seen {
		attrs = append(attrs, "offered_versions", names(o.versions, tls.VersionName), "offered_ciphers", names(o.ciphers, tls.CipherSuiteName))
	}
	s.opts.Metrics.tlsFailures.WithLabelValues(mode).Inc()
	s.log.Info("smtp tls handshake failed", attrs...)
}
