package graphtest

import (
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestOpenIDConfiguration(t *testing.T) {
	f := New(t)
	r := do(t, f, req{method: "GET", url: f.AuthorityURL() + TenantID + "/v2.0/.well-known/openid-configuration"})
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	m := r.json(t)
	base := strings.TrimSuffix(f.AuthorityURL(), "/") + "/" + TenantID
	for k, want := range map[string]string{
		"token_endpoint":         base + "/oauth2/v2.0/token",
		"issuer":                 base + "/v2.0",
		"authorization_endpoint": base + "/oauth2/v2.0/authorize",
		"jwks_uri":               base + "/discovery/v2.0/keys",
	} {
		if m[k] != want {
			t.Errorf("%s = %v, want %s", k, m[k], want)
		}
	}
	if f.TokenURL() != base+"/oauth2/v2.0/token" {
		t.Errorf("TokenURL = %s", f.TokenURL())
	}

	r = do(t, f, req{method: "GET", url: f.AuthorityURL() + "11111111-2222-3333-4444-555555555555/v2.0/.well-known/openid-configuration"})
	if r.status != 400 || r.json(t)["error"] != "invalid_tenant" {
		t.Errorf("unknown tenant: %d %s", r.status, r.body)
	}

	for _, p := range []string{"common/discovery/instance", TenantID + "/discovery/instance"} {
		r = do(t, f, req{method: "GET", url: f.AuthorityURL() + p + "?api-version=1.1&authorization_endpoint=" + url.QueryEscape(base+"/oauth2/v2.0/authorize")})
		if r.status != 200 {
			t.Fatalf("%s: %d %s", p, r.status, r.body)
		}
		if tde, _ := r.json(t)["tenant_discovery_endpoint"].(string); !strings.HasSuffix(tde, "/{tenant}/v2.0/.well-known/openid-configuration") {
			t.Errorf("%s: tenant_discovery_endpoint %q", p, tde)
		}
	}
}

func TestTokenEndpoint(t *testing.T) {
	f := New(t)
	tests := []struct {
		name       string
		tenant     string
		form       url.Values
		basic      [2]string
		status     int
		err        string
		descPrefix string
		code       float64
	}{
		{name: "secret", form: secretForm(GraphScope), status: 200},
		{name: "msal scopes", form: secretForm(GraphScope + " openid offline_access profile"), status: 200},
		{name: "smtp resource", form: secretForm("https://outlook.office365.com/.default"), status: 200},
		{name: "tenant case", tenant: strings.ToUpper(TenantID), form: secretForm(GraphScope), status: 200},
		{name: "basic auth", form: url.Values{"grant_type": {"client_credentials"}, "scope": {GraphScope}},
			basic: [2]string{ClientID, ClientSecret}, status: 200},
		{name: "wrong secret", form: func() url.Values { v := secretForm(GraphScope); v.Set("client_secret", "nope"); return v }(),
			status: 401, err: "invalid_client", descPrefix: "AADSTS7000215: Invalid client secret provided.", code: 7000215},
		{name: "unknown client", form: func() url.Values {
			v := secretForm(GraphScope)
			v.Set("client_id", "00000000-0000-0000-0000-000000000001")
			return v
		}(),
			status: 400, err: "unauthorized_client", descPrefix: "AADSTS700016: Application with identifier '00000000-0000-0000-0000-000000000001' was not found", code: 700016},
		{name: "missing client", form: func() url.Values { v := secretForm(GraphScope); v.Del("client_id"); return v }(),
			status: 400, err: "invalid_request", descPrefix: "AADSTS900144:", code: 900144},
		{name: "wrong tenant", tenant: "11111111-2222-3333-4444-555555555555", form: secretForm(GraphScope),
			status: 400, err: "invalid_request", descPrefix: "AADSTS90002: Tenant '11111111-2222-3333-4444-555555555555' not found.", code: 90002},
		{name: "common tenant", tenant: "common", form: secretForm(GraphScope), status: 400, err: "invalid_request", code: 90002},
		{name: "scope without .default", form: secretForm("https://graph.microsoft.com/Mail.Send"),
			status: 400, err: "invalid_scope", descPrefix: "AADSTS70011: The provided value for the input parameter 'scope' is not valid.", code: 70011},
		{name: "missing scope", form: func() url.Values { v := secretForm(GraphScope); v.Del("scope"); return v }(),
			status: 400, err: "invalid_scope", descPrefix: "AADSTS70011:", code: 70011},
		{name: "only openid", form: secretForm("openid profile"), status: 400, err: "invalid_scope", code: 70011},
		{name: "two resources", form: secretForm(GraphScope + " https://outlook.office365.com/.default"), status: 400, err: "invalid_scope", code: 70011},
		{name: "bare .default", form: secretForm("/.default"), status: 400, err: "invalid_scope", code: 70011},
		{name: "password grant", form: func() url.Values { v := secretForm(GraphScope); v.Set("grant_type", "password"); return v }(),
			status: 400, err: "unsupported_grant_type", code: 70003},
		{name: "missing grant", form: func() url.Values { v := secretForm(GraphScope); v.Del("grant_type"); return v }(),
			status: 400, err: "invalid_request", code: 900144},
		{name: "no credential", form: func() url.Values { v := secretForm(GraphScope); v.Del("client_secret"); return v }(),
			status: 401, err: "invalid_client", code: 7000218},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tenant := tc.tenant
			if tenant == "" {
				tenant = TenantID
			}
			h := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
			if tc.basic[0] != "" {
				h["Authorization"] = "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(tc.basic[0])+":"+url.QueryEscape(tc.basic[1])))
			}
			r := do(t, f, req{method: "POST", url: f.AuthorityURL() + tenant + "/oauth2/v2.0/token", header: h, body: []byte(tc.form.Encode())})
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			m := r.json(t)
			if tc.status == 200 {
				if m["token_type"] != "Bearer" || m["expires_in"] != 3599.0 || m["ext_expires_in"] != 3599.0 || m["access_token"] == "" {
					t.Errorf("success body %s", r.body)
				}
				return
			}
			if m["error"] != tc.err {
				t.Errorf("error = %v, want %s", m["error"], tc.err)
			}
			desc, _ := m["error_description"].(string)
			if !strings.HasPrefix(desc, tc.descPrefix) || !strings.Contains(desc, "\r\nTrace ID: ") {
				t.Errorf("error_description = %q, want prefix %q and a Trace ID line", desc, tc.descPrefix)
			}
			if codes, _ := m["error_codes"].([]any); len(codes) != 1 || codes[0] != tc.code {
				t.Errorf("error_codes = %v, want [%v]", m["error_codes"], tc.code)
			}
			for _, k := range []string{"timestamp", "trace_id", "correlation_id"} {
				if s, _ := m[k].(string); s == "" {
					t.Errorf("missing %s", k)
				}
			}
		})
	}
	// success cases: graph×(secret, msal, tenant case, basic), outlook×1
	if n := f.TokensIssued(GraphScope); n != 4 {
		t.Errorf("TokensIssued(graph) = %d, want 4", n)
	}
	if n := f.TokensIssued("https://outlook.office365.com/.default"); n != 1 {
		t.Errorf("TokensIssued(outlook) = %d, want 1", n)
	}

	r := do(t, f, req{method: "GET", url: f.TokenURL()})
	if r.status != 400 || r.json(t)["error"] != "invalid_request" {
		t.Errorf("GET token: %d %s", r.status, r.body)
	}
}

