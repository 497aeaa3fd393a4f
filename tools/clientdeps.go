//go:build tools

// Package tools holds no code. This file names the packages that the Go client swagger
// generates from openapi/mailgate.swagger.json imports (e2e TestOpenAPIClient builds
// one), so that their versions and checksums are pinned in this module's go.mod and
// go.sum with the tools' own.
package tools

import (
	_ "github.com/go-openapi/errors"
	_ "github.com/go-openapi/runtime"
	_ "github.com/go-openapi/runtime/client"
	_ "github.com/go-openapi/strfmt"
	_ "github.com/go-openapi/swag/conv"
	_ "github.com/go-openapi/swag/jsonutils"
	_ "github.com/go-openapi/swag/typeutils"
	_ "github.com/go-openapi/validate"
)
