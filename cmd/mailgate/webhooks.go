package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/mailgate/mailgate/webhook"
)

const webhooksUsage = `Usage:
  mailgate webhooks secret                  print a new signing secret (whsec_...) for a webhook's secret or secret_file
  mailgate webhooks test NAME --config FILE send a signed webhook.test event to the webhook NAME of FILE, and say how it answered

Exit status of test: 0 the endpoint answered 2xx; 1 it did not (the reason is printed); 2 a usage mistake.
`

func webhooksCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		if len(args) == 0 {
			fmt.Fprint(stderr, webhooksUsage)
			return errUsage
		}
		fmt.Fprint(stdout, webhooksUsage)
		return nil
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "secret":
		if len(rest) > 0 {
			fmt.Fprintf(stderr, "mailgate webhooks secret: takes no arguments\n\n%s", webhooksUsage)
			return errUsage
		}
		fmt.Fprintln(stdout, webhook.NewSecret())
		return nil
	case "test":
		return webhooksTest(ctx, rest, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "mailgate webhooks: unknown command %q\n\n%s", sub, webhooksUsage)
		return errUsage
	}
}

func webhooksTest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("webhooks test", stderr)
	fs.Usage = func() { fmt.Fprint(stderr, webhooksUsage) }
	configPath := fs.String("config", "", "the configuration `FILE`")
	// NAME may come before or after the flags.
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if name == "" && fs.NArg() == 1 {
		name = fs.Arg(0)
	} else if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mailgate webhooks test: give one webhook name\n\n%s", webhooksUsage)
		return errUsage
	}
	if name == "" || *configPath == "" {
		fmt.Fprintf(stderr, "mailgate webhooks test: give the webhook's NAME and --config FILE\n\n%s", webhooksUsage)
		return errUsage
	}
	cfg, err := loadConfig(*configPath, stderr, "configuration invalid")
	if err != nil {
		return err
	}
	w, ok := cfg.Webhooks[name]
	if !ok {
		names := make([]string, 0, len(cfg.Webhooks))
		for n := range cfg.Webhooks {
			names = append(names, n)
		}
		slices.Sort(names)
		if len(names) == 0 {
			fmt.Fprintf(stderr, "mailgate webhooks test: %s has no webhooks: section\n", *configPath)
		} else {
			fmt.Fprintf(stderr, "mailgate webhooks test: no webhook %q in %s (it has: %s)\n", name, *configPath, strings.Join(names, ", "))
		}
		return errUsage
	}
	ep, err := w.Endpoint(name)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", name, err)
	}
	id := webhook.NewID()
	body, err := webhook.Event{Type: webhook.TestEventType, Timestamp: time.Now().UTC(),
		Data: map[string]string{"webhook": name, "text": "a test event from mailgate webhooks test"}}.Body()
	if err != nil {
		return err
	}
	start := time.Now()
	err = webhook.NewClient(ep, nil).Post(ctx, id, body)
	took := time.Since(start).Round(time.Millisecond)
	if err != nil {
		hint := ""
		if errors.Is(err, webhook.ErrGone) {
			hint = " (mailgate disables an endpoint that answers 410; remove or fix it)"
		}
		fmt.Fprintf(stderr, "webhook %s: %s: %v%s (after %s, event %s)\n", name, ep.URL.Redacted(), err, hint, took, id)
		return exitStatus(1)
	}
	fmt.Fprintf(stdout, "webhook %s: %s took event %s (%s) in %s\n", name, ep.URL.Redacted(), id, webhook.TestEventType, took)
	return nil
}
