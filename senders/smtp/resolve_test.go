package smtp

import (
	"context"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/mailgate/mailgate/internal/dnstest"
	"github.com/mailgate/mailgate/mailerr"
)

func TestResolve(t *testing.T) {
	t.Parallel()
	name := dnsmessage.MustNewName
	server := dnstest.Serve(t, dnstest.Zone{MX: map[string][]dnsmessage.MXResource{
		"contoso.test.": {
			{Pref: 20, MX: name("backup.contoso.test.")},
			{Pref: 10, MX: name("contoso-test.mail.protection.outlook.com.")},
		},
		"nomx.test.": nil,
		"null.test.": {{Pref: 0, MX: name(".")}},
	}})
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
			if err == nil || !strings.Contains(err.Error(), tt.fail) || mailerr.Classify(err, mailerr.Internal).Kind != mailerr.Unavailable {
				t.Errorf("resolve(%s) = %v, %v; want an Unavailable error with %q", tt.address, got, err, tt.fail)
			}
		case err != nil || !slices.Equal(got, tt.want):
			t.Errorf("resolve(%s) = %v, %v; want %v", tt.address, got, err, tt.want)
		}
	}
}
