package shim_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailgate/mailgate/server"
	"github.com/mailgate/mailgate/shim"
)

// tapConn keeps every byte the shim sent.
type tapConn struct {
	net.Conn
	mu  sync.Mutex
	got bytes.Buffer
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.got.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

func (c *tapConn) received() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.got.Bytes())
}

// A failed TLS handshake, after STARTTLS or on the implicit TLS port, ends the
// connection at once, without a plaintext reply the client (speaking TLS by then) could
// only take for a broken record; the log says what the client offered, and the
// connection's slot is free again. read_timeout is a minute: a connection left open
// would still be open when the test gives up, after 5 s.
func TestFailedHandshakeClosesConnection(t *testing.T) {
	t.Parallel()
	tlsClient := func(cfg *tls.Config) func(net.Conn) error {
		cfg.InsecureSkipVerify = true
		return func(c net.Conn) error { return tls.Client(c, cfg).Handshake() }
	}
	tests := []struct {
		name     string
		implicit bool
		// handshake speaks to the shim where TLS starts, and fails.
		handshake func(net.Conn) error
		mode      string
		log       []string // in the log line
	}{
		{
			name:      "STARTTLS, a TLS 1.0 and 1.1 client",
			handshake: tlsClient(&tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}),
			mode:      "starttls",
			log:       []string{`"offered_versions":["TLS 1.1","TLS 1.0"]`, `"offered_ciphers":["TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",`, `unsupported versions`},
		},
		{
			name:      "STARTTLS, no cipher suite in common",
			handshake: tlsClient(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}}),
			mode:      "starttls",
			log:       []string{`"offered_versions":["TLS 1.2"`, `"offered_ciphers":["TLS_RSA_WITH_AES_128_CBC_SHA"]`, `no cipher suite supported by both client and server`},
		},
		{
			name: "STARTTLS, not TLS at all",
			handshake: func(c net.Conn) error {
				_, err := c.Write([]byte("EHLO still.plaintext\r\n"))
				return err
			},
			mode: "starttls",
			log:  []string{`"error":"tls: first record does not look like a TLS handshake"`},
		},
		{
			name:      "implicit TLS, a TLS 1.0 and 1.1 client",
			implicit:  true,
			handshake: tlsClient(&tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}),
			mode:      "implicit",
			log:       []string{`"offered_versions":["TLS 1.1","TLS 1.0"]`, `unsupported versions`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs logBuffer
			reg := prometheus.NewRegistry()
			f := start(t, func(o *shim.Options, _ *server.ServiceOptions) {
				o.ReadTimeout = time.Minute
				o.MaxConnectionsPerSource = 1
				o.Logger = logs.logger()
				o.Metrics = shim.NewMetrics(reg)
			})
			addr := f.addr
			if tt.implicit {
				addr = f.implicitAddr
			}
			raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			c := &tapConn{Conn: raw}
			c.SetDeadline(time.Now().Add(20 * time.Second))
			start := 0
			if !tt.implicit {
				tp := textproto.NewConn(c)
				if _, _, err := tp.ReadResponse(220); err != nil {
					t.Fatalf("greeting: %v", err)
				}
				tp.PrintfLine("EHLO client.test")
				if _, _, err := tp.ReadResponse(250); err != nil {
					t.Fatalf("EHLO: %v", err)
				}
				tp.PrintfLine("STARTTLS")
				if _, _, err := tp.ReadResponse(220); err != nil {
					t.Fatalf("STARTTLS: %v", err)
				}
				start = len(c.received())
			}
			// Its error is the client's view; what counts is what the shim does.
			_ = tt.handshake(c)

			// The shim closes the connection (a reset, when it had unread bytes, is a
			// close too); it does not wait for read_timeout.
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = io.Copy(io.Discard, c)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Error("the connection is still open 5 s after the failed handshake")
			}
			if after := c.received()[start:]; bytes.Contains(after, []byte("550")) || bytes.Contains(after, []byte("Handshake error")) {
				t.Errorf("a plaintext reply after the handshake failed: %q", after)
			}

			var line string
			for l := range strings.Lines(logs.String()) {
				if strings.Contains(l, `"msg":"smtp tls handshake failed"`) {
					line = l
				}
			}
			if line == "" {
				t.Fatalf("no smtp tls handshake failed line in the log:\n%s", logs.String())
			}
			for _, want := range append(tt.log, `"mode":"`+tt.mode+`"`, `"remote":"`+raw.LocalAddr().String()+`"`) {
				if !strings.Contains(line, want) {
					t.Errorf("the log line lacks %s:\n%s", want, line)
				}
			}
			series := `mailgate_shim_tls_handshake_failures_total{mode="` + tt.mode + `"}`
			if n := metricValue(t, reg, series); n != 1 {
				t.Errorf("%s = %v, want 1", series, n)
			}

			// The slot is free: with one connection per source, the next is let in.
			if code, line := greet(t, f.addr, "127.0.0.1"); code != 220 {
				t.Errorf("the next connection from the same address: %s", line)
			}
		})
	}
}

// A client that connects to the implicit TLS port and leaves without a word, as a load
// balancer's port check does, is not a failed handshake: no log line above debug, and
// not counted.
func TestPortCheckIsNoHandshakeFailure(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	reg := prometheus.NewRegistry()
	f := start(t, func(o *shim.Options, _ *server.ServiceOptions) {
		o.Logger = logs.logger()
		o.Metrics = shim.NewMetrics(reg)
	})
	c, err := net.DialTimeout("tcp", f.implicitAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitFor(t, "the connection closed", func() bool {
		return metricValue(t, reg, "mailgate_shim_connections_open") == 0 &&
			metricValue(t, reg, `mailgate_shim_connections_total{result="accepted"}`) == 1
	})
	waitFor(t, "the debug line", func() bool { return strings.Contains(logs.String(), "smtp tls handshake not started") })
	if strings.Contains(logs.String(), `"level":"INFO"`) || strings.Contains(logs.String(), `"level":"WARN"`) {
		t.Errorf("a port check logged above debug:\n%s", logs.String())
	}
	if n := metricValue(t, reg, `mailgate_shim_tls_handshake_failures_total{mode="implicit"}`); n != 0 {
		t.Errorf("a port check counted as a failed handshake: %v", n)
	}
}
