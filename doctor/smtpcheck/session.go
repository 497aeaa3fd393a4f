package smtpcheck

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"net/textproto"
	"strings"
	"time"

	"github.com/mailgate/mailgate/senders/smtp"
)

// session is the doctor's own SMTP client: one command at a time, each under the
// doctor's timeout, with the replies kept whole for the report. It never sends DATA.
type session struct {
	raw      net.Conn // the TCP connection, closed when ctx ends
	nc       net.Conn // raw, or the TLS connection over it
	tp       *textproto.Conn
	host     string // the server's name, as in address
	hostport string
	timeout  time.Duration
	stop     func() bool

	lines []string          // the lines of the last reply
	ext   map[string]string // EHLO keywords (upper case) → parameters
	exts  []string          // the EHLO lines, as given
}

func newSession(ctx context.Context, nc net.Conn, hostport string, timeout time.Duration) *session {
	host, _, _ := net.SplitHostPort(hostport)
	return &session{
		raw: nc, nc: nc, tp: textproto.NewConn(nc), host: host, hostport: hostport, timeout: timeout,
		stop: context.AfterFunc(ctx, func() { _ = nc.Close() }),
	}
}

// upgrade continues the session over tc, after STARTTLS.
func (s *session) upgrade(tc net.Conn) {
	s.nc, s.tp, s.ext, s.exts = tc, textproto.NewConn(tc), nil, nil
}

// read reads one reply, of any code.
func (s *session) read() (smtp.Reply, error) {
	_ = s.nc.SetDeadline(time.Now().Add(s.timeout))
	code, msg, err := s.tp.ReadResponse(0)
	if err != nil {
		return smtp.Reply{}, err
	}
	s.lines = strings.Split(msg, "\n")
	return newReply(code, msg), nil
}

// cmd sends one command line and reads the reply. The error is for the connection
// only: a refusal is a reply.
func (s *session) cmd(format string, args ...any) (smtp.Reply, error) {
	_ = s.nc.SetDeadline(time.Now().Add(s.timeout))
	if err := s.tp.PrintfLine(format, args...); err != nil {
		return smtp.Reply{}, err
	}
	return s.read()
}

// hello sends EHLO and keeps the extensions of a 250 reply.
func (s *session) hello(name string) (smtp.Reply, error) {
	r, err := s.cmd("EHLO %s", name)
	if err != nil || r.Code != 250 {
		return r, err
	}
	s.ext, s.exts = map[string]string{}, nil
	for _, l := range s.lines[1:] {
		l = strings.TrimSpace(l)
		kw, params, _ := strings.Cut(l, " ")
		s.ext[strings.ToUpper(kw)] = params
		s.exts = append(s.exts, l)
	}
	return r, nil
}

// authXOAUTH2 is SASL XOAUTH2 as Microsoft documents it, with the initial response.
// A 334 (an error challenge) is answered with an empty line, for the final reply.
func (s *session) authXOAUTH2(user, token string) (smtp.Reply, error) {
	ir := base64.StdEncoding.EncodeToString([]byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01"))
	r, err := s.cmd("AUTH XOAUTH2 %s", ir)
	if err == nil && r.Code == 334 {
		r, err = s.cmd("")
	}
	return r, err
}

// authLogin is SASL LOGIN: the user name and the password, each when asked.
func (s *session) authLogin(user, password string) (smtp.Reply, error) {
	r, err := s.cmd("AUTH LOGIN")
	for i := 0; err == nil && r.Code == 334 && i < 2; i++ {
		challenge, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(s.lines[0]))
		var answer string
		switch strings.ToLower(string(challenge)) {
		case "username:":
			answer = user
		case "password:":
			answer = password
		default:
			_, _ = s.cmd("*") // cancel the exchange
			return r, errors.New("unexpected LOGIN challenge from the server")
		}
		r, err = s.cmd("%s", base64.StdEncoding.EncodeToString([]byte(answer)))
	}
	return r, err
}

// quit ends the session politely, without waiting long for a server that is gone.
func (s *session) quit() {
	_ = s.nc.SetDeadline(time.Now().Add(5 * time.Second))
	if s.tp.PrintfLine("QUIT") == nil {
		_, _, _ = s.tp.ReadResponse(0)
	}
	s.close()
}

func (s *session) close() {
	s.stop()
	_ = s.nc.Close()
	_ = s.raw.Close()
}
