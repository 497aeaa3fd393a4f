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

// invoke runs method's handler h through the chain, as the gRPC server would.
func invoke[Req, Resp any](ctx context.Context, chain grpc.UnaryServerInterceptor, svc *Service, method string, req Req,
	h func(context.Context, Req) (Resp, error)) (Resp, error) {
	resp, err := chain(ctx, req, &grpc.UnaryServerInfo{Server: svc, FullMethod: method},
		func(ctx context.Context, req any) (any, error) { return h(ctx, req.(Req)) })
	if err != nil {
		var zero Resp
		return zero, err
	}
	return resp.(Resp), nil
}

func (g *gatewayService) SendMail(ctx context.Context, req *mailgatev1.SendMailRequest) (*mailgatev1.SendMailResponse, error) {
	return invoke(ctx, g.chain, g.svc, mailgatev1.MailService_SendMail_FullMethodName, req, g.svc.SendMail)
}

func (g *gatewayService) GetMessage(ctx context.Context, req *mailgatev1.GetMessageRequest) (*mailgatev1.GetMessageResponse, error) {
	return invoke(ctx, g.chain, g.svc, mailgatev1.MailService_GetMessage_FullMethodName, req, g.svc.GetMessage)
}

func (g *gatewayService) WhoAmI(ctx context.Context, req *mailgatev1.WhoAmIRequest) (*mailgatev1.WhoAmIResponse, error) {
	return invoke(ctx, g.chain, g.svc, mailgatev1.MailService_WhoAmI_FullMethodName, req, g.svc.WhoAmI)
}

func (g *gatewayService) CancelMessage(ctx context.Context, req *mailgatev1.CancelMessageRequest) (*mailgatev1.CancelMessageResponse, error) {
	return invoke(ctx, g.chain, g.svc, mailgatev1.MailService_CancelMessage_FullMethodName, req, g.svc.CancelMessage)
}

func (g *gatewayService) ListMessages(ctx context.Context, req *mailgatev1.ListMessagesRequest) (*mailgatev1.ListMessagesResponse, error) {
	return invoke(ctx, g.chain, g.svc, mailgatev1.MailService_ListMessages_FullMethodName, req, g.svc.ListMessages)
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
