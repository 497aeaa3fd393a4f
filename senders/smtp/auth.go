package smtp

import (
	"bytes"
	"errors"
	"net/smtp"
)

type smtpAuth = smtp.Auth

// xoauth2 is SASL XOAUTH2 as Microsoft documents it for Exchange Online
// (docs/microsoft365-smtp.md#what-mailgate-sends):
// base64("user=" + mailbox + "\x01auth=Bearer " + token + "\x01\x01"), mechanism name in
// upper case.
type xoauth2 struct{ user, token string }

func (a *xoauth2) Start(si *smtp.ServerInfo) (string, []byte, error) {
	if !si.TLS {
		return "", nil, errors.New("XOAUTH2 refused without TLS: the token would travel in the clear")
	}
	return "XOAUTH2", []byte("user=" + a.user + "\x01auth=Bearer " + a.token + "\x01\x01"), nil
}

// Next answers a 334 challenge (a server's error details) with an empty line, so that
// the server sends its final 5xx reply; net/smtp would otherwise stop at the 334 and
// report success.
func (a *xoauth2) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return []byte{}, nil
	}
	return nil, nil
}

// loginAuth is SASL LOGIN (basic authentication), which Exchange Online still offers
// to tenants that allow it; net/smtp has only PLAIN.
type loginAuth struct{ user, password string }

func (a *loginAuth) Start(si *smtp.ServerInfo) (string, []byte, error) {
	if !si.TLS {
		return "", nil, errors.New("LOGIN refused without TLS: the password would travel in the clear")
	}
	return "LOGIN", nil, nil
}

func (a *loginAuth) Next(challenge []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	switch {
	case bytes.EqualFold(challenge, []byte("Username:")):
		return []byte(a.user), nil
	case bytes.EqualFold(challenge, []byte("Password:")):
		return []byte(a.password), nil
	}
	return nil, errors.New("unexpected LOGIN challenge from the server")
}
