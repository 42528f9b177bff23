# Helpers shared by up.sh and down.sh. Sourced, never run; expects ROOT to be set.
DATA="$ROOT/.data"
RUN="$DATA/run"
LOG="$DATA/log"

die() {
  echo "infra/local: $*" >&2
  exit 1
}

# One line per service: name, what happened (found/started/installed/stopped), details.
status() { printf '%-10s %-10s %s\n' "$1" "$2" "$3"; }

# parse_url URL DEFAULT_PORT: sets U_HOST, U_PORT and U_USER. The scheme is optional.
parse_url() {
  local url="$1" rest hostport
  rest="${url#*://}"
  hostport="${rest%%[/?#]*}"
  U_USER=""
  if [[ "$hostport" == *@* ]]; then
    U_USER="${hostport%@*}"
    U_USER="${U_USER%%:*}"
    hostport="${hostport##*@}"
  fi
  if [[ "$hostport" =~ ^\[([^]]+)\](:([0-9]+))?$ ]]; then
    U_HOST="${BASH_REMATCH[1]}"
    U_PORT="${BASH_REMATCH[3]:-$2}"
  elif [[ "$hostport" =~ ^([^:]*)(:([0-9]+))?$ ]]; then
    U_HOST="${BASH_REMATCH[1]:-127.0.0.1}"
    U_PORT="${BASH_REMATCH[3]:-$2}"
  else
    die "cannot parse host and port from $url"
  fi
}

# Only loopback services may be started here; anything else is the user's to run.
is_local() { [[ "$1" == 127.* || "$1" == localhost || "$1" == ::1 ]]; }

bind_addr() { if [ "$1" = localhost ]; then echo 127.0.0.1; else echo "$1"; fi; }

# Data folders keep the plain name on the default port (.data/nats) and get the port otherwise.
port_suffix() { if [ "$1" != "$2" ]; then echo "-$1"; fi; }

tcp_open() { timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null; }

port_busy() { tcp_open "$1" "$2"; }

# Prints the INFO line a NATS server sends first on every connection.
nats_info() {
  local line
  line="$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" || exit 1
    IFS= read -r -t 2 line <&3 || exit 1
    printf "%s\n" "$line"' "$1" "$2" 2>/dev/null)" || return 1
  [[ "$line" == INFO* ]] || return 1
  printf '%s\n' "$line"
}

# Prints the first reply line of a Redis PING (+PONG, or -NOAUTH when a password is needed).
redis_ping() {
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" || exit 1
    printf "PING\r\n" >&3
    IFS= read -r -t 2 line <&3 || exit 1
    printf "%s\n" "${line%$'"'"'\r'"'"'}"' "$1" "$2" 2>/dev/null
}

# record TAG key=value...: remembers a service up.sh started, for down.sh.
record() {
  local tag="$1"
  shift
  printf '%s\n' "$@" >"$RUN/$tag.started"
}
