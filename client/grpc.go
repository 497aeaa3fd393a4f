package client

import (
	"context"
	"net"
	"net/http"
	"net/url"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/mailerr/mailstatus"
)

// grpcClient calls mailgate.v1.MailService over gRPC.
type grpcClient struct {
	ep  Endpoint
	key string
	cc  *grpc.ClientConn
	mc  mailgatev1.MailServiceClient
	raw sniffer
}

func newGRPC(ep Endpoint, key string, o options) (*grpcClient, error) {
	c := &grpcClient{ep: ep, key: key}
	creds := insecure.NewCredentials()
	if ep.TLS {
		creds = credentials.NewTLS(o.tls)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds), grpc.WithUserAgent(o.userAgent)}
	if proxy, _ := http.ProxyFromEnvironment(&http.Request{URL: &url.URL{Scheme: "https", Host: ep.base}}); proxy == nil {
		// gRPC connects through $HTTPS_PROXY only with its own dialer: keep it then (the
		// first bytes would be the proxy's anyway).
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return c.raw.wrap(conn), nil
		}))
	}
	cc, err := grpc.NewClient(ep.base, opts...)
	if err != nil {
		return nil, err
	}
	c.cc, c.mc = cc, mailgatev1.NewMailServiceClient(cc)
	return c, nil
}

func (c *grpcClient) Close() error { return c.cc.Close() }

func (c *grpcClient) SendMail(ctx context.Context, req *mailgatev1.SendMailRequest) (*mailgatev1.SendMailResponse, error) {
	resp, err := c.mc.SendMail(c.withKey(ctx), req)
	if err != nil {
		return nil, c.failure(err, "SendMail")
	}
	return resp, nil
}

func (c *grpcClient) GetMessage(ctx context.Context, id string) (*mailgatev1.GetMessageResponse, error) {
	resp, err := c.mc.GetMessage(c.withKey(ctx), &mailgatev1.GetMessageRequest{Id: id})
	if err != nil {
		return nil, c.failure(err, "GetMessage")
	}
	return resp, nil
}

func (c *grpcClient) withKey(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.key)
}

// failure classifies a call's error: the service's status, or gRPC's own (no
// connection, or a server that does not speak gRPC).
func (c *grpcClient) failure(err error, name string) *mailerr.Error {
	st := status.Convert(err)
	e := mailstatus.FromStatus(st)
	if e.Reason == "" {
		// Not from mailgate's handlers, which always give a reason.
		first := c.raw.first()
		if msg := wrongProtocol(classifyWire(first), c.ep.wants(), first, c.ep.host, "gRPC"); msg != "" {
			return notMailgate("%s", msg)
		}
		if st.Code() == codes.Unavailable {
			// gRPC's own: no connection.
			e.Msg = "cannot reach the service: " + e.Msg
		}
	}
	if st.Code() == codes.Unimplemented {
		return notMailgate("it does not serve mailgate's %s: %s", name, e.Msg)
	}
	return e
}
