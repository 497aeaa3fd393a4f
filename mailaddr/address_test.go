package mailaddr

import (
	"strings"
	"testing"
)

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
		// Unicode case folding takes these for ASCII; they are other addresses.
		{"billing@contoso.com", "billing@contoſo.com", false}, // U+017F LONG S
		{"*@contoso.com", "billing@contoſo.com", false},       // U+017F LONG S
		{"*@kb.contoso.com", "x@\u212Ab.contoso.com", false},  // U+212A KELVIN SIGN
		{"billing@contoso.com", "billinſ@contoso.com", false}, // non-ASCII local part
		{"kim@contoso.com", "\u212Aim@contoso.com", false},    // KELVIN SIGN in the local part
		{"*@exämple.com", "a@xn--exmple-cua.com", true},       // U-label pattern, A-label address
		{"*@xn--exmple-cua.com", "a@exämple.com", true},       // and the other way round
		{"a@XN--EXMPLE-CUA.com", "A@exämple.com", true},       // ASCII case of A-labels
		{"*@contoso.com", "billing@contoso.com.", false},      // trailing dot: not an address
		{"*@contoso.com", "a@b@contoso.com", false},           // not an addr-spec
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
	for _, bad := range []string{"", "**", "*@", "*@-x.com", "*@x..com", "*@*.contoso.com", "contoso.com", "Bob <bob@x.com>",
		"a@b@c", "*@exa mple.com", "*@contoſo.com", "*@\u212Ab.contoso.com", "*@a_b.com", "*@EXÄMPLE.com", "\"x\"@contoso.com"} {
		if _, err := ParsePattern(bad); err == nil {
			t.Errorf("ParsePattern(%q) accepted", bad)
		}
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	long := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		in, want, canonical string
		err                 string // substring of the error; "" for success
	}{
		{in: "Billing@Contoso.COM", want: "Billing@Contoso.COM", canonical: "billing@contoso.com"},
		{in: "o'brien+tag@contoso.com", want: "o'brien+tag@contoso.com", canonical: "o'brien+tag@contoso.com"},
		{in: "a@localhost", want: "a@localhost", canonical: "a@localhost"},
		{in: "a@exämple.com", want: "a@xn--exmple-cua.com", canonical: "a@xn--exmple-cua.com"},
		{in: "a@münchen.de", want: "a@xn--mnchen-3ya.de", canonical: "a@xn--mnchen-3ya.de"},
		{in: long(64) + "@contoso.com", want: long(64) + "@contoso.com", canonical: long(64) + "@contoso.com"},
		{in: "a@" + long(63) + ".com", want: "a@" + long(63) + ".com", canonical: "a@" + long(63) + ".com"},

		{in: long(65) + "@contoso.com", err: "65 characters; RFC 5321 allows at most 64"},
		{in: "a@" + long(64) + ".com", err: "64 characters; at most 63"},
		{in: "a@my_host.contoso.com", err: "underscore"},
		{in: "a@contoso.com.", err: "ends with a dot"},
		{in: "a@contoso..com", err: "empty label"},
		{in: "a@-contoso.com", err: "hyphen"},
		{in: "a@[192.0.2.1]", err: "domain literals"},
		{in: "billing@contoſo.com", err: "not a valid internationalised domain name"},
		{in: "x@\u212Ab.contoso.com", err: "not a valid internationalised domain name"},
		{in: "a@EXÄMPLE.com", err: "not a valid internationalised domain name"},
		{in: "a@xn--zz.com", err: "invalid A-label"},
		{in: "jörg@contoso.com", err: "non-ASCII"},
		{in: "\"a b\"@contoso.com", err: "quoted"},
		{in: ".a@contoso.com", err: "dot"},
		{in: "a..b@contoso.com", err: "dot"},
		{in: "a b@contoso.com", err: "may not contain"},
		{in: "contoso.com", err: "no @"},
		{in: "@contoso.com", err: "empty local part"},
		{in: "a@", err: "empty domain"},
		{in: "a@" + strings.Repeat(long(60)+".", 5) + "com", err: "at most 253"},
		{in: long(64) + "@" + strings.Repeat(long(60)+".", 3) + long(10), err: "at most 254"},
		{in: "a@b\xffc.com", err: "UTF-8"},
	}
	for _, tt := range tests {
		a, err := Parse(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Parse(%q) = %v, %v; want an error with %q", tt.in, a, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if a.String() != tt.want || a.Canonical() != tt.canonical {
			t.Errorf("Parse(%q) = %q (canonical %q), want %q (%q)", tt.in, a, a.Canonical(), tt.want, tt.canonical)
		}
	}
}

func TestEqualAndDomain(t *testing.T) {
	t.Parallel()
	if !Equal("Noreply@Contoso.com", "noreply@contoso.COM") {
		t.Error("ASCII case must not matter")
	}
	for _, b := range []string{"noreply@contoſo.com", "noreplγ@contoso.com", "noreply@contoso.com.", ""} {
		if Equal("noreply@contoso.com", b) {
			t.Errorf("Equal(noreply@contoso.com, %q) = true", b)
		}
	}
	if Equal("bad", "bad") {
		t.Error("an address that does not parse equals nothing")
	}
	if d := Domain("a@EXÄMPLE.COM"); d != "" {
		t.Errorf("Domain with a non-ASCII capital = %q, want refusal", d)
	}
	if d := Domain("a@exämple.COM"); d != "xn--exmple-cua.com" {
		t.Errorf("Domain = %q", d)
	}
	for d, want := range map[string]bool{"contoso.com": true, "Contoso.com": false, "xn--exmple-cua.com": true, "exämple.com": false, "a_b.com": false} {
		if got := ValidDomain(d); got != want {
			t.Errorf("ValidDomain(%q) = %v, want %v", d, got, want)
		}
	}
	if c, err := CanonicalDomain("Exämple.COM"); err != nil || c != "xn--exmple-cua.com" {
		t.Errorf("CanonicalDomain = %q, %v", c, err)
	}
}
