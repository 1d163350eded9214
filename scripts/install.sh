#!/usr/bin/env bash
# Idempotent set-up for `make run` and `make test`: Debian packages that are
# missing, then a virtualenv built from the lock file (rebuilt only when the
# lock file or pyproject.toml changes).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

packages=()
command -v git >/dev/null || packages+=(git)
command -v pg_lsclusters >/dev/null || packages+=(postgresql)
command -v python3 >/dev/null || packages+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3-venv)
# For the integration tests (scripts/services.sh): a Docker engine, a private
# registry, the router, a static busybox for the tiny base image, htpasswd.
# /usr/local/bin/docker may be a newer client without an engine: look for dockerd.
command -v dockerd >/dev/null || packages+=(docker.io)
command -v docker-registry >/dev/null || packages+=(docker-registry)
command -v haproxy >/dev/null || packages+=(haproxy)
# ACME test CA and its DNS (tests/integration/test_certificates.py).
command -v pebble >/dev/null || packages+=(pebble)
# websocketd (Debian): the WebSocket app of the router tests.
command -v websocketd >/dev/null || packages+=(websocketd)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' \
  || packages+=(busybox-static)
command -v htpasswd >/dev/null || packages+=(apache2-utils)
command -v curl >/dev/null || packages+=(curl)
command -v socat >/dev/null || packages+=(socat)
# For the two-node test swarm (scripts/swarm.sh): ip netns, nsenter, unshare.
command -v ip >/dev/null || packages+=(iproute2)
command -v nsenter >/dev/null && command -v unshare >/dev/null || packages+=(util-linux)
if [ ${#packages[@]} -gt 0 ]; then
  echo "install: apt-get install ${packages[*]}"
  # Keep maintainer scripts from starting system services (a system dockerd,
  # docker-registry on :5000, haproxy): scripts/services.sh
  # starts its own on their own sockets and ports, and a postinst that fails to
  # start a service must not fail the install. A policy-rc.d that is already
  # there is left alone.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
    trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  log=$(mktemp)
  if ! { as_root apt-get update -qq &&
         DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq \
           --no-install-recommends "${packages[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "install: apt-get install failed" >&2
    exit 1
  fi
  rm -f "$log"
fi

want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/dockyard ] || [ "$(cat .venv/.installed 2>/dev/null)" != "$want" ]; then
  echo "install: building .venv from requirements.lock"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check --require-hashes -r requirements.lock
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
  echo "$want" > .venv/.installed
fi
