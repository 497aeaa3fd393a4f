package config

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mailgate/mailgate/config/secret"
)

// Shim is the SMTP-to-API listener for devices and applications that speak only SMTP.
type Shim struct {
	// Listen is the plain SMTP listener, with STARTTLS; empty: no shim.
	Listen string `yaml:"listen"`
	// Delivery is queued (the default: a device gets 250 once the message is durable, and
	// mailgate delivers it at Microsoft's pace) or sync (250 only once Microsoft 365
	// accepted it).
	Delivery Delivery `yaml:"delivery"`
	// ImplicitTLSListen is a listener with TLS from the first byte (port 465 style).
	ImplicitTLSListen string `yaml:"implicit_tls_listen"`
	// TLS is the certificate for STARTTLS and implicit TLS; without one, mailgate makes a
	// self-signed certificate at start (devices rarely verify it; see docs/shim.md).
	TLS TLSFiles `yaml:"tls"`
	// MinTLS is the oldest TLS version accepted: 1.0, 1.1, 1.2 (the default) or 1.3.
	MinTLS string `yaml:"min_tls"`
	// AllowInsecureAuth allows AUTH before STARTTLS: the API key then crosses the
	// network in the clear.
	AllowInsecureAuth bool `yaml:"allow_insecure_auth"`
	// MaxMessageBytes is the SIZE announced and enforced; default limits.max_message_bytes.
	MaxMessageBytes int64 `yaml:"max_message_bytes"`
	// MaxConnections bounds the SMTP connections open at once; default 100.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerSource bounds those from one IP address; default 10.
	MaxConnectionsPerSource int `yaml:"max_connections_per_source"`
	// ReservedDeviceConnections of MaxConnections admit only clients in Devices' ranges;
	// default 10 (none without devices).
	ReservedDeviceConnections int `yaml:"reserved_device_connections"`
	// AuthTimeout is how long a client outside Devices' ranges has, from connecting, to
	// authenticate; default 30 s.
	AuthTimeout time.Duration `yaml:"auth_timeout"`
	// ReadTimeout and WriteTimeout bound each read and write on a connection.
	ReadTimeout  time.Duration `yaml:"read_timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// Hostname is the name in the greeting; default: the machine's host name.
	Hostname string `yaml:"hostname"`
	// Devices are sources admitted without AUTH, each sending as a named API key.
	Devices []Device `yaml:"devices"`
	// Upstream is the mailgate a separate `mailgate shim` process sends to; `mailgate
	// serve` runs the shim in-process and ignores it.
	Upstream Upstream `yaml:"upstream"`
}

// Device admits the hosts in CIDR without AUTH, as the API key named Key.
type Device struct {
	CIDR string `yaml:"cidr"`
	Key  string `yaml:"key"`
}

// Upstream is a remote mailgate's gRPC API.
type Upstream struct {
	// GRPC is host:port of the remote mailgate's gRPC listener.
	GRPC string `yaml:"grpc"`
	// TLS connects with TLS (CAFile adds a CA to trust).
	TLS    bool   `yaml:"tls"`
	CAFile string `yaml:"ca_file"`
	// KeyName and APIKey are the shim's own API key, used for devices admitted by address.
	KeyName string        `yaml:"key_name"`
	APIKey  secret.String `yaml:"api_key"`
}

// Enabled reports whether a shim listener is configured.
func (s Shim) Enabled() bool { return s.Listen != "" || s.ImplicitTLSListen != "" }

// TLSVersion is MinTLS as a crypto/tls version.
func (s Shim) TLSVersion() uint16 { return tlsVersions[s.MinTLS] }

var tlsVersions = map[string]uint16{"1.0": 0x0301, "1.1": 0x0302, "1.2": 0x0303, "1.3": 0x0304}

// Prefix is the device's CIDR as a masked prefix (validate the configuration first).
func (d Device) Prefix() netip.Prefix {
	p, _ := netip.ParsePrefix(d.CIDR)
	return p.Masked()
}

