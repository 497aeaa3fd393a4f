package graphtest

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // x5t is defined as a SHA-1 thumbprint.
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// oidcScopes are the OpenID scopes MSAL (and so azidentity) appends to every token
// request, client credentials included ("https://graph.microsoft.com/.default openid
// offline_access profile"); Entra ignores them for client credentials, so the fake does.
var oidcScopes = map[string]bool{"openid": true, "offline_access": true, "profile": true}

func (f *Fake) serveEntra(w http.ResponseWriter, r *http.Request) {
	ex, w, r := f.begin("entra", w, r)
	defer ex.end()

	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) == 3 && parts[1] == "discovery" && parts[2] == "instance":
		f.serveInstanceDiscovery(w, r)
	case len(parts) == 4 && parts[1] == "v2.0" && parts[2] == ".well-known" && parts[3] == "openid-configuration":
		f.serveOpenIDConfiguration(w, r, parts[0])
	case len(parts) == 4 && parts[1] == "discovery" && parts[2] == "v2.0" && parts[3] == "keys":
		writeJSON(w, http.StatusOK, map[string]any{"keys": []any{}})
	case len(parts) == 4 && parts[1] == "oauth2" && parts[2] == "v2.0" && parts[3] == "token":
		f.serveToken(w, r, parts[0])
	default:
		http.NotFound(w, r)
	}
}

// serveInstanceDiscovery answers /common/discovery/instance (and /{tenant}/…) like Entra's
// instance metadata endpoint, naming this server as the only alias.
func (f *Fake) serveInstanceDiscovery(w http.ResponseWriter, r *http.Request) {
	host := strings.TrimPrefix(f.entra.URL, "https://")
	if ae := r.URL.Query().Get("authorization_endpoint"); ae != "" {
		if u, err := url.Parse(ae); err == nil && u.Host != "" {
			host = u.Host
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"tenant_discovery_endpoint": "https://" + host + "/{tenant}/v2.0/.well-known/openid-configuration",
		"api-version":               "1.1",
		"metadata": []any{map[string]any{
			"preferred_network": host,
			"preferred_cache":   host,
			"aliases":           []string{host},
		}},
	})
}

// serveOpenIDConfiguration serves the tenant's OIDC metadata. MSAL uses token_endpoint,
// authorization_endpoint and issuer (whose host must equal the authority's).
func (f *Fake) serveOpenIDConfiguration(w http.ResponseWriter, r *http.Request, tenant string) {
	if r.Method != http.MethodGet {
		f.entraError(w, http.StatusBadRequest, "invalid_request", 900561, "The endpoint only accepts GET requests.")
		return
	}
	issuerTenant := TenantID
	switch {
	case strings.EqualFold(tenant, TenantID):
	case strings.EqualFold(tenant, "common"), strings.EqualFold(tenant, "organizations"):
		issuerTenant = "{tenantid}"
	default:
		f.entraError(w, http.StatusBadRequest, "invalid_tenant", 90002, tenantNotFound(tenant))
		return
	}
	base := f.entra.URL + "/" + tenant
	writeJSON(w, http.StatusOK, map[string]any{
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"issuer":                                f.entra.URL + "/" + issuerTenant + "/v2.0",
		"request_uri_parameter_supported":       false,
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"device_authorization_endpoint":         base + "/oauth2/v2.0/devicecode",
		"end_session_endpoint":                  base + "/oauth2/v2.0/logout",
		"http_logout_supported":                 true,
		"frontchannel_logout_supported":         true,
		"claims_supported":                      []string{"sub", "iss", "aud", "exp", "iat", "nbf", "tid"},
		"tenant_region_scope":                   "EU",
		"cloud_instance_name":                   "microsoftonline.com",
		"cloud_graph_host_name":                 "graph.windows.net",
	})
}

func tenantNotFound(tenant string) string {
	return fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.", tenant)
}

