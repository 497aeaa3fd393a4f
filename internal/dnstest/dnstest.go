// Package dnstest is a DNS server for tests: it answers MX (and A) queries over UDP on a
// loopback port from a fixed zone, so that code resolving MX hosts can be tested
// without the network.
package dnstest

import (
	"net"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// Zone is what the server knows.
type Zone struct {
	// MX maps a fully qualified name ("contoso.test.") to its MX records; a name mapped
	// to nil exists without MX records.
	MX map[string][]dnsmessage.MXResource
	// LoopbackA makes every name exist, with the A record 127.0.0.1. Without it, a name
	// missing from MX does not exist (NXDOMAIN).
	LoopbackA bool
}

// Serve starts the server, stopped on t.Cleanup, and returns its address (host:port).
func Serve(t testing.TB, z Zone) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if out, ok := z.answer(buf[:n]); ok {
				_, _ = pc.WriteTo(out, addr)
			}
		}
	}()
	return pc.LocalAddr().String()
}

func (z Zone) answer(query []byte) ([]byte, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, false
	}
	q, err := p.Question()
	if err != nil {
		return nil, false
	}
	name := strings.ToLower(q.Name.String())
	mxs, found := z.MX[name]
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true}
	if !found && !z.LoopbackA {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	_ = b.StartQuestions()
	_ = b.Question(q)
	_ = b.StartAnswers()
	res := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
	switch q.Type {
	case dnsmessage.TypeMX:
		for _, mx := range mxs {
			_ = b.MXResource(res, mx)
		}
	case dnsmessage.TypeA:
		if z.LoopbackA {
			_ = b.AResource(res, dnsmessage.AResource{A: [4]byte{127, 0, 0, 1}})
		}
	}
	out, err := b.Finish()
	return out, err == nil
}
