package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mailgate/mailgate/config/secret"
	"github.com/mailgate/mailgate/senders"
)

// Parse parses YAML text over the defaults, expanding ${VAR} and reading *_file secrets.
// A backend section is decoded into the settings of its type, one of types. Parse reports
// every unknown field and ill-typed value by path; it does not validate.
func Parse(b []byte, name string, types senders.Types) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	c := defaults()
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return c, nil // an empty file: all defaults
	}
	root := doc.Content[0]
	w := walker{getenv: os.LookupEnv, readFile: os.ReadFile, types: types}
	w.walk(root, reflect.TypeOf(c).Elem(), "")
	if len(w.errs) > 0 {
		// Decode what can be decoded anyway, so that validation can report the other
		// problems too: one run of check-config should list them all.
		root.Decode(c)
		c.decodeBackends(types)
		return c, &parseErrors{errs: w.errs}
	}
	if err := root.Decode(c); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	c.decodeBackends(types)
	return c, nil
}

// decodeBackends decodes each backend section into the settings of its type. The walker
// has already checked the sections; a bad field was reported by it, with its path, so
// the rest is decoded anyway: one bad field must not make the whole backend, and every
// route to it, look missing.
func (c *Config) decodeBackends(types senders.Types) {
	for _, b := range c.Backends {
		if b == nil || b.node == nil {
			continue
		}
		if t, ok := types[b.Type]; ok {
			s := t.NewConfig()
			b.node.Decode(s)
			b.Settings = s
		}
		b.node = nil
	}
}

// parseErrors are the field errors found while parsing; the configuration returned
// with them is a best effort, good only for finding more errors.
type parseErrors struct {
	errs []error
}

func (p *parseErrors) Error() string   { return errors.Join(p.errs...).Error() }
func (p *parseErrors) Unwrap() []error { return p.errs }

// covers reports whether a parse error at one of these paths already explains a
// validation error at path (a bad hash_file explains a missing hash).
func (p *parseErrors) covers(path string) bool {
	for _, e := range p.errs {
		var fe *FieldError
		if !errors.As(e, &fe) {
			continue
		}
		base := strings.TrimSuffix(fe.Path, "_file")
		if path == base || strings.HasPrefix(path, base+".") || strings.HasPrefix(path, base+"[") {
			return true
		}
	}
	return false
}

// UnmarshalYAML implements yaml.Unmarshaler: it keeps the `type` field, and the section
// for Parse to decode into that type's settings (an unknown type, which the walker
// reported, leaves Settings nil).
func (b *Backend) UnmarshalYAML(n *yaml.Node) error {
	var t struct {
		Type string `yaml:"type"`
	}
	if err := n.Decode(&t); err != nil {
		return err
	}
	b.Type, b.Settings, b.node = t.Type, nil, n
	return nil
}

var (
	backendType  = reflect.TypeOf(Backend{})
	secretType   = reflect.TypeOf(secret.String{})
	durationType = reflect.TypeOf(time.Duration(0))
)

// walker checks a YAML tree against the Go type it will be decoded into, so that every
// error names its field path, and applies the ${VAR} and *_file rules on the way.
type walker struct {
	errs     []error
	getenv   func(string) (string, bool)
	readFile func(string) ([]byte, error)
	types    senders.Types
}

func (w *walker) fail(n *yaml.Node, path, format string, args ...any) {
	if path == "" {
		path = "(top level)"
	}
	w.errs = append(w.errs, &FieldError{Path: path, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // `field:` with no value keeps the default
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == backendType:
		w.walkBackend(n, path)
	case t == secretType, t == durationType, t.Kind() != reflect.Struct && t.Kind() != reflect.Slice && t.Kind() != reflect.Map:
		w.walkScalar(n, t, path)
	case t.Kind() == reflect.Struct:
		w.walkStruct(n, t, path)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.fail(n, path, "want a list")
			return
		}
		for i, item := range n.Content {
			w.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.fail(n, path, "want a mapping of names to values")
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			w.walk(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))
		}
	}
}

func (w *walker) walkScalar(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.ScalarNode {
		w.fail(n, path, "want a single value, not a %s", kindName(n.Kind))
		return
	}
	expanded, err := expandEnv(n.Value, w.getenv)
	if err != nil {
		w.fail(n, path, "%v", err)
		return
	}
	if expanded != n.Value {
		// Type the expanded text by its field, not by how it was quoted: "${PORT}" is
		// an int where an int is wanted, and ${PASSWORD} a string even if it reads "null".
		n.Value = expanded
		if t.Kind() == reflect.String || t == secretType {
			n.Tag = "!!str"
		} else {
			n.Tag, n.Style = "", 0
		}
	}
	v := reflect.New(t)
	if err := n.Decode(v.Interface()); err != nil {
		switch t {
		case durationType:
			w.fail(n, path, "want a duration such as 30s, 5m or 24h, not %q", n.Value)
		default:
			w.fail(n, path, "want a %s, not %q", typeName(t), n.Value)
		}
	}
}

