package client

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"unicode/utf8"
)

// sniffLen is how many of a server's first bytes are kept: enough for an HTTP/2 frame
// header, a TLS record header, "HTTP/1.1 400" or an SMTP greeting's start.
const sniffLen = 64

// sniffer keeps the first bytes a server sent on the latest connection that sent any.
// When an exchange fails, they tell a network failure (nothing came back: retry later)
// from a server that speaks another protocol than the one asked for (a wrong --server:
// retrying cannot help).
type sniffer struct {
	mu   sync.Mutex
	head []byte
}

func (s *sniffer) wrap(c net.Conn) net.Conn { return &sniffConn{Conn: c, s: s} }

// first returns a copy of the bytes kept.
func (s *sniffer) first() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.head)
}

type sniffConn struct {
	net.Conn
	s    *sniffer
	kept int
}

func (c *sniffConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.kept < sniffLen {
		k := min(n, sniffLen-c.kept)
		c.s.mu.Lock()
		if c.kept == 0 {
			c.s.head = c.s.head[:0]
		}
		c.s.head = append(c.s.head, p[:k]...)
		c.s.mu.Unlock()
		c.kept += k
	}
	return n, err
}

// wireProtocol is what a server's first bytes look like.
type wireProtocol int

const (
	wireNothing wireProtocol = iota // no byte came back
	wireHTTP1                       // "HTTP/1.1 ..."
	wireHTTP2                       // an HTTP/2 frame: a gRPC listener without TLS
	wireTLS                         // a TLS record
	wireSMTP                        // "220 ..." (or another three-digit reply)
	wireOther
)

func (p wireProtocol) String() string {
	switch p {
	case wireHTTP1:
		return "HTTP/1.x"
	case wireHTTP2:
		return "HTTP/2 without TLS"
	case wireTLS:
		return "TLS"
	case wireSMTP:
		return "SMTP"
	case wireNothing:
		return "nothing"
	}
	return "an unknown protocol"
}

// classifyWire names the protocol of a server's first bytes.
func classifyWire(b []byte) wireProtocol {
	switch {
	case len(b) == 0:
		return wireNothing
	case bytes.HasPrefix(b, []byte("HTTP/")) || len(b) < 5 && bytes.HasPrefix([]byte("HTTP/"), b):
		return wireHTTP1
	// A TLS record: handshake, alert, change_cipher_spec or application_data, version 3.x.
	case len(b) >= 2 && b[0] >= 0x14 && b[0] <= 0x17 && b[1] == 0x03:
		return wireTLS
	// An HTTP/2 frame header: 24-bit length, type SETTINGS (4) or GOAWAY (7) on stream
	// 0, the first thing an HTTP/2 server sends (RFC 9113, 3.4).
	case len(b) >= 9 && (b[3] == 0x04 || b[3] == 0x07) && b[5]&0x7f == 0 && b[6] == 0 && b[7] == 0 && b[8] == 0:
		return wireHTTP2
	case len(b) >= 4 && isDigit(b[0]) && isDigit(b[1]) && isDigit(b[2]) && (b[3] == ' ' || b[3] == '-'):
		return wireSMTP
	}
	return wireOther
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// quoteStart shows the start of what a server sent, for a person: its first line when
// it is text, else its first bytes.
func quoteStart(b []byte) string {
	if i := bytes.IndexAny(b, "\r\n"); i >= 0 {
		b = b[:i]
	}
	if len(b) > 40 {
		b = b[:40]
	}
	if utf8.Valid(b) && !bytes.ContainsFunc(b, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("% x", b)
}

// noApplicationProtocol reports whether a server's first bytes are the TLS alert
// no_application_protocol (RFC 7301): it speaks none of the protocols offered by ALPN.
// The alert comes before any encryption, so it can be read here.
func noApplicationProtocol(b []byte) bool {
	return len(b) >= 7 && b[0] == 0x15 && b[1] == 0x03 && b[5] == 2 && b[6] == 120
}

// wrongProtocol explains a server that answered in got where want was expected, with
// what to give instead ("" when got is want, or nothing came back). hostport is where
// the server is; api is "REST" or "gRPC".
func wrongProtocol(got, want wireProtocol, first []byte, hostport, api string) string {
	if got == wireTLS && want == wireTLS && noApplicationProtocol(first) {
		if api == "gRPC" {
			return fmt.Sprintf("the server at %s speaks TLS, but not HTTP/2, which gRPC needs: for REST, give https://%s; for gRPC, the address of listen.grpc", hostport, hostport)
		}
		return fmt.Sprintf("the server at %s speaks TLS, but neither HTTP/1.1 nor HTTP/2: give the address of listen.http", hostport)
	}
	if got == want || got == wireNothing {
		return ""
	}
	msg := fmt.Sprintf("the server at %s answers in %s", hostport, got)
	if got == wireSMTP || got == wireOther {
		msg += " (" + quoteStart(first) + ")"
	}
	listen := "listen.http"
	if api == "gRPC" {
		listen = "listen.grpc"
	}
	switch got {
	case wireHTTP2:
		// Only a REST client expects anything but HTTP/2 frames from a gRPC listener.
		return msg + fmt.Sprintf(", as mailgate's gRPC listener does: for gRPC, give grpc://%s; for REST, the address of listen.http", hostport)
	case wireHTTP1:
		if api == "gRPC" {
			return msg + fmt.Sprintf(", as mailgate's REST listener does: for REST, give http://%s; for gRPC, the address of listen.grpc", hostport)
		}
		return msg + fmt.Sprintf(", without TLS: give http://%s", hostport)
	case wireTLS:
		scheme := "https"
		if api == "gRPC" {
			scheme = "grpcs"
		}
		return msg + fmt.Sprintf(": give %s://%s (with --ca-file for a private CA)", scheme, hostport)
	case wireSMTP:
		return msg + ": an SMTP server, such as mailgate's shim: give the address of " + listen
	}
	return msg + ": give the address of mailgate's " + listen
}
