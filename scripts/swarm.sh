#!/usr/bin/env bash
# A real two-node Docker Swarm on this one machine, for the tests of the Swarm
# runtime. Needs what scripts/services.sh starts (the registry on
# 127.0.0.1:5000); prints its settings as shell assignments (stdout carries
# only NAME=value lines; everything else goes to stderr):
#   - a network namespace with a veth pair: 10.203.0.1/24 in the root
#     namespace, 10.203.0.2/24 in the namespace. Nothing is routed: traffic
#     stays on loopback and on this pair;
#   - the test registry also on 10.203.0.1:5000, through a socat forwarder to
#     127.0.0.1:5000 (the registry itself is not restarted);
#   - the swarm manager: a Docker engine of its own in the root namespace (own
#     socket, data root and exec root; no bridge, no iptables), advertised on
#     10.203.0.1;
#   - node2: a Docker engine in the namespace, started with `nsenter --net`
#     (`ip netns exec` would remount /sys and hide the cgroup mounts), joined
#     to the swarm as a worker, advertised on 10.203.0.2.
# Both engines take 10.203.0.1:5000 as an insecure (plain HTTP) registry:
# images for swarm services must be named 10.203.0.1:5000/..., which every
# node reaches (127.0.0.1:5000 on node2 is node2's own loopback).
# A second run reuses what is running and healthy.
#
#   bash scripts/swarm.sh         start (or reuse) and print the settings
#   bash scripts/swarm.sh stop    leave the swarm, remove the engines'
#                                 containers, stop the engines and the
#                                 forwarder, delete the veth pair and namespace
#                                 (the engines' data roots, with their image
#                                 caches, are kept)
set -euo pipefail

# Same state/run directories as scripts/services.sh (see there). The namespace,
# the veth's root end and the /24 (first three octets) can be changed for a
# second, separate set.
STATE=${DOCKYARD_SERVICES_STATE:-/var/lib/dockyard-test}
RUN=${DOCKYARD_SERVICES_RUN:-/run/dockyard-test}
NETNS=${DOCKYARD_SWARM_NETNS:-dockyard-node2}
VETH=${DOCKYARD_SWARM_VETH:-dy-node2}
SUBNET=${DOCKYARD_SWARM_SUBNET:-10.203.0}
HOST_ADDR=$SUBNET.1
NODE2_ADDR=$SUBNET.2
LOCAL_REGISTRY=127.0.0.1:${DOCKYARD_SERVICES_REGISTRY_PORT:-5000}
REGISTRY_ADDR=$HOST_ADDR:${DOCKYARD_SERVICES_REGISTRY_PORT:-5000}
# Address pools for whatever network an engine or the swarm makes by itself
# (docker_gwbridge, the ingress overlay, the builds' app networks): kept
# inside 10.203.0.0/17 and apart from the veth's /24 and the test engine's
# pool (10.203.32.0/19), never Docker's defaults (172.17.0.0/16...,
# 10.0.0.0/8).
LOCAL_POOL=base=10.203.64.0/19,size=26
SWARM_POOL=10.203.96.0/19

LOGS=$STATE/log
FORWARD_PID=$RUN/swarm-registry-forward.pid
MANAGER_SOCK=$RUN/swarm-manager.sock
MANAGER_DATA=$STATE/swarm-manager/docker
MANAGER_EXEC=$RUN/swarm-manager-exec
MANAGER_PID=$RUN/swarm-manager.pid
NODE2_SOCK=$RUN/node2.sock
NODE2_DATA=$STATE/node2/docker
NODE2_EXEC=$RUN/node2-exec
NODE2_PID=$RUN/node2.pid
NODE2_HOSTNAME=$NETNS

