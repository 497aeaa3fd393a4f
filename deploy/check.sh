#!/usr/bin/env bash
# Checks the deployment files in deploy/. Run from anywhere:
#
#   deploy/check.sh            # about 20 s with a warm Go build cache
#   deploy/check.sh --docker   # also builds the image and runs `mailgate version` in it
#                              # (needs a Docker engine; minutes from a cold cache)
#
# It needs Go, and nothing from the network beyond the Go modules of go.sum (which
# `go test ./...` fetches anyway). What a missing tool prevents is skipped, saying why.
# The same checks, but for the mailgate CLI and the image build, run in `go test ./...`
# (deploy/deploy_test.go), which is what CI runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

docker_build=0
for arg in "$@"; do
	case "$arg" in
	--docker) docker_build=1 ;;
	*) echo "usage: deploy/check.sh [--docker]" >&2; exit 2 ;;
	esac
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
skipped=()
step() { printf '\n== %s\n' "$*"; }
skip() { echo "SKIPPED: $*"; skipped+=("$*"); }

step "gofmt -l deploy"
bad=$(gofmt -l deploy)
if [[ -n "$bad" ]]; then
	echo "gofmt needed on: $bad"
	exit 1
fi
echo ok

step "go vet ./deploy/"
go vet ./deploy/
echo ok

# YAML of every file, the manifests against each other, the configurations against
# mailgate's rules, systemd-analyze, kubectl kustomize, docker (where present).
step "go test -count=1 ./deploy/"
go test -count=1 -v ./deploy/ >"$tmp/test.log" 2>&1 || {
	cat "$tmp/test.log"
	exit 1
}
grep -E '^(--- (PASS|SKIP)|ok )' "$tmp/test.log" || true
# A skipped test says why on the line before its --- SKIP.
while IFS= read -r line; do
	skip "go test: $line"
done < <(awk '/deploy_test\.go:[0-9]+:/ { why = $0; sub(/^ *deploy_test\.go:[0-9]+: /, "", why) }
	/^--- SKIP/ { print $3 ": " why }' "$tmp/test.log")

# The real CLI on the real files, with secrets made here: what an operator runs.
step "mailgate check-config on the deployment configurations"
go build -o "$tmp/mailgate" ./cmd/mailgate
mg="$tmp/mailgate"
hash() { "$mg" keys new "$1" | awk '$1 == "hash:" { print $2 }'; }

mkdir "$tmp/compose"
hash app >"$tmp/compose/app-key-hash"
echo "client-secret" >"$tmp/compose/graph-client-secret"
for backend in outbox m365; do
	MAILGATE_SECRETS="$tmp/compose" MAILGATE_BACKEND=$backend \
		"$mg" check-config deploy/mailgate.compose.yaml >"$tmp/out" ||
		{ cat "$tmp/out"; exit 1; }
	echo "deploy/mailgate.compose.yaml (MAILGATE_BACKEND=$backend): OK"
done

# The ConfigMap's mailgate.yaml, with the Secret's mount path pointed at made secrets.
mkdir "$tmp/k8s"
awk '/^  mailgate\.yaml: \|/ { f = 1; next } f && /^[^ ]/ { f = 0 } f { sub(/^    /, ""); print }' \
	deploy/kubernetes/configmap.yaml | sed "s#/run/secrets/mailgate/#$tmp/k8s/#g" >"$tmp/k8s/mailgate.yaml"
hash billing-app >"$tmp/k8s/billing-app.hash"
hash reports >"$tmp/k8s/reports.hash"
echo "client-secret" >"$tmp/k8s/graph-client-secret"
"$mg" check-config "$tmp/k8s/mailgate.yaml" >"$tmp/out" || { cat "$tmp/out"; exit 1; }
echo "deploy/kubernetes/configmap.yaml (mailgate.yaml): OK"

# The example for systemd, as `CREDENTIALS_DIRECTORY=... mailgate check-config` (see
# docs/operations.md#systemd). Its relay needs a certificate for relay.contoso.com.
if command -v openssl >/dev/null; then
	c="$tmp/credentials"
	mkdir "$c"
	hash billing-app >"$c/billing-app.hash"
	hash scanners >"$c/scanners.hash"
	echo "client-secret" >"$c/graph-client-secret"
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=relay.contoso.com \
		-addext subjectAltName=DNS:relay.contoso.com \
		-keyout "$c/relay.key" -out "$c/relay.crt" 2>/dev/null
	CREDENTIALS_DIRECTORY="$c" MAILGATE_REDIS_URL='' \
		"$mg" check-config deploy/mailgate.example.yaml >"$tmp/out" || { cat "$tmp/out"; exit 1; }
	echo "deploy/mailgate.example.yaml: OK"
else
	skip "mailgate check-config deploy/mailgate.example.yaml: openssl is missing (needed for the relay's test certificate; go test checked it)"
fi

step "docker build"
if [[ $docker_build -eq 0 ]]; then
	skip "docker build: not asked for (deploy/check.sh --docker)"
elif ! command -v docker >/dev/null; then
	skip "docker build: docker is not installed"
elif ! docker info >/dev/null 2>&1; then
	skip "docker build: docker info fails (no Docker engine running)"
else
	docker build -f deploy/Dockerfile --build-arg VERSION=check -t mailgate:check .
	out=$(docker run --rm mailgate:check version)
	[[ "$out" == "mailgate check" ]] || { echo "docker run mailgate:check version: $out"; exit 1; }
	echo "image mailgate:check: $out"
fi

printf '\nAll deployment checks passed'
if [[ ${#skipped[@]} -gt 0 ]]; then
	printf '; skipped:\n'
	printf '  - %s\n' "${skipped[@]}"
else
	printf '.\n'
fi
