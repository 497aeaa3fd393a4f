// Package client is a Go client of mailgate's MailService, over REST or gRPC.
//
// New returns a Client for an endpoint URL: http:// or https:// for the REST API,
// grpc:// or grpcs:// for gRPC. Both transports send the same request and give the same
// answers. Every failure comes back as a *mailerr.Error, decoded once from the service's
// google.rpc.Status (mailstatus.FromStatus): its Kind says what the caller may do (retry
// later, fix the request, fix the key), its Reason names the failure as the service did
// ("" when the error did not come from mailgate's handlers), and Fields lists a bad
// request's field violations. An answer that did not come from a mailgate service (a
// wrong address, another protocol, a web server without mailgate's error body) is an
// error that wraps ErrNotMailgate: retrying cannot help, the endpoint must be fixed.
//
// A failure of the transport itself (connection refused, no answer) is
// mailerr.Unavailable, and nothing was sent. After mailerr.OutcomeUnknown,
// mailerr.DeadlineExceeded or mailerr.Canceled the message may have gone out: retry only
// with the same idempotency key.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/mailerr"
)

// Client calls a mailgate service. Its methods may be called concurrently.
type Client interface {
	// SendMail sends one message; see mailgate.v1.MailService/SendMail. An error is a
	// *mailerr.Error.
	SendMail(ctx context.Context, req *mailgatev1.SendMailRequest) (*mailgatev1.SendMailResponse, error)
	// GetMessage returns what mailgate recorded about a message it accepted with the
	// same API key; mailerr.NotFound when there is none. An error is a *mailerr.Error.
	GetMessage(ctx context.Context, id string) (*mailgatev1.GetMessageResponse, error)
	// Close releases the client's connections.
	Close() error
}

// ErrNotMailgate is wrapped by the errors for answers that are not a mailgate service's.
var ErrNotMailgate = errors.New("not a mailgate endpoint")

// notMailgate is an answer that is not mailgate's, of kind Internal: nothing mailgate
// said is known.
func notMailgate(format string, args ...any) *mailerr.Error {
	return mailerr.Wrap(mailerr.Internal, ErrNotMailgate, format, args...)
}

// Option configures New.
type Option func(*options)

type options struct {
	tls       *tls.Config
	userAgent string
}

// WithTLSConfig sets the TLS configuration for https:// and grpcs:// (by default, the
// system's roots and TLS 1.2 at least).
func WithTLSConfig(c *tls.Config) Option { return func(o *options) { o.tls = c } }

// WithUserAgent sets the User-Agent of the requests.
func WithUserAgent(ua string) Option { return func(o *options) { o.userAgent = ua } }

// New returns a Client of the service at endpoint (see ParseEndpoint) that sends key as
// its API key. It does not connect: the first call does.
func New(endpoint, key string, opts ...Option) (Client, error) {
	ep, err := ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	if key == "" || strings.ContainsAny(key, "\r\n") {
		return nil, errors.New("the API key is empty or holds a line break")
	}
	o := options{userAgent: "mailgate-client"}
	for _, opt := range opts {
		opt(&o)
	}
	if ep.TLS && o.tls == nil {
		o.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if !ep.TLS {
		o.tls = nil
	}
	if ep.GRPC {
		return newGRPC(ep, key, o)
	}
	return newREST(ep, key, o), nil
}

// Endpoint is where a client sends: a parsed endpoint URL.
type Endpoint struct {
	// GRPC: gRPC (grpc://, grpcs://), else REST (http://, https://).
	GRPC bool
	// TLS: https:// or grpcs://.
	TLS bool
	// base is the REST API's base URL, without a trailing slash; for gRPC, host:port.
	base string
	// host is the server's host[:port], as given.
	host string
}

// API is "gRPC" or "REST".
func (ep Endpoint) API() string {
	if ep.GRPC {
		return "gRPC"
	}
	return "REST"
}

// wants is the protocol the server must answer the first bytes in.
func (ep Endpoint) wants() wireProtocol {
	switch {
	case ep.TLS:
		return wireTLS
	case ep.GRPC:
		return wireHTTP2
	}
	return wireHTTP1
}

// ParseEndpoint parses an endpoint URL: http://HOST:PORT or https://HOST[:PORT] (with a
// path prefix, when a proxy serves the API under one) for REST, grpc://HOST:PORT or
// grpcs://HOST[:PORT] for gRPC.
func ParseEndpoint(s string) (Endpoint, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return Endpoint{}, fmt.Errorf("%q: give http://HOST:PORT, https://HOST[:PORT], grpc://HOST:PORT or grpcs://HOST[:PORT]", s)
	}
	switch u.Scheme {
	case "http", "https":
		u.Path = strings.TrimSuffix(u.Path, "/")
		u.RawPath = ""
		return Endpoint{TLS: u.Scheme == "https", base: u.String(), host: u.Host}, nil
	case "grpc", "grpcs":
		if u.Path != "" && u.Path != "/" {
			return Endpoint{}, fmt.Errorf("%q: a gRPC server has no path", s)
		}
		host := u.Host
		if u.Port() == "" {
			if u.Scheme == "grpc" {
				return Endpoint{}, fmt.Errorf("%q: give the port, as in grpc://127.0.0.1:9090", s)
			}
			host = net.JoinHostPort(u.Hostname(), "443")
		}
		return Endpoint{GRPC: true, TLS: u.Scheme == "grpcs", base: host, host: host}, nil
	}
	return Endpoint{}, fmt.Errorf("%q: the scheme must be http, https, grpc or grpcs", s)
}
