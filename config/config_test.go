package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/senders/discard"
	"github.com/mailgate/mailgate/senders/file"
	"github.com/mailgate/mailgate/senders/graph"
	"github.com/mailgate/mailgate/senders/smtp"
	"github.com/mailgate/mailgate/server/apikey"
)

var testHash = apikey.Hash("mg_test")

// testTypes are mailgate's backend types, as package app lists them (app's tests check
// that the two agree).
var testTypes = senders.NewTypes(file.Type, discard.Type, graph.Type, smtp.AuthType, smtp.RelayType, smtp.DirectSendType)

func validYAML() string {
	return `
listen:
  http: 127.0.0.1:8080
  grpc: 127.0.0.1:9090
  shutdown_timeout: 45s
keys:
  - name: billing-app
    hash: ` + testHash + `
    senders: ["billing@contoso.com", "*@notify.contoso.com"]
routes:
  - {match: "scanner@contoso.com", backend: outbox}
  - {name: everyone, match: "*", backend: sink, mailbox: noreply@contoso.com}
backends:
  outbox:
    type: file
    dir: /tmp/outbox
  sink:
    type: discard
    delay: 10ms
limits:
  max_message_bytes: 1048576
  mailbox: {recipients_per_message: 100}
log: {level: debug, format: text}
`
}

func TestParseValid(t *testing.T) {
	t.Parallel()
	c, err := ParseAndValidate([]byte(validYAML()), "test", testTypes)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.ShutdownTimeout != 45*time.Second || c.Limits.MaxMessageBytes != 1<<20 || c.Limits.Mailbox.RecipientsPerMessage != 100 {
		t.Errorf("values not decoded: %+v", c)
	}
	if f, ok := c.Backends["outbox"].Settings.(*file.Config); !ok || f.Dir != "/tmp/outbox" {
		t.Errorf("outbox settings %#v", c.Backends["outbox"].Settings)
	}
	if d, ok := c.Backends["sink"].Settings.(*discard.Config); !ok || d.Delay != 10*time.Millisecond {
		t.Errorf("sink settings %#v", c.Backends["sink"].Settings)
	}
	if c.Routes[0].RouteName() != "scanner@contoso.com" || c.Routes[1].RouteName() != "everyone" {
		t.Errorf("route names %q %q", c.Routes[0].RouteName(), c.Routes[1].RouteName())
	}
}

