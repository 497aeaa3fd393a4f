// Package shim is mailgate's SMTP-to-API adapter: an SMTP listener for devices and
// applications that speak only SMTP (scanners, printers, line-of-business software).
// Each message it receives becomes one SendMail call: the raw message with its SMTP
// envelope, sent as the API key the client authenticated with (AUTH PLAIN or LOGIN: the
// key's name and the key itself) or, for hosts admitted by address, as a configured key.
// Every rule (who may send as which From, routing, limits, idempotency) is the
// service's; the shim only speaks SMTP, and is never an open relay.
//
// The shim answers 250 only once the service has accepted the message, so a device is
// never told a message went out that mailgate could still lose. A device that lost the
// 250 and sends the same message again gets one delivery: the idempotency key is derived
// from the principal and the Message-ID (the shim adds a Message-ID derived from the
// message itself when the device sent none).
package shim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/emersion/go-smtp"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/server/apikey"
)

// Principal is who a connection sends as (see apikey.Principal).
type Principal = apikey.Principal

// Submitter is mailgate's MailService as the shim uses it: in the same process
// (server.Local), or a remote mailgate over gRPC (Remote).
//
// Authenticate checks an AUTH: name is an API key's name and secret the key. A failure
// that is the client's (unknown key, wrong name) is errBadCredentials-like: the shim
// answers 535; any other error is temporary (454).
//
// SendMail sends req as p and returns the service's response, or its error: a gRPC
// status, or an error holding a *mailerr.Error (a service in the same process returns
// mailstatus.Err). The shim decodes it once (mailstatus.FromError) and answers through
// package mailerr's table.
type Submitter interface {
	Authenticate(ctx context.Context, name, secret string) (Principal, error)
	SendMail(ctx context.Context, p Principal, req *mailgatev1.SendMailRequest) (*mailgatev1.SendMailResponse, error)
}

// ErrBadCredentials is what Submitter.Authenticate returns for credentials it does not
// accept: the shim answers 535.
var ErrBadCredentials = apikey.ErrBadCredentials

// Device admits the hosts in Prefix without AUTH, as Principal.
type Device struct {
	Prefix    netip.Prefix
	Principal Principal
}

// Options configure a shim Server.
type Options struct {
	Submitter Submitter
	// TLS serves STARTTLS and implicit TLS; nil: neither is offered.
	TLS *tls.Config
	// AllowInsecureAuth allows AUTH before STARTTLS.
	AllowInsecureAuth bool
	// Hostname is the name in the greeting and EHLO reply.
	Hostname string
	// MaxMessageBytes is announced with SIZE; bigger messages get 552.
	MaxMessageBytes int64
	// MaxRecipients per message; more get 452.
	MaxRecipients int
	// MaxConnections open at once; more are answered 421 and closed. 0: no limit.
	MaxConnections int
	// MaxConnectionsPerSource open at once from one IP address; more are answered 421
	// and closed. 0: no limit.
	MaxConnectionsPerSource int
	// ReservedDeviceConnections of MaxConnections admit only clients in Devices' ranges,
	// so that others cannot take the last ones. Without Devices, none are reserved.
	ReservedDeviceConnections int
	// AuthTimeout is how long a client outside Devices' ranges has, from connecting, to
	// authenticate; then the session ends (421 4.4.2). 0: no limit but ReadTimeout.
	AuthTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// SubmitTimeout bounds one SendMail; default 3 min.
	SubmitTimeout time.Duration
	// Queued asks for queued delivery: the client gets 250 once mailgate holds the
	// message durably, not once Microsoft 365 took it. A device that is told 451 when
	// Microsoft is busy usually drops the scan; one that is told 250 is done.
	Queued  bool
	Devices []Device
	Logger  *slog.Logger
	// Metrics, when set, counts connections, AUTH results and replies.
	Metrics *Metrics
}

// Server is a running shim: one go-smtp server over any number of listeners.
type Server struct {
	smtp      *smtp.Server
	opts      Options
	log       *slog.Logger
	conns     *connLimit
	listeners []listener // what Listen opened, for Serve
}

