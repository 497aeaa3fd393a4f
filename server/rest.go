package server

import (
	"context"
	"io"
	"net/http"

	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/mailerr/mailstatus"
	"github.com/mailgate/mailgate/server/apikey"
)

// restState is what the REST front learns about a request that the gateway's error
// handler needs: the gateway reduces a decoding error to a bare InvalidArgument.
type restState struct {
	max       int64
	exceeded  bool           // the body went past max
	decodeErr *mailerr.Error // the JSON decoder's classified refusal
	busyErr   *mailerr.Error // the in-flight budget refused the body
}

type restStateKey struct{}

func restStateFrom(ctx context.Context) *restState {
	s, _ := ctx.Value(restStateKey{}).(*restState)
	return s
}

// restFront does, before the gateway reads a byte of the body, what can be decided from
// the headers: the API key (an unauthenticated client never makes the server buffer its
// body), the Idempotency-Key header, the declared length. It then meters the body
// against the size limit and the server's in-flight budget.
func restFront(next http.Handler, keys *apikey.Keyring, max int64, budget *inflight) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A request without a body has nothing to buffer: the gateway routes it first, so
		// a wrong path or method gets 404 or 405 whatever the key.
		if r.ContentLength != 0 {
			k, err := keyFromHeaders(r.Header.Values("Authorization"), r.Header.Values("X-Api-Key"), keys)
			if err != nil {
				refuseUnread(w, err)
				return
			}
			r = r.WithContext(withKey(r.Context(), k))
		}
		if err := checkIdempotencyHeaders(r.Header); err != nil {
			refuseUnread(w, err)
			return
		}
		if r.ContentLength > max {
			refuseUnread(w, tooLargeBody(max))
			return
		}
		res := budget.reserve()
		defer res.release()
		if r.ContentLength > 0 {
			if err := res.grow(r.Context(), r.ContentLength); err != nil {
				refuseUnread(w, err)
				return
			}
		}
		state := &restState{max: max}
		r = r.WithContext(context.WithValue(r.Context(), restStateKey{}, state))
		r.Body = &limitedBody{rc: r.Body, left: max, state: state, res: res, ctx: r.Context(),
			size: r.ContentLength, contentType: r.Header.Get("Content-Type")}
		next.ServeHTTP(w, r)
	})
}

// checkIdempotencyHeaders refuses Idempotency-Key values the gateway would silently drop
// (it forwards only printable ASCII) and two spellings of the header that disagree.
func checkIdempotencyHeaders(h http.Header) *mailerr.Error {
	var first, firstName string
	for _, name := range []string{"Idempotency-Key", "Grpc-Metadata-Idempotency-Key"} {
		for _, v := range h.Values(name) {
			for i := 0; i < len(v); i++ {
				if c := v[i]; c < 0x20 || c > 0x7e {
					return invalidKey(name, "use printable ASCII characters only (RFC 8941 sf-string); byte %d is 0x%02x", i, c)
				}
			}
			switch {
			case firstName == "":
				first, firstName = v, name
			case v != first:
				return invalidKey(name, "differs from the %s header; give the key once", firstName)
			}
		}
	}
	if h.Get("Grpc-Metadata-Idempotency-Key") != "" && h.Get("Idempotency-Key") != "" {
		h.Del("Grpc-Metadata-Idempotency-Key") // the same key twice is the key once
	}
	return nil
}

func tooLargeBody(max int64) *mailerr.Error {
	return &mailerr.Error{Kind: mailerr.TooLarge,
		Msg: "request body too large: the limit is " + mb(max) + " of JSON (the message limit plus base64)"}
}

// limitedBody refuses to read past left bytes and takes the bytes it reads from the
// in-flight budget when the length was not declared.
type limitedBody struct {
	rc          io.ReadCloser
	left        int64
	state       *restState
	res         *reservation
	ctx         context.Context
	size        int64 // Content-Length, or -1
	contentType string
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		b.state.exceeded = true
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left+1] // read one byte past the limit to tell "exactly at" from "over"
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		b.state.exceeded = true
		return n + int(b.left), errBodyTooLarge
	}
	if b.size <= 0 && n > 0 {
		if gerr := b.res.grow(b.ctx, int64(n)); gerr != nil {
			b.state.busyErr = gerr
			return 0, gerr
		}
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

var errBodyTooLarge = &mailerr.Error{Kind: mailerr.TooLarge, Msg: "request body too large"}

// refuseUnread answers a request whose body was not read, and closes the connection:
// otherwise net/http reads up to 256 KB of the body to keep the connection, before the
// answer goes out.
func refuseUnread(w http.ResponseWriter, e *mailerr.Error) {
	w.Header().Set("Connection", "close")
	writeError(w, e)
}

// writeError answers a REST request with err's status, as the gateway's error handler
// does for the service's errors.
func writeError(w http.ResponseWriter, e *mailerr.Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(e.RetryAfter))
	}
	writeStatus(w, e.Kind.HTTPStatus(), mailstatus.ToStatus(e))
}
