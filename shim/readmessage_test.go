package shim

import (
	"bytes"
	"strings"
	"testing"
)

// readMessage makes every bare LF a CRLF, also where a line ending spans two chunks,
// and leaves headroom in front of the message.
func TestReadMessageLineEndings(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	tests := []struct{ name, in, want string }{
		{"CRLF untouched", "a\r\nb\r\n", "a\r\nb\r\n"},
		{"LF only", "a\nb\n\nc", "a\r\nb\r\n\r\nc"},
		{"mixed", "a\r\nb\nc\r\n", "a\r\nb\r\nc\r\n"},
		{"leading LF", "\na", "\r\na"},
		{"bare CR stays", "a\rb\n", "a\rb\r\n"},
		{"CRLF across chunks", strings.Repeat("x", mib-1) + "\r\nb\n", strings.Repeat("x", mib-1) + "\r\nb\r\n"},
		{"LF at a chunk's start", strings.Repeat("x", mib) + "\nb", strings.Repeat("x", mib) + "\r\nb"},
		{"CR ends a chunk, LF later", strings.Repeat("x", mib-1) + "\rb\n", strings.Repeat("x", mib-1) + "\rb\r\n"},
	}
	for _, tt := range tests {
		buf, err := readMessage(strings.NewReader(tt.in))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := buf[headroom:]; !bytes.Equal(got, []byte(tt.want)) {
			t.Errorf("%s: read %q…, want %q…", tt.name, got[max(0, len(got)-20):], tt.want[max(0, len(tt.want)-20):])
		}
		if cap(buf) != len(buf) {
			t.Errorf("%s: %d bytes of capacity left over", tt.name, cap(buf)-len(buf))
		}
	}
}

// replace rewrites a range of the message in the room in front of it, growing or
// shrinking, and copies the message only when that room runs out.
func TestMessageReplace(t *testing.T) {
	t.Parallel()
	buf, _ := readMessage(strings.NewReader("A: 1\r\nMessage-ID: x\r\n\r\nbody\r\n"))
	m := &message{buf: buf, off: headroom}
	m.replace(6, 21, "Message-ID: <x@y>\r\n")
	m.replace(0, 0, "Received: from a\r\n")
	if got, want := string(m.bytes()), "Received: from a\r\nA: 1\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n"; got != want {
		t.Errorf("grown: %q, want %q", got, want)
	}
	m.replace(18, 24, "")
	if got, want := string(m.bytes()), "Received: from a\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n"; got != want {
		t.Errorf("shrunk: %q, want %q", got, want)
	}
	before := string(m.bytes())
	m.replace(0, 0, strings.Repeat("X", 3000)+"\r\n")
	if got, want := string(m.bytes()), strings.Repeat("X", 3000)+"\r\n"+before; got != want {
		t.Errorf("past the headroom: %q", got[2990:])
	}
}
