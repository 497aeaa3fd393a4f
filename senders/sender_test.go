package senders_test

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/mailgate/mailgate/senders"
)

func TestFieldError(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("section: %w", senders.Fieldf("ca_file", "%w", fs.ErrNotExist))
	fe, ok := errors.AsType[*senders.FieldError](err)
	if !ok || fe.Field != "ca_file" || fe.Error() != "ca_file: file does not exist" {
		t.Fatalf("errors.As found %#v in %v", fe, err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Error("the field's own error is not wrapped")
	}
}
