// Package server is the mailgate service: the gRPC API, the REST gateway in front of it,
// API keys, validation, routing and the mapping of errors to codes. It knows nothing of
// SMTP wire details or Microsoft's JSON: backends (package senders) do that.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/proto"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/mailerr/mailstatus"
	"github.com/mailgate/mailgate/openapi"
	"github.com/mailgate/mailgate/server/apikey"
	"github.com/mailgate/mailgate/server/store"
)

// Options configure a Server.
type Options struct {
	Service ServiceOptions
	// Dispatch tunes the queue's workers, which run when Service has a Queue.
	Dispatch DispatchOptions
	Keys     *apikey.Keyring
	// TLS, when set, is served on both listeners.
	TLS *tls.Config
	// MaxInflightBytes bounds the request bytes held at once over both APIs; default
	// DefaultMaxInflightBytes.
	MaxInflightBytes int64
	// inflightWait is how long a request waits for the budget; tests shorten it.
	inflightWait time.Duration
	// ShutdownTimeout bounds the drain on shutdown; default 30 s.
	ShutdownTimeout time.Duration
	// DataCheckInterval, when positive and the store can lose its data on its own
	// (store.DataWatcher: Redis), is how often the server checks that it did not; a
	// loss makes the server not ready until it is acknowledged. 0: no checks.
	DataCheckInterval time.Duration
	Logger            *slog.Logger
}

// Server serves one mailgate process's listeners.
type Server struct {
	svc      *Service
	grpc     *grpc.Server
	http     *http.Server
	health   *health.Server
	tls      *tls.Config
	registry *prometheus.Registry
	ready    atomic.Bool
	log      *slog.Logger
	timeout  time.Duration
	local    *Local
	adapters []Adapter
	data     *dataWatch // nil: no data checks
}

// Adapter is another front end served beside the APIs, such as the SMTP shim. Serve
// runs until Shutdown; Shutdown drains it, as the APIs are drained, before the backends
// close.
type Adapter interface {
	Serve() error
	Shutdown(ctx context.Context) error
}

// Registerer is where adapters register their metrics, served at /metrics.
func (s *Server) Registerer() prometheus.Registerer { return s.registry }

// Attach serves a with the server. Call it before Serve.
func (s *Server) Attach(a Adapter) { s.adapters = append(s.adapters, a) }

// DefaultMaxInflightBytes is the in-flight budget when none is configured: room for four
// of the largest requests at once.
func DefaultMaxInflightBytes(maxMessage int64) int64 { return 4 * LargestRequest(maxMessage) }

// LargestRequest is the most bytes one API request may take: a gRPC message, which
// leaves room for attachments' base64 growth that validation measures (a REST body,
// maxMessage*4/3 and the JSON around it, is smaller). config.LargestRequest, which
// validates limits.max_inflight_bytes, is the same.
func LargestRequest(maxMessage int64) int64 { return 2*maxMessage + 1<<20 }

