package smtp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mailgate/mailgate/config/secret"
	"github.com/mailgate/mailgate/mailaddr"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/senders/entra"
)

// Defaults, from Microsoft 365's documented behaviour
// (docs/microsoft365-smtp.md#limits-and-how-mailgate-keeps-to-them).
const (
	// SubmissionAddress is Microsoft 365's client submission endpoint. Port 465 (implicit
	// TLS) is not offered by Microsoft.
	SubmissionAddress = "smtp.office365.com:587"
	// OutlookScope is the token audience for SMTP AUTH with XOAUTH2.
	OutlookScope = "https://outlook.office365.com/.default"
	// MaxSubmissionConnections is Microsoft's limit of concurrent SMTP AUTH connections per
	// mailbox; a 4th is refused with 432 4.3.2.
	MaxSubmissionConnections = 3
	defaultRelayConnections  = 10
	defaultIdleTimeout       = 30 * time.Second
	defaultTimeout           = 2 * time.Minute
)

// Connection is how a backend reaches its SMTP server; its fields are read inline, as
// the backend section's own.
type Connection struct {
	// Address is host:port. For relay and Direct Send it may instead be a bare domain,
	// whose MX hosts are then used on port 25.
	Address string `yaml:"address"`
	// CAFile adds a PEM certificate authority to trust (a private relay, a test server).
	CAFile string `yaml:"ca_file"`
	// Helo is the name given in EHLO; default: the machine's host name.
	Helo string `yaml:"helo"`
	// MaxConnections bounds the connections open at once: per mailbox for SMTP AUTH
	// (Microsoft allows 3), per backend otherwise.
	MaxConnections int `yaml:"max_connections"`
	// IdleTimeout closes a connection unused for this long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// Timeout bounds each SMTP command, including the answer to the end of the message.
	Timeout time.Duration `yaml:"timeout"`
}

func (c *Connection) validate(bareDomainOK bool, maxConns int) []error {
	var errs []error
	switch host, port, err := net.SplitHostPort(c.Address); {
	case c.Address == "":
		errs = append(errs, senders.Fieldf("address", "required"))
	case err == nil:
		if p, perr := strconv.Atoi(port); host == "" || perr != nil || p <= 0 || p > 65535 {
			errs = append(errs, senders.Fieldf("address", "want host:port, not %q", c.Address))
		} else if p == 465 {
			errs = append(errs, senders.Fieldf("address", "Microsoft 365 offers no port 465 (implicit TLS): use 587 for smtp_auth and 25 for relay and direct_send, where mailgate starts TLS with STARTTLS"))
		}
	case !bareDomainOK:
		errs = append(errs, senders.Fieldf("address", "want host:port (such as %s), not %q", SubmissionAddress, c.Address))
	case !mailaddr.ValidDomain(strings.ToLower(c.Address)):
		errs = append(errs, senders.Fieldf("address", "want host:port, or a domain whose MX to use, not %q", c.Address))
	}
	if c.CAFile != "" {
		if _, err := senders.RootCAs(c.CAFile); err != nil {
			errs = append(errs, senders.Fieldf("ca_file", "%w", err))
		}
	}
	if c.MaxConnections < 0 || c.MaxConnections > maxConns {
		errs = append(errs, senders.Fieldf("max_connections", "want 1 to %d, not %d", maxConns, c.MaxConnections))
	}
	if c.IdleTimeout < 0 {
		errs = append(errs, senders.Fieldf("idle_timeout", "must not be negative"))
	}
	if c.Timeout < 0 {
		errs = append(errs, senders.Fieldf("timeout", "must not be negative"))
	}
	return errs
}

// The backend types of this package.
var (
	AuthType       = senders.Type{Name: "smtp_auth", NewConfig: func() senders.Config { return new(AuthConfig) }}
	RelayType      = senders.Type{Name: "relay", NewConfig: func() senders.Config { return new(RelayConfig) }}
	DirectSendType = senders.Type{Name: "direct_send", NewConfig: func() senders.Config { return new(DirectSendConfig) }}
)