func (w *walker) walkStruct(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		w.fail(n, path, "want a mapping of fields, not a %s", kindName(n.Kind))
		return
	}
	fields := yamlFields(t)
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := k.Value
		if base, ok := strings.CutSuffix(name, "_file"); ok && fields[base].Type == secretType {
			if hasKey(n, base) {
				// Leave both keys as they are: renaming would make a duplicate key that
				// YAML refuses, losing the whole document for further checks.
				w.fail(k, join(path, name), "given with %s too (a secret takes %s or %s_file, not both)", base, base, base)
				continue
			}
			if !w.readSecretFile(k, v, base, join(path, name)) {
				continue
			}
			name = base
		}
		if seen[name] {
			w.fail(k, join(path, name), "given twice (a secret takes %s or %s_file, not both)", name, name)
			continue
		}
		seen[name] = true
		f, ok := fields[name]
		if !ok {
			w.fail(k, join(path, name), "unknown field (known: %s)", strings.Join(sortedKeys(fields), ", "))
			continue
		}
		w.walk(v, f.Type, join(path, name))
	}
}

func hasKey(n *yaml.Node, key string) bool {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return true
		}
	}
	return false
}

// readSecretFile turns `foo_file: PATH` into `foo: <contents of PATH>` in place.
func (w *walker) readSecretFile(k, v *yaml.Node, base, path string) bool {
	if v.Kind != yaml.ScalarNode {
		w.fail(v, path, "want a file path")
		return false
	}
	file, err := expandEnv(v.Value, w.getenv)
	if err != nil {
		w.fail(v, path, "%v", err)
		return false
	}
	b, err := w.readFile(file)
	if err != nil {
		w.fail(v, path, "cannot read the secret: %v", err)
		return false
	}
	k.Value = base
	v.Value, v.Tag, v.Style = strings.TrimRight(string(b), "\r\n"), "!!str", yaml.DoubleQuotedStyle
	return true
}

func (w *walker) walkBackend(n *yaml.Node, path string) {
	if n.Kind != yaml.MappingNode {
		w.fail(n, path, "want a mapping with a type field")
		return
	}
	rest := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line}
	var typ *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "type" {
			typ = n.Content[i+1]
			continue
		}
		rest.Content = append(rest.Content, n.Content[i], n.Content[i+1])
	}
	if typ != nil {
		w.walkScalar(typ, reflect.TypeOf(""), join(path, "type")) // expands ${VAR}
	}
	if typ == nil || typ.Value == "" {
		w.fail(n, join(path, "type"), "required: one of %s", strings.Join(w.types.Names(), ", "))
		return
	}
	t, ok := w.types[typ.Value]
	if !ok {
		w.fail(typ, join(path, "type"), "unknown backend type %q (known: %s)", typ.Value, strings.Join(w.types.Names(), ", "))
		return
	}
	w.walk(rest, reflect.TypeOf(t.NewConfig()), path)
}

// expandEnv replaces ${VAR} and ${VAR:-default}; $$ is a literal $. Any other $ is kept,
// so values such as passwords with a lone $ survive.
func expandEnv(s string, getenv func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("unterminated ${ in %q", s)
			}
			expr := s[i+2 : i+end]
			name, def, hasDef := strings.Cut(expr, ":-")
			if !validEnvName(name) {
				return "", fmt.Errorf("${%s}: not an environment variable name", expr)
			}
			val, ok := getenv(name)
			switch {
			case ok && val != "":
				b.WriteString(val)
			case hasDef:
				b.WriteString(def)
			case ok:
				// set but empty: an explicit empty value
			default:
				return "", fmt.Errorf("environment variable %s is not set (use ${%s:-default} for a default)", name, name)
			}
			i += end
		default:
			b.WriteByte('$')
		}
	}
	return b.String(), nil
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func yamlFields(t reflect.Type) map[string]reflect.StructField {
	m := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if opts == "inline" && f.Type.Kind() == reflect.Struct {
			// Shared settings (a backend's Entra credentials) read as the section's own.
			maps.Copy(m, yamlFields(f.Type))
			continue
		}
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		m[name] = f
	}
	return m
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.SequenceNode:
		return "list"
	case yaml.MappingNode:
		return "mapping"
	}
	return "value"
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "boolean (true or false)"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "whole number"
	case reflect.String:
		return "string"
	}
	return t.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
