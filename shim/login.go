package shim

import (
	"errors"

	"github.com/emersion/go-sasl"
)

// loginServer is SASL LOGIN, the obsolete mechanism (draft-murchison-sasl-login) that
// many scanners and printers offer alone; go-sasl has only its client side.
type loginServer struct {
	check func(user, pass string) error
	user  string
	step  int
}

func newLoginServer(check func(user, pass string) error) sasl.Server {
	return &loginServer{check: check}
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step++
		if response != nil { // an initial response is the user name (AUTH LOGIN <user>)
			l.user = string(response)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.user = string(response)
		l.step++
		return []byte("Password:"), false, nil
	case 2:
		l.step++
		return nil, true, l.check(l.user, string(response))
	}
	return nil, true, errors.New("LOGIN: unexpected response")
}
