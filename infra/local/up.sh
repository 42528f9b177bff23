#!/usr/bin/env bash
# Finds or brings up the services orghub needs: NATS (JetStream), Postgres, Redis and a Mosquitto
# peer. Each one is first probed on its configured URL with a real protocol check; only when it is
# missing is the Debian package installed and the service started on loopback with its data under
# the git-ignored .data/ folder. Safe to run any number of times: a second run changes nothing.
#
# Environment (defaults match hub/config/config.ts):
#   NATS_URL        nats://127.0.0.1:4222   (first entry of a comma-separated list)
#   DATABASE_URL    postgres://postgres@127.0.0.1:5432/orghub   (database is created if missing)
#   REDIS_URL       redis://127.0.0.1:6379
#   MQTT_PEER_URL   mqtt://127.0.0.1:1883   (Mosquitto, only for interop tests and benchmarks)
#   ORGHUB_SKIP_MQTT_PEER=1       do not look for or start Mosquitto
#   ORGHUB_PG_TRUST_LOOPBACK=1    allow patching pg_hba.conf of a Debian cluster this script did not
#                                 install, so that password-less loopback connections work
# Services this script starts are recorded in .data/run/ so that down.sh stops only those.
# A lock (.data/run/lock) serialises concurrent runs; started daemons must not inherit it (9>&-).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=lib.sh
source "$ROOT/infra/local/lib.sh"

NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"
DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/orghub}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
MQTT_PEER_URL="${MQTT_PEER_URL:-mqtt://127.0.0.1:1883}"

mkdir -p "$RUN" "$LOG"
exec 9>"$RUN/lock"
flock -w 300 9 || die "another infra/local script holds $RUN/lock"

# ---------------------------------------------------------------------------------------------
# apt, once and only when something must be installed
APT_UPDATED=0
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi

apt_install() {
  if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
    die "must install Debian packages ($*) but this is not root and sudo is missing"
  fi
  command -v apt-get >/dev/null 2>&1 || die "must install $* but apt-get is missing (not Debian?)"
  if [ "$APT_UPDATED" -eq 0 ]; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$LOG/apt.log" 2>&1 \
      || die "apt-get update failed (see .data/log/apt.log)"
    APT_UPDATED=1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" \
    >>"$LOG/apt.log" 2>&1 9>&- || die "apt-get install $* failed (see .data/log/apt.log)"
}

# Client tools first: the Postgres and Mosquitto probes use them.
missing=()
for t in psql pg_isready createdb; do
  command -v "$t" >/dev/null 2>&1 || { missing+=(postgresql-client); break; }
done
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
if [ "${ORGHUB_SKIP_MQTT_PEER:-0}" != 1 ]; then
  { command -v mosquitto_pub >/dev/null 2>&1 && command -v mosquitto_sub >/dev/null 2>&1; } \
    || missing+=(mosquitto-clients)
fi
# Deployment validators for infra/docker and infra/k8s tests: `docker-compose config` and
# `kubectl kustomize` (Debian's kubectl 1.20 embeds kustomize v2.0.3; a newer kubectl also does).
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
  status tools installed "${missing[*]}"
fi

# ---------------------------------------------------------------------------------------------
# NATS
nats_up() {
  local url="${NATS_URL%%,*}" info
  parse_url "$url" 4222
  local h="$U_HOST" p="$U_PORT" tag="nats-$U_PORT" ours=""
  [ -f "$RUN/$tag.started" ] && ours=" (started by up.sh)"
  if info="$(nats_info "$h" "$p")"; then
    if [[ "$info" == *'"jetstream":true'* ]]; then
      status nats found "nats://$h:$p jetstream$ours"
    else
      status nats found "nats://$h:$p WITHOUT jetstream (start it with -js)$ours"
    fi
    return
  fi
  is_local "$h" || die "NATS is not answering on $h:$p and that host is not local; fix NATS_URL"
  port_busy "$h" "$p" && die "port $p on $h is taken by something that is not NATS; set NATS_URL"
  local how=started
  if ! command -v nats-server >/dev/null 2>&1; then apt_install nats-server; how=installed; fi
  # A freshly installed package may have started its own service (systemd hosts).
  if [ "$how" = installed ] && nats_info "$h" "$p" >/dev/null; then
    status nats installed "nats://$h:$p"; return
  fi
  local dir="$DATA/nats$(port_suffix "$p" 4222)"
  mkdir -p "$dir"
  rm -f "$RUN/$tag.pid"
  setsid nohup nats-server -a "$(bind_addr "$h")" -p "$p" -js -sd "$dir" -P "$RUN/$tag.pid" \
    </dev/null >>"$LOG/$tag.log" 2>&1 9>&- &
  local i
  for i in $(seq 1 100); do
    if info="$(nats_info "$h" "$p")" && [[ "$info" == *'"jetstream":true'* ]]; then
      [ -s "$RUN/$tag.pid" ] || echo $! >"$RUN/$tag.pid"
      record "$tag" "kind=pidfile" "comm=nats-server" "pidfile=$RUN/$tag.pid" "addr=nats://$h:$p"
      status nats "$how" "nats://$h:$p jetstream, data in ${dir#"$ROOT"/}"
      return
    fi
    sleep 0.1
  done
  die "nats-server did not come up on $h:$p (see .data/log/$tag.log)"
}

