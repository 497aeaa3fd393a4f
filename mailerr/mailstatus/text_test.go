package mailstatus

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestErrorText(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 52<<10)
	tests := []struct {
		name, in string
		limit    int
		want     string
	}{
		{"fit", "no such endpoint", 64, "no such endpoint"},
		{"UTF-8 kept", "Müller ✉", 64, "Müller ✉"},
		{"Latin-1 escaped", "M\xfcller", 64, `M\xfcller`},
		{"a cut sequence escaped", "caf\xc3", 64, `caf\xc3`},
		{"cut with a note", long, 64, strings.Repeat("a", 43) + "…(53205 bytes more)"},
		{"escapes counted", strings.Repeat("\xff", 40), 64, strings.Repeat(`\xff`, 11) + "…(116 bytes more)"},
		// The cut falls inside the first ü: the whole character goes.
		{"cut at a character", strings.Repeat("a", 45) + strings.Repeat("ü", 21), 64, strings.Repeat("a", 45) + "…(42 bytes more)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Text(tt.in, tt.limit)
			if got != tt.want {
				t.Errorf("Text = %q, want %q", got, tt.want)
			}
			if !utf8.ValidString(got) || len(got) > tt.limit {
				t.Errorf("Text = %q (%d bytes): not UTF-8 or over %d bytes", got, len(got), tt.limit)
			}
			if again := Text(got, tt.limit); again != got {
				t.Errorf("Text changes its own result: %q → %q", got, again)
			}
		})
	}
}