func TestRedisForms(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	for name, section := range map[string]string{
		"standalone": "redis: {url: \"redis://:pw@10.0.0.5:6379/2\"}",
		"unix":       "redis: {url: \"unix:///run/redis/redis.sock\"}",
		"tls":        "redis: {url: \"rediss://redis.internal:6380/0\"}",
		"sentinel":   "redis: {addrs: [\"s1:26379\", \"s2:26379\"], master_name: mymaster, password_file: " + pw + "}",
		"cluster":    "redis: {addrs: [\"n1:6379\", \"n2:6379\", \"n3:6379\"], tls: true, key_prefix: \"prod:\"}",
	} {
		c, err := ParseAndValidate([]byte(validYAML()+section+"\n"), name, testTypes)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !c.Redis.Enabled() {
			t.Errorf("%s: Redis not enabled", name)
		}
		if name == "sentinel" && c.Redis.Password.Value() != "s3cret" {
			t.Errorf("password_file: %q", c.Redis.Password.Value())
		}
	}
	if Default(testTypes).Redis.Enabled() {
		t.Error("the embedded default must run without Redis")
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c := Default(testTypes)
	if c.Listen.HTTP != "127.0.0.1:8080" || c.Listen.GRPC != "127.0.0.1:9090" {
		t.Errorf("listen %+v: want loopback only", c.Listen)
	}
	if c.Limits.MaxMessageBytes != 35<<20 || c.Limits.Mailbox.RecipientsPerMessage != 500 || c.Listen.ShutdownTimeout != 30*time.Second {
		t.Errorf("limits %+v", c.Limits)
	}
	// Exchange Online's published limits, and the IETF draft's usual 24 hours.
	if m := c.Limits.Mailbox; m.MessagesPerMinute != 30 || m.RecipientsPerDay != 10_000 || c.Idempotency.TTL != 24*time.Hour || c.Redis.KeyPrefix != "mg:" {
		t.Errorf("defaults: %+v, ttl %v, prefix %q", m, c.Idempotency.TTL, c.Redis.KeyPrefix)
	}
	if c.Redis.CheckInterval != 5*time.Second || c.Redis.Timeout != 2*time.Second {
		t.Errorf("redis.check_interval %v, redis.timeout %v; want 5s and 2s", c.Redis.CheckInterval, c.Redis.Timeout)
	}
	if f := c.Backends["outbox"].Settings.(*file.Config); f.Dir != "./outbox" {
		t.Errorf("outbox dir %q", f.Dir)
	}
}

// Every problem is reported, each with the path of its field.
func TestErrorsNameTheField(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		edit    func(string) string
		path    string
		message string
	}{
		{"unknown top-level", func(s string) string { return s + "\nfoo: 1\n" }, "foo", "unknown field"},
		{"unknown nested", func(s string) string { return strings.Replace(s, "dir: /tmp/outbox", "dri: /tmp/outbox", 1) }, "backends.outbox.dri", "unknown field (known: dir)"},
		{"missing required", func(s string) string { return strings.Replace(s, "dir: /tmp/outbox", "", 1) }, "backends.outbox.dir", "required"},
		{"unknown backend type", func(s string) string { return strings.Replace(s, "type: file", "type: carrier-pigeon", 1) }, "backends.outbox.type", "unknown backend type"},
		{"route to missing backend", func(s string) string { return strings.Replace(s, "backend: outbox}", "backend: nowhere}", 1) }, "routes[0].backend", `no backend named "nowhere"`},
		{"bad pattern", func(s string) string { return strings.Replace(s, `"*@notify.contoso.com"`, `"*@"`, 1) }, "keys[0].senders[1]", "not a domain"},
		{"bad hash", func(s string) string { return strings.Replace(s, testHash, "sha256:abc", 1) }, "keys[0].hash", "64 hex digits"},
		{"bad key name", func(s string) string { return strings.Replace(s, "billing-app", "billing app", 1) }, "keys[0].name", "letters, digits"},
		{"bad duration", func(s string) string { return strings.Replace(s, "45s", "45", 1) }, "listen.shutdown_timeout", "duration"},
		{"bad int", func(s string) string { return strings.Replace(s, "1048576", "lots", 1) }, "limits.max_message_bytes", "whole number"},
		{"in-flight budget under one request", func(s string) string {
			return strings.Replace(s, "max_message_bytes: 1048576", "max_message_bytes: 1048576\n  max_inflight_bytes: 1000", 1)
		}, "limits.max_inflight_bytes", "less than the largest request, 3145728 bytes"},
		{"bad listen", func(s string) string { return strings.Replace(s, "127.0.0.1:8080", "8080", 1) }, "listen.http", "host:port"},
		{"listen port too large", func(s string) string { return strings.Replace(s, "127.0.0.1:8080", "127.0.0.1:80800", 1) }, "listen.http", "a number from 0 to 65535"},
		{"listen port a name", func(s string) string { return strings.Replace(s, "127.0.0.1:8080", "127.0.0.1:http", 1) }, "listen.http", "a number from 0 to 65535"},
		{"shim port too large", func(s string) string { return s + "shim: {listen: \"127.0.0.1:99999\"}\n" }, "shim.listen", "a number from 0 to 65535"},
		{"list expected", func(s string) string {
			return strings.Replace(s, `senders: ["billing@contoso.com", "*@notify.contoso.com"]`, "senders: billing@contoso.com", 1)
		}, "keys[0].senders", "want a list"},
		{"bad log level", func(s string) string { return strings.Replace(s, "level: debug", "level: loud", 1) }, "log.level", "debug, info"},
		{"tls half", func(s string) string {
			return strings.Replace(s, "  shutdown_timeout: 45s", "  tls: {cert_file: /x.pem}", 1)
		}, "listen.tls", "go together"},
		{"redis url and addrs", func(s string) string { return s + "redis: {url: redis://x:6379, addrs: [\"a:1\"]}\n" }, "redis", "not both"},
		{"redis bad url", func(s string) string { return s + "redis: {url: \"http://x\"}\n" }, "redis.url", "is not a Redis URL"},
		{"redis url hides the password", func(s string) string { return s + "redis: {url: \"redis://:s3c%zzret@[::1:6379\"}\n" }, "redis.url", "redis://[credentials]@[::1:6379 is not"},
		{"redis sentinel without addrs", func(s string) string { return s + "redis: {master_name: m}\n" }, "redis.addrs", "Sentinel"},
		{"redis cluster db", func(s string) string { return s + "redis: {addrs: [\"a:1\", \"b:2\"], db: 3}\n" }, "redis.db", "Cluster"},
		{"redis bad addr", func(s string) string { return s + "redis: {addrs: [\"nohost\"]}\n" }, "redis.addrs[0]", "host:port"},
		{"redis timeout", func(s string) string { return s + "redis: {url: \"redis://x:6379\", timeout: 0s}\n" }, "redis.timeout", "between 10ms and 1m"},
		{"redis timeout in the url", func(s string) string { return s + "redis: {url: \"redis://x:6379/0?pool_size=5&read_timeout=5s\"}\n" }, "redis.url", "read_timeout in the URL is replaced by redis.timeout"},
		{"redis check interval", func(s string) string { return s + "redis: {url: \"redis://x:6379\", check_interval: 10ms}\n" }, "redis.check_interval", "between 100ms and 1h"},
		{"day below message", func(s string) string {
			return strings.Replace(s, "{recipients_per_message: 100}", "{recipients_per_message: 100, recipients_per_day: 50}", 1)
		}, "limits.mailbox.recipients_per_day", "less than recipients_per_message"},
		{"negative key limit", func(s string) string {
			return strings.Replace(s, `senders: ["billing@contoso.com", "*@notify.contoso.com"]`, `senders: ["billing@contoso.com"]`+"\n    limits: {messages_per_minute: -1}", 1)
		}, "keys[0].limits.messages_per_minute", "negative"},
		{"short idempotency ttl", func(s string) string { return s + "idempotency: {ttl: 10s}\n" }, "idempotency.ttl", "at least 1m"},
		{"backend and backends", func(s string) string {
			return strings.Replace(s, "backend: outbox}", "backend: outbox, backends: [outbox]}", 1)
		}, "routes[0].backends", "not both"},
		{"fallback missing", func(s string) string { return strings.Replace(s, "backend: outbox}", "backends: [outbox, relay]}", 1) }, "routes[0].backends[1]", `no backend named "relay"`},
		{"fallback twice", func(s string) string { return strings.Replace(s, "backend: outbox}", "backends: [outbox, outbox]}", 1) }, "routes[0].backends[1]", "listed twice"},
		{"route delivery", func(s string) string {
			return strings.Replace(s, "backend: outbox}", "backend: outbox, delivery: later}", 1)
		}, "routes[0].delivery", "sync or queued"},
		{"shim delivery", func(s string) string { return s + "shim: {listen: \"127.0.0.1:2525\", delivery: now}\n" }, "shim.delivery", "queued (the default) or sync"},
		{"queue workers", func(s string) string { return s + "queue: {workers: 0}\n" }, "queue.workers", "1 to 1000"},
		{"records retention", func(s string) string { return s + "records: {retention: 30s}\n" }, "records.retention", "at least 1m"},
		{"queue backoff", func(s string) string { return s + "queue: {min_backoff: 5m, max_backoff: 1m}\n" }, "queue.max_backoff", "at least queue.min_backoff"},
		{"queue lease", func(s string) string { return s + "queue: {lease: 1s}\n" }, "queue.lease", "at least 5s"},
		{"queue lifetime", func(s string) string { return s + "queue: {max_lifetime: 10s}\n" }, "queue.max_lifetime", "at least 1m"},
		{"queue dir without redis", func(s string) string { return s + "queue: {dir: \"\"}\n" }, "queue.dir", "required without redis"},
		{"duplicate route name", func(s string) string {
			return strings.Replace(s, "name: everyone, match: \"*\"", "match: \"scanner@contoso.com\"", 1)
		}, "routes[1].name", "names another route"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseAndValidate([]byte(tt.edit(validYAML())), "test", testTypes)
			if err == nil {
				t.Fatal("accepted")
			}
			var found bool
			for _, e := range unjoin(err) {
				var fe *FieldError
				if errors.As(e, &fe) && fe.Path == tt.path && strings.Contains(fe.Msg, tt.message) {
					found = true
				}
			}
			if !found {
				t.Errorf("want an error at %s containing %q; got:\n%v", tt.path, tt.message, err)
			}
		})
	}
}

