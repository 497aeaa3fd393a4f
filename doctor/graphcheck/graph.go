// Package graphcheck is the doctor's checks of a graph backend: that Graph answers over
// TLS, that Entra ID issues a token for Graph's scope, and that the token carries the
// roles mailgate needs. It never calls a mailbox's endpoint.
package graphcheck

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/mailgate/mailgate/doctor"
	"github.com/mailgate/mailgate/senders/graph"
)

// draftPathBytes is about where the Graph backend switches to the draft path, which
// needs Mail.ReadWrite (docs/microsoft365-graph.md, Step 3).
const draftPathBytes = 3_000_000

// run is the checks of one backend.
type run struct{ b *doctor.Backend }

// Check checks a graph backend.
func Check(ctx context.Context, b *doctor.Backend, c *graph.Config) { (&run{b}).graph(ctx, c) }

// graph checks a graph backend: that Graph answers over TLS, that Entra issues a token
// for Graph's scope, and that the token carries Mail.Send (and Mail.ReadWrite when
// messages may take the draft path). It never calls a mailbox's endpoint.
func (d *run) graph(ctx context.Context, c *graph.Config) {
	d.graphReachable(ctx, c.CAFile, c.BaseURL())

	tok := d.b.Token(ctx, &c.Credentials, c.CAFile, c.Audience())
	d.graphRoles(tok)
}

// graphRoles checks that the token carries Mail.Send, and Mail.ReadWrite when messages
// may be large enough for the draft path.
func (d *run) graphRoles(tok *doctor.Token) {
	const mailSend, mailReadWrite = "Mail.Send", "Mail.ReadWrite"
	switch {
	case tok == nil:
		d.b.Skip(mailSend, "no token to read the roles of")
		return
	case d.b.Options.GraphRBAC:
		d.b.Skip(mailSend, "granted with RBAC for Applications (--rbac): a token does not show it; check that Test-ServicePrincipalAuthorization -Identity <service principal> -Resource <mailbox> shows InScope True")
		return
	case tok.Claims == nil:
		d.b.Skip(mailSend, "the token is not a JWT: its roles cannot be read")
		return
	}
	roles := doctor.ClaimRoles(tok.Claims)
	if !slices.Contains(roles, mailSend) {
		d.b.Fail(mailSend, fmt.Sprintf("the token's roles (%s) do not include Mail.Send", rolesText(roles)),
			"grant the app the Microsoft Graph application permission Mail.Send (Application, not Delegated) and grant admin consent, then restart mailgate; if you grant it with RBAC for Applications in Exchange instead, run the doctor with --rbac")
		return
	}
	d.b.Pass(mailSend, "the token's roles include Mail.Send")
	if max := d.b.Config.Limits.MaxMessageBytes; max > draftPathBytes {
		if slices.Contains(roles, mailReadWrite) {
			d.b.Pass(mailReadWrite, "the token's roles include Mail.ReadWrite, for messages over about 3 MB (the draft path)")
		} else {
			d.b.Fail(mailReadWrite, fmt.Sprintf("the token's roles do not include Mail.ReadWrite, which messages over about 3 MB need; limits.max_message_bytes is %d", max),
				"grant the app the Microsoft Graph application permission Mail.ReadWrite with admin consent, or set limits.max_message_bytes: 3000000 so that mailgate refuses larger messages itself")
		}
	}
}

// graphReachable asks Graph's base URL for nothing, without a token: any HTTP answer
// (401, 400) shows that Graph is reachable through TLS, with the proxy and ca_file.
func (d *run) graphReachable(ctx context.Context, caFile, base string) {
	const name = "Graph reachable"
	client, err := doctor.HTTPClient(caFile, d.b.Timeout())
	if err != nil {
		d.b.Fail(name, err.Error(), "give ca_file a readable PEM file of certificate authorities")
		return
	}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base, nil)
	if err != nil {
		d.b.Fail(name, err.Error(), "check graph_url")
		return
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		msg := err.Error()
		if errors.As(err, &ue) {
			msg = ue.Err.Error()
		}
		d.b.Fail(name, base+": "+doctor.FirstLine(msg),
			"Graph is unreachable: check the network, HTTPS_PROXY and NO_PROXY, ca_file (for a TLS-inspecting proxy) and graph_url")
		return
	}
	resp.Body.Close()
	detail := fmt.Sprintf("%s answered HTTP %d", base, resp.StatusCode)
	if resp.TLS != nil {
		detail += " over " + tls.VersionName(resp.TLS.Version)
	}
	d.b.Pass(name, detail)
}

func rolesText(roles []string) string {
	if len(roles) == 0 {
		return "none"
	}
	return strings.Join(roles, ", ")
}
