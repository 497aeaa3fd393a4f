// Package mailaddr parses, checks and compares email addresses and domains, and matches
// them against the patterns mailgate's configuration names: in API keys' senders,
// routes, and the SMTP backends' Send As and accepted domains.
//
// Every comparison of two addresses or domains in mailgate goes through Canonical (or
// CanonicalDomain), so that a check and the delivery it allows can never disagree about
// which address they are about. The canonical form is:
//
//   - the local part with ASCII letters lower-cased and every other byte as given (mailgate
//     accepts only ASCII local parts, see Parse);
//   - the domain in its ASCII form (A-labels, "xn--…", for an internationalised name),
//     lower-cased.
//
// Unicode case folding is never applied: strings.EqualFold and the UTS #46 mapping both
// take U+017F LATIN SMALL LETTER LONG S for "s" and U+212A KELVIN SIGN for "k", which would
// let billing@contoſo.com pass for billing@contoso.com. Such names are refused instead.
package mailaddr

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// RFC 5321 §4.5.3.1 limits.
const (
	MaxLocalPart = 64
	MaxDomain    = 253 // 255 octets in the wire form, less the root label's length bytes
	MaxLabel     = 63
	MaxAddress   = 254 // the 256-octet path, less its angle brackets
)

// idnaProfile validates internationalised domain names without mapping them: UTS #46
// mapping is what folds ſ to s. Input must already be lower-case.
var idnaProfile = idna.Registration

// Addr is a checked bare address (an addr-spec, without display name or brackets).
type Addr struct {
	// Local is the local part as given.
	Local string
	// Domain is the domain in ASCII form: as given when it was ASCII (case kept), its
	// A-labels when it was an internationalised name.
	Domain string
}

// String is the address as mailgate sends it: an ASCII addr-spec.
func (a Addr) String() string { return a.Local + "@" + a.Domain }

// Canonical is the form two addresses are compared by.
func (a Addr) Canonical() string { return asciiLower(a.Local) + "@" + asciiLower(a.Domain) }

// Parse checks a bare address: a dot-atom local part of ASCII characters (at most 64),
// an @, and a host name (see CanonicalDomain). Quoted local parts, domain literals
// ([192.0.2.1]), display names and comments are refused. The error says which rule the
// address breaks, without repeating the address.
func Parse(s string) (Addr, error) {
	if s == "" {
		return Addr{}, errors.New("empty")
	}
	if !utf8.ValidString(s) {
		return Addr{}, errors.New("not valid UTF-8")
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return Addr{}, errors.New("no @: want user@example.com")
	}
	local, domain := s[:at], s[at+1:]
	if err := checkLocal(local); err != nil {
		return Addr{}, err
	}
	if strings.HasPrefix(domain, "[") {
		return Addr{}, errors.New("domain literals ([address]) are not accepted: give a domain name")
	}
	ascii, err := toASCII(domain)
	if err != nil {
		return Addr{}, err
	}
	if !isASCII(domain) {
		domain = ascii
	}
	a := Addr{Local: local, Domain: domain}
	if n := len(a.String()); n > MaxAddress {
		return Addr{}, fmt.Errorf("%d characters long; RFC 5321 allows at most %d", n, MaxAddress)
	}
	return a, nil
}

// Canonical is the canonical form of a bare address (see the package comment); ok is
// false when the address does not parse.
func Canonical(s string) (string, bool) {
	a, err := Parse(s)
	if err != nil {
		return "", false
	}
	return a.Canonical(), true
}

// Equal reports whether a and b are the same address: equal canonical forms. An address
// that does not parse equals nothing, not even itself.
func Equal(a, b string) bool {
	ca, ok := Canonical(a)
	if !ok {
		return false
	}
	cb, ok := Canonical(b)
	return ok && ca == cb
}

// Key is the canonical form of s when it parses, and s itself otherwise: for maps and
// de-duplication of addresses that were already checked, where an unparsable one must
// still stay distinct from every other.
func Key(s string) string {
	if c, ok := Canonical(s); ok {
		return c
	}
	return s
}

