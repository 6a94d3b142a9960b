#!/bin/bash
# The image's HEALTHCHECK: GET /healthz on the admin listener, healthy only on "200".
# bash's /dev/tcp instead of curl: curl and libcurl would add ~10 MB and a dozen libraries
# (nghttp2, ssh2, ldap, kerberos...) to an image that needs none of them otherwise.
# Usage: wkproxy-healthcheck [HOST:PORT] [PATH]   (default 127.0.0.1:9901 /healthz)
set -u
addr=${1:-${WKPROXY_ADMIN:-127.0.0.1:9901}}
path=${2:-/healthz}
exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}" || exit 1
printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$addr" >&3
IFS= read -r -t 3 status <&3 || exit 1
case "$status" in
  "HTTP/1."[01]" 200 "*) exit 0 ;;
  *) echo "unhealthy: ${status%$'\r'}" >&2; exit 1 ;;
esac
