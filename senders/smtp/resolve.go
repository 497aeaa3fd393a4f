package smtp

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/mailgate/mailgate/mailerr"
)

// resolver finds the hosts to connect to for an address: host:port as given, or a
// bare domain's MX hosts on port 25 (RFC 5321 §5.1: lowest preference first, the domain
// itself when it has no MX). Microsoft moves tenants' MX records (to mx.microsoft for
// DNSSEC), so a domain is looked up at each new connection rather than once at start.
type resolver struct {
	address string
	dns     *net.Resolver
}

func newResolver(address, server string) *resolver {
	return &resolver{address: address, dns: DNSResolver(server)}
}

// DNSResolver asks the DNS server at server (host:port), or the system's when it is "":
// a backend's `resolver`.
func DNSResolver(server string) *net.Resolver {
	if server == "" {
		return net.DefaultResolver
	}
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		},
	}
}

func (r *resolver) resolve(ctx context.Context) ([]string, error) {
	if _, _, err := net.SplitHostPort(r.address); err == nil {
		return []string{r.address}, nil
	}
	mxs, err := r.dns.LookupMX(ctx, r.address)
	var dnsErr *net.DNSError
	switch {
	case err == nil && len(mxs) == 1 && mxs[0].Host == ".":
		// RFC 7505 null MX: the domain accepts no mail.
		return nil, mailerr.New(mailerr.Unavailable, "%s publishes a null MX: it accepts no mail; check address", r.address)
	case err == nil && len(mxs) > 0:
		hosts := make([]string, 0, len(mxs))
		for _, mx := range mxs { // LookupMX sorts by preference
			hosts = append(hosts, net.JoinHostPort(strings.TrimSuffix(mx.Host, "."), "25"))
		}
		return hosts, nil
	case err == nil, errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		// No MX: the domain's own address records stand in (RFC 5321 §5.1).
		return []string{net.JoinHostPort(r.address, "25")}, nil
	}
	return nil, mailerr.Wrap(mailerr.Unavailable, err, "cannot look up the MX of %s; nothing was sent", r.address)
}
