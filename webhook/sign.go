// Package webhook signs and delivers mailgate's event notifications in the Standard
// Webhooks format (https://www.standardwebhooks.com/), so that the published verifier
// libraries (svix, standardwebhooks) accept them unchanged.
//
// A notification is one HTTP POST of a JSON body with three headers:
//
//	webhook-id:        a unique id, the same on every retry of one event
//	webhook-timestamp: Unix seconds when this attempt was signed
//	webhook-signature: "v1,<base64 HMAC-SHA256 of id.timestamp.body>", one per secret,
//	                   separated by spaces (several during a secret rotation)
package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The header names of the Standard Webhooks format.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// secretPrefix starts every secret's text form, as the Standard Webhooks libraries
// write and read it.
const secretPrefix = "whsec_"

// Secret is one signing key. Its text form is "whsec_" and the key in standard base64.
type Secret struct {
	key []byte
}

// The Standard Webhooks specification asks for keys of 24 to 64 bytes.
const (
	minSecretBytes = 24
	maxSecretBytes = 64
)

// ParseSecret reads a secret's text form, "whsec_" and 24 to 64 bytes in standard
// base64.
func ParseSecret(s string) (Secret, error) {
	b64, ok := strings.CutPrefix(strings.TrimSpace(s), secretPrefix)
	if !ok {
		return Secret{}, errors.New(`a webhook secret starts with "whsec_" (make one with: mailgate webhooks secret)`)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return Secret{}, errors.New(`a webhook secret is "whsec_" and standard base64; this one is not base64`)
	}
	if len(key) < minSecretBytes || len(key) > maxSecretBytes {
		return Secret{}, fmt.Errorf("a webhook secret holds %d to %d bytes; this one holds %d", minSecretBytes, maxSecretBytes, len(key))
	}
	return Secret{key: key}, nil
}

// ParseSecrets reads one or more secrets separated by white space (a secret file may
// hold the new secret and the old one during a rotation, one per line).
func ParseSecrets(s string) ([]Secret, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return nil, errors.New("no webhook secret given")
	}
	out := make([]Secret, 0, len(fields))
	for i, f := range fields {
		sec, err := ParseSecret(f)
		if err != nil {
			if len(fields) > 1 {
				return nil, fmt.Errorf("secret %d of %d: %w", i+1, len(fields), err)
			}
			return nil, err
		}
		out = append(out, sec)
	}
	return out, nil
}

// NewSecret returns a new random secret of 32 bytes, in its text form.
func NewSecret() string {
	key := make([]byte, 32)
	rand.Read(key) // never fails (crypto/rand)
	return secretPrefix + base64.StdEncoding.EncodeToString(key)
}

// String is the secret's text form. Callers must not log it.
func (s Secret) String() string { return secretPrefix + base64.StdEncoding.EncodeToString(s.key) }

// sign is one signature, base64.
func (s Secret) sign(id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Sign returns the webhook-signature header of body sent as event id at ts: one
// "v1,<signature>" per secret, separated by spaces.
func Sign(id string, ts time.Time, body []byte, secrets ...Secret) string {
	sigs := make([]string, len(secrets))
	for i, s := range secrets {
		sigs[i] = "v1," + s.sign(id, ts.Unix(), body)
	}
	return strings.Join(sigs, " ")
}

// SetHeaders sets the three Standard Webhooks headers on h for body sent as event id at ts.
func SetHeaders(h http.Header, id string, ts time.Time, body []byte, secrets ...Secret) {
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, Sign(id, ts, body, secrets...))
}

// Errors of Verify.
var (
	ErrMissingHeaders = errors.New("webhook: missing webhook-id, webhook-timestamp or webhook-signature")
	ErrTimestamp      = errors.New("webhook: timestamp too old or too new")
	ErrSignature      = errors.New("webhook: no matching signature")
)

// Verify checks a received notification as a receiver should: the headers are there,
// the timestamp is within tolerance of now (replays of old notifications are refused),
// and one of the signatures is body's under one of the secrets. It is what a Go receiver
// of mailgate's webhooks needs, and what mailgate's tests check signatures with besides
// an independent verifier.
func Verify(h http.Header, body []byte, now time.Time, tolerance time.Duration, secrets ...Secret) error {
	id, tsText, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return ErrMissingHeaders
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q is not Unix seconds", ErrTimestamp, tsText)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: %s off", ErrTimestamp, d.Round(time.Second))
	}
	for _, s := range secrets {
		want := s.sign(id, ts, body)
		for _, sig := range strings.Fields(sigs) {
			v, got, ok := strings.Cut(sig, ",")
			if ok && v == "v1" && hmac.Equal([]byte(got), []byte(want)) {
				return nil
			}
		}
	}
	return ErrSignature
}