var (
	_ senders.Config = (*AuthConfig)(nil)
	_ senders.Config = (*RelayConfig)(nil)
	_ senders.Config = (*DirectSendConfig)(nil)
	_ senders.Sender = (*Sender)(nil)
)

// AuthConfig is the `type: smtp_auth` section: client submission to smtp.office365.com
// as a licensed mailbox (the route's mailbox), authenticated with OAuth (XOAUTH2, an
// app-only token) or, while Microsoft still allows it, a password.
type AuthConfig struct {
	senders.ConfigDefaults `yaml:"-"` // Scope: ScopeMailbox
	Connection             `yaml:",inline"`
	// Auth is xoauth2 (the default) or login (basic authentication: Microsoft disables it
	// by default for existing tenants from the end of December 2026).
	Auth string `yaml:"auth"`
	// The app registration, for xoauth2. It needs the Office 365 Exchange Online
	// application permission SMTP.SendAsApp, and its service principal rights on each
	// mailbox (docs/microsoft365-smtp.md).
	entra.Credentials `yaml:",inline"`
	// TokenScope is the token audience; default https://outlook.office365.com/.default.
	TokenScope string `yaml:"scope"`
	// Username and Password, for login. The username is then the mailbox.
	Username string        `yaml:"username"`
	Password secret.String `yaml:"password"`
	// SendAs lists the From addresses (address, *@domain or *) that the sending mailbox
	// has Send As rights for in Exchange. Without a match, only the mailbox itself may be
	// the From; anything else would be refused by Microsoft with 5.7.60.
	SendAs []string `yaml:"send_as"`
}

// Validate implements senders.Config.
func (c *AuthConfig) Validate() error {
	conn := c.connection()
	errs := conn.validate(false, MaxSubmissionConnections)
	switch c.Auth {
	case "", "xoauth2":
		errs = append(errs, c.Credentials.Validate()...)
		if c.Username != "" || !c.Password.IsZero() {
			errs = append(errs, senders.Fieldf("username", "only for auth: login (with xoauth2 the route's mailbox is the user)"))
		}
	case "login":
		if c.Username == "" {
			errs = append(errs, senders.Fieldf("username", "required for auth: login (the mailbox's address)"))
		}
		if c.Password.IsZero() {
			errs = append(errs, senders.Fieldf("password", "required for auth: login (or password_file)"))
		}
		if c.Credentials != (entra.Credentials{ClientSecret: c.ClientSecret}) || !c.ClientSecret.IsZero() || c.TokenScope != "" {
			errs = append(errs, senders.Fieldf("auth", "login takes username and password; tenant_id, client_id, client_secret, certificate_file, key_file, authority_url and scope are for xoauth2"))
		}
	default:
		errs = append(errs, senders.Fieldf("auth", "want xoauth2 or login, not %q", c.Auth))
	}
	for i, p := range c.SendAs {
		if _, err := mailaddr.ParsePattern(p); err != nil {
			errs = append(errs, senders.Fieldf(fmt.Sprintf("send_as[%d]", i), "%w", err))
		}
	}
	return errors.Join(errs...)
}

// CheckRoute implements senders.Config. With auth: login the session is always the
// username's mailbox, so a route must name it: limits and pauses count per mailbox.
func (c *AuthConfig) CheckRoute(match, mailbox string) []error {
	if c.Auth == "login" && !mailaddr.Equal(mailbox, c.Username) {
		return []error{senders.Fieldf("mailbox", "the backend signs in as %s (auth: login), so set mailbox: %s; other From addresses then need Send As", c.Username, c.Username)}
	}
	return nil
}

// connection is the connection settings with the default address filled in.
func (c *AuthConfig) connection() Connection {
	conn := c.Connection
	if conn.Address == "" {
		conn.Address = SubmissionAddress
	}
	return conn
}

