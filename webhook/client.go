package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Endpoint is a receiver of notifications and how to reach it.
type Endpoint struct {
	// Name is the endpoint's name in the configuration, for logs and metrics.
	Name string
	// URL is where notifications are POSTed: https, or http with AllowPrivate.
	URL *url.URL
	// Secrets sign each notification, one signature each (the first is the current
	// one; the others are kept during a rotation).
	Secrets []Secret
	// AllowPrivate lets the endpoint be on a loopback, private, link-local or other
	// non-public address. Off, such an address is refused at connect time, whatever the
	// name resolved to, so that a webhook cannot be pointed at the host's own services
	// or the cloud's metadata endpoint.
	AllowPrivate bool
	// Timeout bounds one attempt: connect, TLS, request and response; default 10 s.
	Timeout time.Duration
	// RootCAs verify the endpoint's certificate; nil: the system's roots.
	RootCAs *x509.CertPool
}

// DefaultTimeout is an attempt's limit when Endpoint.Timeout is 0.
const DefaultTimeout = 10 * time.Second

// Client posts signed notifications to one endpoint. It is safe for concurrent use.
type Client struct {
	ep   Endpoint
	http *http.Client
	now  func() time.Time
}

// NewClient returns a client for ep. now is the clock the signatures' timestamps come
// from; nil is time.Now.
func NewClient(ep Endpoint, now func() time.Time) *Client {
	if ep.Timeout <= 0 {
		ep.Timeout = DefaultTimeout
	}
	if now == nil {
		now = time.Now
	}
	dialer := &net.Dialer{Timeout: ep.Timeout}
	if !ep.AllowPrivate {
		// Checked on the address actually dialled, after resolution: a public name that
		// resolves (or re-resolves) to 127.0.0.1 is refused too.
		dialer.Control = refusePrivate
	}
	tr := &http.Transport{
		// No proxy from the environment: the address check would see the proxy's address,
		// not the endpoint's.
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: ep.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   ep.Timeout,
		ResponseHeaderTimeout: ep.Timeout,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	c := &Client{ep: ep, now: now}
	c.http = &http.Client{
		Transport: tr,
		Timeout:   ep.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			first := via[0].URL
			switch {
			case len(via) >= 5:
				return fmt.Errorf("%w: more than 4 redirects", ErrRedirect)
			case req.URL.Host != first.Host:
				return fmt.Errorf("%w: to %s, another host than %s", ErrRedirect, req.URL.Host, first.Host)
			case req.URL.Scheme != first.Scheme:
				return fmt.Errorf("%w: from %s to %s", ErrRedirect, first.Scheme, req.URL.Scheme)
			}
			return nil
		},
	}
	return c
}

// Endpoint is the endpoint the client posts to.
func (c *Client) Endpoint() Endpoint { return c.ep }

// Errors of Post, besides a *StatusError.
var (
	// ErrGone: the endpoint answered 410 Gone, its way of asking to be sent nothing
	// more; it is to be disabled, not retried.
	ErrGone = errors.New("webhook endpoint answered 410 Gone: it asks to be sent nothing more")
	// ErrRedirect: the endpoint redirected elsewhere than itself (another host or
	// scheme), which is refused so that a webhook cannot be bounced to another server.
	ErrRedirect = errors.New("webhook redirect refused")
	// ErrPrivateAddress: the endpoint's address is not public and AllowPrivate is off.
	ErrPrivateAddress = errors.New("webhook endpoint is on a private, loopback or link-local address (set allow_private: true to allow it)")
)

// StatusError is an answer other than 2xx (and other than 410).
type StatusError struct {
	Status int
	// RetryAfter is the endpoint's Retry-After (seconds or an HTTP date), 0 if none.
	RetryAfter time.Duration
	// Body is the start of the answer, for the operator's log.
	Body string
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("webhook endpoint answered %d %s", e.Status, http.StatusText(e.Status))
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// maxLoggedBody is how much of an error answer a StatusError keeps.
const maxLoggedBody = 200

// Post sends body as notification id, signed with the endpoint's secrets at the
// current time, and reports whether the endpoint took it (a 2xx answer). A failure is
// ErrGone (disable the endpoint), a *StatusError, or a network, TLS, timeout,
// redirect or address error (wrapped); all but ErrGone may succeed if retried later
// with the same id, which lets the receiver discard a notification it already has.
func (c *Client) Post(ctx context.Context, id string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.ep.URL.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mailgate-webhooks")
	SetHeaders(req.Header, id, c.now(), body, c.ep.Secrets...)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, maxLoggedBody))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection can be reused
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusGone:
		return ErrGone
	}
	return &StatusError{
		Status:     resp.StatusCode,
		RetryAfter: retryAfter(resp.Header.Get("Retry-After"), c.now()),
		Body:       strings.ToValidUTF8(strings.TrimSpace(string(head)), "?"),
	}
}

func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// refusePrivate is the dialer's Control when private addresses are not allowed.
func refusePrivate(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot read address %q", ErrPrivateAddress, address)
	}
	if !Public(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrPrivateAddress, ap.Addr())
	}
	return nil
}

// nonPublic are ranges that IsPrivate and the other netip predicates leave out but that
// are not the public Internet either.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and the broadcast address
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: may map to any IPv4 address
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation (TEST-NET-1)
	netip.MustParsePrefix("198.51.100.0/24"), // documentation (TEST-NET-2)
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation (TEST-NET-3)
}

// Public reports whether a is an address on the public Internet: not loopback,
// private (RFC 1918, fc00::/7), link-local (169.254.0.0/16 with the cloud metadata
// endpoints, fe80::/10), unspecified, multicast, or one of the other special ranges.
func Public(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}