log() { echo "swarm.sh: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=scripts/daemons.sh
. "$(dirname "${BASH_SOURCE[0]}")/daemons.sh"

# dk SOCK ARGS...: the engine's own docker CLI (a newer one negotiates down
# too) on SOCK, with a throw-away config directory so ~/.docker is not used.
dk() {
  local sock=$1 bin=/usr/bin/docker
  shift
  [ -x "$bin" ] || bin=docker
  DOCKER_HOST=unix://$sock DOCKER_CONFIG=$STATE/swarm-docker-config "$bin" "$@"
}

# ------------------------------------------------ namespace and veth pair
netns_ok() {
  [ -e "/var/run/netns/$NETNS" ] &&
    ip -br addr show dev "$VETH" 2>/dev/null | grep -q " $HOST_ADDR/24" &&
    ip -br link show dev "$VETH" 2>/dev/null | grep -qv 'DOWN' &&
    ip -n "$NETNS" -br addr show dev eth0 2>/dev/null | grep -q " $NODE2_ADDR/24"
}

start_netns() {
  if netns_ok; then
    log "namespace $NETNS: reusing ($HOST_ADDR <-> $NODE2_ADDR on $VETH)"
    return
  fi
  # An engine still running in a namespace being replaced would be cut off.
  if pid_matches "$NODE2_PID" "--data-root $NODE2_DATA "; then
    stop_engine node2 "$NODE2_SOCK" "$NODE2_DATA" "$NODE2_EXEC" "$NODE2_PID"
  fi
  log "namespace $NETNS: creating, veth $VETH $HOST_ADDR/24 <-> $NETNS:eth0 $NODE2_ADDR/24"
  ip link del "$VETH" 2>/dev/null || true
  [ -e "/var/run/netns/$NETNS" ] || quiet ip netns add "$NETNS"
  ip -n "$NETNS" link del eth0 2>/dev/null || true
  quiet ip link add "$VETH" type veth peer name eth0 netns "$NETNS"
  quiet ip addr add "$HOST_ADDR/24" dev "$VETH"
  quiet ip link set "$VETH" up
  quiet ip -n "$NETNS" link set lo up
  quiet ip -n "$NETNS" addr add "$NODE2_ADDR/24" dev eth0
  quiet ip -n "$NETNS" link set eth0 up
  # No default route in the namespace: only the veth's /24 is reachable.
  netns_ok || die "namespace $NETNS: not set up as expected"
}

stop_netns() {
  if ip link show dev "$VETH" >/dev/null 2>&1 || [ -e "/var/run/netns/$NETNS" ]; then
    log "namespace $NETNS: deleting it and $VETH"
  fi
  ip link del "$VETH" 2>/dev/null || true
  [ -e "/var/run/netns/$NETNS" ] && ip netns del "$NETNS" 2>/dev/null || true
}

# ------------------------------------------- registry on the veth address
registry_code() {  # HTTP status of GET /v2/ at $1 (000 when nothing answers)
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$1/v2/" || true
}

start_forward() {
  [ "$(registry_code "$LOCAL_REGISTRY")" = 401 ] ||
    die "the test registry does not answer on $LOCAL_REGISTRY: run scripts/services.sh first"
  if pid_matches "$FORWARD_PID" "bind=$HOST_ADDR," && [ "$(registry_code "$REGISTRY_ADDR")" = 401 ]; then
    log "registry forwarder: reusing pid $(cat "$FORWARD_PID")"
    return
  fi
  stop_pid "$FORWARD_PID" "bind=$HOST_ADDR," 5
  command -v socat >/dev/null || {
    log "installing socat (Debian package)"
    quiet env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends socat
  }
  mkdir -p "$LOGS"
  log "registry forwarder: $REGISTRY_ADDR -> $LOCAL_REGISTRY"
  setsid socat "TCP-LISTEN:${REGISTRY_ADDR##*:},bind=$HOST_ADDR,reuseaddr,fork" \
    "TCP:$LOCAL_REGISTRY" </dev/null >"$LOGS/swarm-registry-forward.log" 2>&1 9>&- &
  local pid=$! code=000
  echo "$pid" >"$FORWARD_PID"
  for _ in $(seq 1 50); do
    code=$(registry_code "$REGISTRY_ADDR")
    [ "$code" = 401 ] && break
    running "$pid" || break
    sleep 0.1
  done
  [ "$code" = 401 ] || {
    cat "$LOGS/swarm-registry-forward.log" >&2
    die "registry forwarder: GET http://$REGISTRY_ADDR/v2/ answers $code, not 401"
  }
}

stop_forward() {
  pid_matches "$FORWARD_PID" "bind=$HOST_ADDR," &&
    log "registry forwarder: stopping pid $(cat "$FORWARD_PID")"
  stop_pid "$FORWARD_PID" "bind=$HOST_ADDR," 5
}

# ------------------------------------------------------------ the engines
ping_sock() {
  curl -fsS --max-time 2 --unix-socket "$1" http://localhost/_ping >/dev/null 2>&1
}

# start_engine NAME SOCK DATA EXEC PIDFILE [LAUNCHER...]: start (or reuse) a
# dockerd; LAUNCHER... is put before it (to enter the namespace).
start_engine() {
  local name=$1 sock=$2 data=$3 exec_root=$4 pidfile=$5
  shift 5
  # An engine started with other address pools (an older checkout's) is restarted.
  if pid_matches "$pidfile" "--data-root $data " &&
    ! pid_matches "$pidfile" "--default-address-pool $LOCAL_POOL "; then
    log "$name engine: started with other address pools; restarting it"
    stop_engine "$name" "$sock" "$data" "$exec_root" "$pidfile"
  fi
  if pid_matches "$pidfile" "--data-root $data "; then
    for _ in $(seq 1 50); do
      if ping_sock "$sock"; then
        log "$name engine: reusing pid $(cat "$pidfile")"
        return
      fi
      sleep 0.2
    done
    log "$name engine: pid $(cat "$pidfile") does not answer; restarting it"
    stop_pid "$pidfile" "--data-root $data " 40
  fi
  command -v dockerd >/dev/null || die "dockerd is missing (Debian package docker.io): run make install"
  mkdir -p "$data" "$exec_root" "$LOGS"
  echo '{}' >"$data/../dockerd.json"
  # dockerd gives its containerd 15 s to answer; on a loaded machine, or
  # right after a killed engine whose containerd is still going away, that
  # can run out: clean up and try again, the last time with a fresh
  # containerd root (a containerd that will not die keeps its lock on it).
  local attempt
  for attempt in 1 2 3; do
    # What a dead engine left: dockerd will not start over its pidfile.
    clean_engine "$data" "$exec_root" "$pidfile" "$sock"
    if [ "$attempt" = 3 ] && [ -d "$data/containerd" ]; then
      log "$name engine: starting with a fresh containerd root"
      mv "$data/containerd" "$data/containerd.$(date +%s)"
    fi
    launch_engine "$name" "$sock" "$data" "$exec_root" "$pidfile" "$@" && return
    log "$name engine: start $attempt failed: $(engine_failure "$name")"
    stop_pid "$pidfile" "--data-root $data " 10
    sleep 3
  done
  grep -v 'module=grpc' "$LOGS/$name-dockerd.log" | tail -n 30 >&2
  die "$name engine: dockerd does not start (log: $LOGS/$name-dockerd.log)"
}

# engine_failure NAME: the last line of the engine's log that says why.
engine_failure() {
  grep -v 'module=grpc' "$LOGS/$1-dockerd.log" | grep -iE 'error|fail|fatal' | tail -n 1 || true
}

# launch_engine NAME SOCK DATA EXEC PIDFILE [LAUNCHER...]: start dockerd; true
# once it answers, false if it exits or does not answer within 30 s.
launch_engine() {
  local name=$1 sock=$2 data=$3 exec_root=$4 pidfile=$5
  shift 5
  log "$name engine: starting on $sock"
  setsid "$@" dockerd \
    --config-file "$data/../dockerd.json" \
    --host "unix://$sock" \
    --data-root "$data" \
    --exec-root "$exec_root" \
    --pidfile "$pidfile" \
    --bridge=none --iptables=false --ip6tables=false \
    --ip-forward=false --ip-masq=false \
    --default-address-pool "$LOCAL_POOL" \
    --insecure-registry "$REGISTRY_ADDR" \
    </dev/null >"$LOGS/$name-dockerd.log" 2>&1 9>&- &
  local pid=$!
  for _ in $(seq 1 300); do
    ping_sock "$sock" && return 0
    running "$pid" || return 1
    sleep 0.1
  done
  ping_sock "$sock"
}

# stop_engine NAME SOCK DATA EXEC PIDFILE: leave the swarm, remove every
# container of this engine, stop it, clean up what a killed one left behind.
stop_engine() {
  local name=$1 sock=$2 data=$3 exec_root=$4 pidfile=$5 ids
  if pid_matches "$pidfile" "--data-root $data " && ping_sock "$sock"; then
    dk "$sock" swarm leave --force >/dev/null 2>&1 || true
    ids=$(dk "$sock" ps -aq 2>/dev/null || true)
    [ -z "$ids" ] || dk "$sock" rm -f $ids >/dev/null 2>&1 || true
    dk "$sock" network rm docker_gwbridge >/dev/null 2>&1 || true
  fi
  if pid_matches "$pidfile" "--data-root $data "; then
    log "$name engine: stopping pid $(cat "$pidfile")"
    stop_pid "$pidfile" "--data-root $data " 40
  fi
  clean_engine "$data" "$exec_root" "$pidfile" "$sock"
  # A swarm left without `leave` (engine killed) is not rejoined later.
  rm -rf "$data/swarm"
}

# clean_engine DATA EXEC PIDFILE SOCK: what a stopped or dead dockerd left
# behind: its containerd and shims (their command lines name the exec root),
# mounts on and under its directories (dockerd bind-mounts its data root on
# itself), its pidfile and socket.
clean_engine() {
  local data=$1 exec_root=$2 pidfile=$3 sock=$4 pid
  for pid in $(pgrep -f -- "$exec_root/" || true); do
    log "killing leftover pid $pid ($(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" || true))"
    kill -KILL "$pid" 2>/dev/null || true
  done
  for _ in $(seq 1 50); do # killed, but not gone until the kernel says so
    pgrep -f -- "$exec_root/" >/dev/null || break
    sleep 0.1
  done
  awk -v a="$data/" -v b="$exec_root/" \
    'index($5 "/", a) == 1 || index($5 "/", b) == 1 { print $5 }' /proc/self/mountinfo |
    sort -r | while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done
  rm -f "$pidfile" "$sock"
}

