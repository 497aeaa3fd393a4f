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

// NewRemote returns a Submitter over cc.
func NewRemote(cc grpc.ClientConnInterface) *Remote {
	return &Remote{client: mailgatev1.NewMailServiceClient(cc)}
}

// probeID is a well-formed message id no message has: looking it up tells a valid key
// (NOT_FOUND) from an unknown one (UNAUTHENTICATED) without sending anything.
const probeID = "00000000000000000000000000"

// Authenticate implements Submitter. The remote mailgate checks the key; it does not
// say the key's name, so the name given in AUTH is taken as it is.
func (r *Remote) Authenticate(ctx context.Context, name, secret string) (Principal, error) {
	_, err := r.client.GetMessage(withBearer(ctx, secret), &mailgatev1.GetMessageRequest{Id: probeID})
	switch status.Code(err) {
	case codes.NotFound, codes.OK:
		return Principal{Name: name, Secret: secret}, nil
	case codes.Unauthenticated:
		return Principal{}, ErrBadCredentials
	}
	return Principal{}, err
}

// SendMail implements Submitter.
func (r *Remote) SendMail(ctx context.Context, p Principal, req *mailgatev1.SendMailRequest) (*mailgatev1.SendMailResponse, error) {
	return r.client.SendMail(withBearer(ctx, p.Secret), req)
}

func withBearer(ctx context.Context, key string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
}
