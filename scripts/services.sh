#!/usr/bin/env bash
# Start what the integration tests need and print its settings as shell
# assignments (stdout carries only NAME=value lines; everything else goes to
# stderr):
#   - PostgreSQL (Debian's cluster), with a role that may create the
#     throw-away databases the tests use;
#   - a Docker engine of its own (own socket, data root and exec root, no
#     bridge network, no iptables);
#   - Debian's CNCF registry on 127.0.0.1:5000 with htpasswd auth;
#   - a tiny busybox base image, built without Docker Hub and pushed to it.
# A second run reuses what is running and healthy.
#
#   bash scripts/services.sh         start (or reuse) and print the settings
#   bash scripts/services.sh stop    stop the engine and registry started here
#                                    (PostgreSQL is the system's and stays up)
set -euo pipefail

# A second, separate set (to try this script while the tests use the first)
# can be had with DOCKYARD_SERVICES_STATE, DOCKYARD_SERVICES_RUN (keep it short:
# containerd's socket path lives under it) and DOCKYARD_SERVICES_REGISTRY_PORT.
STATE=${DOCKYARD_SERVICES_STATE:-/var/lib/dockyard-test}
RUN=${DOCKYARD_SERVICES_RUN:-/run/dockyard-test}
DOCKER_SOCK=$RUN/docker.sock
DOCKER_DATA=$STATE/docker
DOCKER_EXEC=$RUN/docker-exec
DOCKERD_PID=$RUN/dockerd.pid
REGISTRY_ADDR=127.0.0.1:${DOCKYARD_SERVICES_REGISTRY_PORT:-5000}
REGISTRY_DIR=$STATE/registry
REGISTRY_CONF=$REGISTRY_DIR/config.yml
REGISTRY_HTPASSWD=$REGISTRY_DIR/htpasswd
REGISTRY_PASSWORD_FILE=$REGISTRY_DIR/password
REGISTRY_PID=$RUN/registry.pid
REGISTRY_USER=dockyard
BASE_IMAGE=$REGISTRY_ADDR/dockyard-test/busybox:latest
LOGS=$STATE/log
# Where the engine makes the apps' networks: one per app, each a /28 (768 of
# them, 13 containers each: a test session deploys a few hundred apps), inside
# 10.203.0.0/17 and apart from the Swarm test's veth (10.203.0.0/24) and pools
# (10.203.64.0/18), never Docker's defaults (172.17.0.0/16..., 10.0.0.0/8).
ENGINE_POOL=base=10.203.32.0/19,size=28
ENGINE_POOL_MORE=base=10.203.16.0/20,size=28

