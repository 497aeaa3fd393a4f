package server

import (
	"context"
	"io"
	"net/http"

	"github.com/mailgate/mailgate/mailerr"
)

type bodyLimitKey struct{}

// bodyLimit records that a request body went past the limit, so the gateway's error
// handler can answer 413 MESSAGE_TOO_LARGE instead of a JSON syntax error.
type bodyLimit struct {
	max      int64
	exceeded bool
}

func bodyLimitFrom(ctx context.Context) *bodyLimit {
	l, _ := ctx.Value(bodyLimitKey{}).(*bodyLimit)
	return l
}

// limitBody refuses request bodies over max bytes: at once when Content-Length says so,
// else when reading reaches the limit.
func limitBody(next http.Handler, max int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > max {
			w.Header().Set("Connection", "close")
			writeStatus(w, mailerr.TooLarge.HTTPStatus(), toStatus(tooLargeBody(max)))
			return
		}
		l := &bodyLimit{max: max}
		r = r.WithContext(context.WithValue(r.Context(), bodyLimitKey{}, l))
		r.Body = &limitedBody{rc: r.Body, left: max, limit: l}
		next.ServeHTTP(w, r)
	})
}

func tooLargeBody(max int64) *mailerr.Error {
	return &mailerr.Error{Kind: mailerr.TooLarge,
		Msg: "request body too large: the limit is " + mb(max) + " of JSON (the message limit plus base64)"}
}

type limitedBody struct {
	rc    io.ReadCloser
	left  int64
	limit *bodyLimit
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		b.limit.exceeded = true
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left+1] // read one byte past the limit to tell "exactly at" from "over"
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		b.limit.exceeded = true
		return n + int(b.left), errBodyTooLarge
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

var errBodyTooLarge = &mailerr.Error{Kind: mailerr.TooLarge, Msg: "request body too large"}
