// Package entra gets app-only tokens from Microsoft Entra ID (the OAuth 2.0 client
// credentials grant) for the backends that authenticate to Microsoft 365 as an app:
// Graph (scope https://graph.microsoft.com/.default) and SMTP AUTH with XOAUTH2 (scope
// https://outlook.office365.com/.default). One app registration can serve both.
package entra

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/mailgate/mailgate/config/secret"
	"github.com/mailgate/mailgate/senders"
)

// DefaultAuthorityURL is Entra's global (public cloud) authority.
const DefaultAuthorityURL = "https://login.microsoftonline.com/"

// Credentials are an app registration's identity, as a backend's configuration gives it
// (the fields are read inline, as the backend's own).
type Credentials struct {
	TenantID string `yaml:"tenant_id"`
	ClientID string `yaml:"client_id"`
	// ClientSecret, or CertificateFile (PEM; the key in it or in KeyFile). Certificates
	// are recommended: a secret is a password that travels with every token request.
	ClientSecret    secret.String `yaml:"client_secret"`
	CertificateFile string        `yaml:"certificate_file"`
	KeyFile         string        `yaml:"key_file"`
	// AuthorityURL points at another cloud's Entra (or a test server).
	AuthorityURL string `yaml:"authority_url"`
}

// Validate checks the credentials; each error names its field by its YAML name.
func (c *Credentials) Validate() []error {
	var errs []error
	if c.TenantID == "" {
		errs = append(errs, senders.Fieldf("tenant_id", "required (the Directory (tenant) ID of the app registration)"))
	}
	if c.ClientID == "" {
		errs = append(errs, senders.Fieldf("client_id", "required (the Application (client) ID)"))
	}
	switch {
	case c.ClientSecret.IsZero() && c.CertificateFile == "":
		errs = append(errs, senders.Fieldf("client_secret", "give client_secret (or client_secret_file) or certificate_file"))
	case !c.ClientSecret.IsZero() && c.CertificateFile != "":
		errs = append(errs, senders.Fieldf("certificate_file", "give a certificate or a client secret, not both"))
	case c.CertificateFile != "":
		if _, _, err := c.certificate(); err != nil {
			errs = append(errs, senders.Fieldf("certificate_file", "%w", err))
		}
	}
	if c.AuthorityURL != "" {
		if p, err := url.Parse(c.AuthorityURL); err != nil || p.Scheme != "https" || p.Host == "" {
			errs = append(errs, senders.Fieldf("authority_url", "want an https:// URL, not %q", c.AuthorityURL))
		}
	}
	return errs
}

func (c *Credentials) authorityURL() string {
	if c.AuthorityURL != "" {
		return strings.TrimSuffix(c.AuthorityURL, "/") + "/"
	}
	return DefaultAuthorityURL
}

func (c *Credentials) certificate() ([]*x509.Certificate, crypto.PrivateKey, error) {
	b, err := os.ReadFile(c.CertificateFile)
	if err != nil {
		return nil, nil, err
	}
	if c.KeyFile != "" {
		k, err := os.ReadFile(c.KeyFile)
		if err != nil {
			return nil, nil, senders.Fieldf("key_file", "%w", err)
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

// TokenCredential builds the azidentity credential; transport carries its token
// requests (TLS settings, a test server's CA). Tokens are cached per scope and renewed
// before they expire.
func (c *Credentials) TokenCredential(transport policy.Transporter) (azcore.TokenCredential, error) {
	opts := azcore.ClientOptions{
		Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: c.authorityURL()},
		Transport: transport,
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

// IsTokenError reports whether err is Entra refusing to issue a token.
func IsTokenError(err error) bool {
	var authErr *azidentity.AuthenticationFailedError
	return errors.As(err, &authErr)
}

// Fix is the operator's advice for a failed token request, from Entra's AADSTS code.
func Fix(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "AADSTS7000215"):
		return "the client secret is wrong: copy the secret's Value (not its ID) from the app registration"
	case strings.Contains(msg, "AADSTS7000222"):
		return "the client secret has expired: create a new one (or switch to a certificate)"
	case strings.Contains(msg, "AADSTS700016"):
		return "no app with this client_id in the tenant: check client_id and tenant_id"
	case strings.Contains(msg, "AADSTS90002"):
		return "the tenant does not exist: check tenant_id"
	case strings.Contains(msg, "AADSTS70011"):
		return "the scope is invalid: leave scope unset for Microsoft's public cloud"
	case strings.Contains(msg, "AADSTS700027"), strings.Contains(msg, "AADSTS700024"):
		return "the certificate assertion was refused: upload this certificate to the app registration and check the machine clock"
	}
	return "check tenant_id, client_id and the secret or certificate, and that authority_url is reachable"
}
