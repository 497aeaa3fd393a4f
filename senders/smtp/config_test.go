package smtp

import (
	"strings"
	"testing"

	"github.com/mailgate/mailgate/config/secret"
	"github.com/mailgate/mailgate/senders/entra"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	creds := entra.Credentials{TenantID: "t", ClientID: "c", ClientSecret: secret.New("s")}
	connector := func(c ConnectorConfig) ConnectorConfig {
		if c.Address == "" {
			c.Address = "contoso-com.mail.protection.outlook.com:25"
		}
		if c.AcceptedDomains == nil {
			c.AcceptedDomains = []string{"contoso.com"}
		}
		return c
	}
	tests := []struct {
		name string
		c    interface{ Validate() error }
		want string // "" means valid
	}{
		{"smtp_auth defaults", &AuthConfig{Credentials: creds}, ""},
		{"smtp_auth login", &AuthConfig{Auth: "login", Username: "a@contoso.com", Password: secret.New("p")}, ""},
		{"smtp_auth login without password", &AuthConfig{Auth: "login", Username: "a@contoso.com"}, "password: required"},
		{"smtp_auth login with app", &AuthConfig{Auth: "login", Username: "a@contoso.com", Password: secret.New("p"), Credentials: creds}, "auth: login takes username and password"},
		{"smtp_auth unknown auth", &AuthConfig{Auth: "plain", Credentials: creds}, `auth: want xoauth2 or login, not "plain"`},
		{"smtp_auth no credentials", &AuthConfig{}, "tenant_id: required"},
		{"smtp_auth username with xoauth2", &AuthConfig{Credentials: creds, Username: "a@contoso.com"}, "username: only for auth: login"},
		{"smtp_auth port 465", &AuthConfig{Credentials: creds, Connection: Connection{Address: "smtp.office365.com:465"}}, "port 465"},
		{"smtp_auth bare domain", &AuthConfig{Credentials: creds, Connection: Connection{Address: "contoso.com"}}, "address: want host:port"},
		{"smtp_auth 4 connections", &AuthConfig{Credentials: creds, Connection: Connection{MaxConnections: 4}}, "max_connections: want 1 to 3"},
		{"smtp_auth bad send_as", &AuthConfig{Credentials: creds, SendAs: []string{"*@"}}, "send_as[0]:"},
		{"relay", &RelayConfig{ConnectorConfig: connector(ConnectorConfig{})}, ""},
		{"relay MX domain", &RelayConfig{ConnectorConfig: connector(ConnectorConfig{Connection: Connection{Address: "contoso.com"}})}, ""},
		{"relay bad address", &RelayConfig{ConnectorConfig: connector(ConnectorConfig{Connection: Connection{Address: "not a host"}})}, "address: want host:port, or a domain"},
		{"relay no accepted domains", &RelayConfig{ConnectorConfig: ConnectorConfig{Connection: Connection{Address: "mx:25"}}}, "accepted_domains: list"},
		{"relay bad accepted domain", &RelayConfig{ConnectorConfig: connector(ConnectorConfig{AcceptedDomains: []string{"contoso..com"}})}, "accepted_domains[0]:"},
		{"relay bad tls", &RelayConfig{ConnectorConfig: connector(ConnectorConfig{TLS: "maybe"})}, "tls: want required or opportunistic"},
		{"relay half a key pair", &RelayConfig{ConnectorConfig: connector(ConnectorConfig{}), ClientCertFile: "c.pem"}, "give both client_cert_file and client_key_file"},
		{"relay missing cert", &RelayConfig{ConnectorConfig: connector(ConnectorConfig{}), ClientCertFile: "/nonexistent.pem", ClientKeyFile: "/nonexistent.key"}, "client_key_file: stat /nonexistent.key"},
		{"relay bad resolver", &RelayConfig{ConnectorConfig: connector(ConnectorConfig{Resolver: "10.0.0.53"})}, "resolver: want host:port"},
		{"direct_send", &DirectSendConfig{ConnectorConfig: connector(ConnectorConfig{})}, ""},
		{"direct_send no address", &DirectSendConfig{ConnectorConfig: ConnectorConfig{AcceptedDomains: []string{"contoso.com"}}}, "address: required"},
	}
	for _, tt := range tests {
		err := tt.c.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: got %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestInDomains(t *testing.T) {
	t.Parallel()
	domains := []string{"contoso.com", "Notify.Contoso.com"}
	for _, tt := range []struct {
		name       string
		subdomains bool
		want       bool
	}{
		{"contoso.com", false, true},
		{"CONTOSO.COM", false, true},
		{"notify.contoso.com", false, true},
		{"mail.contoso.com", false, false},
		{"mail.contoso.com", true, true},
		{"relay.contoso.com.", true, true},
		{"evilcontoso.com", true, false},
		{"contoso.com.evil.org", true, false},
		{"", false, false},
	} {
		if got := inDomains(tt.name, domains, tt.subdomains); got != tt.want {
			t.Errorf("inDomains(%q, subdomains=%v) = %v", tt.name, tt.subdomains, got)
		}
	}
}
