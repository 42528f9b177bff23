#!/usr/bin/env bash
# `npm run setup`: everything a fresh clone needs before `npm run hub` or `npm test`.
#   1. npm dependencies, when node_modules is missing or older than package-lock.json
#   2. the services (infra/local/up.sh)
#   3. the database schema (npm run migrate), once hub/eventstore/migrate.ts exists
# Idempotent; each step says in one line what it did.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

# npm records what it installed in node_modules/.package-lock.json; if the lock file changed after
# that (a pull, a new dependency), the tree is stale.
if [ ! -f node_modules/.package-lock.json ]; then
  echo "deps       installing (npm ci)"
  npm ci --no-audit --no-fund
elif [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "deps       updating (npm install)"
  npm install --no-audit --no-fund
  touch node_modules/.package-lock.json # npm leaves it alone when nothing changed
else
  echo "deps       up to date"
fi

bash infra/local/up.sh

if [ -f hub/eventstore/migrate.ts ]; then
  npm run --silent migrate
  echo "migrate    done"
else
  echo "migrate    skipped: hub/eventstore/migrate.ts does not exist yet"
fi
