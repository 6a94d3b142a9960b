#!/usr/bin/env bash
# Builds the wkproxy container image (packaging/container/Dockerfile) with podman, runs it in
# front of a real origin and a CloudFront stand-in, and checks it: routing, the HEALTHCHECK,
# readiness, a read-only root and no capabilities, port 80 as non-root, and that `podman stop`
# is a graceful stop. Prints timings and the image size, then removes what it started.
#
# Not part of ctest: it needs root, the apt mirror (debootstrap and apt-get in RUN steps) and
# minutes of build time. Usage (as root): tools/image.sh        KEEP_IMAGE=1 keeps the image.
#
# This machine has no registry and a cgroup v1 "hybrid" host (see docs/operations.md,
# "Container image and Kubernetes"): the Debian base images are made locally with debootstrap,
# runc replaces crun, and the rlimits podman sets are lowered to what the host allows.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/wkproxy:dev}
NAME=wkproxy-image-test
tools/deps.sh container

step() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f s", b - a }'; }
fail() { echo "FAIL: $*" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  podman rm -f -t 0 "$NAME" "$NAME-80" "$NAME-80-denied" >/dev/null 2>&1 || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ -z "${KEEP_IMAGE:-}" ]]; then podman rmi -f "$IMAGE" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# runc instead of crun (crun 1.8 refuses cgroup v1 hybrid mode); rlimits the host can grant
# (no CAP_SYS_RESOURCE: nofile up to the hard limit, nproc at most conmon's 32768).
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu); [[ "$nproc" == unlimited || "$nproc" -gt 32768 ]] && nproc=32768
cat >"$work/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF="$work/containers.conf"

# --- base images: debian:bookworm and debian:bookworm-slim, made here when missing.
if ! podman image exists docker.io/library/debian:bookworm-slim; then
  step "base images (debootstrap, once per machine)"
  t=$(now)
  sources=/etc/apt/sources.list.d/debian.sources
  mirror=$(awk '/^URIs:/ { print $2; exit }' "$sources")
  rootfs="$work/rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 20 "$work/debootstrap.log"; fail "debootstrap"; }
  # The host's sources (bookworm, -updates, -security) rather than debootstrap's single line,
  # so images get security updates such as libssl3's.
  rm -f "$rootfs/etc/apt/sources.list"
  cp "$sources" "$rootfs/etc/apt/sources.list.d/debian.sources"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import -q - docker.io/library/debian:bookworm >/dev/null
  # slim, as Debian's official image makes it: no docs, man pages or locales, now or later.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda}/*
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias \
    -exec rm -rf {} +
  tar -C "$rootfs" -c . | podman import -q - docker.io/library/debian:bookworm-slim >/dev/null
  rm -rf "$rootfs"
  echo "made debian:bookworm and debian:bookworm-slim from $mirror in $(since "$t")"
fi

# --- build
step "build $IMAGE"
t=$(now)
podman build --pull=never --network host --format docker \
  --build-arg WKPROXY_REVISION="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)" \
  -f packaging/container/Dockerfile -t "$IMAGE" . >"$work/build.log" 2>&1 ||
  { tail -n 40 "$work/build.log"; fail "podman build"; }
echo "built in $(since "$t")"
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
slim=$(podman image inspect --format '{{.Size}}' docker.io/library/debian:bookworm-slim)
awk -v s="$size" -v b="$slim" \
  'BEGIN { printf "image size %.1f MB (debian:bookworm-slim here: %.1f MB, wkproxy layers: %.1f MB)\n",
           s / 1e6, b / 1e6, (s - b) / 1e6 }'
podman run --rm --health-interval disable --network none "$IMAGE" --version

# --- an origin and a CloudFront stand-in (python http.server) on loopback
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
origin_port=$(free_port); cf_port=$(free_port); port=$(free_port); admin_port=$(free_port)
mkdir -p "$work/origin" "$work/cf/.well-known/pki-validation"
echo "hello from the origin" >"$work/origin/index.html"
echo "token-from-cloudfront" >"$work/cf/.well-known/pki-validation/abc123.txt"
python3 -m http.server -b 127.0.0.1 -d "$work/origin" "$origin_port" >/dev/null 2>&1 &
pids+=($!)
python3 -m http.server -b 127.0.0.1 -d "$work/cf" "$cf_port" >/dev/null 2>&1 &
cf_pid=$!
pids+=($cf_pid)

