#!/usr/bin/env bash
# Creates the secret files docker-compose.yml reads, once, under the git-ignored .data/compose/:
#   postgres_password  the Postgres superuser password (a Docker secret for the postgres service)
#   orghub.env         DATABASE_URL with that password, for the hub, projector and migrate job
#                      (add ORGHUB_JWT_HS256_SECRET=... here for development tokens, if you want them)
# Existing files are left alone, so a second run changes nothing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DIR="${ORGHUB_COMPOSE_SECRETS_DIR:-$ROOT/.data/compose}"
mkdir -p "$DIR"
chmod 700 "$DIR"
if [ ! -s "$DIR/postgres_password" ]; then
  head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$DIR/postgres_password"
fi
if [ ! -s "$DIR/orghub.env" ]; then
  printf 'DATABASE_URL=postgres://postgres:%s@postgres:5432/orghub\n' "$(cat "$DIR/postgres_password")" >"$DIR/orghub.env"
fi
# The containers run as uid 1000 (hub) and the postgres user: they read these through bind mounts.
chmod 644 "$DIR/postgres_password" "$DIR/orghub.env"
echo "compose secrets in $DIR"
