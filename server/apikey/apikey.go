// Package apikey makes API keys and recognises them.
//
// A key is "mg_" followed by 43 characters of base64url: 256 random bits, so a plain
// SHA-256 is a safe way to store it (nothing to brute-force), and the configuration holds
// only "sha256:<hex>". The "mg_" prefix lets secret scanners spot a leaked key.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/mailgate/mailgate/mailaddr"
)

// Prefix starts every key mailgate makes.
const Prefix = "mg_"

const hashPrefix = "sha256:"

// Generate returns a new random key and its hash, in the form the configuration takes.
func Generate() (key, hash string) {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand panics rather than return short)
	key = Prefix + base64.RawURLEncoding.EncodeToString(b[:])
	return key, Hash(key)
}

// Hash returns "sha256:<hex>" of key.
func Hash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hashPrefix + hex.EncodeToString(sum[:])
}

// ParseHash checks the form "sha256:<64 hex digits>" and returns the digest.
func ParseHash(s string) ([sha256.Size]byte, error) {
	var d [sha256.Size]byte
	h, ok := strings.CutPrefix(s, hashPrefix)
	if !ok {
		return d, fmt.Errorf("want sha256:<64 hex digits> (from `mailgate keys new`)")
	}
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return d, fmt.Errorf("want sha256: followed by 64 hex digits")
	}
	copy(d[:], b)
	return d, nil
}

// Key is what a recognised API key stands for.
type Key struct {
	// Name identifies the key in logs, metrics and the SMTP shim's AUTH user name.
	Name string
	// Senders are the From addresses the key may use.
	Senders []mailaddr.Pattern
	// MessagesPerMinute is the key's own rate limit; 0 means none.
	MessagesPerMinute int
}

// MaySend reports whether the key may send as from.
func (k *Key) MaySend(from string) bool { return mailaddr.AnyMatch(k.Senders, from) }

type entry struct {
	digest [sha256.Size]byte
	key    *Key
}

// Keyring recognises the configured keys.
type Keyring struct {
	entries []entry
	byName  map[string]*Key
}

// NewKeyring returns an empty keyring.
func NewKeyring() *Keyring { return &Keyring{byName: make(map[string]*Key)} }

// Add registers a key by the hash of its secret.
func (r *Keyring) Add(k *Key, hash string) error {
	d, err := ParseHash(hash)
	if err != nil {
		return err
	}
	r.entries = append(r.entries, entry{digest: d, key: k})
	r.byName[k.Name] = k
	return nil
}

// Lookup returns the key whose secret is presented. It compares the digest with every
// entry in constant time, so timing reveals neither which key matched nor how much of it.
func (r *Keyring) Lookup(presented string) (*Key, bool) {
	d := sha256.Sum256([]byte(presented))
	var found *Key
	for i := range r.entries {
		if subtle.ConstantTimeCompare(d[:], r.entries[i].digest[:]) == 1 {
			found = r.entries[i].key
		}
	}
	return found, found != nil
}

// ByName returns the key with that name (for SMTP devices admitted by address).
func (r *Keyring) ByName(name string) (*Key, bool) {
	k, ok := r.byName[name]
	return k, ok
}

// Principal is who a front end other than the APIs (the SMTP shim) sends as: an API key's
// name, and, where the call goes to a remote mailgate, the key itself. It is here, with
// the keys, so that the service and the shim share it without either importing the other.
type Principal struct {
	Name string
	// Secret is the API key, when the call is made on the principal's behalf over the
	// network. Never logged.
	Secret string
}

// ErrBadCredentials is what authenticating a principal returns for a key that is not
// known, or a name that is not the key's: the client's mistake, never a temporary one.
var ErrBadCredentials = errors.New("unknown API key, or a name that is not the key's")
