package doctor

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/mailgate/mailgate/senders"
	"github.com/mailgate/mailgate/senders/entra"
)

// httpClient is what the backends use for Entra and Graph: TLS 1.2 or later, the
// system's roots plus ca_file, HTTPS_PROXY honoured.
func httpClient(caFile string, timeout time.Duration) (*http.Client, error) {
	t, err := senders.HTTPTransport(caFile)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	return &http.Client{Transport: t, Timeout: timeout}, nil
}

// tokenResult is the outcome of a token request.
type tokenResult struct {
	token  string
	claims map[string]any // nil when the token is not a readable JWT
}

// token gets an app-only token for scope with the backend's credentials, and records
// the check. It returns nil when there is none.
func (d *doctor) token(ctx context.Context, creds *entra.Credentials, caFile, scope string) *tokenResult {
	const name = "token"
	client, err := httpClient(caFile, d.opts.timeout())
	if err != nil {
		d.b.fail(name, err.Error(), "give ca_file a readable PEM file of certificate authorities")
		return nil
	}
	defer client.CloseIdleConnections()
	cred, err := creds.TokenCredential(client)
	if err != nil {
		d.b.fail(name, "the credential could not be built: "+firstLine(err.Error()),
			"check certificate_file and key_file: an unencrypted RSA key that belongs to the certificate uploaded to the app registration")
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*d.opts.timeout())
	defer cancel()
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scope}})
	if err != nil {
		// azidentity reports an Entra it could not reach as an authentication failure
		// too: only an AADSTS code is Entra's own refusal.
		if entra.IsTokenError(err) && aadstsRE.MatchString(err.Error()) {
			d.b.fail(name, "Entra ID refused a token for "+scope+": "+tokenErrorDetail(err), entra.Fix(err))
		} else {
			d.b.fail(name, "no token for "+scope+": "+tokenErrorDetail(err),
				"Entra ID could not be reached or did not answer: check the network, HTTPS_PROXY and NO_PROXY, ca_file (for a TLS-inspecting proxy), authority_url and tenant_id")
		}
		return nil
	}
	res := &tokenResult{token: tok.Token, claims: jwtClaims(tok.Token)}
	detail := fmt.Sprintf("for %s, valid until %s", scope, tok.ExpiresOn.UTC().Format("2006-01-02 15:04 MST"))
	if res.claims != nil {
		if roles := claimRoles(res.claims); len(roles) > 0 {
			detail += ", roles " + strings.Join(roles, " ")
		} else {
			detail += ", no roles"
		}
	}
	d.b.pass(name, detail)
	return res
}

var aadstsRE = regexp.MustCompile(`AADSTS\d+:[^"\\\r\n]*`)

// tokenErrorDetail is the telling part of azidentity's long error: Entra's AADSTS
// description when there is one, else the first line.
func tokenErrorDetail(err error) string {
	msg := err.Error()
	if m := aadstsRE.FindString(msg); m != "" {
		return clip(strings.TrimSpace(m), 300)
	}
	var lines []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "---") {
			lines = append(lines, l)
		}
	}
	return clip(strings.Join(lines, " "), 300)
}

// jwtClaims decodes a JWT's payload without verifying it: the doctor only reads what
// Entra put in its own token. It returns nil for anything else.
func jwtClaims(tok string) map[string]any {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return nil
	}
	var claims map[string]any
	if json.Unmarshal(b, &claims) != nil {
		return nil
	}
	return claims
}

// claimRoles is the token's application roles (its permissions), sorted.
func claimRoles(claims map[string]any) []string {
	list, _ := claims["roles"].([]any)
	var out []string
	for _, r := range list {
		if s, ok := r.(string); ok {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return clip(strings.TrimSpace(s), 300)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