# ---------------------------------------------------------------------------------------------
# Postgres
# The newest server install (postgresql-client alone also fills /usr/lib/postgresql/<v>/bin).
pg_bindir() {
  local b
  b="$(ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null | sort -V | tail -n 1)"
  if [ -n "$b" ] && [ -x "${b%/postgres}/initdb" ]; then echo "${b%/postgres}"; fi
}

# Runs a command as the OS user that owns Postgres data when we are root (Postgres refuses root).
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_can_login() { PGCONNECT_TIMEOUT=3 psql "$PG_ADMIN_URL" -X -w -Atqc 'select 1' >/dev/null 2>"$LOG/pg-login.err"; }

# A Debian cluster listening on the port, as "version name status"; empty when none.
pg_debian_cluster() {
  command -v pg_lsclusters >/dev/null 2>&1 || return 0
  pg_lsclusters -h 2>/dev/null | awk -v p="$1" '$3 == p { print $1, $2, $4; exit }'
}

pg_start_debian_cluster() {
  local ver="$1" name="$2" p="$3"
  pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start >>"$LOG/pg-$p.log" 2>&1 9>&- \
    || die "pg_ctlcluster $ver $name start failed (see .data/log/pg-$p.log and /var/log/postgresql)"
  record "pg-$p" "kind=pgcluster" "cluster=$ver $name" "addr=$U_HOST:$p"
}

pg_initdb_and_start() {
  local h="$1" p="$2" user="$3" bin dir
  bin="$(pg_bindir)"
  [ -n "$bin" ] || die "no Postgres server binaries under /usr/lib/postgresql"
  dir="$DATA/pg$(port_suffix "$p" 5432)"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "OS user postgres is missing (install the postgresql package)"
    runuser -u postgres -- test -x "$DATA" \
      || die "OS user postgres cannot enter $DATA; make the repo path traversable (chmod o+x)"
  fi
  if [ ! -f "$dir/PG_VERSION" ]; then
    mkdir -p "$dir"
    chmod 700 "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    as_pg "$bin/initdb" -D "$dir" --auth=trust --username="$user" -E UTF8 --locale=C.UTF-8 \
      >>"$LOG/pg-$p.log" 2>&1 || die "initdb into $dir failed (see .data/log/pg-$p.log)"
    cat >>"$dir/postgresql.conf" <<EOF

# written by infra/local/up.sh: loopback only, socket inside the data folder
listen_addresses = '$(bind_addr "$h")'
port = $p
unix_socket_directories = '$dir'
max_connections = 200
EOF
  fi
  touch "$LOG/pg-$p.log"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$LOG/pg-$p.log"
  as_pg "$bin/pg_ctl" -D "$dir" -l "$LOG/pg-$p.log" -w -t 60 start >/dev/null 9>&- \
    || die "Postgres did not start from $dir (see .data/log/pg-$p.log)"
  record "pg-$p" "kind=pgdata" "pgdata=$dir" "bindir=$bin" "addr=$h:$p"
  PG_DIR_NOTE=", data in ${dir#"$ROOT"/}"
}

