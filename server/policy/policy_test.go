package policy

import (
	"testing"

	"github.com/mailgate/mailgate/mailaddr"
)

func TestRouterFirstMatchWins(t *testing.T) {
	t.Parallel()
	r := NewRouter([]Route{
		{Name: "scanner", Match: mailaddr.MustParsePattern("scanner@contoso.com"), Backend: "graph"},
		{Name: "notify", Match: mailaddr.MustParsePattern("*@notify.contoso.com"), Backend: "relay"},
		{Name: "contoso", Match: mailaddr.MustParsePattern("*@contoso.com"), Backend: "submission", Mailbox: "noreply@contoso.com"},
	})
	tests := map[string]string{
		"scanner@contoso.com":    "scanner",
		"a@notify.contoso.com":   "notify",
		"billing@contoso.com":    "contoso",
		"billing@fabrikam.com":   "",
		"SCANNER@contoso.com":    "scanner",
		"scanner@notify.contoso": "",
	}
	for from, want := range tests {
		got, ok := r.Route(from)
		if got.Name != want || ok != (want != "") {
			t.Errorf("Route(%q) = %q, %v; want %q", from, got.Name, ok, want)
		}
	}
}
