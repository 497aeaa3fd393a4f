package server

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/mailerr/mailstatus"
	"github.com/mailgate/mailgate/server/apikey"
)

type keyContextKey struct{}

// withKey returns ctx carrying the authenticated key.
func withKey(ctx context.Context, k *apikey.Key) context.Context {
	return context.WithValue(ctx, keyContextKey{}, k)
}

// keyFrom returns the key that authenticated the request.
func keyFrom(ctx context.Context) *apikey.Key {
	k, _ := ctx.Value(keyContextKey{}).(*apikey.Key)
	return k
}

const howToPresent = "send `Authorization: Bearer <key>` or `X-API-Key: <key>`"

// keyFromHeaders authenticates a request by its `authorization: Bearer <key>` or
// `x-api-key: <key>` values (HTTP headers or gRPC metadata, which carry the same names).
// The refusal says what was wrong with what was presented, never the value itself.
func keyFromHeaders(authorization, xAPIKey []string, keys *apikey.Keyring) (*apikey.Key, *mailerr.Error) {
	presented, problem := "", ""
	for _, v := range authorization {
		scheme, key, ok := strings.Cut(strings.TrimSpace(v), " ")
		switch {
		case strings.TrimSpace(v) == "":
			problem = "the Authorization header is empty: " + howToPresent
		case !ok && strings.EqualFold(scheme, "Bearer"):
			problem = "`Authorization: Bearer` has no key after it: " + howToPresent
		case !ok && looksLikeKey(scheme, keys):
			problem = "the Authorization header has an API key but no scheme: send `Authorization: Bearer <key>`"
		case !ok || !strings.EqualFold(scheme, "Bearer"):
			problem = "the Authorization scheme must be Bearer, not " + quoteScheme(scheme) + ": " + howToPresent
		case strings.TrimSpace(key) == "":
			problem = "`Authorization: Bearer` has no key after it: " + howToPresent
		default:
			presented = strings.TrimSpace(key)
		}
		if presented != "" {
			break
		}
	}
	if presented == "" {
		for _, v := range xAPIKey {
			if v = strings.TrimSpace(v); v != "" {
				presented = v
				break
			}
		}
	}
	if presented == "" {
		if problem == "" {
			problem = "no API key: " + howToPresent
		}
		return nil, mailerr.New(mailerr.Unauthenticated, "%s", problem)
	}
	k, ok := keys.Lookup(presented)
	if !ok {
		return nil, mailerr.New(mailerr.Unauthenticated, "unknown API key")
	}
	return k, nil
}

func looksLikeKey(s string, keys *apikey.Keyring) bool {
	if strings.HasPrefix(s, apikey.Prefix) {
		return true
	}
	_, known := keys.Lookup(s)
	return known
}

// quoteScheme names a scheme the caller sent, cut short: it may be a secret typed in the
// wrong place.
func quoteScheme(s string) string {
	if len(s) > 10 || strings.ContainsAny(s, ".:=") {
		return "the value given"
	}
	return "`" + s + "`"
}

// authenticate returns a unary interceptor that admits MailService calls only with a
// known API key, unless an earlier stage (restFront, tapAuthenticate) put the key in the
// context already: a caller cannot put it there. Health and reflection stay open: probes and grpcurl need no key.
func authenticate(keys *apikey.Keyring) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !strings.HasPrefix(info.FullMethod, "/mailgate.") {
			return handler(ctx, req)
		}
		if keyFrom(ctx) != nil {
			return handler(ctx, req) // the REST front or the gRPC tap has checked it
		}
		md, _ := metadata.FromIncomingContext(ctx)
		k, err := keyFromHeaders(md.Get("authorization"), md.Get("x-api-key"), keys)
		if err != nil {
			return nil, mailstatus.Err(err)
		}
		return handler(withKey(ctx, k), req)
	}
}
