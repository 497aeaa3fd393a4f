// Package policy decides which From addresses an API key may use and which route (backend
// and mailbox) a From address takes.
package policy

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
		if !validDomain(d) {
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

// MustParse is ParsePattern for patterns known to be valid; it panics otherwise.
func MustParse(s string) Pattern {
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

func validDomain(d string) bool {
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

// Route sends the From addresses it matches through a backend.
type Route struct {
	// Name identifies the route in responses and logs.
	Name  string
	Match Pattern
	// Backend is the name of a configured backend.
	Backend string
	// Mailbox is the mailbox to send as (the Graph user or SMTP AUTH login); empty means
	// the From address itself.
	Mailbox string
}

// Router holds ordered routes; the first that matches wins.
type Router struct {
	routes []Route
}

// NewRouter returns a router over routes, in order.
func NewRouter(routes []Route) *Router {
	return &Router{routes: append([]Route(nil), routes...)}
}

// Route returns the first route matching from.
func (r *Router) Route(from string) (Route, bool) {
	for _, rt := range r.routes {
		if rt.Match.Match(from) {
			return rt, true
		}
	}
	return Route{}, false
}

// Routes returns the routes in order.
func (r *Router) Routes() []Route { return append([]Route(nil), r.routes...) }