wait_for() { # wait_for SECONDS COMMAND...: poll until the command succeeds, or fail
  local deadline=$(($(date +%s) + $1)); shift
  until "$@" >/dev/null 2>&1; do
    (($(date +%s) < deadline)) || return 1
    sleep 0.05
  done
}
wait_for 10 curl -fs "http://127.0.0.1:$origin_port/" || fail "origin did not start"
wait_for 10 curl -fs "http://127.0.0.1:$cf_port/.well-known/pki-validation/abc123.txt" ||
  fail "cloudfront stand-in did not start"

# --- run: host network, read-only root, no capabilities, as the image's user.
# podman runs a HEALTHCHECK on a systemd timer; this machine has no systemd, so the timer is
# off (--health-interval disable) and the check is run by hand (podman healthcheck run).
step "run (--network host --read-only --cap-drop ALL)"
t=$(now)
podman run -d --name "$NAME" --health-interval disable --network host --read-only --cap-drop ALL \
  -e WKPROXY_PORT="$port" -e WKPROXY_ADMIN="127.0.0.1:$admin_port" \
  -e WKPROXY_ORIGIN="http://127.0.0.1:$origin_port" \
  -e WKPROXY_CLOUDFRONT="http://127.0.0.1:$cf_port" -e WKPROXY_DOMAIN=tenant.example \
  "$IMAGE" >/dev/null
wait_for 10 curl -fs "http://127.0.0.1:$port/" ||
  { podman logs "$NAME"; fail "no answer through the container"; }
echo "start -> first proxied 200: $(since "$t")"
echo "user: $(podman exec "$NAME" id -u) (expected 10001)"
[[ "$(podman exec "$NAME" id -u)" == 10001 ]] || fail "not running as 10001"

body=$(curl -fsS "http://127.0.0.1:$port/")
[[ "$body" == "hello from the origin" ]] || fail "origin route: got '$body'"
echo "GET / -> origin: $body"
body=$(curl -fsS -H "Host: tenant.example" \
  "http://127.0.0.1:$port/.well-known/pki-validation/abc123.txt")
[[ "$body" == "token-from-cloudfront" ]] || fail "validation route: got '$body'"
echo "GET /.well-known/pki-validation/abc123.txt (Host: tenant.example) -> cloudfront: $body"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: other.example" \
  "http://127.0.0.1:$port/.well-known/pki-validation/abc123.txt")
[[ "$code" == 404 ]] || fail "a host not allow-listed should reach the origin (404), got $code"
echo "same path, Host: other.example -> origin: $code"
kill "$cf_pid"; wait "$cf_pid" 2>/dev/null || true
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: tenant.example" \
  "http://127.0.0.1:$port/.well-known/pki-validation/abc123.txt")
[[ "$code" == 502 ]] || fail "cloudfront down should be 502, got $code"
echo "cloudfront stand-in stopped -> $code"

podman healthcheck run "$NAME" || fail "HEALTHCHECK"
echo "podman healthcheck run: healthy"
podman exec "$NAME" wkproxy-healthcheck "127.0.0.1:$admin_port" /readyz || fail "/readyz"
echo "/readyz via podman exec: 200"

step "graceful stop (podman stop)"
t=$(now)
podman stop -t 10 "$NAME" >/dev/null
took=$(since "$t")
rc=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
echo "podman stop took $took, exit code $rc"
[[ "$rc" == 0 ]] || { podman logs "$NAME" | tail -n 20; fail "exit code $rc"; }
podman logs "$NAME" 2>&1 | grep -m1 'stopped' || fail "no 'stopped' line in the logs"
podman rm "$NAME" >/dev/null

# --- port 80 as uid 10001: a private network namespace lets the container lower
# net.ipv4.ip_unprivileged_port_start (a namespaced sysctl; Kubernetes counts it as safe).
# No capability is needed. Without it the bind is refused and wkproxy exits 1.
step "port 80 as non-root"
podman run -d --name "$NAME-80" --health-interval disable --network none --read-only --cap-drop ALL \
  --sysctl net.ipv4.ip_unprivileged_port_start=80 -e WKPROXY_PORT=80 "$IMAGE" >/dev/null
wait_for 10 podman exec "$NAME-80" wkproxy-healthcheck 127.0.0.1:9901 /readyz ||
  { podman logs "$NAME-80"; fail "port 80 with the sysctl"; }
echo "--sysctl net.ipv4.ip_unprivileged_port_start=80, --cap-drop ALL: listening on :80 (/readyz 200)"
podman run --name "$NAME-80-denied" --health-interval disable --network none -e WKPROXY_PORT=80 "$IMAGE" \
  >"$work/denied.log" 2>&1 && fail "binding :80 without the sysctl should fail"
echo "without it: $(grep -m1 -i 'permission\|denied\|bind' "$work/denied.log")"

step "done: all checks passed"
