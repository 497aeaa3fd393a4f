package entra

import (
	"errors"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/config/secret"
)

func TestCredentialsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		c    Credentials
		want string // "" means valid
	}{
		{Credentials{TenantID: "t", ClientID: "c", ClientSecret: secret.New("s")}, ""},
		{Credentials{ClientID: "c", ClientSecret: secret.New("s")}, "tenant_id: required"},
		{Credentials{TenantID: "t", ClientSecret: secret.New("s")}, "client_id: required"},
		{Credentials{TenantID: "t", ClientID: "c"}, "client_secret: give client_secret"},
		{Credentials{TenantID: "t", ClientID: "c", ClientSecret: secret.New("s"), CertificateFile: "x.pem"}, "not both"},
		{Credentials{TenantID: "t", ClientID: "c", CertificateFile: "/nonexistent.pem"}, "certificate_file:"},
		{Credentials{TenantID: "t", ClientID: "c", ClientSecret: secret.New("s"), AuthorityURL: "http://login"}, "authority_url: want an https:// URL"},
	}
	for _, tt := range tests {
		err := errors.Join(tt.c.Validate()...)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Validate(%+v) = %v, want nil", tt.c, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("Validate(%+v) = %v, want %q", tt.c, err, tt.want)
		}
	}
}

func TestFix(t *testing.T) {
	t.Parallel()
	for code, want := range map[string]string{
		"AADSTS7000215": "copy the secret's Value",
		"AADSTS7000222": "expired",
		"AADSTS700016":  "check client_id",
		"AADSTS90002":   "tenant does not exist",
		"AADSTS999999":  "check tenant_id, client_id",
	} {
		if got := Fix(errors.New(code + ": something")); !strings.Contains(got, want) {
			t.Errorf("Fix(%s) = %q, want it to contain %q", code, got, want)
		}
	}
}
