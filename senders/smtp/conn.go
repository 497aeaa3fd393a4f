package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/smtp"
	"time"
)

// conn is one SMTP session, past EHLO, STARTTLS and AUTH, ready for MAIL FROM. Only
// one goroutine uses it at a time (the pool hands it out exclusively).
type conn struct {
	nc      net.Conn
	client  *smtp.Client
	host    string // the server's name, for messages
	timeout time.Duration

	reused    bool // it carried an earlier message
	idleSince time.Time
}

// step runs one SMTP exchange under the per-command timeout. net/smtp sets no deadlines
// of its own.
func (c *conn) step(fn func() error) error {
	_ = c.nc.SetDeadline(time.Now().Add(c.timeout))
	return fn()
}

func (c *conn) reset() error { return c.step(c.client.Reset) }

// quit ends the session politely, without waiting long for a server that is gone.
func (c *conn) quit() {
	_ = c.nc.SetDeadline(time.Now().Add(5 * time.Second))
	_ = c.client.Quit()
	_ = c.client.Close()
}

func (c *conn) close() { _ = c.client.Close() }

// watch closes the connection if ctx ends first, so that no exchange outlives the
// caller's deadline; the returned stop must be called when the exchange is over.
func (c *conn) watch(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = c.nc.Close() })
}

// dialer opens sessions to one kind of server.
type dialer struct {
	helo        string
	timeout     time.Duration
	tls         *tls.Config // base config; ServerName is set per host
	tlsRequired bool
	resolve     func(ctx context.Context) ([]string, error) // host:port candidates, in order
}

// dial connects to the first candidate that answers, and runs EHLO and STARTTLS.
// authenticate, when set, runs last. A failure is a classified *mailerr.Error.
func (d *dialer) dial(ctx context.Context, authenticate func(*conn) error) (*conn, error) {
	hosts, err := d.resolve(ctx)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, hp := range hosts {
		c, err := d.open(ctx, hp, authenticate)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		// Another MX host is worth trying when this one could not be reached or was
		// busy; a refusal from the server would be the tenant's answer everywhere.
		if !tryNextHost(err) || ctx.Err() != nil {
			break
		}
	}
	return nil, firstClassified(errs)
}

func (d *dialer) open(ctx context.Context, hostport string, authenticate func(*conn) error) (*conn, error) {
	host, _, _ := net.SplitHostPort(hostport)
	nd := net.Dialer{Timeout: min(d.timeout, 30*time.Second)}
	nc, err := nd.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return nil, unreachable(hostport, err)
	}
	c := &conn{nc: nc, host: host, timeout: d.timeout}
	stop := c.watch(ctx)
	defer stop()
	err = c.step(func() (err error) {
		c.client, err = smtp.NewClient(nc, host)
		return err
	})
	if err != nil {
		_ = nc.Close()
		return nil, sessionError(c, "connect", err)
	}
	if err := c.step(func() error { return c.client.Hello(d.helo) }); err != nil {
		c.close()
		return nil, sessionError(c, "EHLO", err)
	}
	if ok, _ := c.client.Extension("STARTTLS"); ok {
		cfg := d.tls.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
		if err := c.step(func() error { return c.client.StartTLS(cfg) }); err != nil {
			c.close()
			return nil, sessionError(c, "STARTTLS", err)
		}
	} else if d.tlsRequired {
		c.quit()
		return nil, noTLS(hostport)
	}
	if authenticate != nil {
		if err := authenticate(c); err != nil {
			c.close()
			return nil, err
		}
	}
	if ctx.Err() != nil {
		c.quit()
		return nil, sessionError(c, "connect", ctx.Err())
	}
	return c, nil
}

// firstClassified returns the most telling of the errors from several hosts: a reply
// from a server over a failure to reach one.
func firstClassified(errs []error) error {
	for _, err := range errs {
		var r *replyError
		if errors.As(err, &r) {
			return err
		}
	}
	return errs[0]
}
