package apikey

import (
	"strings"
	"testing"

	"github.com/mailgate/mailgate/mailaddr"
)

func TestGenerate(t *testing.T) {
	t.Parallel()
	k1, h1 := Generate()
	k2, _ := Generate()
	if k1 == k2 || !strings.HasPrefix(k1, Prefix) || len(k1) != len(Prefix)+43 {
		t.Fatalf("keys %q %q: want distinct mg_ + 43 base64url characters", k1, k2)
	}
	if h1 != Hash(k1) || strings.Contains(h1, k1) {
		t.Errorf("hash %q does not match key", h1)
	}
	if _, err := ParseHash(h1); err != nil {
		t.Errorf("ParseHash(own hash): %v", err)
	}
}

func TestParseHashRejects(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "9f86d081", "sha256:", "sha256:xyz", "md5:" + strings.Repeat("0", 64), "sha256:" + strings.Repeat("0", 63)} {
		if _, err := ParseHash(bad); err == nil {
			t.Errorf("ParseHash(%q) accepted", bad)
		}
	}
}

func TestKeyring(t *testing.T) {
	t.Parallel()
	r := NewKeyring()
	key, hash := Generate()
	billing := &Key{Name: "billing", Senders: []mailaddr.Pattern{mailaddr.MustParsePattern("billing@contoso.com")}}
	if err := r.Add(billing, hash); err != nil {
		t.Fatal(err)
	}
	other, otherHash := Generate()
	r.Add(&Key{Name: "other"}, otherHash)
	if got, ok := r.Lookup(key); !ok || got != billing {
		t.Errorf("Lookup(key) = %v, %v", got, ok)
	}
	if got, _ := r.Lookup(other); got.Name != "other" {
		t.Errorf("Lookup(other) = %v", got)
	}
	for _, wrong := range []string{"", key[:len(key)-1], key + "x", hash} {
		if _, ok := r.Lookup(wrong); ok {
			t.Errorf("Lookup(%q) matched", wrong)
		}
	}
	if !billing.MaySend("Billing@contoso.com") || billing.MaySend("ceo@contoso.com") {
		t.Error("MaySend does not follow the sender patterns")
	}
	if k, ok := r.ByName("billing"); !ok || k != billing {
		t.Error("ByName")
	}
}
