#!/usr/bin/env bash
# Helpers for the scripts that start the test daemons (services.sh, swarm.sh).
# The script that sources this defines log and die first.

# quiet CMD...: run CMD with its output kept back, shown (on stderr) only if it fails.
quiet() {
  local out
  if ! out=$("$@" 2>&1); then
    printf '%s\n' "$out" >&2
    die "failed: $*"
  fi
}

# pid_matches PIDFILE TEXT: the pid in PIDFILE is alive and its command line
# contains TEXT (so a stale pidfile whose pid was reused does not count).
pid_matches() {
  local pid cmdline
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ $cmdline == *"$2"* ]]
}

# running PID: the process exists and is not a zombie (our daemons are
# reparented to PID 1, which may reap them late).
running() {
  local stat
  stat=$(cat 2>/dev/null "/proc/$1/stat") || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# stop_pid PIDFILE TEXT SECONDS: TERM, wait, then KILL.
stop_pid() {
  pid_matches "$1" "$2" || { rm -f "$1"; return 0; }
  local pid
  pid=$(cat "$1")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $(($3 * 10))); do
    running "$pid" || break
    sleep 0.1
  done
  if running "$pid"; then
    log "pid $pid did not stop in $3 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$1"
}
