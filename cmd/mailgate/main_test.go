package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// -h and --help print the usage and exit 0, as the flag package's ExitOnError does; a
// flag that does not exist is a usage mistake, exit 2. Each runs main in a child process,
// so the exit status is the real one.
func TestHelpExitStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want int
		says string // on stdout or stderr
	}{
		{[]string{"serve", "-h"}, 0, "-config"},
		{[]string{"serve", "--help"}, 0, "-listen-http"},
		{[]string{"shim", "--help"}, 0, "-config"},
		{[]string{"doctor", "--help"}, 0, "-json"},
		{[]string{"send", "--help"}, 0, "--idempotency-key"},
		{[]string{"help"}, 0, "Usage:"},
		{[]string{"serve", "--no-such-flag"}, 2, "flag provided but not defined: -no-such-flag"},
		{[]string{"send", "--no-such-flag"}, 2, "flag provided but not defined: -no-such-flag"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			argsJSON, err := json.Marshal(tt.args)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), childArgsEnv+"="+string(argsJSON), "MAILGATE_API_KEY=")
			cmd.Dir = t.TempDir()
			out, err := cmd.CombinedOutput()
			got := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				got = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("mailgate %s: exit status %d, want %d\n%s", strings.Join(tt.args, " "), got, tt.want, out)
			}
			if !strings.Contains(string(out), tt.says) {
				t.Errorf("mailgate %s printed\n%s\nwant it to say %q", strings.Join(tt.args, " "), out, tt.says)
			}
		})
	}
}