# Lets password-less loopback logins in, and creates the URL's role, on clusters we manage.
pg_fix_access() {
  local p="$1" user="$2" cl ver name hba
  cl="$(pg_debian_cluster "$p")"
  [ -n "$cl" ] || return 1
  read -r ver name _ <<<"$cl"
  if grep -q 'password authentication failed\|no pg_hba.conf entry\|no password supplied' "$LOG/pg-login.err"; then
    [ -f "$RUN/pg-installed" ] || [ "${ORGHUB_PG_TRUST_LOOPBACK:-0}" = 1 ] || return 1
    hba="/etc/postgresql/$ver/$name/pg_hba.conf"
    [ -w "$hba" ] || return 1
    if ! grep -q 'orghub infra/local' "$hba"; then
      local tmp
      tmp="$(mktemp)"
      { printf '# orghub infra/local/up.sh: trust loopback for development\n'
        printf 'host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n'
        cat "$hba"; } >"$tmp"
      cat "$tmp" >"$hba"
      rm -f "$tmp"
      pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" reload >/dev/null 2>&1 9>&- || true
      sleep 0.5
    fi
  fi
  if grep -q "role \"$user\" does not exist" "$LOG/pg-login.err" 2>/dev/null; then
    [ "$(id -u)" -eq 0 ] || return 1
    runuser -u postgres -- psql -X -w -q -p "$p" -v "r=$user" \
      <<<'CREATE ROLE :"r" SUPERUSER LOGIN;' >/dev/null 2>&1 || return 1
  fi
  pg_can_login
}

