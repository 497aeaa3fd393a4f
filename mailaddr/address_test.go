package mailaddr

import "testing"

func TestPattern(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern string
		addr    string
		want    bool
	}{
		{"*", "anyone@anywhere.org", true},
		{"*@contoso.com", "billing@contoso.com", true},
		{"*@contoso.com", "Billing@CONTOSO.com", true},
		{"*@contoso.com", "billing@notify.contoso.com", false}, // not subdomains
		{"*@contoso.com", "billing@contoso.com.evil.org", false},
		{"*@contoso.com", "contoso.com", false},
		{"billing@contoso.com", "billing@contoso.com", true},
		{"billing@contoso.com", "BILLING@contoso.com", true},
		{"billing@contoso.com", "billing2@contoso.com", false},
	}
	for _, tt := range tests {
		p, err := ParsePattern(tt.pattern)
		if err != nil {
			t.Fatalf("ParsePattern(%q): %v", tt.pattern, err)
		}
		if got := p.Match(tt.addr); got != tt.want {
			t.Errorf("%q.Match(%q) = %v, want %v", tt.pattern, tt.addr, got, tt.want)
		}
	}
}

func TestParsePatternRejects(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "**", "*@", "*@-x.com", "*@x..com", "*@*.contoso.com", "contoso.com", "Bob <bob@x.com>", "a@b@c", "*@exa mple.com"} {
		if _, err := ParsePattern(bad); err == nil {
			t.Errorf("ParsePattern(%q) accepted", bad)
		}
	}
}
