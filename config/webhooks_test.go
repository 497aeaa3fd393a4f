package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/webhook"
)

func TestWebhooksSection(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	current, old := webhook.NewSecret(), webhook.NewSecret()
	secretFile := filepath.Join(dir, "hook-secret")
	if err := os.WriteFile(secretFile, []byte(current+"\n"+old+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := ParseAndValidate([]byte(validYAML()+`webhooks:
  crm:
    url: https://hooks.example.com/mailgate
    secret_file: `+secretFile+`
    events: [sent, failed]
    keys: [billing-app]
    timeout: 5s
  local:
    url: http://10.0.0.7:8080/hooks
    secret: `+current+`
    allow_private: true
`), "test", testTypes)
	if err != nil {
		t.Fatal(err)
	}
	crm := c.Webhooks["crm"]
	if !slices.Equal(crm.Events, []string{"sent", "failed"}) || len(c.Webhooks["local"].Events) != 0 {
		t.Errorf("events: crm %v, local %v (empty: all)", crm.Events, c.Webhooks["local"].Events)
	}
	ep, err := crm.Endpoint("crm")
	if err != nil {
		t.Fatal(err)
	}
	if ep.URL.Host != "hooks.example.com" || len(ep.Secrets) != 2 || ep.Secrets[0].String() != current || ep.Timeout != 5*time.Second || ep.AllowPrivate {
		t.Errorf("endpoint %+v", ep)
	}
	if s := crm.Secret.String(); strings.Contains(s, "whsec_") {
		t.Errorf("the secret prints as %q", s)
	}
}

func TestWebhooksValidation(t *testing.T) {
	t.Parallel()
	good := webhook.NewSecret()
	for _, tc := range []struct {
		name, yaml, path, message string
	}{
		{"no url", "w: {secret: " + good + "}", "webhooks.w.url", "required"},
		{"relative url", "w: {url: /hooks, secret: " + good + "}", "webhooks.w.url", "absolute https://"},
		{"ftp", "w: {url: \"ftp://x.example/\", secret: " + good + "}", "webhooks.w.url", "absolute https://"},
		{"http public", "w: {url: \"http://hooks.example.com/\", secret: " + good + "}", "webhooks.w.url", "set allow_private: true"},
		{"credentials", "w: {url: \"https://u:p@hooks.example.com/\", secret: " + good + "}", "webhooks.w.url", "no credentials in the URL"},
		{"no secret", "w: {url: \"https://hooks.example.com/\"}", "webhooks.w.secret", "mailgate webhooks secret"},
		{"bad secret", "w: {url: \"https://hooks.example.com/\", secret: hunter2}", "webhooks.w.secret", `starts with "whsec_"`},
		{"unknown event", "w: {url: \"https://hooks.example.com/\", secret: " + good + ", events: [sent, delivred]}", "webhooks.w.events[1]", `"delivred" is not an event`},
		{"event twice", "w: {url: \"https://hooks.example.com/\", secret: " + good + ", events: [sent, sent]}", "webhooks.w.events[1]", "listed twice"},
		{"unknown key", "w: {url: \"https://hooks.example.com/\", secret: " + good + ", keys: [nobody]}", "webhooks.w.keys[0]", `no key named "nobody"`},
		{"timeout", "w: {url: \"https://hooks.example.com/\", secret: " + good + ", timeout: 5m}", "webhooks.w.timeout", "1s to 1m"},
		{"concurrency", "w: {url: \"https://hooks.example.com/\", secret: " + good + ", max_concurrency: -1}", "webhooks.w.max_concurrency", "1 to 100"},
		{"ca file", "w: {url: \"https://hooks.example.com/\", secret: " + good + ", ca_file: /nonexistent/ca.pem}", "webhooks.w.ca_file", "no such file"},
		{"bad name", "\"a b\": {url: \"https://hooks.example.com/\", secret: " + good + "}", "webhooks.a b", "name:"},
		{"empty", "w:", "webhooks.w", "give at least url and secret"},
		{"unknown field", "w: {url: \"https://hooks.example.com/\", secret: " + good + ", event: [sent]}", "webhooks.w.event", "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseAndValidate([]byte(validYAML()+"webhooks:\n  "+tc.yaml+"\n"), "test", testTypes)
			var found bool
			for _, e := range unjoin(err) {
				var fe *FieldError
				if errors.As(e, &fe) && fe.Path == tc.path && strings.Contains(fe.Msg, tc.message) {
					found = true
				}
			}
			if !found {
				t.Errorf("want an error at %s containing %q; got:\n%v", tc.path, tc.message, err)
			}
		})
	}
}
