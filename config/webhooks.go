package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mailgate/mailgate/config/secret"
	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/webhook"
)

// Webhook is one endpoint that is told what happened to messages (docs/webhooks.md).
type Webhook struct {
	// URL receives each event as a signed JSON POST: https, or http with AllowPrivate.
	URL string `yaml:"url"`
	// Secret signs the events: one or more "whsec_..." secrets separated by white space
	// (secret_file: one per line); each event carries a signature per secret, so a
	// receiver can move to a new one while the old one still verifies.
	Secret secret.String `yaml:"secret"`
	// Events are the event types sent (webhook.EventTypes); empty: all of them.
	Events []string `yaml:"events"`
	// Keys limits the events to messages sent with these API keys; empty: every key's.
	Keys []string `yaml:"keys"`
	// AllowPrivate lets URL be on a loopback, private or link-local address.
	AllowPrivate bool `yaml:"allow_private"`
	// Timeout bounds one delivery attempt; 0: 10 s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxConcurrency is how many events are posted to the endpoint at once, per
	// replica; 0: 4.
	MaxConcurrency int `yaml:"max_concurrency"`
	// CAFile adds a PEM certificate authority to trust for URL (a private CA).
	CAFile string `yaml:"ca_file"`
}

// DefaultWebhookConcurrency is a webhook's MaxConcurrency when it sets none.
const DefaultWebhookConcurrency = 4

// Endpoint is what the webhook client needs, the secrets parsed and the CA file read.
func (w *Webhook) Endpoint(name string) (webhook.Endpoint, error) {
	u, err := url.Parse(w.URL)
	if err != nil {
		return webhook.Endpoint{}, err
	}
	secrets, err := webhook.ParseSecrets(w.Secret.Value())
	if err != nil {
		return webhook.Endpoint{}, err
	}
	roots, err := senders.RootCAs(w.CAFile)
	if err != nil {
		return webhook.Endpoint{}, err
	}
	return webhook.Endpoint{Name: name, URL: u, Secrets: secrets, AllowPrivate: w.AllowPrivate,
		Timeout: w.Timeout, RootCAs: roots}, nil
}

func (c *Config) validateWebhooks(v *validator) {
	keys := map[string]bool{}
	for _, k := range c.Keys {
		keys[k.Name] = true
	}
	for _, name := range sortedKeys(c.Webhooks) {
		w, p := c.Webhooks[name], "webhooks."+name
		if !backendName.MatchString(name) {
			v.add(p, "name: use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
		}
		if w == nil {
			v.add(p, "empty: give at least url and secret (or secret_file)")
			continue
		}
		validateWebhookURL(v, p+".url", w)
		if w.Secret.IsZero() {
			v.add(p+".secret", "required, or secret_file (make a secret with `mailgate webhooks secret`)")
		} else if _, err := webhook.ParseSecrets(w.Secret.Value()); err != nil {
			v.add(p+".secret", "%v", err)
		}
		for i, e := range w.Events {
			if !slices.Contains(webhook.EventTypes, e) {
				v.add(fmt.Sprintf("%s.events[%d]", p, i), "%q is not an event: use %s", e, strings.Join(webhook.EventTypes, ", "))
			} else if slices.Index(w.Events, e) < i {
				v.add(fmt.Sprintf("%s.events[%d]", p, i), "%q is listed twice", e)
			}
		}
		for i, k := range w.Keys {
			if !keys[k] {
				v.add(fmt.Sprintf("%s.keys[%d]", p, i), "no key named %q in keys", k)
			}
		}
		if w.Timeout != 0 && (w.Timeout < time.Second || w.Timeout > time.Minute) {
			v.add(p+".timeout", "must be 1s to 1m (default 10s), not %s", w.Timeout)
		}
		if w.MaxConcurrency < 0 || w.MaxConcurrency > 100 {
			v.add(p+".max_concurrency", "must be 1 to 100 (default %d), not %d", DefaultWebhookConcurrency, w.MaxConcurrency)
		}
		if w.CAFile != "" {
			if _, err := senders.RootCAs(w.CAFile); err != nil {
				v.add(p+".ca_file", "%v", err)
			}
		}
	}
}

func validateWebhookURL(v *validator, p string, w *Webhook) {
	if w.URL == "" {
		v.add(p, "required: where events are POSTed, such as https://hooks.example.com/mailgate")
		return
	}
	u, err := url.Parse(w.URL)
	switch {
	case err != nil:
		v.add(p, "%v", err)
	case u.Scheme != "https" && u.Scheme != "http" || u.Host == "":
		v.add(p, "%q: want an absolute https:// URL", w.URL)
	case u.Scheme == "http" && !w.AllowPrivate:
		v.add(p, "%q: http sends events and signatures in the clear; use https, or set allow_private: true for an endpoint on your own network", w.URL)
	case u.User != nil:
		v.add(p, "holds a user name or password; the signature authenticates mailgate, so put no credentials in the URL (they would be logged)")
	case u.Fragment != "":
		v.add(p, "%q: a #fragment is never sent to the server; remove it", w.URL)
	}
}