func TestErrorCarriesLine(t *testing.T) {
	t.Parallel()
	_, err := Parse([]byte("listen:\n  http: a\n  bogus: 1\n"), "test", testTypes)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Line != 3 || !strings.Contains(err.Error(), "listen.bogus (line 3)") {
		t.Errorf("error %v: want path and line 3", err)
	}
}

func TestEnvExpansion(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DIR": "/srv/mail", "PORT": "2525", "EMPTY": ""}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct{ in, want, err string }{
		{"${DIR}/outbox", "/srv/mail/outbox", ""},
		{"127.0.0.1:${PORT}", "127.0.0.1:2525", ""},
		{"${MISSING:-fallback}", "fallback", ""},
		{"${EMPTY:-fallback}", "fallback", ""},
		{"${EMPTY}", "", ""},
		{"pa$$word", "pa$word", ""},
		{"lone $ sign", "lone $ sign", ""},
		{"${MISSING}", "", "MISSING is not set"},
		{"${DIR", "", "unterminated"},
		{"${1BAD}", "", "not an environment variable name"},
	}
	for _, tt := range tests {
		got, err := expandEnv(tt.in, getenv)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("expandEnv(%q) error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("expandEnv(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// Environment variables and *_file secrets work through Parse, not only in isolation.
func TestEnvAndSecretFiles(t *testing.T) {
	dir := t.TempDir()
	hashFile := filepath.Join(dir, "hash")
	os.WriteFile(hashFile, []byte(testHash+"\n"), 0o600)
	t.Setenv("MAILGATE_TEST_OUTBOX", dir)
	t.Setenv("MAILGATE_TEST_HASHFILE", hashFile)
	t.Setenv("MAILGATE_TEST_RCPTS", "7")
	y := strings.Replace(validYAML(), "hash: "+testHash, "hash_file: ${MAILGATE_TEST_HASHFILE}", 1)
	y = strings.Replace(y, "dir: /tmp/outbox", "dir: ${MAILGATE_TEST_OUTBOX}/out", 1)
	y = strings.Replace(y, "{recipients_per_message: 100}", `{recipients_per_message: "${MAILGATE_TEST_RCPTS}"}`, 1)
	y = strings.Replace(y, "name: everyone", `name: "${MAILGATE_TEST_ROUTE:-null}"`, 1)
	c, err := ParseAndValidate([]byte(y), "test", testTypes)
	if err != nil {
		t.Fatal(err)
	}
	if c.Keys[0].Hash.Value() != testHash {
		t.Errorf("hash from file = %q", c.Keys[0].Hash.Value())
	}
	if c.Keys[0].Hash.String() == testHash {
		t.Error("a secret prints its value")
	}
	if got := c.Backends["outbox"].Settings.(*file.Config).Dir; got != dir+"/out" {
		t.Errorf("dir = %q", got)
	}
	if c.Routes[1].Name != "null" {
		t.Errorf("a string field took %q: expanded text must stay a string", c.Routes[1].Name)
	}
	if c.Limits.Mailbox.RecipientsPerMessage != 7 {
		t.Errorf("int from env = %d", c.Limits.Mailbox.RecipientsPerMessage)
	}

	both := strings.Replace(validYAML(), "hash: "+testHash, "hash: "+testHash+"\n    hash_file: "+hashFile, 1)
	if _, err := ParseAndValidate([]byte(both), "test", testTypes); err == nil || !strings.Contains(err.Error(), "not both") || strings.Contains(err.Error(), "no backend named") {
		t.Errorf("hash and hash_file together: %v", err)
	}
	missing := strings.Replace(validYAML(), "hash: "+testHash, "hash_file: "+filepath.Join(dir, "nope"), 1)
	if _, err := Parse([]byte(missing), "test", testTypes); err == nil || !strings.Contains(err.Error(), "keys[0].hash_file") {
		t.Errorf("missing secret file: %v", err)
	}
	// _file applies only to secret fields.
	notSecret := strings.Replace(validYAML(), "dir: /tmp/outbox", "dir_file: "+hashFile, 1)
	if _, err := Parse([]byte(notSecret), "test", testTypes); err == nil || !strings.Contains(err.Error(), "backends.outbox.dir_file") {
		t.Errorf("dir_file: %v", err)
	}
}

func TestEmptyConfigNeedsKeysRoutesBackends(t *testing.T) {
	t.Parallel()
	_, err := ParseAndValidate(nil, "empty", testTypes)
	for _, want := range []string{"keys:", "routes:", "backends:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("empty config: %v; want an error about %s", err, want)
		}
	}
}

// One check lists parse and validation problems together, without follow-on noise.
func TestReportsParseAndValidationErrorsTogether(t *testing.T) {
	t.Parallel()
	y := strings.Replace(validYAML(), "dir: /tmp/outbox", "dir: /tmp/outbox\n    colour: blue", 1)
	y = strings.Replace(y, "backend: sink,", "backend: nowhere,", 1)
	y = strings.Replace(y, "hash: "+testHash, "hash_file: /nonexistent/hash", 1)
	y = strings.Replace(y, "delay: 10ms", "delay: 5", 1) // a bad field must not hide its backend
	_, err := ParseAndValidate([]byte(y), "test", testTypes)
	var paths []string
	for _, e := range unjoin(err) {
		var fe *FieldError
		if errors.As(e, &fe) {
			paths = append(paths, fe.Path)
		}
	}
	want := []string{"keys[0].hash_file", "backends.outbox.colour", "backends.sink.delay", "routes[1].backend"} // file order, then validation
	if strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Errorf("errors at %v, want exactly %v:\n%v", paths, want, err)
	}
}

// The SMTP and Graph backends read shared sections (Entra credentials, connection
// settings) inline: their fields, secrets from files included, read as the backend's own.
func TestInlineBackendSections(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte("s3cret\n"), 0o600)
	y := strings.Replace(validYAML(), "backends:\n", `backends:
  submission:
    type: smtp_auth
    tenant_id: t
    client_id: c
    client_secret_file: `+secretFile+`
    max_connections: 2
    send_as: ["*@contoso.com"]
  relay:
    type: relay
    address: contoso.com
    tls: opportunistic
    accepted_domains: [contoso.com]
    idle_timeout: 1m
  direct:
    type: direct_send
    address: contoso-com.mail.protection.outlook.com:25
    accepted_domains: [contoso.com]
    bogus: 1
`, 1)
	_, err := ParseAndValidate([]byte(y), "test", testTypes)
	if err == nil || !strings.Contains(err.Error(), "backends.direct.bogus (line 31): unknown field") {
		t.Fatalf("unknown field in an inline section: %v", err)
	}
	c, err := ParseAndValidate([]byte(strings.Replace(y, "    bogus: 1\n", "", 1)), "test", testTypes)
	if err != nil {
		t.Fatal(err)
	}
	sub := c.Backends["submission"].Settings.(*smtp.AuthConfig)
	if sub.ClientSecret.Value() != "s3cret" || sub.MaxConnections != 2 || sub.TenantID != "t" || len(sub.SendAs) != 1 {
		t.Errorf("smtp_auth settings: %+v", sub)
	}
	relay := c.Backends["relay"].Settings.(*smtp.RelayConfig)
	if relay.Address != "contoso.com" || relay.TLS != smtp.TLSOpportunistic || relay.IdleTimeout != time.Minute {
		t.Errorf("relay settings: %+v", relay)
	}
}

