package shim_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/shim"
)

// Listen opens the listeners it is given, with the TLS policy of the shim: a
// self-signed certificate without one, and the suites of old devices below TLS 1.2.
func TestListen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		minVersion uint16
		tls10      bool     // a TLS 1.0 client with an RSA key-exchange suite gets through
		logs       []string // start-up warnings
	}{
		{"default", 0, false, []string{`"msg":"shim: no certificate configured (shim.tls); STARTTLS uses a self-signed one","component":"shim","hostname":"shim.test"`}},
		{"min_tls 1.0", tls.VersionTLS10, true, []string{"self-signed one", `"msg":"shim: TLS versions below 1.2 accepted (shim.min_tls); keep the shim on a trusted network","component":"shim","min_tls":"1.0"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs logBuffer
			s, err := shim.Listen(shim.ListenConfig{Plain: "127.0.0.1:0", Implicit: "127.0.0.1:0", MinVersion: tt.minVersion},
				shim.Options{Hostname: "shim.test", Logger: logs.logger().With("component", "shim")})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- s.Serve() }()
			attrs := s.Addrs()
			if len(attrs) != 4 || attrs[0] != "smtp" || attrs[2] != "smtps" {
				t.Fatalf("Addrs = %v, want smtp and smtps", attrs)
			}
			plain, implicit := attrs[1].(string), attrs[3].(string)

			c, err := net.DialTimeout("tcp", plain, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			greeting, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if !strings.HasPrefix(greeting, "220 shim.test ") {
				t.Errorf("plain listener greets %q", greeting)
			}
			for _, old := range []bool{false, true} {
				cfg := &tls.Config{InsecureSkipVerify: true}
				if old {
					cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS10
					cfg.CipherSuites = []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}
				}
				tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", implicit, cfg)
				if ok := err == nil; ok != (!old || tt.tls10) {
					t.Errorf("implicit TLS, TLS 1.0 client %v: %v", old, err)
				}
				if err == nil {
					greeting, _ := bufio.NewReader(tc).ReadString('\n')
					tc.Close()
					if !strings.HasPrefix(greeting, "220 ") {
						t.Errorf("implicit TLS listener greets %q", greeting)
					}
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			for _, want := range tt.logs {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("the log lacks %s:\n%s", want, logs.String())
				}
			}
		})
	}
}

// A listener that cannot be opened is named by its setting, and the one opened before
// it is closed again.
func TestListenError(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freeAddr := free.Addr().String()
	free.Close()
	tests := []struct {
		name            string
		plain, implicit string
		want            string
	}{
		{"plain", taken.Addr().String(), "", "shim.listen: listen tcp " + taken.Addr().String()},
		{"implicit", freeAddr, taken.Addr().String(), "shim.implicit_tls_listen: listen tcp " + taken.Addr().String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := shim.Listen(shim.ListenConfig{Plain: tt.plain, Implicit: tt.implicit}, shim.Options{Hostname: "shim.test"})
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Listen = %v, %v; want an error starting %q", s, err, tt.want)
			}
			if tt.implicit != "" {
				// The plain listener Listen opened first is closed again.
				ln, err := net.Listen("tcp", freeAddr)
				if err != nil {
					t.Fatalf("the plain listener stayed open: %v", err)
				}
				ln.Close()
			}
		})
	}
}
