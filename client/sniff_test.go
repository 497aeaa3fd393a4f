package client

import "testing"

func TestClassifyWire(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		first string
		want  wireProtocol
	}{
		{"nothing", "", wireNothing},
		{"HTTP/1.1", "HTTP/1.1 404 Not Found\r\n", wireHTTP1},
		{"HTTP/1.0, cut short", "HTT", wireHTTP1},
		{"HTTP/2 SETTINGS", "\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x05\x00\x00@\x00", wireHTTP2},
		{"HTTP/2 GOAWAY", "\x00\x00\x08\x07\x00\x00\x00\x00\x00", wireHTTP2},
		{"HTTP/2 frame on a stream", "\x00\x00\x06\x04\x00\x00\x00\x00\x01", wireOther},
		{"TLS handshake", "\x16\x03\x03\x00\x7a\x02", wireTLS},
		{"TLS alert", "\x15\x03\x01\x00\x02\x02\x28", wireTLS},
		{"SMTP", "220 mx.example.com ESMTP\r\n", wireSMTP},
		{"SMTP multiline", "220-mx.example.com\r\n", wireSMTP},
		{"Redis", "-ERR unknown command\r\n", wireOther},
	} {
		if got := classifyWire([]byte(c.first)); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if !noApplicationProtocol([]byte("\x15\x03\x03\x00\x02\x02\x78")) || noApplicationProtocol([]byte("\x15\x03\x03\x00\x02\x02\x28")) {
		t.Error("no_application_protocol (120) not told from handshake_failure (40)")
	}
}