// entraError writes Entra's OAuth error JSON. description excludes the "AADSTSnnn: "
// prefix and the trailing trace lines, which are added here like Entra does.
func (f *Fake) entraError(w http.ResponseWriter, status int, errCode string, aadsts int, description string) {
	now := time.Now().UTC()
	ts := now.Format("2006-01-02 15:04:05Z")
	trace, corr := newGUID(), newGUID()
	desc := fmt.Sprintf("AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s", aadsts, description, trace, corr, ts)
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, status, struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
		ErrorCodes       []int  `json:"error_codes"`
		Timestamp        string `json:"timestamp"`
		TraceID          string `json:"trace_id"`
		CorrelationID    string `json:"correlation_id"`
		ErrorURI         string `json:"error_uri"`
	}{errCode, desc, []int{aadsts}, ts, trace, corr, "https://login.microsoftonline.com/error?code=" + fmt.Sprint(aadsts)})
}

// serveToken implements the client credentials grant of POST /{tenant}/oauth2/v2.0/token.
//
// Status codes: invalid_client is answered with 401 (what Entra returns on the wire for
// AADSTS7000215 and friends, as RFC 6749 §5.2 allows); every other error is 400.
func (f *Fake) serveToken(w http.ResponseWriter, r *http.Request, tenant string) {
	if r.Method != http.MethodPost {
		f.entraError(w, http.StatusBadRequest, "invalid_request", 900561, "The endpoint only accepts POST, OPTIONS requests. Received a "+r.Method+" request.")
		return
	}
	if !strings.EqualFold(tenant, TenantID) {
		f.entraError(w, http.StatusBadRequest, "invalid_request", 90002, tenantNotFound(tenant))
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		f.entraError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		f.entraError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body could not be read.")
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		f.entraError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	}

	switch gt := form.Get("grant_type"); gt {
	case "client_credentials":
	case "":
		f.entraError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	default:
		f.entraError(w, http.StatusBadRequest, "unsupported_grant_type", 70003, fmt.Sprintf("The app requested an unsupported grant type '%s'. This fake only implements client_credentials.", gt))
		return
	}

	// client_secret_basic: Authorization: Basic base64(urlencode(id):urlencode(secret)).
	clientID, secret := form.Get("client_id"), form.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		if uu, err := url.QueryUnescape(u); err == nil {
			u = uu
		}
		if pp, err := url.QueryUnescape(p); err == nil {
			p = pp
		}
		if clientID == "" {
			clientID = u
		}
		if secret == "" {
			secret = p
		}
	}
	assertion := form.Get("client_assertion")
	if clientID == "" && assertion != "" {
		if c, err := parseJWT(assertion); err == nil {
			if s, ok := c.claims["iss"].(string); ok {
				clientID = s
			}
		}
	}
	switch {
	case clientID == "":
		f.entraError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.")
		return
	case !strings.EqualFold(clientID, ClientID):
		f.entraError(w, http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", clientID, TenantID))
		return
	}

	switch {
	case secret != "" && assertion != "":
		// Not from a source: Entra's answer to both credentials at once is undocumented.
		f.entraError(w, http.StatusUnauthorized, "invalid_client", 7000218, "Only one of 'client_assertion' and 'client_secret' may be presented (graphtest).")
		return
	case secret != "":
		if secret != ClientSecret {
			f.entraError(w, http.StatusUnauthorized, "invalid_client", 7000215, fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", ClientID))
			return
		}
	case assertion != "":
		if at := form.Get("client_assertion_type"); at != clientAssertionType {
			f.entraError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'client_assertion_type'.")
			return
		}
		if status, errCode, code, desc := f.verifyAssertion(assertion, clientID, f.TokenURL()); status != 0 {
			f.entraError(w, status, errCode, code, desc)
			return
		}
	default:
		f.entraError(w, http.StatusUnauthorized, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
		return
	}

	scope, msg := resourceScope(form.Get("scope"))
	if msg != "" {
		f.entraError(w, http.StatusBadRequest, "invalid_scope", 70011, msg)
		return
	}

	tok := newAccessToken(scope)
	f.mu.Lock()
	f.tokens[tok] = &token{scope: scope}
	f.issued[scope]++
	f.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, struct {
		TokenType    string `json:"token_type"`
		ExpiresIn    int    `json:"expires_in"`
		ExtExpiresIn int    `json:"ext_expires_in"`
		AccessToken  string `json:"access_token"`
	}{"Bearer", 3599, 3599, tok})
}

// resourceScope checks the scope parameter of a client credentials request: exactly one
// "<resource>/.default" (OpenID scopes ignored). It returns the scope or an error text.
func resourceScope(raw string) (string, string) {
	if strings.TrimSpace(raw) == "" {
		return "", "The provided request must include a 'scope' input parameter."
	}
	var res []string
	for _, s := range strings.Fields(raw) {
		if oidcScopes[strings.ToLower(s)] {
			continue
		}
		res = append(res, s)
	}
	switch {
	case len(res) == 0:
		return "", fmt.Sprintf("The provided value for the input parameter 'scope' is not valid. The scope '%s' is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", raw)
	case len(res) > 1:
		return "", fmt.Sprintf("The provided value for the input parameter 'scope' is not valid. The scope '%s' is not valid. It contains more than one resource; all scopes included must be for a single resource.", raw)
	}
	s := res[0]
	if !strings.HasSuffix(s, "/.default") || len(s) == len("/.default") {
		return "", fmt.Sprintf("The provided value for the input parameter 'scope' is not valid. The scope '%s' is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", raw)
	}
	return s, ""
}

// newAccessToken makes a JWT-shaped opaque token (unsigned: the signature part is
// random). Its claims name the audience so a client that peeks at them sees sense.
func newAccessToken(scope string) string {
	aud := strings.TrimSuffix(scope, "/.default")
	if aud == "00000003-0000-0000-c000-000000000000" {
		aud = "https://graph.microsoft.com"
	}
	now := time.Now().Unix()
	hdr, _ := json.Marshal(map[string]any{"typ": "JWT", "alg": "RS256", "kid": "graphtest"})
	claims, _ := json.Marshal(map[string]any{
		"aud": aud, "iss": "https://sts.windows.net/" + TenantID + "/", "iat": now, "nbf": now,
		"exp": now + 3599, "appid": ClientID, "tid": TenantID, "idtyp": "app",
		"roles": []string{"Mail.Send", "Mail.ReadWrite"}, "uti": randomString(16), "ver": "1.0",
	})
	sig := make([]byte, 64)
	_, _ = rand.Read(sig)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(hdr) + "." + enc.EncodeToString(claims) + "." + enc.EncodeToString(sig)
}

type jwtParts struct {
	header       map[string]any
	claims       map[string]any
	signingInput string
	signature    []byte
}

func decodeB64URL(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

func parseJWT(s string) (*jwtParts, error) {
	p := strings.Split(s, ".")
	if len(p) != 3 {
		return nil, fmt.Errorf("a JWT has three parts, got %d", len(p))
	}
	hb, err := decodeB64URL(p[0])
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	cb, err := decodeB64URL(p[1])
	if err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	sig, err := decodeB64URL(p[2])
	if err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	j := &jwtParts{signingInput: p[0] + "." + p[1], signature: sig}
	for _, x := range []struct {
		b []byte
		m *map[string]any
	}{{hb, &j.header}, {cb, &j.claims}} {
		d := json.NewDecoder(bytes.NewReader(x.b))
		d.UseNumber()
		if err := d.Decode(x.m); err != nil {
			return nil, err
		}
	}
	return j, nil
}

// decodeThumbprint accepts base64url (RFC 7515) and standard base64 (what MSAL Go
// actually sends), padded or not, and hex.
func decodeThumbprint(s string) []byte {
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.RawStdEncoding} {
		if b, err := enc.DecodeString(strings.TrimRight(s, "=")); err == nil {
			return b
		}
	}
	if b, err := hex.DecodeString(s); err == nil {
		return b
	}
	return nil
}

// verifyAssertion checks a client_assertion the way Entra describes certificate
// credentials: RS256 or PS256 signature by a registered certificate's key, the
// certificate named by x5t (SHA-1) and/or x5t#S256 (SHA-256) thumbprint (or x5c),
// aud = token endpoint, iss = sub = client id, exp in the future, nbf not in the future.
// It returns status 0 when the assertion is good.
func (f *Fake) verifyAssertion(assertion, clientID, tokenEndpoint string) (status int, errCode string, code int, desc string) {
	j, err := parseJWT(assertion)
	if err != nil {
		return 400, "invalid_request", 50027, "JWT token is invalid or malformed. " + err.Error()
	}
	alg, _ := j.header["alg"].(string)
	if alg != "RS256" && alg != "PS256" {
		return 401, "invalid_client", 5002738, fmt.Sprintf("Invalid JWT token. '%s' is not a supported signature algorithm. Supported: RS256, PS256.", alg)
	}

	f.mu.Lock()
	certs := append([]*x509.Certificate(nil), f.certs...)
	f.mu.Unlock()

	var candidates []*x509.Certificate
	s1, has1 := j.header["x5t"].(string)
	s256, has256 := j.header["x5t#S256"].(string)
	x5c, hasX5c := j.header["x5c"].([]any)
	used := s256
	if !has256 {
		used = s1
	}
	for _, c := range certs {
		ok := has1 || has256 || hasX5c
		if has1 {
			h := sha1.Sum(c.Raw) //nolint:gosec
			ok = ok && bytes.Equal(decodeThumbprint(s1), h[:])
		}
		if has256 {
			h := sha256.Sum256(c.Raw)
			ok = ok && bytes.Equal(decodeThumbprint(s256), h[:])
		}
		if !has1 && !has256 && hasX5c && len(x5c) > 0 {
			first, _ := x5c[0].(string)
			der, _ := base64.StdEncoding.DecodeString(first)
			ok = bytes.Equal(der, c.Raw)
		}
		if ok {
			candidates = append(candidates, c)
		}
	}
	if len(candidates) == 0 {
		return 401, "invalid_client", 700027, fmt.Sprintf("Client assertion failed signature validation. [Reason - The key was not found., Thumbprint of key used by client: '%s']", used)
	}

	sum := sha256.Sum256([]byte(j.signingInput))
	verified := false
	for _, c := range candidates {
		pub, ok := c.PublicKey.(*rsa.PublicKey)
		if !ok {
			continue
		}
		switch alg {
		case "RS256":
			verified = rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], j.signature) == nil
		case "PS256":
			verified = rsa.VerifyPSS(pub, crypto.SHA256, sum[:], j.signature, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}) == nil
		}
		if verified {
			break
		}
	}
	if !verified {
		return 401, "invalid_client", 700027, fmt.Sprintf("Client assertion failed signature validation. [Reason - The provided signature value did not match the expected signature value., Thumbprint of key used by client: '%s', Found key 'Start=…, End=…', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '%s'.]", used, ClientID)
	}

	aud, _ := j.claims["aud"].(string)
	if !strings.EqualFold(aud, tokenEndpoint) {
		return 401, "invalid_client", 700023, fmt.Sprintf("Client assertion audience claim does not match Realm issuer. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials . (aud %q, expected %q)", j.claims["aud"], tokenEndpoint)
	}
	iss, _ := j.claims["iss"].(string)
	sub, _ := j.claims["sub"].(string)
	if !strings.EqualFold(iss, clientID) || !strings.EqualFold(sub, clientID) {
		return 401, "invalid_client", 700021, fmt.Sprintf("Client assertion application identifier doesn't match 'client_id' parameter. (iss %q, sub %q, client_id %q)", iss, sub, clientID)
	}
	now := time.Now()
	exp, okExp := numericDate(j.claims["exp"])
	nbf, okNbf := numericDate(j.claims["nbf"])
	const skew = 5 * time.Minute
	if !okExp || !exp.After(now) || (okNbf && nbf.After(now.Add(skew))) {
		return 401, "invalid_client", 700024, fmt.Sprintf("Client assertion is not within its valid time range. Current time: %s, assertion valid from %v, expiry time of assertion %v.", now.UTC().Format(time.RFC3339), j.claims["nbf"], j.claims["exp"])
	}
	return 0, "", 0, ""
}

func numericDate(v any) (time.Time, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false
	}
	fl, err := n.Float64()
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(int64(fl), 0), true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
