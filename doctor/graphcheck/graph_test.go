package graphcheck

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/doctor"
)

func TestGraphRoles(t *testing.T) {
	t.Parallel()
	// The claims as a JWT's payload decodes to.
	jwt := func(roles ...string) *doctor.Token {
		b, _ := json.Marshal(map[string]any{"aud": "https://graph.microsoft.com", "roles": roles})
		var claims map[string]any
		json.Unmarshal(b, &claims)
		return &doctor.Token{Raw: "eyJhbGciOiJub25lIn0.payload.sig", Claims: claims}
	}
	judge := func(max int64, tok *doctor.Token) doctor.Report {
		cfg := &config.Config{Limits: config.Limits{MaxMessageBytes: max}}
		d := &run{b: &doctor.Backend{Name: "be", Type: "graph", Config: cfg}}
		d.graphRoles(tok)
		return doctor.Report{Checks: d.b.Checks()}
	}
	r := judge(35<<20, jwt())
	wantStatus(t, r, "Mail.Send", doctor.Fail, "(none)", "Mail.Send (Application, not Delegated)")
	r = judge(35<<20, jwt("Mail.Send"))
	wantStatus(t, r, "Mail.Send", doctor.Pass, "", "")
	wantStatus(t, r, "Mail.ReadWrite", doctor.Fail, "36700160", "max_message_bytes: 3000000")
	r = judge(3_000_000, jwt("Mail.Send"))
	if len(r.Checks) != 1 || !r.OK() {
		t.Errorf("with small messages only Mail.Send is needed: %+v", r.Checks)
	}
	r = judge(35<<20, &doctor.Token{Raw: "opaque"})
	wantStatus(t, r, "Mail.Send", doctor.Skip, "not a JWT", "")
}

func wantStatus(t *testing.T, r doctor.Report, name string, st doctor.Status, detailHas, fixHas string) {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name != name {
			continue
		}
		if c.Status != st || !strings.Contains(c.Detail, detailHas) || !strings.Contains(c.Fix, fixHas) {
			t.Errorf("%s: %s %q (fix %q), want %s with %q (fix with %q)", name, c.Status, c.Detail, c.Fix, st, detailHas, fixHas)
		}
		if st == doctor.Fail && c.Fix == "" {
			t.Errorf("%s failed without a fix", name)
		}
		return
	}
	t.Fatalf("no check %q in the report", name)
}
