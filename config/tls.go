package config

import (
	"crypto/tls"
	"fmt"
)

// LoadKeyPair loads a PEM certificate chain and key, saying which file is at fault.
func LoadKeyPair(t TLSFiles) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("cert_file %s / key_file %s: %w", t.CertFile, t.KeyFile, err)
	}
	return cert, nil
}
