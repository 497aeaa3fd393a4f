package senders

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
)

// RootCAs is the system's trust store plus the PEM certificates in caFile (a private CA,
// a TLS-inspecting proxy, a test server): every backend's `ca_file`. It is nil, meaning
// the system's alone, when caFile is "".
func RootCAs(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	return pool, nil
}

// HTTPTransport is the transport every backend's HTTPS (Entra tokens, Graph) goes
// through: TLS 1.2 or later, the system's roots plus caFile, the environment's proxy.
func HTTPTransport(caFile string) (*http.Transport, error) {
	roots, err := RootCAs(caFile)
	if err != nil {
		return nil, err
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	return t, nil
}
