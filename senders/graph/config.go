package graph

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/senders/entra"
)

const defaultGraphURL = "https://graph.microsoft.com/v1.0"

// Type is the `type: graph` backend.
var Type = senders.Type{Name: "graph", NewConfig: func() senders.Config { return new(Config) }}

var (
	_ senders.Config = (*Config)(nil)
	_ senders.Sender = (*Sender)(nil)
)

// Config is the `type: graph` backend section.
type Config struct {
	senders.ConfigDefaults `yaml:"-"`
	entra.Credentials      `yaml:",inline"`
	// SaveToSentItems is the default for messages that do not say; Graph's own default
	// is true.
	SaveToSentItems *bool `yaml:"save_to_sent_items"`
	// GraphURL points at another cloud's Graph (or a test server).
	GraphURL string `yaml:"graph_url"`
	// TokenScope is the token scope; default: https://<graph host>/.default for
	// Microsoft's Graph hosts, else https://graph.microsoft.com/.default.
	TokenScope string `yaml:"scope"`
	// CAFile adds a PEM certificate authority to trust (a TLS-inspecting proxy, a test).
	CAFile string `yaml:"ca_file"`
}

// Validate implements senders.Config.
func (c *Config) Validate() error {
	errs := c.Credentials.Validate()
	if c.GraphURL != "" {
		if p, err := url.Parse(c.GraphURL); err != nil || p.Scheme != "https" || p.Host == "" {
			errs = append(errs, senders.Fieldf("graph_url", "want an https:// URL, not %q", c.GraphURL))
		}
	}
	if c.CAFile != "" {
		if _, err := senders.RootCAs(c.CAFile); err != nil {
			errs = append(errs, senders.Fieldf("ca_file", "%w", err))
		}
	}
	return errors.Join(errs...)
}

// Open implements senders.Config.
func (c *Config) Open(env senders.Env) (senders.Sender, error) { return New(c, env) }

// BaseURL is the Graph base URL in use: graph_url, or Microsoft's global Graph.
func (c *Config) BaseURL() string {
	if c.GraphURL != "" {
		return strings.TrimSuffix(c.GraphURL, "/")
	}
	return defaultGraphURL
}

// Audience is the token's audience: scope, or Graph's host in each national cloud.
func (c *Config) Audience() string {
	if c.TokenScope != "" {
		return c.TokenScope
	}
	u, _ := url.Parse(c.BaseURL())
	switch h := u.Hostname(); h {
	case "graph.microsoft.com", "graph.microsoft.us", "dod-graph.microsoft.us", "microsoftgraph.chinacloudapi.cn":
		return "https://" + h + "/.default"
	}
	return "https://graph.microsoft.com/.default"
}

// httpClient is the one client for tokens, Graph and upload sessions: TLS 1.2 or later,
// certificates verified, and no middleware: nothing retries a request behind mailgate's
// back (a retried sendMail can be a duplicate mail).
func (c *Config) httpClient() (*http.Client, error) {
	t, err := senders.HTTPTransport(c.CAFile)
	if err != nil {
		return nil, err
	}
	t.MaxIdleConnsPerHost = 16
	return &http.Client{Transport: t}, nil
}
