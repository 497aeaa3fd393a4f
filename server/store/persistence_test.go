package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/server/store"
	"github.com/mailgate/mailgate/server/store/storetest"
)

func TestPersistence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		problem string // "" for none
		says    string
	}{
		{"none", nil, "no persistence", "AOF off, no RDB snapshots"},
		{"aof everysec", []string{"--appendonly", "yes", "--appendfsync", "everysec"}, "", "AOF on, appendfsync everysec"},
		{"aof always", []string{"--appendonly", "yes", "--appendfsync", "always"}, "", "AOF on, appendfsync always"},
		{"aof without fsync", []string{"--appendonly", "yes", "--appendfsync", "no"}, "appendfsync no", "AOF on, appendfsync no"},
		{"rdb only", []string{"--save", "60 1"}, "only RDB snapshots", `RDB save "60 1"`},
		// Managed services refuse CONFIG: INFO alone must do.
		{"config refused, aof", []string{"--appendonly", "yes", "--rename-command", "CONFIG", ""}, "", "appendfsync not readable"},
		{"config refused, no aof", []string{"--rename-command", "CONFIG", ""}, "could not be read", "AOF off"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := storetest.StartRedis(t, tt.args...)
			ps, err := store.NewRedis(srv.Client(t), "mg:").Persistence(context.Background())
			if err != nil || len(ps) != 1 {
				t.Fatalf("Persistence: %v, %v", ps, err)
			}
			p := ps[0]
			if got := p.Problem(); (tt.problem == "") != (got == "") || !strings.Contains(got, tt.problem) {
				t.Errorf("Problem() = %q, want %q", got, tt.problem)
			}
			if !strings.Contains(p.String(), tt.says) {
				t.Errorf("String() = %q, want %q", p, tt.says)
			}
		})
	}
}

// Every master of a Cluster is asked.
func TestPersistenceCluster(t *testing.T) {
	t.Parallel()
	ps, err := store.NewRedis(storetest.StartCluster(t), "mg:").Persistence(context.Background())
	if err != nil || len(ps) != 3 {
		t.Fatalf("Persistence: %v, %v; want the 3 masters", ps, err)
	}
	for _, p := range ps {
		if !strings.Contains(p.Problem(), "no persistence") || p.Addr == "" {
			t.Errorf("%s: %q", p.Addr, p.Problem())
		}
	}
}