// New builds a server; Serve starts it.
func New(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Service.Logger == nil {
		opts.Service.Logger = opts.Logger
	}
	svc, err := NewService(opts.Service)
	if err != nil {
		return nil, err
	}
	s := &Server{
		svc:      svc,
		health:   health.NewServer(),
		tls:      opts.TLS,
		registry: prometheus.NewRegistry(),
		log:      opts.Logger,
		timeout:  opts.ShutdownTimeout,
	}
	if s.timeout <= 0 {
		s.timeout = 30 * time.Second
	}
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), svc.metrics)
	if w, ok := svc.store.(store.DataWatcher); ok && opts.DataCheckInterval > 0 {
		s.data = &dataWatch{
			w: w, interval: opts.DataCheckInterval, timeout: max(opts.DataCheckInterval, 2*time.Second),
			log: s.log, metrics: svc.metrics,
			setHealth: func(st healthpb.HealthCheckResponse_ServingStatus) { s.health.SetServingStatus("", st) },
		}
	}
	grpcMetrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	s.registry.MustRegister(grpcMetrics)

	// gRPC refuses bigger messages itself, before validation can say MESSAGE_TOO_LARGE;
	// leave room for attachments' base64 growth, which validation measures.
	maxMsg := int(LargestRequest(opts.Service.Limits.MaxMessageBytes))
	// One chain for both APIs: gRPC runs it as interceptors, the REST gateway calls the
	// service through it directly (no second gRPC hop, no extra copy of the message).
	interceptors := []grpc.UnaryServerInterceptor{
		recovery.UnaryServerInterceptor(recovery.WithRecoveryHandlerContext(s.recovered)),
		grpcMetrics.UnaryServerInterceptor(),
		authenticate(opts.Keys),
	}
	if opts.MaxInflightBytes == 0 {
		opts.MaxInflightBytes = DefaultMaxInflightBytes(opts.Service.Limits.MaxMessageBytes)
	}
	if min := LargestRequest(opts.Service.Limits.MaxMessageBytes); opts.MaxInflightBytes < min {
		return nil, fmt.Errorf("the in-flight budget (%d bytes) is less than the largest request (%d bytes)", opts.MaxInflightBytes, min)
	}
	if opts.inflightWait <= 0 {
		opts.inflightWait = 10 * time.Second
	}
	budget := newInflight(opts.MaxInflightBytes, opts.inflightWait)
	codec := newStrictCodec()
	serverOpts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxMsg),
		grpc.ChainUnaryInterceptor(interceptors...),
		grpc.InTapHandle(tapAuthenticate(opts.Keys)),
		grpc.ForceServerCodecV2(codec),
	}
	if s.tls != nil {
		serverOpts = append(serverOpts, grpc.Creds(credentials.NewTLS(s.tls)))
	}
	s.grpc = grpc.NewServer(serverOpts...)
	s.grpc.RegisterService(meteredMethods(&mailgatev1.MailService_ServiceDesc, budget, int64(maxMsg), codec), svc)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	grpcMetrics.InitializeMetrics(s.grpc)

	api, err := apiEndpoints(openapi.JSON)
	if err != nil {
		return nil, err
	}
	rt := &routes{api: api}
	gw := runtime.NewServeMux(
		runtime.WithIncomingHeaderMatcher(headerMatcher),
		runtime.WithErrorHandler(gatewayErrorHandler),
		runtime.WithRoutingErrorHandler(rt.gatewayRoutingError),
		runtime.WithMarshalerOption(runtime.MIMEWildcard, newJSONMarshaler()),
		runtime.WithForwardResponseOption(acceptedStatus),
	)
	// In-process adapters authenticate their clients themselves: every interceptor but
	// the API key's.
	s.local = &Local{svc: svc, keys: opts.Keys, chain: chainUnary(interceptors[:len(interceptors)-1])}
	if svc.queue != nil {
		s.registry.MustRegister(newQueueGauges(svc.queue, svc.metrics.queueErrors, svc.now))
		d, err := svc.NewDispatcher(opts.Dispatch)
		if err != nil {
			return nil, err
		}
		s.Attach(d)
	}
	if err := mailgatev1.RegisterMailServiceHandlerServer(context.Background(), gw, &gatewayService{svc: svc, chain: chainUnary(interceptors)}); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	// JSON carries attachments as base64: 4/3 of the message, plus the JSON around it.
	maxBody := opts.Service.Limits.MaxMessageBytes*4/3 + 1<<20

	mux := http.NewServeMux()
	mux.Handle("/v1/", restFront(gw, opts.Keys, maxBody, budget))
	for _, op := range []struct {
		endpoint
		h http.HandlerFunc
	}{
		{endpoint{"GET", "/healthz"}, func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") }},
		{endpoint{"GET", "/readyz"}, s.readyz},
		{endpoint{"GET", "/metrics"}, promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}).ServeHTTP},
		{endpoint{"GET", "/openapi.json"}, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(openapi.JSON)
		}},
	} {
		mux.HandleFunc(op.String(), op.h)
		rt.ops = append(rt.ops, op.endpoint)
	}
	s.http = &http.Server{
		Handler:           rt.jsonRoutingErrors(mux),
		TLSConfig:         s.tls,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Minute, // a large message over a slow link, not forever
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Serve runs until ctx is done, then drains: listeners close at once, and in-flight
// requests get up to the shutdown timeout to finish. A nil listener is not served. It
// returns nil after a clean drain. The backends and the store are the caller's: it
// closes them once Serve has returned.
func (s *Server) Serve(ctx context.Context, httpLn, grpcLn net.Listener) error {
	errc := make(chan error, 2+len(s.adapters))
	for _, a := range s.adapters {
		go func() { errc <- a.Serve() }()
	}
	if grpcLn != nil {
		go func() { errc <- s.grpc.Serve(grpcLn) }()
	}
	if httpLn != nil {
		go func() {
			var err error
			if s.tls != nil {
				err = s.http.ServeTLS(httpLn, "", "")
			} else {
				err = s.http.Serve(httpLn)
			}
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			errc <- err
		}()
	}
	s.ready.Store(true)
	s.health.Resume()
	if s.data != nil {
		watchCtx, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		go s.data.run(watchCtx)
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		serveErr = fmt.Errorf("listener failed: %w", serveErr)
	}
	return errors.Join(serveErr, s.drain())
}

func (s *Server) drain() error {
	s.ready.Store(false)
	s.health.Shutdown()
	s.log.Info("draining", "timeout", s.timeout.String())
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()

	var wg sync.WaitGroup
	var httpErr error
	wg.Go(func() { httpErr = s.http.Shutdown(ctx) })
	wg.Go(func() { gracefulStop(ctx, s.grpc) })
	adapterErrs := make([]error, len(s.adapters))
	for i, a := range s.adapters {
		wg.Go(func() { adapterErrs[i] = a.Shutdown(ctx) })
	}
	wg.Wait()

	errs := adapterErrs
	if httpErr != nil {
		errs = append(errs, fmt.Errorf("http drain: %w", httpErr))
	}
	return errors.Join(errs...)
}

// gracefulStop lets in-flight RPCs finish until ctx is done, then cuts them off.
func gracefulStop(ctx context.Context, g *grpc.Server) {
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		g.Stop()
		<-done
	}
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		http.Error(w, "not ready: shutting down", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.svc.store.Ping(ctx); err != nil {
		s.svc.metrics.storeErrors.WithLabelValues("ping").Inc()
		s.log.Warn("not ready: the store does not answer", "error", err)
		http.Error(w, "not ready: the store (Redis) does not answer", http.StatusServiceUnavailable)
		return
	}
	if q := s.svc.queue; q != nil {
		// The queue must take messages for a replica to be ready: a device told 250
		// relies on it.
		if _, err := q.Stats(ctx); err != nil {
			s.svc.metrics.queueErrors.WithLabelValues("stats").Inc()
			s.log.Warn("not ready: the queue does not answer", "error", err)
			http.Error(w, "not ready: the queue does not answer (queue.dir, or Redis)", http.StatusServiceUnavailable)
			return
		}
	}
	if s.data != nil {
		checked, lost := s.data.state()
		switch {
		case lost != nil:
			// The reason names keys and addresses: it is in the log, not here.
			http.Error(w, "not ready: Redis lost mailgate's data (noticed at "+lost.At.UTC().Format(time.RFC3339)+
				"; the log says how), so retried requests may be sent twice. Once you have dealt with it (docs/operations.md#when-redis-lost-its-data), run `mailgate admin store-ack CONFIG`",
				http.StatusServiceUnavailable)
			return
		case !checked:
			http.Error(w, "not ready: checking that Redis kept its data", http.StatusServiceUnavailable)
			return
		}
	}
	io.WriteString(w, "ready\n")
}

func (s *Server) recovered(ctx context.Context, p any) error {
	s.log.ErrorContext(ctx, "panic in handler", "panic", fmt.Sprint(p))
	return mailstatus.Err(mailerr.New(mailerr.Internal, "internal error"))
}

// acceptedStatus answers a queued message with 202 Accepted: mailgate has taken it, and
// delivery is yet to come.
func acceptedStatus(_ context.Context, w http.ResponseWriter, m proto.Message) error {
	if r, ok := m.(*mailgatev1.SendMailResponse); ok && r.GetStatus() == mailgatev1.Status_QUEUED {
		w.WriteHeader(http.StatusAccepted)
	}
	return nil
}

// headerMatcher forwards the headers the API defines. grpc-gateway's default drops
// Idempotency-Key and X-API-Key (Authorization it forwards on its own).
func headerMatcher(h string) (string, bool) {
	switch http.CanonicalHeaderKey(h) {
	case "Idempotency-Key":
		return "idempotency-key", true
	case "X-Api-Key":
		return "x-api-key", true
	}
	return runtime.DefaultHeaderMatcher(h)
}
