package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/mailerr/mailstatus"
)

// restClient calls the REST API: JSON over HTTP/1.1 or HTTP/2.
type restClient struct {
	ep        Endpoint
	key       string
	userAgent string
	transport *http.Transport
	http      *http.Client
	// raw: the server's first bytes; app: with TLS, its first bytes inside TLS. They
	// tell a server that is not mailgate's from a network failure.
	raw, app sniffer
}

func newREST(ep Endpoint, key string, o options) *restClient {
	c := &restClient{ep: ep, key: key, userAgent: o.userAgent}
	c.transport = http.DefaultTransport.(*http.Transport).Clone()
	c.transport.TLSClientConfig = o.tls
	scheme := "http"
	if ep.TLS {
		scheme = "https"
	}
	if proxy, _ := c.transport.Proxy(&http.Request{URL: &url.URL{Scheme: scheme, Host: ep.host}}); proxy == nil {
		// Through a proxy, the first bytes are the proxy's: nothing to learn from them.
		sniffTransport(c.transport, o.tls, &c.raw, &c.app)
	}
	c.http = &http.Client{
		Transport: c.transport,
		// A redirect would turn the POST into a GET: report it instead.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c
}

func (c *restClient) Close() error {
	c.transport.CloseIdleConnections()
	return nil
}

func (c *restClient) SendMail(ctx context.Context, req *mailgatev1.SendMailRequest) (*mailgatev1.SendMailResponse, error) {
	body, err := protojson.Marshal(req)
	if err != nil {
		return nil, mailerr.Wrap(mailerr.Invalid, err, "encoding the request: %v", err)
	}
	out := new(mailgatev1.SendMailResponse)
	if e := c.do(ctx, http.MethodPost, "/v1/messages:send", body, "SendMail", out, func() bool { return out.GetId() != "" }); e != nil {
		return nil, e
	}
	return out, nil
}

func (c *restClient) GetMessage(ctx context.Context, id string) (*mailgatev1.GetMessageResponse, error) {
	out := new(mailgatev1.GetMessageResponse)
	if e := c.do(ctx, http.MethodGet, "/v1/messages/"+url.PathEscape(id), nil, "GetMessage", out, func() bool { return out.GetId() != "" }); e != nil {
		return nil, e
	}
	return out, nil
}

// do makes one call: method on path, with body as JSON, into out. valid reports whether
// an HTTP 200 answer was the method's response.
func (c *restClient) do(ctx context.Context, method, path string, body []byte, name string, out proto.Message, valid func() bool) *mailerr.Error {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	hreq, err := http.NewRequestWithContext(ctx, method, c.ep.base+path, r)
	if err != nil {
		return mailerr.Wrap(mailerr.Invalid, err, "the endpoint: %v", err)
	}
	if body != nil {
		hreq.Header.Set("Content-Type", "application/json")
	}
	hreq.Header.Set("Accept", "application/json")
	hreq.Header.Set("Authorization", "Bearer "+c.key)
	hreq.Header.Set("User-Agent", c.userAgent)
	resp, err := c.http.Do(hreq)
	if err != nil {
		if msg := wrongProtocol(classifyWire(c.raw.first()), c.ep.wants(), c.raw.first(), c.ep.host, "REST"); msg != "" {
			return notMailgate("%s", msg)
		}
		if first := c.app.first(); len(first) > 0 {
			if msg := wrongProtocol(classifyWire(first), wireHTTP1, first, c.ep.host, "REST"); msg != "" {
				return notMailgate("inside TLS, %s", msg)
			}
		}
		cause := err
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return mailerr.Wrap(mailerr.Unavailable, cause, "cannot reach the service: %s", err.Error())
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode == http.StatusOK {
		if err != nil {
			return mailerr.Wrap(mailerr.OutcomeUnknown, err, "reading the answer: %s", err.Error())
		}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, out); err != nil || !valid() {
			// A proxy that mangled mailgate's answer would look the same: the request
			// may have been carried out.
			return mailerr.Wrap(mailerr.OutcomeUnknown, ErrNotMailgate, "HTTP 200, but not a %s response: %.200q", name, b)
		}
		return nil
	}
	return restFailure(resp, b, name)
}

// sniffTransport makes transport keep the server's first bytes: below TLS in raw, and
// in app those HTTP/1.1 reads inside TLS. Over HTTP/2 (negotiated with ALPN) the framing
// itself shows a server that is not HTTP.
func sniffTransport(transport *http.Transport, tlsConfig *tls.Config, raw, app *sniffer) {
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return raw.wrap(c), nil
	}
	transport.DialContext = dial
	if tlsConfig == nil {
		return
	}
	transport.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cfg := tlsConfig.Clone()
		cfg.NextProtos = []string{"h2", "http/1.1"}
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		if tc.ConnectionState().NegotiatedProtocol == "h2" {
			// The transport speaks HTTP/2 only on a *tls.Conn it can see.
			return tc, nil
		}
		return app.wrap(tc), nil
	}
}

// restFailure classifies an error answer: by its google.rpc.Status when it is
// mailgate's (every error mailgate's REST listener writes is one, in JSON); otherwise as
// a proxy's in front of mailgate, or as a server that is not mailgate at all.
func restFailure(resp *http.Response, body []byte, name string) *mailerr.Error {
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err == nil && mt == "application/json" {
		if st, ok := mailstatus.ParseJSON(body); ok {
			if st.Code() == codes.Unimplemented {
				return notMailgate("it does not serve mailgate's %s: %s", name, st.Message())
			}
			e := mailstatus.FromStatus(st)
			if e.RetryAfter == 0 {
				e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"))
			}
			return e
		}
	}
	msg := fmt.Sprintf("HTTP %s", resp.Status)
	if text := strings.TrimSpace(string(body)); text != "" && utf8.ValidString(text) && !strings.ContainsAny(text, "<\n") {
		msg += ": " + text
	}
	// Statuses a proxy or load balancer in front of mailgate gives on its own: they
	// mean what they say for the mailgate behind it. Any other answer is not mailgate's.
	const fromProxy = " (not a mailgate answer: from a proxy in front of it? If this persists, check --server)"
	switch resp.StatusCode {
	case http.StatusRequestEntityTooLarge:
		return mailerr.New(mailerr.TooLarge, "%s (a proxy's limit, not mailgate's)", msg)
	case http.StatusTooManyRequests:
		e := mailerr.New(mailerr.Throttled, "%s", msg+fromProxy)
		e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"))
		return e
	case http.StatusRequestTimeout, http.StatusGatewayTimeout:
		return mailerr.New(mailerr.DeadlineExceeded, "%s", msg+fromProxy)
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		// It did not get an answer from mailgate either.
		return mailerr.New(mailerr.Unavailable, "%s", msg+fromProxy)
	}
	if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return notMailgate("%s to %s: give that address in --server", msg, loc)
	}
	if resp.Header.Get("Grpc-Status") != "" {
		return notMailgate("%s with gRPC headers, as a gRPC listener with TLS does: give grpcs://%s", msg, resp.Request.URL.Host)
	}
	return notMailgate("%s, without mailgate's JSON error body", msg)
}

func parseRetryAfter(v string) time.Duration {
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}