log() { echo "services: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=scripts/daemons.sh
. "$(dirname "${BASH_SOURCE[0]}")/daemons.sh"

# The docker CLI that comes with the engine (a newer one in /usr/local/bin
# negotiates down too), pointed at the test engine, with a throw-away config
# directory so ~/.docker is never touched.
docker_cli() {
  local bin=/usr/bin/docker
  [ -x "$bin" ] || bin=docker
  DOCKER_HOST=unix://$DOCKER_SOCK DOCKER_CONFIG=$STATE/docker-config "$bin" "$@"
}

port_in_use() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

# A system service from a Debian package that holds a port we need (or that
# Dockyard's own haproxy needs) is stopped and disabled.
stop_system_service() {
  local unit=$1
  if [ -d /run/systemd/system ] && systemctl is-active --quiet "$unit" 2>/dev/null; then
    log "stopping and disabling the system service $unit (it holds a port the tests need)"
    systemctl disable --now --quiet "$unit" >&2 || true
  elif [ -x "/etc/init.d/$unit" ] && "/etc/init.d/$unit" status >/dev/null 2>&1; then
    log "stopping the system service $unit (it holds a port the tests need)"
    "/etc/init.d/$unit" stop >&2 || true
    update-rc.d "$unit" disable >/dev/null 2>&1 || true
  fi
}

# ---------------------------------------------------------------- PostgreSQL
start_postgres() {
  local cluster version name port status
  cluster=$(pg_lsclusters -h | head -n 1)
  if [ -z "$cluster" ]; then
    version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
    pg_createcluster "$version" main >/dev/null
    cluster=$(pg_lsclusters -h | head -n 1)
  fi
  read -r version name port status _ <<<"$cluster"
  if [ "$status" != online ]; then
    pg_ctlcluster "$version" "$name" start >&2 9>&-
  fi
  for _ in $(seq 1 50); do
    pg_isready -q -h 127.0.0.1 -p "$port" && break
    sleep 0.2
  done

  su postgres -c "psql -q -p $port -v ON_ERROR_STOP=1" >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dockyard_test') THEN
    CREATE ROLE dockyard_test LOGIN CREATEDB PASSWORD 'dockyard_test';
  END IF;
END \$\$;
SQL
  echo "DOCKYARD_TEST_POSTGRES=postgresql+psycopg://dockyard_test:dockyard_test@127.0.0.1:$port"
}

# ------------------------------------------------------------ Docker engine
docker_ping() {
  curl -fsS --max-time 2 --unix-socket "$DOCKER_SOCK" http://localhost/_ping >/dev/null 2>&1
}

start_docker() {
  # Apps' networks are kept apart by the host not forwarding between them
  # (the test engine has no iptables rules to do it).
  if [ "$(sysctl -n net.ipv4.ip_forward)" != 0 ]; then
    log "turning IPv4 forwarding off (net.ipv4.ip_forward=0): the tests' app networks rely on it"
    sysctl -qw net.ipv4.ip_forward=0
  fi
  # An engine started with other flags (an older checkout's) is restarted.
  if pid_matches "$DOCKERD_PID" "--data-root $DOCKER_DATA " &&
    pid_matches "$DOCKERD_PID" "--default-address-pool $ENGINE_POOL_MORE "; then
    for _ in $(seq 1 50); do
      if docker_ping; then
        log "Docker engine: reusing pid $(cat "$DOCKERD_PID")"
        echo "DOCKER_HOST=unix://$DOCKER_SOCK"
        return
      fi
      running "$(cat "$DOCKERD_PID")" || break # killed: a zombie not yet reaped
      sleep 0.2
    done
    log "Docker engine pid $(cat "$DOCKERD_PID") does not answer; restarting it"
  fi
  command -v dockerd >/dev/null || die "dockerd is missing (Debian package docker.io): run make install"
  mkdir -p "$DOCKER_DATA" "$DOCKER_EXEC" "$LOGS"
  # Our own (empty) daemon.json, so /etc/docker/daemon.json cannot interfere.
  echo '{}' >"$STATE/dockerd.json"
  # Right after an engine was killed, its containerd may still be going away
  # and the new one time out: clean up and try again.
  local attempt
  for attempt in 1 2 3; do
    # Whatever an engine killed earlier left (pidfile, shims, mounts) goes first.
    stop_docker
    if launch_docker; then
      echo "DOCKER_HOST=unix://$DOCKER_SOCK"
      return
    fi
    log "Docker engine: start $attempt failed; cleaning up and trying again"
    sleep 3
  done
  tail -n 30 "$LOGS/dockerd.log" >&2
  die "dockerd does not start (log: $LOGS/dockerd.log)"
}

# launch_docker: start dockerd; true once it answers, false if it exits or
# does not answer within 30 s.
launch_docker() {
  log "Docker engine: starting on $DOCKER_SOCK"
  setsid dockerd \
    --config-file "$STATE/dockerd.json" \
    --host "unix://$DOCKER_SOCK" \
    --data-root "$DOCKER_DATA" \
    --exec-root "$DOCKER_EXEC" \
    --pidfile "$DOCKERD_PID" \
    --bridge=none --iptables=false --ip6tables=false \
    --ip-forward=false --ip-masq=false \
    --default-address-pool "$ENGINE_POOL" --default-address-pool "$ENGINE_POOL_MORE" \
    --insecure-registry "$REGISTRY_ADDR" --insecure-registry 10.203.0.1:5000 \
    </dev/null >"$LOGS/dockerd.log" 2>&1 9>&- &
  local pid=$!
  for _ in $(seq 1 300); do
    docker_ping && return 0
    running "$pid" || return 1
    sleep 0.1
  done
  docker_ping
}

stop_docker() {
  if pid_matches "$DOCKERD_PID" "--data-root $DOCKER_DATA "; then
    log "Docker engine: stopping pid $(cat "$DOCKERD_PID")"
    # dockerd stops its containers (15 s each at most) and its containerd.
    stop_pid "$DOCKERD_PID" "--data-root $DOCKER_DATA " 40
  fi
  # Whatever a killed dockerd left behind: its containerd and shims (their
  # command lines name our exec root), then mounts under our directories.
  local pid
  for pid in $(pgrep -f -- "$DOCKER_EXEC/" || true); do
    log "killing leftover pid $pid ($(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" || true))"
    kill -KILL "$pid" 2>/dev/null || true
  done
  awk -v a="$DOCKER_DATA/" -v b="$DOCKER_EXEC/" \
    'index($5, a) == 1 || index($5, b) == 1 || $5 == substr(a, 1, length(a) - 1) { print $5 }' \
    /proc/self/mountinfo |
    sort -r | while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done
  rm -f "$DOCKERD_PID" "$DOCKER_SOCK"
}

