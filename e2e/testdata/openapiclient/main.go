// Command openapiclient calls mailgate through the Go client that go-swagger generated
// from openapi/mailgate.swagger.json, as a REST user of the document would, and prints
// what it got as one JSON object. e2e TestOpenAPIClient copies it next to the generated
// packages (module example.com/mailgateclient), builds it and checks its output.
//
// Usage: openapiclient HOST:PORT SENDER BUSY-SENDER RECIPIENT (the API key in
// MAILGATE_API_KEY). BUSY-SENDER is a mailbox the test made Microsoft throttle.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-openapi/runtime"
	httptransport "github.com/go-openapi/runtime/client"
	"github.com/go-openapi/strfmt"

	"example.com/mailgateclient/client"
	"example.com/mailgateclient/client/mail_service"
	"example.com/mailgateclient/models"
)

// status is a google.rpc.Status decoded as the document's googleRpcStatus.
type status struct {
	HTTP       int
	Code       int32
	Message    string
	Types      []string
	Fields     []string // BadRequest field violations
	RetryAfter int64    // the declared Retry-After header, when the response has one
}

type result struct {
	Sent, Replay       *models.V1SendMailResponse
	Got                *models.V1GetMessageResponse
	Invalid, NoKey     status
	Throttled          status
	NotFound, BadID    status
	StatusOfSent       string
	ReplayedSameRecord bool
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "openapiclient:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) != 5 {
		return errors.New("usage: openapiclient HOST:PORT SENDER BUSY-SENDER RECIPIENT")
	}
	host, sender, busy, rcpt := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mg := client.NewHTTPClientWithConfig(strfmt.Default, client.DefaultTransportConfig().WithHost(host).WithSchemes([]string{"http"}))
	auth := httptransport.APIKeyAuth("X-API-Key", "header", os.Getenv("MAILGATE_API_KEY"))
	noAuth := httptransport.PassThroughAuth

	message := func(from, to string) *models.V1SendMailRequest {
		m := &models.V1SendMailRequest{Subject: "from the OpenAPI client", Text: "hi\n", SaveToSentItems: new(bool)}
		m.From.Address = &from
		m.To = []*models.V1Address{{Address: &to}}
		return m
	}
	send := func(body *models.V1SendMailRequest, idemKey string, w runtime.ClientAuthInfoWriter) (*mail_service.MailServiceSendMailOK, error) {
		p := mail_service.NewMailServiceSendMailParamsWithContext(ctx).WithBody(body)
		if idemKey != "" {
			p.SetIdempotencyKey(&idemKey)
		}
		// A route with delivery: queued answers 202 (the second result); this one is sync.
		ok, accepted, err := mg.MailService.MailServiceSendMail(p, w)
		if err == nil && ok == nil {
			return nil, fmt.Errorf("202 %v: want 200 from a sync route", accepted.Payload.Status)
		}
		return ok, err
	}

	var r result
	ok, err := send(message(sender, rcpt), "openapi-client-1", auth)
	if err != nil {
		return fmt.Errorf("SendMail: %w", err)
	}
	r.Sent = ok.Payload
	if ok.Payload.Status != nil {
		r.StatusOfSent = string(*ok.Payload.Status)
	}
	// The Idempotency-Key header parameter: the same key answers from the record.
	again, err := send(message(sender, rcpt), "openapi-client-1", auth)
	if err != nil {
		return fmt.Errorf("SendMail again: %w", err)
	}
	r.Replay = again.Payload
	r.ReplayedSameRecord = again.Payload.ID == ok.Payload.ID

	got, err := mg.MailService.MailServiceGetMessage(mail_service.NewMailServiceGetMessageParamsWithContext(ctx).WithID(ok.Payload.ID), auth)
	if err != nil {
		return fmt.Errorf("GetMessage: %w", err)
	}
	r.Got = got.Payload

	// Errors come back as the declared response types, bodies decoded as googleRpcStatus.
	_, err = send(message(sender, "not-an-address"), "", auth)
	var bad *mail_service.MailServiceSendMailBadRequest
	if !errors.As(err, &bad) {
		return fmt.Errorf("an invalid recipient: %v, want the declared 400 response", err)
	}
	r.Invalid = decode(400, bad.Payload, 0)

	_, err = send(message(sender, rcpt), "", noAuth)
	var unauth *mail_service.MailServiceSendMailUnauthorized
	if !errors.As(err, &unauth) {
		return fmt.Errorf("no key: %v, want the declared 401 response", err)
	}
	r.NoKey = decode(401, unauth.Payload, 0)

	_, err = send(message(busy, rcpt), "", auth)
	var throttled *mail_service.MailServiceSendMailTooManyRequests
	if !errors.As(err, &throttled) {
		return fmt.Errorf("a throttled mailbox: %v, want the declared 429 response", err)
	}
	r.Throttled = decode(429, throttled.Payload, throttled.RetryAfter)

	_, err = mg.MailService.MailServiceGetMessage(mail_service.NewMailServiceGetMessageParamsWithContext(ctx).WithID("01jx0000000000000000000000"), auth)
	var notFound *mail_service.MailServiceGetMessageNotFound
	if !errors.As(err, &notFound) {
		return fmt.Errorf("an unknown id: %v, want the declared 404 response", err)
	}
	r.NotFound = decode(404, notFound.Payload, 0)

	_, err = mg.MailService.MailServiceGetMessage(mail_service.NewMailServiceGetMessageParamsWithContext(ctx).WithID("nonsense"), auth)
	var badID *mail_service.MailServiceGetMessageBadRequest
	if !errors.As(err, &badID) {
		return fmt.Errorf("a malformed id: %v, want the declared 400 response", err)
	}
	r.BadID = decode(400, badID.Payload, 0)

	return json.NewEncoder(os.Stdout).Encode(r)
}

func decode(httpStatus int, st *models.GoogleRPCStatus, retryAfter int64) status {
	s := status{HTTP: httpStatus, RetryAfter: retryAfter}
	if st == nil {
		return s
	}
	s.Code, s.Message = st.Code, st.Message
	for _, d := range st.Details {
		s.Types = append(s.Types, d.AtType)
		// A BadRequest's fieldViolations are among the Any's other properties.
		vs, _ := d.ProtobufAnyAdditionalProperties["fieldViolations"].([]any)
		for _, v := range vs {
			if m, ok := v.(map[string]any); ok {
				s.Fields = append(s.Fields, fmt.Sprint(m["field"]))
			}
		}
	}
	return s
}