start_manager() {
  start_engine swarm-manager "$MANAGER_SOCK" "$MANAGER_DATA" "$MANAGER_EXEC" "$MANAGER_PID"
}

start_node2() {
  # Its own UTS namespace only to carry its own hostname (the swarm's node
  # name); its network namespace is entered with nsenter --net.
  start_engine node2 "$NODE2_SOCK" "$NODE2_DATA" "$NODE2_EXEC" "$NODE2_PID" \
    unshare --uts -- sh -c 'hostname "$0" && exec "$@"' "$NODE2_HOSTNAME" \
    nsenter "--net=/var/run/netns/$NETNS"
}

# --------------------------------------------------------------- the swarm
swarm_field() { dk "$1" info --format "$2" 2>/dev/null || true; }

start_swarm() {
  local state pool node2_id cluster token code
  state=$(swarm_field "$MANAGER_SOCK" '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.NodeAddr}}')
  pool=$(swarm_field "$MANAGER_SOCK" '{{.Swarm.Cluster.DefaultAddrPool}}')
  if [ "$state" = "active true $HOST_ADDR" ] && [ "$pool" = "[$SWARM_POOL]" ]; then
    log "swarm: manager is active on $HOST_ADDR"
  else
    [[ $state == inactive* ]] || quiet dk "$MANAGER_SOCK" swarm leave --force
    log "swarm: init on the manager, advertised on $HOST_ADDR"
    quiet dk "$MANAGER_SOCK" swarm init \
      --advertise-addr "$HOST_ADDR" --listen-addr "$HOST_ADDR:2377" \
      --data-path-addr "$HOST_ADDR" \
      --default-addr-pool "$SWARM_POOL" --default-addr-pool-mask-length 24
  fi
  cluster=$(swarm_field "$MANAGER_SOCK" '{{.Swarm.Cluster.ID}}')
  # The routing mesh (the `ingress` overlay) needs IPVS, which this kernel
  # lacks, and the apps publish with host networking: it goes before node2
  # joins, so no node makes its ingress sandbox (vxlan, docker_gwbridge).
  if dk "$MANAGER_SOCK" network inspect ingress >/dev/null 2>&1; then
    log "swarm: removing the ingress network"
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X DELETE \
      --unix-socket "$MANAGER_SOCK" http://localhost/networks/ingress || true)
    # 404: already removed from the cluster, the engine's copy going.
    [ "$code" = 204 ] || [ "$code" = 404 ] ||
      die "swarm: removing the ingress network answered $code"
    for _ in $(seq 1 50); do
      dk "$MANAGER_SOCK" network inspect ingress >/dev/null 2>&1 || break
      sleep 0.1
    done
    # The manager made its ingress sandbox at init: its bridge goes too.
    for _ in $(seq 1 50); do
      dk "$MANAGER_SOCK" network rm docker_gwbridge >/dev/null 2>&1 && break
      dk "$MANAGER_SOCK" network inspect docker_gwbridge >/dev/null 2>&1 || break
      sleep 0.1
    done
  fi

  state=$(swarm_field "$NODE2_SOCK" '{{.Swarm.LocalNodeState}} {{.Swarm.NodeAddr}}')
  node2_id=$(swarm_field "$NODE2_SOCK" '{{.Swarm.NodeID}}')
  if [ "$state" = "active $NODE2_ADDR" ] && [ -n "$node2_id" ] &&
    [ "$(dk "$MANAGER_SOCK" node inspect --format '{{.Status.State}}' "$node2_id" 2>/dev/null)" = ready ]; then
    log "swarm: node2 is a ready worker of $cluster"
  else
    [[ $state == inactive* ]] || quiet dk "$NODE2_SOCK" swarm leave --force
    token=$(dk "$MANAGER_SOCK" swarm join-token -q worker) || die "swarm: no join token from the manager"
    log "swarm: node2 joins $HOST_ADDR:2377, advertised on $NODE2_ADDR"
    quiet dk "$NODE2_SOCK" swarm join --token "$token" \
      --advertise-addr "$NODE2_ADDR" --listen-addr "$NODE2_ADDR:2377" \
      --data-path-addr "$NODE2_ADDR" "$HOST_ADDR:2377"
    node2_id=$(swarm_field "$NODE2_SOCK" '{{.Swarm.NodeID}}')
    for _ in $(seq 1 150); do
      [ "$(dk "$MANAGER_SOCK" node inspect --format '{{.Status.State}}' "$node2_id" 2>/dev/null)" = ready ] && break
      sleep 0.2
    done
    [ "$(dk "$MANAGER_SOCK" node inspect --format '{{.Status.State}}' "$node2_id" 2>/dev/null)" = ready ] ||
      die "swarm: node2 ($node2_id) is not ready on the manager after 30 s"
  fi

  # This swarm has exactly two nodes: any other is what an earlier node2 left.
  local id manager_id
  manager_id=$(swarm_field "$MANAGER_SOCK" '{{.Swarm.NodeID}}')
  for id in $(dk "$MANAGER_SOCK" node ls -q); do
    if [ "$id" != "$manager_id" ] && [ "$id" != "$node2_id" ]; then
      log "swarm: removing stale node $id"
      dk "$MANAGER_SOCK" node rm --force "$id" >/dev/null 2>&1 || true
    fi
  done
  # Every node must serve the apps' tasks, the manager too.
  local availability
  dk "$MANAGER_SOCK" node ls --format '{{.ID}} {{.Availability}}' | while read -r id availability; do
    [ "$availability" = Active ] || quiet dk "$MANAGER_SOCK" node update --availability active "$id"
  done
}