// validateShim checks the shim section. inProcess: devices name keys of this
// configuration; otherwise the upstream is required.
func (c *Config) validateShim(v *validator, inProcess bool) {
	s := &c.Shim
	for _, l := range []struct{ path, addr string }{{"shim.listen", s.Listen}, {"shim.implicit_tls_listen", s.ImplicitTLSListen}} {
		if l.addr == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(l.addr); err != nil {
			v.add(l.path, "want host:port, not %q", l.addr)
		} else if port != "" && !validPort(port) {
			v.add(l.path, "%q: the port must be a number from 0 to 65535 (0: any free port)", l.addr)
		}
	}
	switch s.Delivery {
	case DeliverySync, DeliveryQueued:
	default:
		v.add("shim.delivery", "must be queued (the default) or sync, not %q", s.Delivery)
	}
	if _, ok := tlsVersions[s.MinTLS]; !ok {
		v.add("shim.min_tls", "want 1.0, 1.1, 1.2 or 1.3, not %q", s.MinTLS)
	}
	switch {
	case s.TLS.Enabled() && (s.TLS.CertFile == "" || s.TLS.KeyFile == ""):
		v.add("shim.tls", "cert_file and key_file go together")
	case s.TLS.Enabled():
		if _, err := LoadKeyPair(s.TLS); err != nil {
			v.add("shim.tls", "%v", err)
		}
	}
	switch {
	case s.MaxMessageBytes < 0:
		v.add("shim.max_message_bytes", "must not be negative")
	case s.MaxMessageBytes > c.Limits.MaxMessageBytes:
		v.add("shim.max_message_bytes", "%d is more than limits.max_message_bytes (%d): the shim would take messages the service refuses",
			s.MaxMessageBytes, c.Limits.MaxMessageBytes)
	}
	if s.MaxConnections < 0 {
		v.add("shim.max_connections", "must not be negative")
	}
	if s.MaxConnectionsPerSource < 0 {
		v.add("shim.max_connections_per_source", "must not be negative")
	}
	switch {
	case s.ReservedDeviceConnections < 0:
		v.add("shim.reserved_device_connections", "must not be negative")
	case len(s.Devices) > 0 && s.MaxConnections > 0 && s.ReservedDeviceConnections >= s.MaxConnections:
		v.add("shim.reserved_device_connections", "%d leaves none of max_connections (%d) for clients that authenticate: lower it, or raise max_connections",
			s.ReservedDeviceConnections, s.MaxConnections)
	}
	if s.AuthTimeout < 0 {
		v.add("shim.auth_timeout", "must not be negative")
	}
	if s.ReadTimeout < 0 {
		v.add("shim.read_timeout", "must not be negative")
	}
	if s.WriteTimeout < 0 {
		v.add("shim.write_timeout", "must not be negative")
	}
	keys := map[string]bool{}
	for _, k := range c.Keys {
		keys[k.Name] = true
	}
	for i, d := range s.Devices {
		p := fmt.Sprintf("shim.devices[%d]", i)
		if _, err := netip.ParsePrefix(d.CIDR); err != nil {
			v.add(p+".cidr", "want an address range such as 10.20.0.0/24, not %q", d.CIDR)
		}
		switch {
		case d.Key == "":
			v.add(p+".key", "required: the API key these devices send as")
		case inProcess && !keys[d.Key]:
			v.add(p+".key", "no key named %q in keys", d.Key)
		case !inProcess && s.Upstream.KeyName == "":
			v.add(p+".key", "a separate shim sends devices' mail with its own key: set shim.upstream.key_name (and api_key), and name it here")
		case !inProcess && d.Key != s.Upstream.KeyName:
			v.add(p+".key", "a separate shim sends devices' mail with its own key: want %q (shim.upstream.key_name)", s.Upstream.KeyName)
		}
	}
	if inProcess {
		return
	}
	u := s.Upstream
	if u.GRPC == "" {
		v.add("shim.upstream.grpc", "required: host:port of the mailgate to send to")
	} else if _, _, err := net.SplitHostPort(u.GRPC); err != nil {
		v.add("shim.upstream.grpc", "want host:port, not %q", u.GRPC)
	}
	if len(s.Devices) > 0 && (u.KeyName == "" || u.APIKey.IsZero()) {
		v.add("shim.upstream.api_key", "devices admitted by address need the shim's own key: key_name and api_key (or api_key_file)")
	}
	if !s.Enabled() {
		v.add("shim.listen", "required for mailgate shim")
	}
	if u.CAFile != "" && !u.TLS {
		v.add("shim.upstream.ca_file", "only with tls: true")
	}
}

// ValidateShim validates a configuration for a separate `mailgate shim` process: the
// shim section, with its upstream, the limits it applies, and the log.
func (c *Config) ValidateShim() error {
	var v validator
	c.validateShim(&v, false)
	if c.Limits.MaxMessageBytes <= 0 {
		v.add("limits.max_message_bytes", "must be positive")
	}
	c.validateLimits(&v)
	if c.Listen.ShutdownTimeout <= 0 {
		v.add("listen.shutdown_timeout", "must be positive")
	}
	c.validateLog(&v)
	return v.err()
}
