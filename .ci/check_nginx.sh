#!/usr/bin/env bash
# nginx -t on nginx.conf with /sockets/ moved to a temp dir (it exists only inside the
# compose stack; -t binds no port). Exit 1 on a bad config.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sed -e "s#/sockets/#$dir/#g" \
    -e "s#^http {#http {\n    client_body_temp_path $dir/body;\n    proxy_temp_path $dir/proxy;#" \
    "$ROOT/nginx.conf" >"$dir/nginx.conf"
"$NGINX" -t -q -e stderr -c "$dir/nginx.conf" -p "$dir" -g "pid $dir/nginx.pid;"
echo "  nginx.conf: ok ($("$NGINX" -v 2>&1))"