// Open implements senders.Config.
func (c *AuthConfig) Open(env senders.Env) (senders.Sender, error) { return newSubmission(c, env) }

// TLSMode is how a relay or Direct Send backend uses STARTTLS.
type TLSMode string

const (
	// TLSRequired refuses to send unless STARTTLS succeeds with a verified certificate.
	TLSRequired TLSMode = "required"
	// TLSOpportunistic uses STARTTLS (verified) when the server offers it, else sends in
	// the clear: for relays on a LAN. Against Microsoft's MX, keep required.
	TLSOpportunistic TLSMode = "opportunistic"
)

// ConnectorConfig is what relay and Direct Send share: the tenant's MX endpoint on port
// 25, no AUTH, and the tenant's accepted domains.
type ConnectorConfig struct {
	Connection `yaml:",inline"`
	// TLS is required (the default) or opportunistic.
	TLS TLSMode `yaml:"tls"`
	// AcceptedDomains are the tenant's accepted domains. Relay: every From must be in
	// one. Direct Send: every From and every recipient must be.
	AcceptedDomains []string `yaml:"accepted_domains"`
	// Resolver is the DNS server (host:port) for MX lookups; default: the system's.
	Resolver string `yaml:"resolver"`
}

// Scope implements senders.Config, for the configuration as for the backend it opens: a
// connector relays into the tenant as no mailbox.
func (c *ConnectorConfig) Scope() senders.Scope { return senders.ScopeBackend }

// CheckRoute implements senders.Config: a connector sends as no mailbox, and only
// from accepted domains.
func (c *ConnectorConfig) CheckRoute(match, mailbox string) []error {
	var errs []error
	if mailbox != "" {
		errs = append(errs, senders.Fieldf("mailbox", "relay and Direct Send send as no mailbox; remove it"))
	}
	if d := mailaddr.Domain(match); d != "" && !inDomains(d, c.AcceptedDomains, false) {
		errs = append(errs, senders.Fieldf("match", "%s is not in the backend's accepted_domains (%s), so every message on this route would be refused",
			d, strings.Join(c.AcceptedDomains, ", ")))
	}
	return errs
}

func (c *ConnectorConfig) validate() []error {
	errs := c.Connection.validate(true, 100)
	switch c.TLS {
	case "", TLSRequired, TLSOpportunistic:
	default:
		errs = append(errs, senders.Fieldf("tls", "want required or opportunistic, not %q", c.TLS))
	}
	if len(c.AcceptedDomains) == 0 {
		errs = append(errs, senders.Fieldf("accepted_domains", "list the tenant's accepted domains (Microsoft 365 admin center, Settings, Domains)"))
	}
	for i, d := range c.AcceptedDomains {
		if _, err := mailaddr.CanonicalDomain(d); err != nil {
			errs = append(errs, senders.Fieldf(fmt.Sprintf("accepted_domains[%d]", i), "%q is not a domain name: %v", d, err))
		}
	}
	if c.Resolver != "" {
		if _, _, err := net.SplitHostPort(c.Resolver); err != nil {
			errs = append(errs, senders.Fieldf("resolver", "want host:port of a DNS server, not %q", c.Resolver))
		}
	}
	return errs
}

// RelayConfig is the `type: relay` section: SMTP relay through an inbound connector,
// authenticated by a client certificate (certificate-based connector) or by the
// sending IP address (IP-based connector, when no certificate is given).
type RelayConfig struct {
	ConnectorConfig `yaml:",inline"`
	// ClientCertFile and ClientKeyFile are the PEM certificate (chain) and key presented
	// in STARTTLS. The certificate's subject or a SAN must be an accepted domain (or a
	// host in one): that is how Microsoft attributes the connection to the tenant.
	ClientCertFile string `yaml:"client_cert_file"`
	ClientKeyFile  string `yaml:"client_key_file"`
}

