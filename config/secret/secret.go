// Package secret holds configuration values that must never be printed or logged.
package secret

import (
	"log/slog"

	"gopkg.in/yaml.v3"
)

// String is a secret from the configuration: a client secret, a password. In YAML it is
// given inline (`client_secret: ...`, usually as `${VAR}`) or, for any field of this
// type, read from a file by the same name with `_file` appended
// (`client_secret_file: /run/secrets/graph`). It prints and logs as "[redacted]".
type String struct {
	v string
}

// New wraps a secret value.
func New(v string) String { return String{v: v} }

// Value returns the secret itself, for the one place that needs it.
func (s String) Value() string { return s.v }

// IsZero reports whether no secret was given.
func (s String) IsZero() bool { return s.v == "" }

// String implements fmt.Stringer without revealing the secret.
func (s String) String() string {
	if s.v == "" {
		return ""
	}
	return "[redacted]"
}

// GoString keeps %#v from revealing the secret too.
func (s String) GoString() string { return "secret.String(" + s.String() + ")" }

// LogValue implements slog.LogValuer.
func (s String) LogValue() slog.Value { return slog.StringValue(s.String()) }

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *String) UnmarshalYAML(n *yaml.Node) error {
	return n.Decode(&s.v)
}

// MarshalYAML keeps the secret out of any re-serialised configuration.
func (s String) MarshalYAML() (any, error) { return s.String(), nil }
