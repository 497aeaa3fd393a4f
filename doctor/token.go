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

// HTTPClient is what the backends use for Entra and Graph: TLS 1.2 or later, the
// system's roots plus ca_file, HTTPS_PROXY honoured.
func HTTPClient(caFile string, timeout time.Duration) (*http.Client, error) {
	t, err := senders.HTTPTransport(caFile)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	return &http.Client{Transport: t, Timeout: timeout}, nil
}

// Token is a token the doctor got from Entra ID.
type Token struct {
	Raw    string
	Claims map[string]any // nil when the token is not a readable JWT
}

// Token gets an app-only token for scope with the backend's credentials, and records
// the check ("token"). It returns nil when there is none.
func (b *Backend) Token(ctx context.Context, creds *entra.Credentials, caFile, scope string) *Token {
	const name = "token"
	client, err := HTTPClient(caFile, b.Timeout())
	if err != nil {
		b.Fail(name, err.Error(), "give ca_file a readable PEM file of certificate authorities")
		return nil
	}
	defer client.CloseIdleConnections()
	cred, err := creds.TokenCredential(client)
	if err != nil {
		b.Fail(name, "the credential could not be built: "+FirstLine(err.Error()),
			"check certificate_file and key_file: an unencrypted RSA key that belongs to the certificate uploaded to the app registration")
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*b.Timeout())
	defer cancel()
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scope}})
	if err != nil {
		// azidentity reports an Entra it could not reach as an authentication failure
		// too: only an AADSTS code is Entra's own refusal.
		if entra.IsTokenError(err) && aadstsRE.MatchString(err.Error()) {
			b.Fail(name, "Entra ID refused a token for "+scope+": "+tokenErrorDetail(err), entra.Fix(err))
		} else {
			b.Fail(name, "no token for "+scope+": "+tokenErrorDetail(err),
				"Entra ID could not be reached or did not answer: check the network, HTTPS_PROXY and NO_PROXY, ca_file (for a TLS-inspecting proxy), authority_url and tenant_id")
		}
		return nil
	}
	res := &Token{Raw: tok.Token, Claims: jwtClaims(tok.Token)}
	detail := fmt.Sprintf("for %s, valid until %s", scope, tok.ExpiresOn.UTC().Format("2006-01-02 15:04 MST"))
	if res.Claims != nil {
		if roles := ClaimRoles(res.Claims); len(roles) > 0 {
			detail += ", roles " + strings.Join(roles, " ")
		} else {
			detail += ", no roles"
		}
	}
	b.Pass(name, detail)
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

// ClaimRoles is a token's application roles (its permissions), sorted.
func ClaimRoles(claims map[string]any) []string {
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

// FirstLine is the first line of an error's text, clipped to 300 bytes: enough for a
// report.
func FirstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return clip(strings.TrimSpace(s), 300)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