// Backends refuse routes they cannot serve: a relay outside its accepted domains or with
// a mailbox, an auth: login backend on a route that names another mailbox.
func TestRoutesCheckedByBackend(t *testing.T) {
	t.Parallel()
	y := `
keys:
  - {name: app, hash: ` + testHash + `, senders: ["*"]}
routes:
  - {match: "*@fabrikam.com", backend: relay}
  - {match: "*@contoso.com", backend: relay, mailbox: noreply@contoso.com}
  - {match: "*", backend: relay}
  - {match: "scanner@contoso.com", backend: basic}
  - {name: basic, match: "*@contoso.com", backend: basic, mailbox: Scanner@Contoso.com}
backends:
  relay:
    type: relay
    address: contoso.com
    accepted_domains: [contoso.com]
  basic:
    type: smtp_auth
    auth: login
    username: scanner@contoso.com
    password: p
`
	_, err := ParseAndValidate([]byte(y), "test", testTypes)
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		"routes[0].match: fabrikam.com is not in the backend's accepted_domains (contoso.com)",
		"routes[1].mailbox: relay and Direct Send send as no mailbox",
		"routes[3].mailbox: the backend signs in as scanner@contoso.com (auth: login), so set mailbox: scanner@contoso.com",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
	for _, ok := range []string{"routes[2]", "routes[4]"} {
		if strings.Contains(msg, ok) {
			t.Errorf("%s is fine, but:\n%s", ok, msg)
		}
	}
}

