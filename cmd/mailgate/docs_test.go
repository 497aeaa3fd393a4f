package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/internal/app"
	"github.com/mailgate/mailgate/senders/file"
	"github.com/mailgate/mailgate/senders/graph"
)

// docYAMLBlocks returns the fenced ```yaml blocks of the section under heading (a whole
// line of file, up to the next heading of any level), as written.
func docYAMLBlocks(t *testing.T, file, heading string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	start := -1
	for i, l := range lines {
		if l == heading {
			start = i + 1
			break
		}
	}
	if start < 0 {
		t.Fatalf("%s has no line %q", file, heading)
	}
	var blocks []string
	var cur []string
	in := false
	for _, l := range lines[start:] {
		switch {
		case !in && strings.HasPrefix(l, "#"):
			return blocks
		case !in && l == "```yaml":
			in, cur = true, nil
		case in && l == "```":
			in = false
			blocks = append(blocks, strings.Join(cur, "\n")+"\n")
		case in:
			cur = append(cur, l)
		}
	}
	return blocks
}

// TestShimDocScannerConfig loads the complete LAN scanner configuration of docs/shim.md
// as written there, validates it as `mailgate serve --config` would, and checks that it
// does what the text says: scanners on 10.20.0.0/24 send, without AUTH, as the key
// scanners, only as scanner@contoso.com, through Graph; the APIs on loopback only. Its
// trial variant (a file backend) must load too.
func TestShimDocScannerConfig(t *testing.T) {
	const heading = "### A complete file: scanners on the LAN"
	blocks := docYAMLBlocks(t, filepath.Join("..", "..", "docs", "shim.md"), heading)
	if len(blocks) != 2 {
		t.Fatalf("%q has %d yaml blocks, want the configuration and its trial backend", heading, len(blocks))
	}
	credentials := t.TempDir()
	if err := os.WriteFile(filepath.Join(credentials, "graph-client-secret"), []byte("the-client-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", credentials)

	cfg, err := app.ParseAndValidate([]byte(blocks[0]), "docs/shim.md")
	if err != nil {
		t.Fatalf("the configuration in docs/shim.md does not load:\n%v\n%s", err, blocks[0])
	}
	for _, addr := range []string{cfg.Listen.HTTP, cfg.Listen.GRPC} {
		if ap, err := netip.ParseAddrPort(addr); err != nil || !ap.Addr().IsLoopback() {
			t.Errorf("API listener %q: want loopback only", addr)
		}
	}
	if cfg.Shim.Listen != "0.0.0.0:25" {
		t.Errorf("shim.listen %q, want the scanners' port 25 on every interface", cfg.Shim.Listen)
	}
	scanner := netip.MustParseAddr("10.20.0.57")
	var deviceKey string
	for _, d := range cfg.Shim.Devices {
		if d.Prefix().Contains(scanner) {
			deviceKey = d.Key
			break
		}
	}
	if deviceKey != "scanners" {
		t.Fatalf("a scanner at %s is admitted as %q, want the key scanners", scanner, deviceKey)
	}
	keys, err := app.Keyring(cfg)
	if err != nil {
		t.Fatal(err)
	}
	k, ok := keys.ByName(deviceKey)
	if !ok {
		t.Fatalf("no key %s", deviceKey)
	}
	if !k.MaySend("scanner@contoso.com") || k.MaySend("ceo@contoso.com") {
		t.Errorf("key %s: want it to send as scanner@contoso.com only", k.Name)
	}
	router, err := app.Router(cfg)
	if err != nil {
		t.Fatal(err)
	}
	route, ok := router.Route("scanner@contoso.com")
	if !ok {
		t.Fatal("no route for scanner@contoso.com")
	}
	g, ok := cfg.Backends[route.Backend].Settings.(*graph.Config)
	if !ok {
		t.Fatalf("scanner@contoso.com goes to backend %s (%s), want a graph backend", route.Backend, cfg.Backends[route.Backend].Type)
	}
	if g.ClientSecret.Value() != "the-client-secret" {
		t.Error("the client secret was not read from $CREDENTIALS_DIRECTORY/graph-client-secret")
	}

	// The trial variant: the backends section replaced by the second block.
	i, j := strings.Index(blocks[0], "\nbackends:\n"), strings.Index(blocks[0], "\nshim:\n")
	if i < 0 || j < i {
		t.Fatalf("no backends section before shim in:\n%s", blocks[0])
	}
	trial := blocks[0][:i+1] + blocks[1] + blocks[0][j:]
	cfg, err = app.ParseAndValidate([]byte(trial), "docs/shim.md (trial)")
	if err != nil {
		t.Fatalf("the trial configuration does not load:\n%v\n%s", err, trial)
	}
	if _, ok := cfg.Backends[route.Backend].Settings.(*file.Config); !ok {
		t.Errorf("trial: backend %s is %s, want file", route.Backend, cfg.Backends[route.Backend].Type)
	}
}
