#!/usr/bin/env bash
# Installs what building and testing wkproxy needs, from Debian 12's own packages.
# Skips apt-get entirely when everything is already there.
# Extra groups by argument: `browser` (Chromium, for the status page test), `lint` (clang-tidy,
# for tools/lint.sh), `fuzz` (clang and its libFuzzer runtime), `bench` (h2load, nginx
# with its stream module, HAProxy and gnuplot for side-by-side runs and their plots, perf and
# valgrind; wrk and liburing-dev, which bench/uring-probe needs, are in the base list),
# `container` (podman, buildah, runc and debootstrap for tools/image.sh: see
# packaging/container/).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libboost1.81-dev libboost-url1.81-dev libboost-json1.81-dev
  libssl-dev libyaml-cpp-dev doctest-dev
  # the workers' io_uring loop (proxy/net/ring.cpp)
  liburing-dev
  # integration tests: real clients and a test CA made at test time; wrk is the client that
  # never retries (tests/integration/test_zero_downtime_wrk.py: reloads and upgrades under it)
  python3 curl openssl ca-certificates wrk
  # the Kubernetes manifest test cross-checks its YAML-subset loader against PyYAML
  python3-yaml
  # the reference AWS Signature V4 signer the tests compare wkproxy's signatures with
  python3-botocore
  # packaging tests: `systemd-analyze verify` on the units and `man -l` to render wkproxy(1)
  # (by hand, tests skip or check less without them; under CI=true they fail)
  systemd man-db
)
for group in "$@"; do
  case "$group" in
    browser) packages+=(chromium) ;;
    lint) packages+=(clang-tidy) ;;
    fuzz) packages+=(clang libclang-rt-14-dev) ;;
    bench) packages+=(nghttp2-client nginx-light libnginx-mod-stream haproxy gnuplot-nox linux-perf valgrind) ;;
    # runc, not crun: crun 1.8 refuses cgroup v1 "hybrid" hosts (see tools/image.sh).
    container) packages+=(podman buildah runc debootstrap) ;;
    *) echo "deps.sh: unknown group $group" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
