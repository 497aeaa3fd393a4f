# mailgate build entry points. `make test` is the one command CI and the README use.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
# Targets must run in the order written (test stops at the first failure), even under -j.
.NOTPARALLEL:

BIN         := $(CURDIR)/bin
BUF_VERSION := 1.75.0
NPM_PREFIX  := $(CURDIR)/.cache/npm
BUF         := $(NPM_PREFIX)/node_modules/.bin/buf
# Spectral lints the OpenAPI document; its own prefix, so that npm leaves buf alone.
SPECTRAL_VERSION := 6.16.3
SPECTRAL_PREFIX  := $(NPM_PREFIX)/spectral
SPECTRAL         := $(SPECTRAL_PREFIX)/node_modules/.bin/spectral
# Generated output; must match what `buf generate` produces from proto/.
GEN_DIRS    := api openapi

.PHONY: run test redis fmt-check vet staticcheck tools generate check-generated spectral lint-openapi bench build

# run: build the service and start it with its embedded default config. The first build
# compiles the Microsoft Graph SDK (about 3 minutes on a small machine), so it counts the
# packages as they compile rather than sitting silent.
run:
	@echo "building bin/mailgate (the first build takes a few minutes; later ones seconds)"
	@go build -v -o "$(BIN)/mailgate" ./cmd/mailgate 2>&1 | awk '/ / { print; next } { n++; if (n % 50 == 0) printf "  %d packages compiled\n", n; fflush() }'
	"$(BIN)/mailgate" serve

# test: everything CI checks, in order: redis, formatting, vet, staticcheck, tests, generated code,
# the OpenAPI document's lint.
test: redis fmt-check vet staticcheck
	go test -race -count=1 ./...
	@$(MAKE) --no-print-directory check-generated
	@$(MAKE) --no-print-directory lint-openapi

# redis: make sure Redis answers on 127.0.0.1:6379 (installs/starts it if needed).
redis:
	@scripts/ensure-redis.sh

# fmt-check: fail if gofmt would change any Go file (generated api/ and third_party/ excluded).
fmt-check:
	@files=$$( { git ls-files -- '*.go'; git ls-files --others --exclude-standard -- '*.go'; } \
		| grep -Ev '^(api|third_party|\.cache)/' | sort -u \
		| while IFS= read -r f; do [[ -f "$$f" ]] && echo "$$f"; done || true ); \
	bad=$$( [[ -z "$$files" ]] || printf '%s\n' "$$files" | xargs -d '\n' gofmt -l ); \
	if [[ -n "$$bad" ]]; then \
		echo "gofmt needed on these files (run gofmt -w):"; echo "$$bad"; exit 1; \
	fi

# vet: static checks.
vet:
	go vet ./...

# staticcheck: staticcheck's default checks, at the version pinned in tools/go.mod. A
# finding that is right as it is carries a //lint:ignore comment saying why.
staticcheck:
	cd tools && GOBIN="$(BIN)" go install honnef.co/go/tools/cmd/staticcheck
	"$(BIN)/staticcheck" ./...

# tools: build the pinned protoc plugins and go-swagger (tools/go.mod) into ./bin and buf into
# .cache/npm.
tools:
	cd tools && GOBIN="$(BIN)" go install tool
	@if [[ -x "$(BUF)" ]] && [[ "$$("$(BUF)" --version 2>/dev/null)" == "$(BUF_VERSION)" ]]; then \
		echo "buf $(BUF_VERSION) already installed in $(NPM_PREFIX)"; \
	else \
		echo "installing buf $(BUF_VERSION) into $(NPM_PREFIX)"; \
		npm install --no-save --no-package-lock --no-audit --no-fund --prefix "$(NPM_PREFIX)" \
			@bufbuild/buf@$(BUF_VERSION); \
		rm -f "$(NPM_PREFIX)/node_modules/.package-lock.json"; \
		"$(BUF)" --version; \
	fi

# generate: lint the protos and regenerate api/ (Go) and openapi/ (OpenAPI).
generate: tools
	"$(BUF)" lint
	"$(BUF)" generate

# check-generated: fail if api/ or openapi/ differ from a fresh `buf generate`
# (openapi/openapi.go, which embeds the document, is hand-written).
check-generated: tools
	"$(BUF)" lint
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	"$(BUF)" generate --output "$$tmp"; \
	stale=0; \
	for d in $(GEN_DIRS); do \
		mkdir -p "$$tmp/$$d"; \
		diff -rq -x openapi.go "$$tmp/$$d" "$$d" || stale=1; \
	done; \
	if [[ $$stale -ne 0 ]]; then \
		echo "generated code is stale: run make generate and commit"; exit 1; \
	fi; \
	echo "generated code is up to date"

# spectral: install the pinned Spectral CLI into .cache/npm/spectral (once).
spectral:
	@if [[ -x "$(SPECTRAL)" ]] && [[ "$$("$(SPECTRAL)" --version 2>/dev/null)" == "$(SPECTRAL_VERSION)" ]]; then \
		echo "spectral $(SPECTRAL_VERSION) already installed in $(SPECTRAL_PREFIX)"; \
	else \
		echo "installing spectral $(SPECTRAL_VERSION) into $(SPECTRAL_PREFIX)"; \
		npm install --no-save --no-package-lock --no-audit --no-fund --prefix "$(SPECTRAL_PREFIX)" \
			@stoplight/spectral-cli@$(SPECTRAL_VERSION); \
		rm -f "$(SPECTRAL_PREFIX)/node_modules/.package-lock.json"; \
		"$(SPECTRAL)" --version; \
	fi

# lint-openapi: lint the committed OpenAPI document with Spectral's recommended OpenAPI
# rules (.spectral.yaml says which are off, and why); any warning fails.
lint-openapi: spectral
	"$(SPECTRAL)" lint --ruleset .spectral.yaml --fail-severity warn openapi/mailgate.swagger.json

# bench: run all benchmarks (no tests).
bench:
	go test -run '^$$' -bench . -benchmem ./...

# build: compile the service binary into bin/mailgate.
build:
	go build -trimpath -ldflags "-s -w" -o bin/mailgate ./cmd/mailgate