func TestClientAssertion(t *testing.T) {
	f := New(t)
	cert, key := newCert(t)
	other, otherKey := newCert(t)
	f.RegisterCertificate(cert)

	tests := []struct {
		name   string
		opts   assertionOpts
		status int
		code   float64
	}{
		{name: "PS256 x5t#S256 std base64 (MSAL)", opts: assertionOpts{alg: "PS256", thumbKey: "x5t#S256", stdB64: true}, status: 200},
		{name: "PS256 x5t#S256 base64url", opts: assertionOpts{alg: "PS256", thumbKey: "x5t#S256"}, status: 200},
		{name: "RS256 x5t", opts: assertionOpts{alg: "RS256", thumbKey: "x5t"}, status: 200},
		{name: "RS256 x5t std base64", opts: assertionOpts{alg: "RS256", thumbKey: "x5t", stdB64: true}, status: 200},
		{name: "no thumbprint", opts: assertionOpts{alg: "PS256"}, status: 401, code: 700027},
		{name: "unregistered cert", opts: assertionOpts{thumbKey: "x5t#S256", thumbCert: other, signKey: otherKey}, status: 401, code: 700027},
		{name: "wrong key", opts: assertionOpts{thumbKey: "x5t#S256", signKey: otherKey}, status: 401, code: 700027},
		{name: "wrong aud", opts: assertionOpts{thumbKey: "x5t#S256", aud: "https://login.microsoftonline.com/" + TenantID + "/oauth2/v2.0/token"}, status: 401, code: 700023},
		{name: "wrong iss", opts: assertionOpts{thumbKey: "x5t#S256", iss: "someone-else", sub: ClientID}, status: 401, code: 700021},
		{name: "wrong sub", opts: assertionOpts{thumbKey: "x5t#S256", iss: ClientID, sub: "someone-else"}, status: 401, code: 700021},
		{name: "expired", opts: assertionOpts{thumbKey: "x5t#S256", exp: time.Now().Add(-time.Minute)}, status: 401, code: 700024},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := makeAssertion(t, f, cert, key, tc.opts)
			form := url.Values{"grant_type": {"client_credentials"}, "client_id": {ClientID}, "scope": {GraphScope},
				"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}}
			r := tokenRequest(t, f, TenantID, form)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.status != 200 {
				m := r.json(t)
				if codes, _ := m["error_codes"].([]any); m["error"] != "invalid_client" || len(codes) != 1 || codes[0] != tc.code {
					t.Errorf("got %s", r.body)
				}
			}
		})
	}

	good := makeAssertion(t, f, cert, key, assertionOpts{thumbKey: "x5t#S256"})
	for name, form := range map[string]url.Values{
		"wrong assertion type": {"grant_type": {"client_credentials"}, "client_id": {ClientID}, "scope": {GraphScope},
			"client_assertion_type": {"jwt"}, "client_assertion": {good}},
		"malformed": {"grant_type": {"client_credentials"}, "client_id": {ClientID}, "scope": {GraphScope},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {"abc.def"}},
		"HS256": {"grant_type": {"client_credentials"}, "client_id": {ClientID}, "scope": {GraphScope},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256"}`)) + ".e30.c2ln"}},
	} {
		if r := tokenRequest(t, f, TenantID, form); r.status == 200 {
			t.Errorf("%s: accepted: %s", name, r.body)
		}
	}
	if n := f.TokensIssued(GraphScope); n != 4 {
		t.Errorf("TokensIssued = %d, want 4", n)
	}
}