print_settings() {
  echo "DOCKYARD_SWARM_MANAGER=unix://$MANAGER_SOCK"
  echo "DOCKYARD_SWARM_NODE2=unix://$NODE2_SOCK"
  echo "DOCKYARD_SWARM_REGISTRY=$REGISTRY_ADDR"
  echo "DOCKYARD_SWARM_NODE_ADDRESSES=$HOST_ADDR,$NODE2_ADDR"
  echo "DOCKYARD_SWARM_NETNS=$NETNS"
}

# --------------------------------------------------------------------- main
[ "$(id -u)" = 0 ] || die "must run as root (network namespace, dockerd)"
mkdir -p "$RUN" "$STATE"
exec 9>"$RUN/swarm.lock"
flock 9

case "${1:-start}" in
  start)
    start_netns
    start_forward
    start_manager
    start_node2
    start_swarm
    print_settings
    ;;
  stop)
    stop_engine node2 "$NODE2_SOCK" "$NODE2_DATA" "$NODE2_EXEC" "$NODE2_PID"
    stop_engine swarm-manager "$MANAGER_SOCK" "$MANAGER_DATA" "$MANAGER_EXEC" "$MANAGER_PID"
    stop_forward
    stop_netns
    ;;
  *)
    die "usage: $0 [start|stop]"
    ;;
esac
