package server

import (
	"context"

	"google.golang.org/grpc"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
)

// gatewayService is the MailService the REST gateway calls in-process. Each call goes
// through the same interceptors as a gRPC call (recovery, metrics, API key), so every
// rule still lives once, behind the service; the gateway has already put the request's
// headers into the incoming metadata.
type gatewayService struct {
	mailgatev1.UnimplementedMailServiceServer
	svc   *Service
	chain grpc.UnaryServerInterceptor
}

func (g *gatewayService) SendMail(ctx context.Context, req *mailgatev1.SendMailRequest) (*mailgatev1.SendMailResponse, error) {
	resp, err := g.chain(ctx, req, &grpc.UnaryServerInfo{Server: g.svc, FullMethod: mailgatev1.MailService_SendMail_FullMethodName},
		func(ctx context.Context, req any) (any, error) {
			return g.svc.SendMail(ctx, req.(*mailgatev1.SendMailRequest))
		})
	if err != nil {
		return nil, err
	}
	return resp.(*mailgatev1.SendMailResponse), nil
}

func (g *gatewayService) GetMessage(ctx context.Context, req *mailgatev1.GetMessageRequest) (*mailgatev1.GetMessageResponse, error) {
	resp, err := g.chain(ctx, req, &grpc.UnaryServerInfo{Server: g.svc, FullMethod: mailgatev1.MailService_GetMessage_FullMethodName},
		func(ctx context.Context, req any) (any, error) {
			return g.svc.GetMessage(ctx, req.(*mailgatev1.GetMessageRequest))
		})
	if err != nil {
		return nil, err
	}
	return resp.(*mailgatev1.GetMessageResponse), nil
}

func (g *gatewayService) WhoAmI(ctx context.Context, req *mailgatev1.WhoAmIRequest) (*mailgatev1.WhoAmIResponse, error) {
	resp, err := g.chain(ctx, req, &grpc.UnaryServerInfo{Server: g.svc, FullMethod: mailgatev1.MailService_WhoAmI_FullMethodName},
		func(ctx context.Context, req any) (any, error) {
			return g.svc.WhoAmI(ctx, req.(*mailgatev1.WhoAmIRequest))
		})
	if err != nil {
		return nil, err
	}
	return resp.(*mailgatev1.WhoAmIResponse), nil
}

// chainUnary composes interceptors into one, first outermost, as
// grpc.ChainUnaryInterceptor does.
func chainUnary(interceptors []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		h := handler
		for i := len(interceptors) - 1; i >= 0; i-- {
			next, ic := h, interceptors[i]
			h = func(ctx context.Context, req any) (any, error) { return ic(ctx, req, info, next) }
		}
		return h(ctx, req)
	}
}