func TestShimSection(t *testing.T) {
	t.Parallel()
	y := validYAML() + `
shim:
  listen: 127.0.0.1:2525
  min_tls: "1.0"
  devices:
    - {cidr: 10.20.0.0/24, key: billing-app}
`
	c, err := ParseAndValidate([]byte(y), "test", testTypes)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Shim.Enabled() || c.Shim.TLSVersion() != 0x0301 || c.Shim.Devices[0].Prefix().String() != "10.20.0.0/24" || c.Shim.MaxConnections != 100 {
		t.Errorf("shim %+v", c.Shim)
	}
	if c.Shim.MaxConnectionsPerSource != 10 || c.Shim.ReservedDeviceConnections != 10 || c.Shim.AuthTimeout != 30*time.Second {
		t.Errorf("lockout defaults: per source %d, reserved %d, auth_timeout %v; want 10, 10, 30s",
			c.Shim.MaxConnectionsPerSource, c.Shim.ReservedDeviceConnections, c.Shim.AuthTimeout)
	}
	bad := validYAML() + `
shim:
  listen: "2525"
  min_tls: "1.4"
  devices:
    - {cidr: 10.20.0.0/33, key: nobody}
`
	_, err = ParseAndValidate([]byte(bad), "test", testTypes)
	for _, want := range []string{
		`shim.listen: want host:port, not "2525"`,
		`shim.min_tls: want 1.0, 1.1, 1.2 or 1.3, not "1.4"`,
		"shim.devices[0].cidr: want an address range",
		`shim.devices[0].key: no key named "nobody" in keys`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}

	// A separate shim process needs its upstream, and sends devices' mail with its own key.
	remote, err := Parse([]byte(`
shim:
  listen: 127.0.0.1:2525
  devices: [{cidr: 10.0.0.0/8, key: scanners}]
`), "test", testTypes)
	if err != nil {
		t.Fatal(err)
	}
	err = remote.ValidateShim()
	for _, want := range []string{"shim.upstream.grpc: required", `shim.devices[0].key: a separate shim sends devices' mail with its own key`, "shim.upstream.api_key:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}

func TestShimValidationMessages(t *testing.T) {
	t.Parallel()
	bad := validYAML() + `
shim:
  listen: 127.0.0.1:2525
  write_timeout: -1s
  max_message_bytes: 2000000
  tls: {cert_file: /tmp/x.pem}
`
	_, err := ParseAndValidate([]byte(bad), "test", testTypes)
	for _, want := range []string{
		"shim.write_timeout: must not be negative",
		"shim.max_message_bytes: 2000000 is more than limits.max_message_bytes (1048576)",
		"shim.tls: cert_file and key_file go together",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}

func TestShimLockoutSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml, want string // want "": valid
	}{
		{"negative per source", "max_connections_per_source: -1", "shim.max_connections_per_source: must not be negative"},
		{"negative reserved", "reserved_device_connections: -1", "shim.reserved_device_connections: must not be negative"},
		{"negative auth_timeout", "auth_timeout: -1s", "shim.auth_timeout: must not be negative"},
		{"all reserved", "max_connections: 10\n  devices: [{cidr: 10.20.0.0/24, key: billing-app}]",
			"shim.reserved_device_connections: 10 leaves none of max_connections (10) for clients that authenticate: lower it, or raise max_connections"},
		{"reserved without devices is unused", "max_connections: 10", ""},
		{"reserved below the limit", "max_connections: 10\n  reserved_device_connections: 2\n  devices: [{cidr: 10.20.0.0/24, key: billing-app}]", ""},
		{"no limits", "max_connections: 0\n  max_connections_per_source: 0\n  auth_timeout: 0s\n  devices: [{cidr: 10.20.0.0/24, key: billing-app}]", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			y := validYAML() + "\nshim:\n  listen: 127.0.0.1:2525\n  " + tt.yaml + "\n"
			_, err := ParseAndValidate([]byte(y), "test", testTypes)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("%v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("missing %q in %v", tt.want, err)
			}
		})
	}
}