// CanonicalDomain checks a domain name and returns its canonical form: lower-case ASCII,
// with A-labels for an internationalised name. A name must be a host name: labels of
// letters, digits and hyphens (no underscore), not starting or ending with a hyphen, at
// most 63 characters each and 253 in all, without a trailing dot. An internationalised
// name is accepted in A-labels (xn--…) or in lower-case U-labels that are valid IDNA2008;
// the latter are never case-folded or mapped.
func CanonicalDomain(d string) (string, error) {
	a, err := toASCII(d)
	if err != nil {
		return "", err
	}
	return asciiLower(a), nil
}

// Domain is the canonical domain of a bare address; "" when it does not parse.
func Domain(addr string) string {
	a, err := Parse(addr)
	if err != nil {
		return ""
	}
	return asciiLower(a.Domain)
}

// ValidDomain reports whether d is a domain name in canonical form (lower-case ASCII
// host name, A-labels for internationalised names).
func ValidDomain(d string) bool {
	c, err := CanonicalDomain(d)
	return err == nil && c == d
}

// atext is RFC 5322's atom text: what a dot-atom local part may hold besides dots.
func atext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func checkLocal(local string) error {
	switch {
	case local == "":
		return errors.New("empty local part (before the @)")
	case !isASCII(local):
		return errors.New("the local part (before the @) has non-ASCII characters: mailgate does not send internationalised (SMTPUTF8) addresses")
	case len(local) > MaxLocalPart:
		return fmt.Errorf("the local part (before the @) is %d characters; RFC 5321 allows at most %d", len(local), MaxLocalPart)
	case local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, ".."):
		return errors.New("the local part (before the @) may not start or end with a dot or have two dots in a row")
	}
	for i := 0; i < len(local); i++ {
		if c := local[i]; c != '.' && !atext(c) {
			if c == '"' {
				return errors.New("quoted local parts are not accepted")
			}
			return fmt.Errorf("the local part (before the @) may not contain %q", c)
		}
	}
	return nil
}

// toASCII checks d as a host name and returns its ASCII form, ASCII case kept.
func toASCII(d string) (string, error) {
	switch {
	case d == "":
		return "", errors.New("empty domain")
	case strings.HasSuffix(d, "."):
		return "", fmt.Errorf("domain %q ends with a dot: leave it out", d)
	}
	ascii := d
	if !isASCII(d) {
		if !utf8.ValidString(d) {
			return "", errors.New("domain is not valid UTF-8")
		}
		// Only ASCII letters are lower-cased: lower-casing other letters is a mapping
		// IDNA2008 leaves to the user, and it is the one that turns K (U+212A) into k.
		a, err := idnaProfile.ToASCII(asciiLower(d))
		if err != nil {
			return "", fmt.Errorf("domain %q is not a valid internationalised domain name (IDNA2008, lower-case U-labels): %v",
				d, strings.TrimPrefix(err.Error(), "idna: "))
		}
		ascii = a
	}
	if len(ascii) > MaxDomain {
		return "", fmt.Errorf("domain is %d characters; at most %d", len(ascii), MaxDomain)
	}
	for _, label := range strings.Split(ascii, ".") {
		if err := checkLabel(label); err != nil {
			return "", fmt.Errorf("domain %q: %v", d, err)
		}
	}
	if isASCII(d) && strings.Contains(asciiLower(d), "xn--") {
		// A-labels given as such must be valid punycode of a valid U-label.
		if _, err := idnaProfile.ToASCII(asciiLower(d)); err != nil {
			return "", fmt.Errorf("domain %q has an invalid A-label (xn--…): %v", d, strings.TrimPrefix(err.Error(), "idna: "))
		}
	}
	return ascii, nil
}

func checkLabel(l string) error {
	switch {
	case l == "":
		return errors.New("empty label (two dots in a row, or a leading dot)")
	case len(l) > MaxLabel:
		return fmt.Errorf("label %q is %d characters; at most %d", l, len(l), MaxLabel)
	case l[0] == '-' || l[len(l)-1] == '-':
		return fmt.Errorf("label %q starts or ends with a hyphen", l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			if c == '_' {
				return fmt.Errorf("label %q has an underscore; host names have letters, digits and hyphens only", l)
			}
			return fmt.Errorf("label %q may not contain %q; host names have letters, digits and hyphens only", l, c)
		}
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// asciiLower lower-cases ASCII letters only; every other byte stays as it is.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
