package smtp

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/mailgate/mailgate/mailerr"
)

// fakeDNS answers MX queries over UDP from a table: name → MX records (nil: the name
// exists with no MX; missing: NXDOMAIN).
func fakeDNS(t *testing.T, zone map[string][]dnsmessage.MXResource) string {
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
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			mxs, found := zone[strings.ToLower(q.Name.String())]
			rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RCode: dnsmessage.RCodeSuccess}
			if !found {
				rh.RCode = dnsmessage.RCodeNameError
			}
			b := dnsmessage.NewBuilder(nil, rh)
			b.EnableCompression()
			_ = b.StartQuestions()
			_ = b.Question(q)
			_ = b.StartAnswers()
			if q.Type == dnsmessage.TypeMX {
				for _, mx := range mxs {
					_ = b.MXResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, mx)
				}
			}
			out, err := b.Finish()
			if err == nil {
				_, _ = pc.WriteTo(out, addr)
			}
		}
	}()
	return pc.LocalAddr().String()
}

func TestResolve(t *testing.T) {
	t.Parallel()
	name := dnsmessage.MustNewName
	server := fakeDNS(t, map[string][]dnsmessage.MXResource{
		"contoso.test.": {
			{Pref: 20, MX: name("backup.contoso.test.")},
			{Pref: 10, MX: name("contoso-test.mail.protection.outlook.com.")},
		},
		"nomx.test.": nil,
		"null.test.": {{Pref: 0, MX: name(".")}},
	})
	tests := []struct {
		address string
		want    []string
		fail    string
	}{
		{"mx.example:2525", []string{"mx.example:2525"}, ""},
		{"contoso.test", []string{"contoso-test.mail.protection.outlook.com:25", "backup.contoso.test:25"}, ""},
		{"nomx.test", []string{"nomx.test:25"}, ""},
		{"null.test", nil, "null MX"},
	}
	for _, tt := range tests {
		got, err := newResolver(tt.address, server).resolve(context.Background())
		switch {
		case tt.fail != "":
			if err == nil || !strings.Contains(err.Error(), tt.fail) || mailerr.As(err, mailerr.Internal).Kind != mailerr.Unavailable {
				t.Errorf("resolve(%s) = %v, %v; want an Unavailable error with %q", tt.address, got, err, tt.fail)
			}
		case err != nil || !slices.Equal(got, tt.want):
			t.Errorf("resolve(%s) = %v, %v; want %v", tt.address, got, err, tt.want)
		}
	}
}
