package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/client"
	"github.com/mailgate/mailgate/mailerr"
)

func Example() {
	endpoint, _, stop, err := startMailgate() // http://127.0.0.1:PORT, a mailgate for the example
	if err != nil {
		log.Fatal(err)
	}
	defer stop()

	c, err := client.New(endpoint, "mg_client_test_key")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	resp, err := c.SendMail(ctx, &mailgatev1.SendMailRequest{
		From:           &mailgatev1.Address{Address: "billing@example.com", Name: "Billing"},
		To:             []*mailgatev1.Address{{Address: "jane@example.net"}},
		Subject:        "Your invoice",
		Text:           "Hello Jane,\n\nyour invoice is attached.\n",
		IdempotencyKey: "invoice-2041",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.GetStatus())

	// Every error is a *mailerr.Error: its Kind says what to do, its Reason names it.
	_, err = c.SendMail(ctx, &mailgatev1.SendMailRequest{
		From: &mailgatev1.Address{Address: "billing@example.org"},
		To:   []*mailgatev1.Address{{Address: "jane@example.net"}},
		Text: "Hello.",
	})
	var e *mailerr.Error
	if errors.As(err, &e) {
		fmt.Println(e.Kind, e.Reason)
	}
	// Output:
	// SENT
	// PERMISSION_DENIED SENDER_NOT_ALLOWED
}
