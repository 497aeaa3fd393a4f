package server

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/mailgate/mailgate/mailerr"
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

// presentedKey finds the API key in the request metadata: `authorization: Bearer <key>`
// or `x-api-key: <key>` (the REST gateway forwards both headers under these names).
func presentedKey(md metadata.MD) string {
	for _, v := range md.Get("authorization") {
		scheme, key, ok := strings.Cut(strings.TrimSpace(v), " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(key)
		}
	}
	for _, v := range md.Get("x-api-key") {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}

// authenticate returns a unary interceptor that admits MailService calls only with a
// known API key. Health and reflection stay open: probes and grpcurl need no key.
func authenticate(keys *apikey.Keyring) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !strings.HasPrefix(info.FullMethod, "/mailgate.") {
			return handler(ctx, req)
		}
		md, _ := metadata.FromIncomingContext(ctx)
		presented := presentedKey(md)
		if presented == "" {
			return nil, toStatus(mailerr.New(mailerr.Unauthenticated,
				"no API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`")).Err()
		}
		k, ok := keys.Lookup(presented)
		if !ok {
			return nil, toStatus(mailerr.New(mailerr.Unauthenticated, "unknown API key")).Err()
		}
		return handler(withKey(ctx, k), req)
	}
}
