// Package openapi holds the OpenAPI (Swagger 2.0) document generated from the proto
// definitions; mailgate serves it at /openapi.json.
package openapi

import _ "embed"

// JSON is the generated OpenAPI document.
//
//go:embed mailgate.swagger.json
var JSON []byte
