package server

import (
	"context"
	"crypto/subtle"

	"google.golang.org/grpc"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/mailerr/mailstatus"
	"github.com/mailgate/mailgate/server/apikey"
)

// Local is the MailService for an adapter in the same process, the SMTP shim, which
// authenticates its own clients (SMTP AUTH with an API key, or a device's address). Each
// call runs the chain a gRPC call runs, but as the key the adapter names instead of one
// read from metadata: every other rule applies unchanged.
type Local struct {
	svc   *Service
	keys  *apikey.Keyring
	chain grpc.UnaryServerInterceptor
}

// Local returns the server's in-process MailService.
func (s *Server) Local() *Local { return s.local }

// Authenticate reports whether secret is the API key named name.
func (l *Local) Authenticate(name, secret string) bool {
	k, ok := l.keys.Lookup(secret)
	return ok && subtle.ConstantTimeCompare([]byte(k.Name), []byte(name)) == 1
}

// SendMailAs sends req as the API key named keyName.
func (l *Local) SendMailAs(ctx context.Context, keyName string, req *mailgatev1.SendMailRequest) (*mailgatev1.SendMailResponse, error) {
	k, ok := l.keys.ByName(keyName)
	if !ok {
		return nil, mailstatus.Err(mailerr.New(mailerr.Unauthenticated, "unknown API key %q", keyName))
	}
	resp, err := l.chain(withKey(ctx, k), req, &grpc.UnaryServerInfo{Server: l.svc, FullMethod: mailgatev1.MailService_SendMail_FullMethodName},
		func(ctx context.Context, req any) (any, error) {
			return l.svc.SendMail(ctx, req.(*mailgatev1.SendMailRequest))
		})
	if err != nil {
		return nil, err
	}
	return resp.(*mailgatev1.SendMailResponse), nil
}