// MaxLineBytes is the longest line the shim reads, command or message; a longer one
// ends the session with 500 5.4.0. Body lines up to this length are delivered.
const MaxLineBytes = 1 << 20

// New returns a shim server without listeners; ServeListener serves it on one. Listen
// opens its own.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.SubmitTimeout <= 0 {
		opts.SubmitTimeout = 3 * time.Minute
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	s := &Server{opts: opts, log: opts.Logger}
	s.conns = &connLimit{
		max:         opts.MaxConnections,
		perSource:   opts.MaxConnectionsPerSource,
		authTimeout: opts.AuthTimeout,
		isDevice:    func(ip netip.Addr) bool { _, ok := s.deviceAt(ip); return ok },
		metrics:     opts.Metrics,
		log:         s.log,
		bySource:    make(map[netip.Addr]int),
	}
	if len(opts.Devices) > 0 {
		s.conns.reserved = opts.ReservedDeviceConnections
	}
	srv := smtp.NewServer(&backend{s: s})
	srv.Domain = opts.Hostname
	srv.TLSConfig = recordingHellos(opts.TLS)
	srv.TLSHandshakeFailed = s.handshakeFailed
	srv.AllowInsecureAuth = opts.AllowInsecureAuth
	srv.MaxMessageBytes = opts.MaxMessageBytes
	srv.MaxRecipients = opts.MaxRecipients
	// go-smtp applies one line limit to commands and to DATA alike, 2000 bytes by
	// default. Devices write body lines far longer than that (base64 without breaks,
	// HTML on one line), and mailgate's own parser answers 554 5.6.0 for an over-long
	// header line; so the limit here only bounds what one line may make a session
	// buffer, including before AUTH.
	srv.MaxLineLength = MaxLineBytes
	srv.ReadTimeout = opts.ReadTimeout
	srv.WriteTimeout = opts.WriteTimeout
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = errorLog{s.log}
	s.smtp = srv
	return s
}

// ServeListener accepts connections on ln until Shutdown; with implicitTLS, each
// connection starts with a TLS handshake (port 465 style).
func (s *Server) ServeListener(ln net.Listener, implicitTLS bool) error {
	// The limit counts TCP connections, under TLS: go-smtp must see the *tls.Conn itself
	// to know a session is encrypted.
	ln = s.conns.wrap(ln, implicitTLS)
	if implicitTLS {
		if s.smtp.TLSConfig == nil {
			return errors.New("shim: implicit TLS needs a certificate")
		}
		ln = tls.NewListener(ln, s.smtp.TLSConfig)
	}
	err := s.smtp.Serve(ln)
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and waits, as long as ctx allows, for the
// sessions to end: a message being submitted finishes first, so no device loses a reply
// to a message mailgate accepted. Sessions still open when ctx is done are cut.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.smtp.Shutdown(ctx)
	switch {
	case errors.Is(err, smtp.ErrServerClosed):
		return nil
	case ctx.Err() != nil:
		// Idle sessions would otherwise hold the process until their read timeout.
		s.smtp.Close()
		return nil
	}
	return err
}

// device returns the principal for a client admitted by its address.
func (s *Server) device(addr net.Addr) (Principal, bool) { return s.deviceAt(addrOf(addr)) }

func (s *Server) deviceAt(ip netip.Addr) (Principal, bool) {
	if !ip.IsValid() {
		return Principal{}, false
	}
	for _, d := range s.opts.Devices {
		if d.Prefix.Contains(ip) {
			return d.Principal, true
		}
	}
	return Principal{}, false
}

// errorLog routes go-smtp's own messages (accept errors, broken connections) to slog;
// failed TLS handshakes have their own line (handshakeFailed).
type errorLog struct{ log *slog.Logger }

func (l errorLog) Printf(format string, v ...any) {
	l.log.Warn("smtp shim", "detail", fmt.Sprintf(format, v...))
}

func (l errorLog) Println(v ...any) { l.log.Warn("smtp shim", "detail", fmt.Sprint(v...)) }
