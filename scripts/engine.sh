#!/usr/bin/env bash
# For `make run`: make sure a Docker engine answers, starting one if none does.
# An engine that DOCKER_HOST (or the default socket) reaches is used as it is;
# otherwise dockerd starts in the background, logging to .dockyard/dockerd.log,
# without its default bridge (each app gets a network of its own) and with
# its iptables rules: they keep the apps' networks apart and give them egress.
set -euo pipefail
cd "$(dirname "$0")/.."

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ -n "${DOCKER_HOST:-}" ]; then
  echo "engine: DOCKER_HOST=$DOCKER_HOST does not answer" >&2
  exit 1
fi
mkdir -p .dockyard
echo "engine: starting dockerd (log: .dockyard/dockerd.log)" >&2
setsid dockerd --bridge=none >.dockyard/dockerd.log 2>&1 < /dev/null &
for _ in $(seq 1 100); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 0.2
done
echo "engine: dockerd did not start; see .dockyard/dockerd.log" >&2
exit 1
