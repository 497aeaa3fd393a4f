package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/mailgate/mailgate/mailerr"
)

// jsonMarshaler is the REST gateway's JSON codec: protojson both ways, as runtime.JSONPb,
// but requests are decoded strictly and their errors are for people. JSONPb reads the
// first JSON value of a body and ignores what follows, and passes on protojson's "syntax
// error (line 1:42)", which names no field.
type jsonMarshaler struct {
	runtime.JSONPb
}

func newJSONMarshaler() *jsonMarshaler {
	return &jsonMarshaler{runtime.JSONPb{MarshalOptions: protojson.MarshalOptions{EmitUnpopulated: true}}}
}

func (m *jsonMarshaler) NewDecoder(r io.Reader) runtime.Decoder {
	return runtime.DecoderFunc(func(v any) error { return decodeRequest(r, v) })
}

// decodeRequest reads the whole body (the body limit bounds it) and unmarshals it into v.
// The gateway turns any error into a bare InvalidArgument, so the classified error also
// goes to the request's state, where the error handler finds it.
func decodeRequest(r io.Reader, v any) error {
	msg, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("decode %T: not a protobuf message", v)
	}
	body, _ := r.(*limitedBody)
	var buf bytes.Buffer
	if body != nil && body.size > 0 {
		buf.Grow(int(body.size)) // one allocation of the declared size, not a doubling series
	}
	if _, err := buf.ReadFrom(r); err != nil {
		return err
	}
	if len(bytes.TrimSpace(buf.Bytes())) == 0 {
		return io.EOF // an empty body is an empty request; validation names what is missing
	}
	err := protojson.UnmarshalOptions{}.Unmarshal(buf.Bytes(), msg)
	if err == nil {
		return nil
	}
	e := jsonError(buf.Bytes(), msg.ProtoReflect().Descriptor(), err)
	if body != nil {
		if e.Msg == notJSON && isForm(body.contentType) {
			e.Msg += " (this body is " + body.contentType + ")"
		}
		body.state.decodeErr = e
	}
	return e
}

const notJSON = "request body: not a JSON object; send JSON with Content-Type: application/json"

func isForm(contentType string) bool {
	t, _, _ := mime.ParseMediaType(contentType)
	return t == "application/x-www-form-urlencoded" || t == "multipart/form-data"
}

// jsonError explains why protojson refused data: which field has the wrong shape, or
// that the body is not one JSON object. protojson's own message is the fallback.
func jsonError(data []byte, md protoreflect.MessageDescriptor, perr error) *mailerr.Error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if first := firstByte(data); first != '{' && first != '[' {
			return mailerr.New(mailerr.Invalid, notJSON)
		}
		return mailerr.New(mailerr.Invalid, "%s", "request body: "+jsonSyntax(err))
	}
	if _, ok := v.(map[string]any); !ok {
		return mailerr.New(mailerr.Invalid, "%s", "request body: must be a JSON object, not "+jsonKind(v))
	}
	if _, err := dec.Token(); err != io.EOF {
		return mailerr.New(mailerr.Invalid, "request body: data after the JSON object; send exactly one object")
	}
	if path, key := invalidUTF8Path(data); path != "" {
		rule := "not valid UTF-8: JSON text must be UTF-8 (RFC 8259); send other bytes base64-encoded, as an attachment or in rawMime"
		if key {
			rule = "the name is " + rule
		}
		return &mailerr.Error{Kind: mailerr.Invalid, Msg: "request body: " + path + ": " + rule,
			Fields: []mailerr.FieldViolation{{Field: path, Description: rule}}}
	}
	if path, rule := shapeViolation(md, v, ""); path != "" {
		return &mailerr.Error{Kind: mailerr.Invalid, Msg: "request body: " + path + ": " + rule,
			Fields: []mailerr.FieldViolation{{Field: path, Description: rule}}}
	}
	msg := strings.TrimPrefix(perr.Error(), "proto: ")
	return mailerr.New(mailerr.Invalid, "%s", "request body: "+msg)
}

// invalidUTF8Path finds the first JSON string in data with a byte that is not UTF-8 (which
// encoding/json reads as U+FFFD, and protojson refuses without naming the field) and
// returns its path, as shapeViolation names paths, and whether the string is an object's
// key rather than a value; "" when there is none.
func invalidUTF8Path(data []byte) (path string, key bool) {
	bad := firstInvalidUTF8(data)
	if bad < 0 {
		return "", false
	}
	type frame struct {
		array bool
		key   string // an object's current key
		value bool   // an object's key was read: a value comes next
		index int    // an array's current index
	}
	var stack []frame
	current := func() string {
		p := ""
		for _, f := range stack {
			if f.array {
				p += "[" + strconv.Itoa(f.index) + "]"
			} else {
				p = join(p, f.key)
			}
		}
		return p
	}
	valueDone := func() {
		if n := len(stack); n > 0 {
			if stack[n-1].array {
				stack[n-1].index++
			} else {
				stack[n-1].value = false
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		n := len(stack)
		s, isString := tok.(string)
		isKey := isString && n > 0 && !stack[n-1].array && !stack[n-1].value
		if isKey {
			stack[n-1].key, stack[n-1].value = s, true
		}
		if dec.InputOffset() > int64(bad) {
			return current(), isKey
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{})
		case json.Delim('['):
			stack = append(stack, frame{array: true})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:n-1]
			valueDone()
		default:
			if !isKey {
				valueDone()
			}
		}
	}
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return -1
}

