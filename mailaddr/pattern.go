package mailaddr

import (
	"fmt"
	"strings"
)

// Pattern matches From addresses. It is one of:
//
//	billing@contoso.com   that address exactly
//	*@contoso.com         any address in that domain (not its subdomains)
//	*                     any address
//
// Matching compares canonical forms: ASCII case-insensitive, as Exchange Online's is, and
// never by Unicode case folding. An address that does not parse matches no pattern but *.
type Pattern struct {
	raw    string
	any    bool
	domain string // canonical, for *@domain
	addr   string // canonical, for an exact address
}

// ParsePattern parses a pattern; the error says what form was expected.
func ParsePattern(s string) (Pattern, error) {
	p := Pattern{raw: s}
	switch {
	case s == "*":
		p.any = true
	case strings.HasPrefix(s, "*@"):
		d, err := CanonicalDomain(s[2:])
		if err != nil {
			return Pattern{}, fmt.Errorf("%q: %q is not a domain name: %v", s, s[2:], err)
		}
		p.domain = d
	case strings.ContainsAny(s, "*<> "):
		return Pattern{}, fmt.Errorf("%q: want an address (user@example.com), *@domain or *", s)
	default:
		a, err := Parse(s)
		if err != nil {
			return Pattern{}, fmt.Errorf("%q: want an address (user@example.com), *@domain or *: %v", s, err)
		}
		p.addr = a.Canonical()
	}
	return p, nil
}

// MustParsePattern is ParsePattern for patterns known to be valid; it panics otherwise.
func MustParsePattern(s string) Pattern {
	p, err := ParsePattern(s)
	if err != nil {
		panic(err)
	}
	return p
}

// Match reports whether addr (a bare address) matches the pattern.
func (p Pattern) Match(addr string) bool {
	if p.any {
		return true
	}
	a, err := Parse(addr)
	if err != nil {
		return false
	}
	if p.domain != "" {
		return asciiLower(a.Domain) == p.domain
	}
	return p.addr != "" && a.Canonical() == p.addr
}

// Domain is the canonical domain a *@domain pattern matches, or an exact address's
// domain; "" for *.
func (p Pattern) Domain() string {
	switch {
	case p.domain != "":
		return p.domain
	case p.addr != "":
		return p.addr[strings.LastIndexByte(p.addr, '@')+1:]
	}
	return ""
}

func (p Pattern) String() string { return p.raw }

// AnyMatch reports whether any of the patterns matches addr.
func AnyMatch(patterns []Pattern, addr string) bool {
	for _, p := range patterns {
		if p.Match(addr) {
			return true
		}
	}
	return false
}
