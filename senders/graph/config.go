package graph

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/mailgate/mailgate/config/secret"
	"github.com/mailgate/mailgate/senders"
)

const (
	defaultGraphURL     = "https://graph.microsoft.com/v1.0"
	defaultAuthorityURL = "https://login.microsoftonline.com/"
)

// Config is the `type: graph` backend section.
type Config struct {
	TenantID string `yaml:"tenant_id"`
	ClientID string `yaml:"client_id"`
	// ClientSecret, or CertificateFile (PEM; the key in it or in KeyFile). Certificates
	// are recommended: a secret is a password that travels with every token request.
	ClientSecret    secret.String `yaml:"client_secret"`
	CertificateFile string        `yaml:"certificate_file"`
	KeyFile         string        `yaml:"key_file"`
	// SaveToSentItems is the default for messages that do not say; Graph's own default
	// is true.
	SaveToSentItems *bool `yaml:"save_to_sent_items"`
	// GraphURL and AuthorityURL point at another cloud (or a test server).
	GraphURL     string `yaml:"graph_url"`
	AuthorityURL string `yaml:"authority_url"`
	// Scope is the token scope; default: https://<graph host>/.default for Microsoft's
	// Graph hosts, else https://graph.microsoft.com/.default.
	Scope string `yaml:"scope"`
	// CAFile adds a PEM certificate authority to trust (a TLS-inspecting proxy, a test).
	CAFile string `yaml:"ca_file"`
}

// Validate implements senders.Config.
func (c *Config) Validate() error {
	var errs []error
	if c.TenantID == "" {
		errs = append(errs, errors.New("tenant_id: required (the Directory (tenant) ID of the app registration)"))
	}
	if c.ClientID == "" {
		errs = append(errs, errors.New("client_id: required (the Application (client) ID)"))
	}
	switch {
	case c.ClientSecret.IsZero() && c.CertificateFile == "":
		errs = append(errs, errors.New("client_secret: give client_secret (or client_secret_file) or certificate_file"))
	case !c.ClientSecret.IsZero() && c.CertificateFile != "":
		errs = append(errs, errors.New("certificate_file: give a certificate or a client secret, not both"))
	case c.CertificateFile != "":
		if _, _, err := c.certificate(); err != nil {
			errs = append(errs, fmt.Errorf("certificate_file: %w", err))
		}
	}
	for _, u := range []struct{ field, value string }{{"graph_url", c.GraphURL}, {"authority_url", c.AuthorityURL}} {
		if u.value == "" {
			continue
		}
		if p, err := url.Parse(u.value); err != nil || p.Scheme != "https" || p.Host == "" {
			errs = append(errs, fmt.Errorf("%s: want an https:// URL, not %q", u.field, u.value))
		}
	}
	if c.CAFile != "" {
		if _, err := c.rootCAs(); err != nil {
			errs = append(errs, fmt.Errorf("ca_file: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Open implements senders.Config.
func (c *Config) Open(env senders.Env) (senders.Sender, error) { return New(c, env) }

func (c *Config) graphURL() string {
	if c.GraphURL != "" {
		return strings.TrimSuffix(c.GraphURL, "/")
	}
	return defaultGraphURL
}

func (c *Config) authorityURL() string {
	if c.AuthorityURL != "" {
		return strings.TrimSuffix(c.AuthorityURL, "/") + "/"
	}
	return defaultAuthorityURL
}

// scope is the token's audience: Graph's host in each national cloud.
func (c *Config) scope() string {
	if c.Scope != "" {
		return c.Scope
	}
	u, _ := url.Parse(c.graphURL())
	switch h := u.Hostname(); h {
	case "graph.microsoft.com", "graph.microsoft.us", "dod-graph.microsoft.us", "microsoftgraph.chinacloudapi.cn":
		return "https://" + h + "/.default"
	}
	return "https://graph.microsoft.com/.default"
}

func (c *Config) rootCAs() (*x509.CertPool, error) {
	if c.CAFile == "" {
		return nil, nil // the system's
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	b, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, err
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", c.CAFile)
	}
	return pool, nil
}

func (c *Config) certificate() ([]*x509.Certificate, crypto.PrivateKey, error) {
	b, err := os.ReadFile(c.CertificateFile)
	if err != nil {
		return nil, nil, err
	}
	if c.KeyFile != "" {
		k, err := os.ReadFile(c.KeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("key_file: %w", err)
		}
		b = append(append(b, '\n'), k...)
	}
	certs, key, err := azidentity.ParseCertificates(b, nil)
	if err != nil {
		return nil, nil, err
	}
	if now := time.Now(); now.After(certs[0].NotAfter) {
		return nil, nil, fmt.Errorf("the certificate expired on %s", certs[0].NotAfter.Format(time.DateOnly))
	}
	return certs, key, nil
}

// httpClient is the one client for tokens, Graph and upload sessions: TLS 1.2 or later,
// certificates verified, and no middleware: nothing retries a request behind mailgate's
// back (a retried sendMail can be a duplicate mail).
func (c *Config) httpClient() (*http.Client, error) {
	roots, err := c.rootCAs()
	if err != nil {
		return nil, err
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	t.MaxIdleConnsPerHost = 16
	return &http.Client{Transport: t}, nil
}

func (c *Config) credential(client *http.Client) (azcore.TokenCredential, error) {
	opts := azcore.ClientOptions{
		Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: c.authorityURL()},
		Transport: client,
	}
	// Instance discovery asks Microsoft's public cloud about the authority: pointless,
	// and unreachable, for any other one.
	custom := c.AuthorityURL != ""
	if c.CertificateFile != "" {
		certs, key, err := c.certificate()
		if err != nil {
			return nil, err
		}
		return azidentity.NewClientCertificateCredential(c.TenantID, c.ClientID, certs, key,
			&azidentity.ClientCertificateCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: custom})
	}
	return azidentity.NewClientSecretCredential(c.TenantID, c.ClientID, c.ClientSecret.Value(),
		&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: custom})
}
