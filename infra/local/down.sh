#!/usr/bin/env bash
# Stops the services that infra/local/up.sh started (recorded in .data/run/*.started) and nothing
# else: system services and anything found already running are left alone. Data stays in .data/;
# pass --purge to delete the data folders of the services stopped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=lib.sh
source "$ROOT/infra/local/lib.sh"

PURGE=0
[ "${1:-}" = --purge ] && PURGE=1

[ -d "$RUN" ] || { echo "infra/local: nothing was started by up.sh"; exit 0; }
exec 9>"$RUN/lock"
flock -w 300 9 || die "another infra/local script holds $RUN/lock"

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Running and not a zombie: a daemon whose parent (up.sh) is gone waits for init to reap it.
alive() {
  local st
  st="$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

# Stops a pid only if it still runs the program we started (pids get reused).
stop_pid() {
  local pid="$1" comm="$2" i
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 0
  [ "$(cat "/proc/$pid/comm")" = "$comm" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 100); do
    alive "$pid" || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

shopt -s nullglob
stopped=0
for rec in "$RUN"/*.started; do
  tag="$(basename "$rec" .started)"
  kind="" comm="" pidfile="" pgdata="" bindir="" cluster="" addr=""
  while IFS='=' read -r k v; do
    case "$k" in
      kind) kind="$v" ;; comm) comm="$v" ;; pidfile) pidfile="$v" ;; pgdata) pgdata="$v" ;;
      bindir) bindir="$v" ;; cluster) cluster="$v" ;; addr) addr="$v" ;;
    esac
  done <"$rec"
  dir=""
  case "$kind" in
    pidfile)
      stop_pid "$(cat "$pidfile" 2>/dev/null || true)" "$comm"
      rm -f "$pidfile"
      case "$tag" in
        nats-4222) dir="$DATA/nats" ;; nats-*) dir="$DATA/$tag" ;;
        redis-6379) dir="$DATA/redis" ;; redis-*) dir="$DATA/$tag" ;;
      esac
      ;;
    pgdata)
      if [ -f "$pgdata/postmaster.pid" ]; then
        as_pg "$bindir/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null 9>&- \
          || die "pg_ctl stop failed for $pgdata"
      fi
      dir="$pgdata"
      ;;
    pgcluster)
      read -r ver name <<<"$cluster"
      pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" stop >/dev/null 2>&1 9>&- || true
      ;;
    *) echo "infra/local: ignoring unknown record $rec" >&2; continue ;;
  esac
  rm -f "$rec"
  if [ "$PURGE" = 1 ] && [ -n "$dir" ]; then rm -rf "$dir"; fi
  name="${tag%-*}"; [ "$name" = pg ] && name=postgres
  status "$name" stopped "$addr"
  stopped=$((stopped + 1))
done
[ "$stopped" -gt 0 ] || echo "infra/local: nothing was started by up.sh"
