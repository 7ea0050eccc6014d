#!/bin/sh
# Certificates for the peer link's mutual TLS (docs/TLS.md), with Debian's openssl:
# one CA (made once per DIR, reused after) and one certificate per instance.
#
#   scripts/certs.sh DIR NAME=SAN[,SAN...] [NAME=SAN[,SAN...]...]
#   scripts/certs.sh certs api1=api1,10.0.0.1 api2=api2,10.0.0.2
#
# Writes DIR/ca.pem (give it to every instance: --peer-tls-ca), DIR/ca.key (keep it
# off the machines; it signs new certificates), and DIR/NAME.pem + DIR/NAME.key per
# instance (--peer-tls-cert, --peer-tls-key). A SAN that parses as an IPv4 or IPv6
# address becomes an IP name, anything else a DNS name: list every name or address
# the other instances put in their --peer to reach this one. Keys are EC P-256.
# DAYS (default 825) sets the validity of new instance certificates; the CA's is 3650.
# Each CA gets a random name: two CAs never share one (a certificate names its issuer).
set -eu

usage() {
    echo "usage: $0 DIR NAME=SAN[,SAN...] [NAME=SAN[,SAN...]...]" >&2
    exit 2
}
[ $# -ge 2 ] || usage
command -v openssl >/dev/null || { echo "$0: openssl not found (apt-get install openssl)" >&2; exit 1; }
DIR=$1
shift
DAYS=${DAYS:-825}
mkdir -p "$DIR"
umask 077

if [ ! -f "$DIR/ca.pem" ] || [ ! -f "$DIR/ca.key" ]; then
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -keyout "$DIR/ca.key" -out "$DIR/ca.pem" -days 3650 \
        -subj "/CN=rinha peer CA $(date -u +%Y%m%d) $(openssl rand -hex 6)" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    chmod 644 "$DIR/ca.pem"
    echo "made $DIR/ca.pem (keep $DIR/ca.key private)"
fi

is_ip() {
    case $1 in
        *:*) return 0 ;; # IPv6
        *[!0-9.]*) return 1 ;;
        *.*.*.*) return 0 ;;
        *) return 1 ;;
    esac
}

for spec in "$@"; do
    name=${spec%%=*}
    sans=${spec#*=}
    case $spec in *=*) ;; *) usage ;; esac
    [ -n "$name" ] && [ -n "$sans" ] || usage
    alt=""
    oldifs=$IFS
    IFS=,
    for s in $sans; do
        if is_ip "$s"; then entry="IP:$s"; else entry="DNS:$s"; fi
        alt="${alt:+$alt,}$entry"
    done
    IFS=$oldifs
    ext="$DIR/$name.ext"
    cat >"$ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$alt
EOF
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -keyout "$DIR/$name.key" -out "$DIR/$name.csr" -subj "/CN=$name" 2>/dev/null
    openssl x509 -req -in "$DIR/$name.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" \
        -CAcreateserial -days "$DAYS" -extfile "$ext" -out "$DIR/$name.pem" 2>/dev/null
    rm -f "$DIR/$name.csr" "$ext"
    chmod 644 "$DIR/$name.pem"
    echo "made $DIR/$name.pem ($alt) and $DIR/$name.key"
done
