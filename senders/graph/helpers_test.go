package graph_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
)

func rsaKey() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) }

func encodeStd(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
