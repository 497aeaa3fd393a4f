package shim

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
)

var _ Submitter = (*Remote)(nil)

// Remote submits to a mailgate over its gRPC API: the shim of a `mailgate shim` process.
// Each message is sent with the principal's own API key.
type Remote struct {
	client mailgatev1.MailServiceClient
}

var _ Submitter = (*Remote)(nil)

// NewRemote returns a Submitter over cc.
func NewRemote(cc grpc.ClientConnInterface) *Remote {
	return &Remote{client: mailgatev1.NewMailServiceClient(cc)}
}

// Authenticate implements Submitter: the remote mailgate's WhoAmI checks the key and
// names it, and name must be that name, as in process.
func (r *Remote) Authenticate(ctx context.Context, name, secret string) (Principal, error) {
	who, err := r.client.WhoAmI(withBearer(ctx, secret), &mailgatev1.WhoAmIRequest{})
	switch {
	case status.Code(err) == codes.Unauthenticated:
		return Principal{}, ErrBadCredentials
	case err != nil:
		return Principal{}, err
	case who.GetName() != name:
		return Principal{}, ErrBadCredentials
	}
	return Principal{Name: who.GetName(), Secret: secret}, nil
}

// SendMail implements Submitter.
func (r *Remote) SendMail(ctx context.Context, p Principal, req *mailgatev1.SendMailRequest) (*mailgatev1.SendMailResponse, error) {
	return r.client.SendMail(withBearer(ctx, p.Secret), req)
}

func withBearer(ctx context.Context, key string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
}
