package shim

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"strings"

	"github.com/mailgate/mailgate/server/apikey"
)

// userAttr names a refused AUTH user name in a log line. A device (or a person) may type
// the API key, or some password, into the user field, so no refused user name is logged
// as given: only the first 8 hex digits of its SHA-256. That still tells one wrong name
// from another, and an operator can check a guess (printf %s NAME | sha256sum).
func userAttr(name string) slog.Attr { return slog.String("user_sha256", shortHash(name)) }

// keyAttr names a session's principal: the key's name, as the service (in process, or
// a remote mailgate's WhoAmI) gave it. A Submitter that took the AUTH user name as given
// could accept the key as its own name, so a name that looks like a key is hashed. For a
// key, the hash is the start of its hash: line in the configuration.
func keyAttr(name string) slog.Attr {
	if looksLikeKey(name) {
		return slog.String("key_sha256", shortHash(name))
	}
	return slog.String("key", name)
}

// looksLikeKey reports whether s may hold an API key: every key mailgate makes starts
// with the prefix, wherever in the field a device put it.
func looksLikeKey(s string) bool { return strings.Contains(s, apikey.Prefix) }

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}
