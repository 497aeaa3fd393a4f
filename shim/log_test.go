package shim_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/server"
	"github.com/mailgate/mailgate/shim"
)

// logBuffer collects a logger's lines; sessions log from their own goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// acceptAnyName is a Submitter that checks the key alone, so the AUTH user name is
// taken as given, even when it is the key itself: the shim must still keep the key out
// of its log.
type acceptAnyName struct{ err error }

func (a acceptAnyName) Authenticate(_ context.Context, name, secret string) (shim.Principal, error) {
	if a.err != nil {
		return shim.Principal{}, a.err
	}
	if secret != appKey {
		return shim.Principal{}, shim.ErrBadCredentials
	}
	return shim.Principal{Name: name, Secret: secret}, nil
}

func (acceptAnyName) SendMail(context.Context, shim.Principal, *mailgatev1.SendMailRequest) (*mailgatev1.SendMailResponse, error) {
	return &mailgatev1.SendMailResponse{Id: "01m86gy0k0xv4apyqmqk9hhqxp"}, nil
}

func short(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// A device that types the API key into the user field must not put the key into the
// log, whatever becomes of the AUTH; a refused user name is logged as a short hash.
func TestKeyInUserFieldNeverLogged(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		sub  shim.Submitter // nil: the in-process service
		auth func(r *rawConn)
		want string // a field the log must hold
	}{
		{"PLAIN, key as user and password", nil, func(r *rawConn) {
			r.want(535, "AUTH PLAIN %s", b64("\x00"+appKey+"\x00"+appKey))
		}, `"user_sha256":"` + short(appKey) + `"`},
		{"PLAIN, key as user, wrong password", nil, func(r *rawConn) {
			r.want(535, "AUTH PLAIN %s", b64("\x00"+appKey+"\x00wrong"))
		}, `"user_sha256":"` + short(appKey) + `"`},
		{"PLAIN, key after a space", nil, func(r *rawConn) {
			r.want(535, "AUTH PLAIN %s", b64("\x00 "+appKey+"\x00"+otherKey))
		}, `"user_sha256":"` + short(" "+appKey) + `"`},
		{"LOGIN, key as user", nil, func(r *rawConn) {
			r.want(334, "AUTH LOGIN")
			r.want(334, "%s", b64(appKey))
			r.want(535, "%s", b64(otherKey))
		}, `"user_sha256":"` + short(appKey) + `"`},
		{"LOGIN, key as initial response", nil, func(r *rawConn) {
			r.want(334, "AUTH LOGIN %s", b64(appKey))
			r.want(535, "%s", b64("app"))
		}, `"user_sha256":"` + short(appKey) + `"`},
		{"key could not be checked", acceptAnyName{err: errors.New("upstream down")}, func(r *rawConn) {
			r.want(454, "AUTH PLAIN %s", b64("\x00"+appKey+"\x00"+appKey))
		}, `"user_sha256":"` + short(appKey) + `"`},
		{"a Submitter accepts the key as user name", acceptAnyName{}, func(r *rawConn) {
			r.want(235, "AUTH PLAIN %s", b64("\x00"+appKey+"\x00"+appKey))
			r.want(250, "MAIL FROM:<app@contoso.com>")
			r.want(250, "RCPT TO:<bob@fabrikam.com>")
			r.want(354, "DATA")
			r.want(250, "%s\r\n.", strings.TrimSuffix(message, "\r\n"))
		}, `"key_sha256":"` + short(appKey) + `"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs logBuffer
			f := start(t, func(o *shim.Options, _ *server.ServiceOptions) {
				o.Logger = logs.logger()
				o.Submitter = tt.sub
			})
			r := dialRaw(t, f.addr, "")
			r.startTLS()
			tt.auth(r)
			r.want(221, "QUIT")
			got := logs.String()
			for _, secret := range []string{appKey, otherKey, b64(appKey), "\"wrong\""} {
				if strings.Contains(got, secret) {
					t.Errorf("the log holds %q:\n%s", secret, got)
				}
			}
			if !strings.Contains(got, tt.want) {
				t.Errorf("the log lacks %s:\n%s", tt.want, got)
			}
		})
	}
}