pg_up() {
  parse_url "$DATABASE_URL" 5432
  local h="$U_HOST" p="$U_PORT" user="${U_USER:-${PGUSER:-postgres}}" db query
  [[ "$DATABASE_URL" =~ ^([A-Za-z]+://[^/?#]*)(/([^?#]*))?(\?[^#]*)?$ ]] \
    || die "cannot parse DATABASE_URL"
  db="${BASH_REMATCH[3]:-$user}"
  query="${BASH_REMATCH[4]}"
  PG_ADMIN_URL="${BASH_REMATCH[1]}/postgres$query"
  PG_DIR_NOTE=""
  local how=found ours="" rc=0
  [ -f "$RUN/pg-$p.started" ] && ours=" (started by up.sh)"

  pg_isready -h "$h" -p "$p" -t 3 -q || rc=$?
  if [ "$rc" = 1 ]; then # accepting soon: a server that is still starting up
    pg_isready -h "$h" -p "$p" -t 30 -q || die "Postgres on $h:$p keeps rejecting connections"
    rc=0
  fi
  if [ "$rc" != 0 ]; then
    is_local "$h" || die "Postgres is not answering on $h:$p and that host is not local; fix DATABASE_URL"
    port_busy "$h" "$p" && die "port $p on $h is taken by something that is not Postgres; set DATABASE_URL"
    if [ -z "$(pg_bindir)" ]; then
      apt_install postgresql
      touch "$RUN/pg-installed" # its Debian cluster is ours to open up for loopback logins
      how=installed
    fi
    if ! pg_isready -h "$h" -p "$p" -t 3 -q; then
      local cl ver name st
      cl="$(pg_debian_cluster "$p")"
      if [ -n "$cl" ]; then
        read -r ver name st <<<"$cl"
        pg_start_debian_cluster "$ver" "$name" "$p"
        PG_DIR_NOTE=", Debian cluster $ver/$name"
      else
        pg_initdb_and_start "$h" "$p" "$user"
      fi
      [ "$how" = found ] && how=started
      pg_isready -h "$h" -p "$p" -t 30 -q || die "Postgres started but does not answer on $h:$p"
    fi
  fi

  if ! pg_can_login; then
    pg_fix_access "$p" "$user" || die "Postgres on $h:$p refuses $user: $(head -n 1 "$LOG/pg-login.err")
  Put a password in DATABASE_URL, or allow trust for 127.0.0.1 in pg_hba.conf
  (ORGHUB_PG_TRUST_LOOPBACK=1 lets this script do it for a local Debian cluster)."
  fi

  local dbnote="database $db ok"
  if [ "$(PGCONNECT_TIMEOUT=3 psql "$PG_ADMIN_URL" -X -w -Atq -v "d=$db" \
        <<<"SELECT 1 FROM pg_database WHERE datname = :'d';")" != 1 ]; then
    PGCONNECT_TIMEOUT=3 psql "$PG_ADMIN_URL" -X -w -q -v ON_ERROR_STOP=1 -v "d=$db" \
      <<<'CREATE DATABASE :"d";' >/dev/null 2>"$LOG/pg-createdb.err" \
      || die "could not create database $db: $(head -n 1 "$LOG/pg-createdb.err")"
    dbnote="database $db created"
  fi
  status postgres "$how" "$h:$p, $dbnote$PG_DIR_NOTE$ours"
}

# ---------------------------------------------------------------------------------------------
# Redis
redis_up() {
  parse_url "$REDIS_URL" 6379
  local h="$U_HOST" p="$U_PORT" tag="redis-$U_PORT" reply ours=""
  [ -f "$RUN/$tag.started" ] && ours=" (started by up.sh)"
  if reply="$(redis_ping "$h" "$p")"; then
    case "$reply" in
      +PONG*) status redis found "redis://$h:$p$ours"; return ;;
      -NOAUTH*) status redis found "redis://$h:$p (requires auth)$ours"; return ;;
    esac
  fi
  is_local "$h" || die "Redis is not answering on $h:$p and that host is not local; fix REDIS_URL"
  port_busy "$h" "$p" && die "port $p on $h is taken by something that is not Redis; set REDIS_URL"
  local how=started
  if ! command -v redis-server >/dev/null 2>&1; then apt_install redis-server; how=installed; fi
  if [ "$how" = installed ] && redis_ping "$h" "$p" >/dev/null; then
    status redis installed "redis://$h:$p"; return
  fi
  local dir="$DATA/redis$(port_suffix "$p" 6379)"
  mkdir -p "$dir"
  rm -f "$RUN/$tag.pid"
  redis-server --daemonize yes --bind "$(bind_addr "$h")" --port "$p" --save '' --appendonly no \
    --dir "$dir" --pidfile "$RUN/$tag.pid" --logfile "$LOG/$tag.log" >/dev/null 9>&- \
    || die "redis-server failed to start (see .data/log/$tag.log)"
  local i
  for i in $(seq 1 100); do
    if reply="$(redis_ping "$h" "$p")" && [[ "$reply" == +PONG* ]]; then
      record "$tag" "kind=pidfile" "comm=redis-server" "pidfile=$RUN/$tag.pid" "addr=redis://$h:$p"
      status redis "$how" "redis://$h:$p, no persistence"
      return
    fi
    sleep 0.1
  done
  die "redis-server did not come up on $h:$p (see .data/log/$tag.log)"
}

# ---------------------------------------------------------------------------------------------
# Mosquitto (an MQTT peer for interop tests; not part of orghub)
mqtt_probe() {
  if command -v mosquitto_pub >/dev/null 2>&1; then
    timeout 5 mosquitto_pub -h "$1" -p "$2" -q 1 -i "orghub-probe-$$" -t "orghub/probe" -n >/dev/null 2>&1
  else
    tcp_open "$1" "$2"
  fi
}

mosquitto_up() {
  parse_url "$MQTT_PEER_URL" 1883
  local h="$U_HOST" p="$U_PORT" tag="mosquitto-$U_PORT" ours=""
  [ -f "$RUN/$tag.started" ] && ours=" (started by up.sh)"
  if mqtt_probe "$h" "$p"; then status mosquitto found "mqtt://$h:$p$ours"; return; fi
  is_local "$h" || die "no MQTT peer answers on $h:$p and that host is not local; fix MQTT_PEER_URL"
  port_busy "$h" "$p" && die "port $p on $h is taken by something that does not speak MQTT; set MQTT_PEER_URL (or ORGHUB_SKIP_MQTT_PEER=1)"
  local how=started
  if ! command -v mosquitto >/dev/null 2>&1; then apt_install mosquitto; how=installed; fi
  if [ "$how" = installed ] && mqtt_probe "$h" "$p"; then
    status mosquitto installed "mqtt://$h:$p"; return
  fi
  local dir="$DATA/mosquitto"
  mkdir -p "$dir"
  cat >"$dir/$tag.conf" <<EOF
# written by infra/local/up.sh: a loopback MQTT peer for interop tests
listener $p $(bind_addr "$h")
allow_anonymous true
persistence false
log_dest stdout
EOF
  # Mosquitto drops root for its own user, so it logs to stdout and the pid comes from the shell.
  setsid nohup mosquitto -c "$dir/$tag.conf" </dev/null >>"$LOG/$tag.log" 2>&1 9>&- &
  echo $! >"$RUN/$tag.pid"
  local i
  for i in $(seq 1 50); do
    if mqtt_probe "$h" "$p"; then
      record "$tag" "kind=pidfile" "comm=mosquitto" "pidfile=$RUN/$tag.pid" "addr=mqtt://$h:$p"
      status mosquitto "$how" "mqtt://$h:$p"
      return
    fi
    sleep 0.1
  done
  die "mosquitto did not come up on $h:$p (see .data/log/$tag.log)"
}

nats_up
pg_up
redis_up
[ "${ORGHUB_SKIP_MQTT_PEER:-0}" = 1 ] || mosquitto_up

# pgbench lives in the server package on Debian 12 (postgresql-15); benchmarks need it.
if ! pgbench --version >/dev/null 2>&1; then
  apt_install postgresql
  pgbench --version >/dev/null 2>&1 || die "pgbench is still missing after installing postgresql"
  status tools installed "pgbench (postgresql)"
fi
