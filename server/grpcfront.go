package server

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/mailgate/mailgate/mailerr"
	"github.com/mailgate/mailgate/mailerr/mailstatus"
	"github.com/mailgate/mailgate/server/apikey"
)

// tapAuthenticate refuses a MailService call without a known API key as soon as its
// headers arrive, before gRPC reads (and buffers) the request message; the key it found
// goes on in the call's context, where the interceptor finds it.
func tapAuthenticate(keys *apikey.Keyring) tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		if !strings.HasPrefix(info.FullMethodName, "/mailgate.") {
			return ctx, nil
		}
		k, err := keyFromHeaders(info.Header.Get("authorization"), info.Header.Get("x-api-key"), keys)
		if err != nil {
			return ctx, mailstatus.Err(err)
		}
		return withKey(ctx, k), nil
	}
}

// meteredMethods wraps each unary method of d so that its request takes reserve bytes of
// the in-flight budget before gRPC reads it (gRPC buffers a whole message before anyone
// sees its size), keeps only the message's size once it is read, and gives that back when
// the call ends. A request gRPC cannot decode is answered INVALID_ARGUMENT naming the
// field, not gRPC's INTERNAL.
func meteredMethods(d *grpc.ServiceDesc, budget *inflight, reserve int64, codec *strictCodec) *grpc.ServiceDesc {
	out := *d
	out.Methods = slices.Clone(d.Methods)
	for i := range out.Methods {
		handler := out.Methods[i].Handler
		out.Methods[i].Handler = func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			res := budget.reserve()
			defer res.release()
			return handler(srv, ctx, func(v any) error {
				if err := res.grow(ctx, reserve); err != nil {
					return mailstatus.Err(err)
				}
				if err := dec(v); err != nil {
					return err
				}
				if e := codec.take(v); e != nil {
					return mailstatus.Err(e)
				}
				if m, ok := v.(proto.Message); ok {
					res.shrink(int64(proto.Size(m)))
				}
				return nil
			}, ic)
		}
	}
	return &out
}

// strictCodec is gRPC's protobuf codec, but it keeps, for each mailgate request it could
// not decode, an error that says why, for meteredMethods to answer with.
type strictCodec struct {
	encoding.CodecV2
	failed sync.Map // proto.Message → *mailerr.Error
}

func newStrictCodec() *strictCodec {
	return &strictCodec{CodecV2: encoding.GetCodecV2("proto")}
}

func (c *strictCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	// gRPC answers a codec error itself, INTERNAL, before the handler can say more; so a
	// mailgate request that does not decode is reported as decoded (and empty), and
	// meteredMethods answers with the reason kept here.
	if m, ok := v.(proto.Message); ok && strings.HasPrefix(string(m.ProtoReflect().Descriptor().FullName()), "mailgate.") {
		proto.Reset(m)
		c.failed.Store(m, undecodable(m.ProtoReflect().Descriptor(), data.Materialize(), err))
		return nil
	}
	return err
}

// take returns (and forgets) why v could not be decoded; nil if it was not refused here.
func (c *strictCodec) take(v any) *mailerr.Error {
	e, ok := c.failed.LoadAndDelete(v)
	if !ok {
		return nil
	}
	return e.(*mailerr.Error)
}

func undecodable(md protoreflect.MessageDescriptor, b []byte, err error) *mailerr.Error {
	if path := invalidUTF8(md, b, ""); path != "" {
		const rule = "not valid UTF-8: protobuf string fields must be UTF-8 (send other bytes as an attachment or in rawMime)"
		return &mailerr.Error{Kind: mailerr.Invalid, Msg: path + ": " + rule,
			Fields: []mailerr.FieldViolation{{Field: path, Description: rule}}}
	}
	return mailerr.New(mailerr.Invalid, "%s", fmt.Sprintf("the request is not a valid %s: %v", md.FullName(), err))
}

// invalidUTF8 finds the first string field in the wire-format message b that is not
// UTF-8 and returns its path as the JSON API names it (to[1].name); "" if none is found.
func invalidUTF8(md protoreflect.MessageDescriptor, b []byte, path string) string {
	seen := map[protowire.Number]int{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return ""
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		if fd == nil {
			continue
		}
		p := join(path, fd.JSONName())
		if fd.IsList() {
			p += "[" + strconv.Itoa(seen[num]) + "]"
			seen[num]++
		}
		switch {
		case fd.IsMap():
			if q := invalidUTF8(fd.Message(), v, ""); q != "" {
				return join(path, fd.JSONName()) + mapPart(q)
			}
		case fd.Kind() == protoreflect.StringKind && !utf8.Valid(v):
			return p
		case fd.Kind() == protoreflect.MessageKind:
			if q := invalidUTF8(fd.Message(), v, p); q != "" {
				return q
			}
		}
	}
	return ""
}

// mapPart names the part of a map entry at fault: its key or a value.
func mapPart(entryField string) string {
	if entryField == "key" {
		return " (a key)"
	}
	return " (a value)"
}