# ----------------------------------------------------------------- Registry
registry_code() {  # HTTP status of GET /v2/ (000 when nothing answers)
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" "http://$REGISTRY_ADDR/v2/" || true
}

registry_password() {
  mkdir -p "$REGISTRY_DIR"
  if [ ! -s "$REGISTRY_PASSWORD_FILE" ]; then
    (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$REGISTRY_PASSWORD_FILE")
  fi
  cat "$REGISTRY_PASSWORD_FILE"
}

start_registry() {
  command -v docker-registry >/dev/null ||
    die "docker-registry is missing (Debian package docker-registry): run make install"
  local password changed=no
  password=$(registry_password)
  mkdir -p "$REGISTRY_DIR/data" "$LOGS" "$RUN"

  # The htpasswd file holds the user with the kept password. Tests may replace
  # it (credential expiry); a run puts the right entry back. Replaced
  # atomically: the registry re-reads the file when it changes.
  if ! htpasswd -vb "$REGISTRY_HTPASSWD" "$REGISTRY_USER" "$password" >/dev/null 2>&1; then
    htpasswd -nbB "$REGISTRY_USER" "$password" >"$REGISTRY_HTPASSWD.tmp"
    mv "$REGISTRY_HTPASSWD.tmp" "$REGISTRY_HTPASSWD"
  fi

  local conf
  conf=$(cat <<YAML
version: 0.1
log:
  level: info
  fields:
    service: dockyard-test-registry
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR/data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
  secret: $(printf 'http-secret %s' "$password" | sha256sum | cut -c1-32)
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: dockyard-test-registry
    path: $REGISTRY_HTPASSWD
YAML
)
  if [ "$(cat "$REGISTRY_CONF" 2>/dev/null)" != "$conf" ]; then
    printf '%s\n' "$conf" >"$REGISTRY_CONF"
    changed=yes
  fi

  if pid_matches "$REGISTRY_PID" "$REGISTRY_CONF "; then
    if [ $changed = no ] && [ "$(registry_code)" = 401 ]; then
      log "registry: reusing pid $(cat "$REGISTRY_PID")"
      print_registry "$password"
      return
    fi
    log "registry: restarting pid $(cat "$REGISTRY_PID")"
    stop_pid "$REGISTRY_PID" "$REGISTRY_CONF " 10
  fi

  if port_in_use "${REGISTRY_ADDR##*:}"; then
    stop_system_service docker-registry
    sleep 0.5
    port_in_use "${REGISTRY_ADDR##*:}" &&
      die "port ${REGISTRY_ADDR##*:} is in use by another process: $(ss -Hltnp "sport = :${REGISTRY_ADDR##*:}")"
  fi

  log "registry: starting on $REGISTRY_ADDR"
  setsid docker-registry serve "$REGISTRY_CONF" </dev/null >"$LOGS/registry.log" 2>&1 9>&- &
  local pid=$!
  echo "$pid" >"$REGISTRY_PID"
  local code=000
  for _ in $(seq 1 100); do
    code=$(registry_code)
    [ "$code" != 000 ] && break
    running "$pid" || break
    sleep 0.1
  done
  if [ "$code" != 401 ]; then
    tail -n 30 "$LOGS/registry.log" >&2
    die "registry answers GET /v2/ without credentials with $code, not 401 (log: $LOGS/registry.log)"
  fi
  print_registry "$password"
}

print_registry() {
  echo "DOCKYARD_TEST_REGISTRY=$REGISTRY_ADDR"
  echo "DOCKYARD_TEST_REGISTRY_USER=$REGISTRY_USER"
  echo "DOCKYARD_TEST_REGISTRY_PASSWORD=$1"
  echo "DOCKYARD_TEST_REGISTRY_HTPASSWD=$REGISTRY_HTPASSWD"
}

stop_registry() {
  if pid_matches "$REGISTRY_PID" "$REGISTRY_CONF "; then
    log "registry: stopping pid $(cat "$REGISTRY_PID")"
  fi
  stop_pid "$REGISTRY_PID" "$REGISTRY_CONF " 10
}

# --------------------------------------------------------------- Base image
# A root filesystem of busybox-static and its applets, a page to serve and a
# minimal /etc/passwd. Its CMD serves /www on $PORT (8000 by default) and, as
# PID 1, exits at once on SIGTERM so `docker stop` does not wait 10 s.
build_base_image() {
  local dir root
  dir=$(mktemp -d "$STATE/base-image.XXXXXX")
  root=$dir/rootfs
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,www/cgi-bin,root,tmp,proc,sys,dev}
  chmod 1777 "$root/tmp"
  chmod 700 "$root/root"
  cp /bin/busybox "$root/bin/busybox"
  /bin/busybox --list-full | while read -r applet; do
    [ -e "$root/$applet" ] || [ -L "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
    >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  printf '<!doctype html>\n<title>Dockyard test</title>\n<p>Hello from the Dockyard test base image.</p>\n' \
    >"$root/www/index.html"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    -C "$root" -cf "$dir/rootfs.tar" .
  quiet docker_cli import \
    --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'WORKDIR /' \
    --change 'CMD ["/bin/sh","-c","trap \"exit 0\" TERM INT; httpd -f -p \"${PORT:-8000}\" -h /www & wait"]' \
    "$dir/rootfs.tar" "$BASE_IMAGE"
  rm -rf "$dir"
}

base_image_in_registry() {
  local code repo=${BASE_IMAGE#*/}
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -u "$REGISTRY_USER:$1" \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REGISTRY_ADDR/v2/${repo%:*}/manifests/${repo##*:}" || true)
  [ "$code" = 200 ]
}

push_base_image() {
  local password=$1 recipe stamp=$STATE/base-image.stamp
  # Rebuilt when the recipe or busybox changes, or the registry lost the tag.
  recipe=$({ declare -f build_base_image; sha256sum /bin/busybox; } | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" = "$recipe" ] && base_image_in_registry "$password"; then
    log "base image: $BASE_IMAGE is in the registry"
  else
    log "base image: building and pushing $BASE_IMAGE"
    rm -f "$stamp"
    mkdir -p "$STATE/docker-config"
    chmod 700 "$STATE/docker-config"
    build_base_image
    quiet docker_cli login --username "$REGISTRY_USER" --password-stdin "$REGISTRY_ADDR" \
      <<<"$password"
    quiet docker_cli push "$BASE_IMAGE"
    quiet docker_cli logout "$REGISTRY_ADDR"
    # Leave the engine without it, so the tests' pulls go to the registry.
    quiet docker_cli rmi "$BASE_IMAGE"
    base_image_in_registry "$password" || die "base image: $BASE_IMAGE is not in the registry after the push"
    echo "$recipe" >"$stamp"
  fi
  echo "DOCKYARD_TEST_BASE_IMAGE=$BASE_IMAGE"
}

# ------------------------------------------------------------------ HAProxy
check_haproxy() {
  command -v haproxy >/dev/null || die "haproxy is missing (Debian package haproxy): run make install"
  haproxy -v >/dev/null || die "haproxy -v fails"
  # Debian's package ships haproxy.service (its own /etc/haproxy config, and
  # whatever it binds); Dockyard runs its own haproxy, one per data directory.
  stop_system_service haproxy
}

# --------------------------------------------------------------------- main
mkdir -p "$RUN" "$STATE"
chmod 755 "$STATE"
exec 9>"$RUN/services.lock"
flock 9

case "${1:-start}" in
  start)
    start_postgres
    check_haproxy
    start_docker
    start_registry
    push_base_image "$(registry_password)"
    ;;
  stop)
    stop_registry
    stop_docker
    ;;
  *)
    die "usage: $0 [start|stop]"
    ;;
esac
