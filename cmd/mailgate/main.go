// Command mailgate sends mail through Microsoft 365 on behalf of programs, scripts and
// devices. See `mailgate help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `mailgate: one API to send mail through Microsoft 365.

Usage:
  mailgate serve [--config FILE]     run the service (no FILE: embedded defaults, for trying it out;
                                     --listen-http, --listen-grpc, --listen-smtp ADDR|off move its ports)
  mailgate shim --config FILE        run only the SMTP shim, sending to a remote mailgate over gRPC
  mailgate send [flags] [< BODY]     send one message over REST or gRPC (flags, exit codes: mailgate send -h)
  mailgate keys new NAME             make an API key; prints it once, with its config entry
  mailgate check-config FILE         validate FILE, print its routing table, check Redis's persistence
  mailgate doctor FILE [--json]      check each backend's setup against Microsoft 365; sends nothing
  mailgate admin store-ack FILE      acknowledge that Redis lost its data (store-status: show it)
  mailgate queue list|show|retry|cancel|purge --config FILE
                                     look at and act on queued messages (mailgate queue -h)
  mailgate webhooks secret|test NAME --config FILE
                                     make a signing secret; send a signed test event (mailgate webhooks -h)
  mailgate version                   print the version

Environment:
  MAILGATE_DEV_KEY   the development key of 'serve' without --config (default: random, printed)
  MAILGATE_LISTEN_HTTP, MAILGATE_LISTEN_GRPC, MAILGATE_LISTEN_SMTP
                     the listeners of 'serve' without --config, as its --listen-* flags
  MAILGATE_URL       the service 'send' talks to (default: http://127.0.0.1:8080)
  MAILGATE_API_KEY   the API key of 'send'
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// errUsage marks a command-line mistake: exit status 2.
var errUsage = errors.New("usage")

// exitStatus is an exit status a command chose, having said why itself.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode is the exit status for run's error, printing the error when no command has.
func exitCode(err error, stderr io.Writer) int {
	var status exitStatus
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		// -h or --help printed the usage that was asked for: exit 0, as the flag
		// package's ExitOnError does.
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.As(err, &status):
		return int(status)
	default:
		fmt.Fprintln(stderr, "mailgate:", err)
		return 1
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return serve(ctx, rest, stderr)
	case "shim":
		return shimCommand(ctx, rest, stderr)
	case "send":
		return sendCommand(ctx, rest, os.Stdin, stdout, stderr)
	case "doctor":
		return doctorCommand(ctx, rest, stdout, stderr)
	case "keys":
		return keys(rest, stdout, stderr)
	case "check-config":
		return checkConfig(ctx, rest, stdout, stderr)
	case "admin":
		return admin(ctx, rest, stdout, stderr)
	case "queue":
		return queueCommand(ctx, rest, stdout, stderr)
	case "webhooks":
		return webhooksCommand(ctx, rest, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "mailgate", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "mailgate: unknown command %q\n\n%s", cmd, usage)
		return errUsage
	}
}

// newFlagSet returns a flag set that reports its errors to stderr; parseFlags returns
// them as errUsage.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args into fs. A mistake is errUsage (exit status 2); -h or --help,
// after which fs has printed its usage, is flag.ErrHelp (exit status 0).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return flag.ErrHelp
		}
		return errUsage
	}
	return nil
}