// Validate implements senders.Config.
func (c *RelayConfig) Validate() error {
	errs := c.ConnectorConfig.validate()
	switch {
	case c.ClientCertFile == "" && c.ClientKeyFile == "":
	case c.ClientCertFile == "" || c.ClientKeyFile == "":
		errs = append(errs, senders.Fieldf("client_cert_file", "give both client_cert_file and client_key_file, or neither (IP-based connector)"))
	default:
		if _, err := os.Stat(c.ClientKeyFile); err != nil {
			errs = append(errs, senders.Fieldf("client_key_file", "%w", err))
		} else if _, err := c.clientCertificate(); err != nil {
			errs = append(errs, senders.Fieldf("client_cert_file", "%w", err))
		}
	}
	return errors.Join(errs...)
}

// Open implements senders.Config.
func (c *RelayConfig) Open(env senders.Env) (senders.Sender, error) {
	return newConnector(kindRelay, c, env)
}

// clientCertificate loads the key pair and checks what Microsoft will check of it.
func (c *RelayConfig) clientCertificate() (*tls.Certificate, error) {
	if c.ClientCertFile == "" {
		return nil, nil
	}
	pair, err := tls.LoadX509KeyPair(c.ClientCertFile, c.ClientKeyFile)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	if time.Now().After(leaf.NotAfter) {
		return nil, fmt.Errorf("the certificate expired on %s", leaf.NotAfter.Format(time.DateOnly))
	}
	names := append([]string{leaf.Subject.CommonName}, leaf.DNSNames...)
	if !slices.ContainsFunc(names, func(n string) bool { return inDomains(n, c.AcceptedDomains, true) }) {
		return nil, fmt.Errorf("the certificate names %s, none of them in accepted_domains (%s): Microsoft 365 attributes a connection to the tenant by the certificate's subject or SAN",
			strings.Join(names, ", "), strings.Join(c.AcceptedDomains, ", "))
	}
	pair.Leaf = leaf
	return &pair, nil
}

// DirectSendConfig is the `type: direct_send` section: anonymous SMTP to the tenant's
// MX endpoint, which delivers only to the tenant's own mailboxes.
type DirectSendConfig struct {
	ConnectorConfig `yaml:",inline"`
}

// Validate implements senders.Config.
func (c *DirectSendConfig) Validate() error { return errors.Join(c.ConnectorConfig.validate()...) }

// Open implements senders.Config.
func (c *DirectSendConfig) Open(env senders.Env) (senders.Sender, error) {
	return newConnector(kindDirectSend, &RelayConfig{ConnectorConfig: c.ConnectorConfig}, env)
}

// inDomains reports whether name (a domain, or an address's domain) is one of domains,
// or with subdomains a host below one of them.
func inDomains(name string, domains []string, subdomains bool) bool {
	if subdomains {
		return AcceptedDomainOf(name, domains) != ""
	}
	name, ok := canonicalDomain(name)
	return ok && slices.ContainsFunc(domains, func(d string) bool {
		d, ok := canonicalDomain(d)
		return ok && d == name
	})
}

// AcceptedDomainOf is the domain of domains that name (a host name, such as a
// certificate's subject) is, or is a host in; "" if none. It is how Microsoft 365
// attributes a relay's client certificate to a tenant. Names compare in canonical
// form (mailaddr.CanonicalDomain), never by Unicode case folding.
func AcceptedDomainOf(name string, domains []string) string {
	name, ok := canonicalDomain(name)
	if !ok {
		return ""
	}
	for _, d := range domains {
		d, ok := canonicalDomain(d)
		if ok && (name == d || strings.HasSuffix(name, "."+d)) {
			return d
		}
	}
	return ""
}

// canonicalDomain is mailaddr's canonical form of a host name, a final dot allowed.
func canonicalDomain(name string) (string, bool) {
	d, err := mailaddr.CanonicalDomain(strings.TrimSuffix(name, "."))
	return d, err == nil
}
