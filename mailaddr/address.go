// Package mailaddr matches and checks email addresses and domains the way mailgate's
// configuration names them: in API keys' senders, routes, and the SMTP backends' Send As
// and accepted domains.
package mailaddr

import (
	"fmt"
	"net/mail"
	"strings"
)

// Pattern matches From addresses. It is one of:
//
//	billing@contoso.com   that address exactly
//	*@contoso.com         any address in that domain (not its subdomains)
//	*                     any address
//
// Matching is case-insensitive, as Exchange Online's is.
type Pattern struct {
	raw    string
	any    bool
	domain string // for *@domain
	addr   string // for an exact address
}

// ParsePattern parses a pattern; the error says what form was expected.
func ParsePattern(s string) (Pattern, error) {
	p := Pattern{raw: s}
	switch {
	case s == "*":
		p.any = true
	case strings.HasPrefix(s, "*@"):
		d := strings.ToLower(s[2:])
		if !ValidDomain(d) {
			return Pattern{}, fmt.Errorf("%q: %q is not a domain name", s, s[2:])
		}
		p.domain = d
	default:
		a, err := mail.ParseAddress(s)
		if err != nil || a.Address != s || a.Name != "" {
			return Pattern{}, fmt.Errorf("%q: want an address (user@example.com), *@domain or *", s)
		}
		p.addr = strings.ToLower(s)
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
	switch {
	case p.any:
		return true
	case p.domain != "":
		at := strings.LastIndexByte(addr, '@')
		return at >= 0 && strings.EqualFold(addr[at+1:], p.domain)
	default:
		return p.addr != "" && strings.EqualFold(addr, p.addr)
	}
}

func (p Pattern) String() string { return p.raw }

// ValidDomain reports whether d is a lower-case DNS domain name (LDH labels).
func ValidDomain(d string) bool {
	if d == "" || len(d) > 253 || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// AnyMatch reports whether any of the patterns matches addr.
func AnyMatch(patterns []Pattern, addr string) bool {
	for _, p := range patterns {
		if p.Match(addr) {
			return true
		}
	}
	return false
}

// Domain is the lower-cased domain of a bare address ("" when it has no @).
func Domain(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	return strings.ToLower(addr[at+1:])
}
