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
if [ ${#packages[@]} -gt 0 ]; then
  echo "install: apt-get install ${packages[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${packages[@]}" >/dev/null
fi

want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/dockyard ] || [ "$(cat .venv/.installed 2>/dev/null)" != "$want" ]; then
  echo "install: building .venv from requirements.lock"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check --require-hashes -r requirements.lock
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
  echo "$want" > .venv/.installed
fi
