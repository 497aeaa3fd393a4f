#!/usr/bin/env bash
# Make Debian's Python gRPC toolchain available: python3-grpc-tools (grpc_tools.protoc,
# with the protoc of Debian 12 "bookworm", which predates proto3 `optional`) and
# python3-grpcio. The end-to-end test that compiles proto/mailgate/v1/mail.proto with it
# and calls mailgate from Python uses this script.
#
# Usage:
#   scripts/python-grpc.sh install
#
#   install  installs the two packages with apt-get when Debian's python3
#            (/usr/bin/python3) cannot import grpc and grpc_tools, then prints the
#            interpreter's path and the grpcio-tools version.
#
# Exit status: 0 done; 1 failure; 2 usage; 3 the packages are missing and cannot be
# installed (not root, no apt-get, or apt-get failed, e.g. no network): tests skip on 3.
set -euo pipefail

PROG=python-grpc.sh
# Debian's interpreter, not one first on PATH (pyenv, a virtualenv): the packages
# install into its dist-packages.
PYTHON=/usr/bin/python3
PACKAGES=(python3-grpc-tools python3-grpcio)

die() { echo "$PROG: $*" >&2; exit 1; }
unavailable() { echo "$PROG: Python gRPC tools unavailable: $*" >&2; exit 3; }
usage() { echo "usage: $PROG install" >&2; exit 2; }

importable() { [[ -x $PYTHON ]] && "$PYTHON" -c 'import grpc, grpc_tools.protoc' >/dev/null 2>&1; }

install_packages() {
  importable && return 0
  [[ $(id -u) -eq 0 ]] || unavailable "${PACKAGES[*]} are missing and installing them needs root"
  command -v apt-get >/dev/null 2>&1 || unavailable "${PACKAGES[*]} are missing and there is no apt-get"
  echo "$PROG: installing ${PACKAGES[*]} with apt-get" >&2
  local log
  log=$(mktemp "${TMPDIR:-/tmp}/python-grpc-install.XXXXXX")
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${PACKAGES[@]}" >"$log" 2>&1; then
    if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${PACKAGES[@]}"; } >>"$log" 2>&1; then
      tail -n 5 "$log" >&2
      unavailable "apt-get could not install ${PACKAGES[*]} (no network?); log: $log"
    fi
  fi
  rm -f "$log"
  importable || die "apt-get installed ${PACKAGES[*]}, but $PYTHON still cannot import grpc and grpc_tools"
}

[[ $# -eq 1 ]] || usage
case $1 in
  install)
    install_packages
    version=$(dpkg-query -W -f='${Version}' python3-grpc-tools 2>/dev/null || echo unknown)
    echo "$PYTHON with python3-grpc-tools $version"
    ;;
  *) usage ;;
esac