func firstByte(data []byte) byte {
	data = bytes.TrimLeft(data, " \t\r\n")
	if len(data) == 0 {
		return 0
	}
	return data[0]
}

func jsonSyntax(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "invalid character "))
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "the JSON ends early (truncated?)"
	}
	return "invalid JSON: " + err.Error()
}

// shapeViolation walks v against md and returns the path of the first value whose JSON
// type protojson cannot take, with the rule it breaks; "" when it finds none (the
// refusal was for something else, such as an out-of-range number).
func shapeViolation(md protoreflect.MessageDescriptor, v any, path string) (string, string) {
	obj, ok := v.(map[string]any)
	if !ok {
		return path, "must be a JSON object, not " + jsonKind(v)
	}
	if fullName := md.FullName(); strings.HasPrefix(string(fullName), "google.protobuf.") {
		return "", "" // well-known types have their own JSON forms; protojson explains them
	}
	names := make([]string, 0, len(obj))
	for k := range obj {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		fd := md.Fields().ByJSONName(k)
		if fd == nil {
			fd = md.Fields().ByTextName(k)
		}
		p := join(path, k)
		if fd == nil {
			return p, "unknown field" + knownFields(md)
		}
		val := obj[k]
		if val == nil {
			continue // null is "not set" for every field
		}
		switch {
		case fd.IsMap():
			m, ok := val.(map[string]any)
			if !ok {
				return p, "must be a JSON object of " + kindName(fd.MapValue()) + " values, not " + jsonKind(val)
			}
			keys := make([]string, 0, len(m))
			for mk := range m {
				keys = append(keys, mk)
			}
			slices.Sort(keys)
			for _, mk := range keys {
				if q, rule := valueViolation(fd.MapValue(), m[mk], p+"."+mk); q != "" {
					return q, rule
				}
			}
		case fd.IsList():
			list, ok := val.([]any)
			if !ok {
				return p, "must be a JSON array of " + kindName(fd) + "s, not " + jsonKind(val) + listHint(fd)
			}
			for i, el := range list {
				if q, rule := valueViolation(fd, el, p+"["+strconv.Itoa(i)+"]"); q != "" {
					return q, rule
				}
			}
		default:
			if q, rule := valueViolation(fd, val, p); q != "" {
				return q, rule
			}
		}
	}
	return "", ""
}

func valueViolation(fd protoreflect.FieldDescriptor, v any, path string) (string, string) {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return shapeViolation(fd.Message(), v, path)
	case protoreflect.StringKind:
		if _, ok := v.(string); !ok {
			return path, "must be a string, not " + jsonKind(v)
		}
	case protoreflect.BytesKind:
		s, ok := v.(string)
		if !ok {
			return path, "must be a base64 string, not " + jsonKind(v)
		}
		if !isBase64(s) {
			return path, "not base64 (standard or URL alphabet, padding optional)"
		}
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			return path, "must be true or false, not " + jsonKind(v)
		}
	case protoreflect.EnumKind:
		switch x := v.(type) {
		case string:
			if fd.Enum().Values().ByName(protoreflect.Name(x)) == nil {
				return path, "unknown value " + strconv.Quote(x) + enumNames(fd.Enum())
			}
		case json.Number:
		default:
			return path, "must be a string" + enumNames(fd.Enum()) + ", not " + jsonKind(v)
		}
	default: // numbers: protojson takes a JSON number or a numeric string
		switch v.(type) {
		case json.Number, string:
		default:
			return path, "must be a number, not " + jsonKind(v)
		}
	}
	return "", ""
}

func isBase64(s string) bool {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if _, err := enc.DecodeString(s); err == nil {
			return true
		}
	}
	return false
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func kindName(fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return "object"
	case protoreflect.BytesKind:
		return "base64 string"
	case protoreflect.EnumKind, protoreflect.StringKind:
		return "string"
	case protoreflect.BoolKind:
		return "boolean"
	}
	return "number"
}

// listHint shows the expected shape for the fields callers most often get wrong.
func listHint(fd protoreflect.FieldDescriptor) string {
	if fd.Kind() == protoreflect.MessageKind && fd.Message().Fields().ByName("address") != nil {
		return `, e.g. [{"address": "bob@example.com"}]`
	}
	return ""
}

func knownFields(md protoreflect.MessageDescriptor) string {
	fields := md.Fields()
	if fields.Len() == 0 {
		return ""
	}
	names := make([]string, fields.Len())
	for i := range fields.Len() {
		names[i] = fields.Get(i).JSONName()
	}
	return " (known: " + strings.Join(names, ", ") + ")"
}

func enumNames(ed protoreflect.EnumDescriptor) string {
	values := ed.Values()
	names := make([]string, 0, values.Len())
	for i := range values.Len() {
		names = append(names, string(values.Get(i).Name()))
	}
	return " (one of " + strings.Join(names, ", ") + ")"
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
