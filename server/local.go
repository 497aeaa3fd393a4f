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

// Local is the MailService for the SMTP shim in the same process, which authenticates
// its own clients (SMTP AUTH with an API key, or a device's address). Each call runs the
// chain a gRPC call runs, but as the key the shim names instead of one read from
// metadata: every other rule applies unchanged.
type Local struct {
	svc   *Service
	keys  *apikey.Keyring
	chain grpc.UnaryServerInterceptor
}

// Local returns the server's in-process MailService.
func (s *Server) Local() *Local { return s.local }

// Authenticate implements the shim's Submitter: secret must be the API key named name.
func (l *Local) Authenticate(_ context.Context, name, secret string) (apikey.Principal, error) {
	k, ok := l.keys.Lookup(secret)
	if !ok || subtle.ConstantTimeCompare([]byte(k.Name), []byte(name)) != 1 {
		return apikey.Principal{}, apikey.ErrBadCredentials
	}
	return apikey.Principal{Name: k.Name}, nil
}

// SendMail implements the shim's Submitter: it sends req as the API key p names. Its error is
// the service's own, which carries the *mailerr.Error the shim answers with.
func (l *Local) SendMail(ctx context.Context, p apikey.Principal, req *mailgatev1.SendMailRequest) (*mailgatev1.SendMailResponse, error) {
	k, ok := l.keys.ByName(p.Name)
	if !ok {
		return nil, mailstatus.Err(mailerr.New(mailerr.Unauthenticated, "unknown API key %q", p.Name))
	}
	return invoke(withKey(ctx, k), l.chain, l.svc, mailgatev1.MailService_SendMail_FullMethodName, req, l.svc.SendMail)
}
