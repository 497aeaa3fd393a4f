package graphtest

import (
	"bytes"
	"compress/gzip"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

type result struct {
	status int
	header http.Header
	body   []byte
}

func (r result) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response body is not JSON: %v: %q", err, r.body)
	}
	return m
}

// graphErr returns the code and message of a Graph error envelope, checking its shape.
func (r result) graphErr(t *testing.T) (string, string) {
	t.Helper()
	var env struct {
		Error *struct {
			Code       string
			Message    string
			InnerError *struct {
				RequestID string `json:"request-id"`
				Date      string
			}
		}
	}
	if err := json.Unmarshal(r.body, &env); err != nil || env.Error == nil {
		t.Fatalf("not a Graph error envelope: %v: %q", err, r.body)
	}
	if ie := env.Error.InnerError; ie == nil || ie.RequestID == "" || ie.Date == "" {
		t.Fatalf("error envelope without innerError request-id/date: %s", r.body)
	}
	return env.Error.Code, env.Error.Message
}

type req struct {
	method, url string
	header      map[string]string
	body        []byte
}

func do(t *testing.T, f *Fake, rq req) result {
	t.Helper()
	hr, err := http.NewRequest(rq.method, rq.url, bytes.NewReader(rq.body))
	if err != nil {
		t.Fatal(err)
	}
	if rq.body == nil {
		hr.Body = http.NoBody
		hr.ContentLength = 0
	}
	for k, v := range rq.header {
		hr.Header.Set(k, v)
	}
	resp, err := f.Client().Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return result{resp.StatusCode, resp.Header, b}
}

func tokenRequest(t *testing.T, f *Fake, tenant string, form url.Values) result {
	t.Helper()
	return do(t, f, req{method: "POST", url: f.AuthorityURL() + tenant + "/oauth2/v2.0/token",
		header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
		body:   []byte(form.Encode())})
}

func secretForm(scope string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_id": {ClientID},
		"client_secret": {ClientSecret}, "scope": {scope}}
}

func getToken(t *testing.T, f *Fake, scope string) string {
	t.Helper()
	r := tokenRequest(t, f, TenantID, secretForm(scope))
	if r.status != 200 {
		t.Fatalf("token: %d %s", r.status, r.body)
	}
	return r.json(t)["access_token"].(string)
}

// graph sends an authenticated Graph request. ct "" means application/json.
func graph(t *testing.T, f *Fake, tok, method, path, ct string, body []byte, extra ...string) result {
	t.Helper()
	h := map[string]string{}
	if tok != "" {
		h["Authorization"] = "Bearer " + tok
	}
	if body != nil {
		if ct == "" {
			ct = "application/json"
		}
		h["Content-Type"] = ct
	}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	return do(t, f, req{method: method, url: f.GraphURL() + path, header: h, body: body})
}

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rcpt(addr string) map[string]any {
	return map[string]any{"emailAddress": map[string]any{"address": addr}}
}

// simpleMail is a valid lower-case sendMail body from mailbox to alice.
func simpleMail(t *testing.T, mutate func(msg map[string]any)) []byte {
	msg := map[string]any{
		"subject":      "Hello",
		"body":         map[string]any{"contentType": "Text", "content": "hi"},
		"toRecipients": []any{rcpt("alice@example.com")},
	}
	if mutate != nil {
		mutate(msg)
	}
	return mustJSON(t, map[string]any{"message": msg})
}

// newCert makes a self-signed RSA certificate and its key.
func newCert(t *testing.T) (*x509.Certificate, *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "graphtest client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

type assertionOpts struct {
	alg       string // RS256 or PS256
	thumbKey  string // "x5t", "x5t#S256" or "" (none)
	stdB64    bool   // encode the thumbprint with standard base64 (like MSAL Go)
	aud, iss  string
	sub       string
	exp       time.Time
	signKey   *rsa.PrivateKey // defaults to the cert's key
	thumbCert *x509.Certificate
}

func makeAssertion(t *testing.T, f *Fake, cert *x509.Certificate, key *rsa.PrivateKey, o assertionOpts) string {
	t.Helper()
	if o.alg == "" {
		o.alg = "PS256"
	}
	if o.aud == "" {
		o.aud = f.TokenURL()
	}
	if o.iss == "" {
		o.iss = ClientID
	}
	if o.sub == "" {
		o.sub = o.iss
	}
	if o.exp.IsZero() {
		o.exp = time.Now().Add(10 * time.Minute)
	}
	if o.signKey == nil {
		o.signKey = key
	}
	if o.thumbCert == nil {
		o.thumbCert = cert
	}
	hdr := map[string]any{"alg": o.alg, "typ": "JWT"}
	var thumb []byte
	switch o.thumbKey {
	case "x5t":
		h := sha1.Sum(o.thumbCert.Raw) //nolint:gosec
		thumb = h[:]
	case "x5t#S256":
		h := sha256.Sum256(o.thumbCert.Raw)
		thumb = h[:]
	}
	if thumb != nil {
		if o.stdB64 {
			hdr[o.thumbKey] = base64.StdEncoding.EncodeToString(thumb)
		} else {
			hdr[o.thumbKey] = base64.RawURLEncoding.EncodeToString(thumb)
		}
	}
	now := time.Now()
	claims := map[string]any{"aud": o.aud, "iss": o.iss, "sub": o.sub, "jti": newGUID(),
		"nbf": now.Unix(), "iat": now.Unix(), "exp": o.exp.Unix()}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(mustJSON(t, hdr)) + "." + enc.EncodeToString(mustJSON(t, claims))
	sum := sha256.Sum256([]byte(input))
	var sig []byte
	var err error
	switch o.alg {
	case "PS256":
		sig, err = rsa.SignPSS(rand.Reader, o.signKey, crypto.SHA256, sum[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	default:
		sig, err = rsa.SignPKCS1v15(rand.Reader, o.signKey, crypto.SHA256, sum[:])
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + enc.EncodeToString(sig)
}

func wrap76(s string) string {
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	b.WriteString(s)
	return b.String()
}
