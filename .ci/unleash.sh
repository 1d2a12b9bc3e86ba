#!/usr/bin/env bash
# A real Unleash (unleash-server, pinned) for the flag-provider tests, on loopback only.
#
#   .ci/unleash.sh install   npm-installs unleash-server into .ci/unleash/ (skipped when present)
#   .ci/unleash.sh start     install, create database unleash_test, start, wait for /health
#   .ci/unleash.sh stop      stop the server started by `start`
#   .ci/unleash.sh env       print the export lines for TEST_UNLEASH_URL / TEST_UNLEASH_TOKEN
#
# Postgres is the local one (127.0.0.1:5432, user postgres, trust auth), like the rest of CI.
# The admin token comes from INIT_ADMIN_API_TOKENS; Unleash 6 wants "<project>:<env>.<secret>",
# and an admin token is "*:*.<secret>".
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="6.10.1"
DIR="$PWD/.ci/unleash"
PORT="${UNLEASH_TEST_PORT:-4242}"
TOKEN="${UNLEASH_TEST_TOKEN:-*:*.rollout-bot-test-admin-token}"
DB_NAME="${UNLEASH_TEST_DB:-unleash_test}"
PG="${UNLEASH_TEST_PG:-postgres://postgres@127.0.0.1:5432}"
PIDFILE="$DIR/unleash.pid"
LOG="$DIR/unleash.log"
URL="http://127.0.0.1:$PORT"

installed() {
  [ -f "$DIR/node_modules/unleash-server/package.json" ] &&
    grep -q "\"version\": \"$VERSION\"" "$DIR/node_modules/unleash-server/package.json"
}

install() {
  if installed; then return 0; fi
  command -v node >/dev/null && command -v npm >/dev/null || { echo "unleash.sh: node and npm are needed" >&2; exit 2; }
  mkdir -p "$DIR"
  [ -f "$DIR/package.json" ] || echo '{"name": "rollout-bot-unleash-test", "private": true}' > "$DIR/package.json"
  npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error "unleash-server@$VERSION"
}

healthy() {
  curl -fsS --max-time 2 "$URL/health" >/dev/null 2>&1
}

running() {
  [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

start() {
  install
  if running && healthy; then return 0; fi
  if healthy; then
    echo "unleash.sh: something else already answers on $URL; set UNLEASH_TEST_PORT" >&2
    exit 1
  fi
  if ! psql "$PG/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep -q 1; then
    psql "$PG/postgres" -qc "CREATE DATABASE \"$DB_NAME\""
  fi
  # Unleash reads its whole configuration from these variables (createConfig).
  # node resolves unleash-server from its working directory, so it starts in $DIR.
  cd "$DIR"
  DATABASE_URL="$PG/$DB_NAME" DATABASE_SSL=false \
    HTTP_HOST=127.0.0.1 HTTP_PORT="$PORT" \
    INIT_ADMIN_API_TOKENS="$TOKEN" LOG_LEVEL=warn \
    UNLEASH_URL="$URL" CHECK_VERSION=false SEND_TELEMETRY=false \
    nohup node -e 'require("unleash-server").start()' >"$LOG" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 120); do
    if healthy; then echo "unleash.sh: Unleash $VERSION healthy on $URL"; return 0; fi
    if ! running; then break; fi
    sleep 1
  done
  echo "unleash.sh: Unleash did not become healthy on $URL; last lines of $LOG:" >&2
  tail -n 30 "$LOG" >&2 || true
  stop
  exit 1
}

stop() {
  if [ -f "$PIDFILE" ]; then
    pid="$(cat "$PIDFILE")"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid" || true
    fi
    rm -f "$PIDFILE"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  env) printf 'export TEST_UNLEASH_URL=%q\nexport TEST_UNLEASH_TOKEN=%q\n' "$URL" "$TOKEN" ;;
  *) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac
