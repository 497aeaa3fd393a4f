package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"slices"
	"strings"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	mailgatev1 "github.com/mailgate/mailgate/api/mailgate/v1"
	"github.com/mailgate/mailgate/mailerr"
)

// idempotencyKey returns the request's idempotency key from the Idempotency-Key header
// (gRPC metadata idempotency-key) or the idempotencyKey field; "" when there is none.
// Given both ways, they must agree.
func idempotencyKey(ctx context.Context, req *mailgatev1.SendMailRequest) (string, error) {
	field := req.GetIdempotencyKey()
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("idempotency-key")
	if len(values) == 0 {
		return field, nil // the field was validated with the request
	}
	if len(values) > 1 {
		return "", invalidKey("Idempotency-Key", "give one Idempotency-Key header, not %d", len(values))
	}
	header, err := parseIdempotencyHeader(values[0])
	if err != nil {
		return "", invalidKey("Idempotency-Key", "%v", err)
	}
	if field != "" && field != header {
		return "", invalidKey("idempotencyKey", "differs from the Idempotency-Key header; give one or make them equal")
	}
	return header, nil
}

// parseIdempotencyHeader reads the header's value: an RFC 8941 sf-string, as the IETF
// draft "The Idempotency-Key HTTP Header Field" specifies ("8e03978e-..."), or, leniently,
// a bare token as many clients send it.
func parseIdempotencyHeader(v string) (string, error) {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, `"`) {
		if len(v) < 2 || !strings.HasSuffix(v, `"`) {
			return "", fmt.Errorf("unterminated quoted string")
		}
		var b strings.Builder
		inner := v[1 : len(v)-1]
		for i := 0; i < len(inner); i++ {
			c := inner[i]
			switch {
			case c == '\\':
				if i+1 == len(inner) || inner[i+1] != '"' && inner[i+1] != '\\' {
					return "", fmt.Errorf(`in a quoted string, \ may only escape " or \`)
				}
				i++
				b.WriteByte(inner[i])
			case c == '"':
				return "", fmt.Errorf(`an unescaped " inside the quoted string`)
			default:
				b.WriteByte(c)
			}
		}
		v = b.String()
	}
	if v == "" {
		return "", fmt.Errorf("empty")
	}
	if err := checkIdempotencyKey(v); err != nil {
		return "", err
	}
	return v, nil
}

func invalidKey(field, format string, args ...any) *mailerr.Error {
	return mailerr.Violations([]mailerr.FieldViolation{{Field: field, Description: fmt.Sprintf(format, args...)}})
}

// fingerprint identifies a request's content, whatever the JSON field order or names,
// with the key itself left out (it may come by header or by field). Every field counts,
// including ones added to the API later; bytes fields (attachments, rawMime) are streamed
// into the hash rather than copied.
func fingerprint(req *mailgatev1.SendMailRequest) string {
	h := sha256.New()
	hashMessage(h, req.ProtoReflect(), "idempotency_key")
	return hex.EncodeToString(h.Sum(nil))
}

// hashMessage writes m to h: the scalar fields as one deterministic protobuf encoding
// (without skip), then each bytes field and each message in a repeated message field, in
// field order, length-prefixed.
func hashMessage(h hash.Hash, m protoreflect.Message, skip protoreflect.Name) {
	small := m.New()
	var large []protoreflect.FieldDescriptor
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Name() == skip:
		case fd.Kind() == protoreflect.BytesKind && !fd.IsList() && !fd.IsMap(),
			fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			large = append(large, fd)
		default:
			small.Set(fd, v) // shares v: nothing is copied
		}
		return true
	})
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(small.Interface())
	writeChunk(h, b)
	slices.SortFunc(large, func(a, b protoreflect.FieldDescriptor) int { return int(a.Number() - b.Number()) })
	for _, fd := range large {
		var num [4]byte
		binary.BigEndian.PutUint32(num[:], uint32(fd.Number()))
		h.Write(num[:])
		if fd.IsList() {
			list := m.Get(fd).List()
			for i := range list.Len() {
				hashMessage(h, list.Get(i).Message(), "")
			}
			continue
		}
		b := m.Get(fd).Bytes()
		if fd.Name() == "raw_mime" {
			b = b[traceEnd(b):]
		}
		writeChunk(h, b)
	}
}

// traceEnd is where the Received fields at the top of a raw message end. They are not
// part of the fingerprint: each relay adds its own, and the SMTP shim one per attempt,
// with its time, so a resend differs from the first attempt only there.
func traceEnd(raw []byte) int {
	at := 0
	for len(raw)-at > len("Received:") && strings.EqualFold(string(raw[at:at+len("Received:")]), "Received:") {
		// The field ends at the first line ending not followed by a continuation line.
		end := at
		for {
			i := bytes.IndexByte(raw[end:], '\n')
			if i < 0 {
				return at
			}
			end += i + 1
			if end >= len(raw) || raw[end] != ' ' && raw[end] != '\t' {
				break
			}
		}
		at = end
	}
	return at
}

func writeChunk(h hash.Hash, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}