// probeConfig is a backend type of the test's own: config knows only the types it is
// given, and reads a field error as a value, whatever its text.
type probeConfig struct {
	senders.ConfigDefaults `yaml:"-"`
	Header                 string `yaml:"header"`
}

func (c *probeConfig) Validate() error {
	var errs []error
	if c.Header != "" {
		// A field name with a space and a message with ": " in it: text splitting
		// would get both wrong.
		errs = append(errs, senders.Fieldf("headers[X-Probe Id]", "%w", fmt.Errorf("open %s: no such file", c.Header)))
	}
	errs = append(errs, errors.New("probe: not a field error"))
	return errors.Join(errs...)
}

func (c *probeConfig) CheckRoute(match, mailbox string) []error {
	return []error{&senders.FieldError{Field: "mailbox", Err: errors.New("want one: with a colon")}}
}

func (c *probeConfig) Open(senders.Env) (senders.Sender, error) {
	return nil, errors.New("not for opening")
}

func TestBackendTypesAreGiven(t *testing.T) {
	t.Parallel()
	types := senders.NewTypes(senders.Type{Name: "probe", NewConfig: func() senders.Config { return new(probeConfig) }})
	y := `
keys:
  - {name: app, hash: ` + testHash + `, senders: ["*"]}
routes:
  - {match: "*", backend: p}
backends:
  p: {type: probe, header: /nonexistent}
  q: {type: file, dir: /tmp}
`
	_, err := ParseAndValidate([]byte(y), "test", types)
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		"backends.p.headers[X-Probe Id]: open /nonexistent: no such file",
		"backends.p: probe: not a field error",
		"routes[0].mailbox: want one: with a colon (backend p)",
		`backends.q.type (line 8): unknown backend type "file" (known: probe)`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
}

func TestRouteBackendsAndDelivery(t *testing.T) {
	t.Parallel()
	y := strings.Replace(validYAML(), "backend: outbox}", "backends: [outbox], delivery: queued}", 1)
	c, err := ParseAndValidate([]byte(y), "test", testTypes)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Routes[0]
	if got := r.BackendNames(); len(got) != 1 || got[0] != "outbox" || r.Delivery != DeliveryQueued {
		t.Errorf("route = %+v, backends %v", r, got)
	}
	if c.Routes[1].Delivery != "" || c.Shim.Delivery != DeliveryQueued || c.Queue.Dir != "./spool" || c.Retention() != 7*24*time.Hour {
		t.Errorf("defaults: route delivery %q, shim %q, queue %+v, retention %s", c.Routes[1].Delivery, c.Shim.Delivery, c.Queue, c.Retention())
	}
}
