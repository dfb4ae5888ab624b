#!/usr/bin/env bash
# Install what a fresh Debian machine lacks: npm packages (npm ci) and the named Debian servers.
# Usage: ensure-deps.sh [nats-server] [mosquitto] [postgresql] [sqlite3] [python3] [chromium] [openssl]
# (sqlite3 and python3 with its sqlite3 module are the "other SQLite" application writers of the
# exact-replication tests: tests/support/sqlite-cli.ts and tests/support/pyapp.ts; chromium is the
# browser of the console's end-to-end test, tests/e2e/console.e2e.test.ts.)
set -euo pipefail
cd "$(dirname "$0")/../.."

# A node_modules that is a symlink (a git worktree sharing another checkout's packages) belongs to
# that checkout: npm ci here would delete the packages every checkout sharing it runs on.
if [ -L node_modules ]; then
  [ -d node_modules/ ] || { echo "[sluice] node_modules links to $(readlink node_modules), which is missing; install there" >&2; exit 1; }
elif [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "[sluice] installing npm packages (npm ci)"
  npm ci --no-audit --no-fund
fi

missing=()
for want in "$@"; do
  case "$want" in
    nats-server) command -v nats-server >/dev/null || missing+=(nats-server) ;;
    mosquitto) { command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; } || missing+=(mosquitto mosquitto-clients) ;;
    postgresql) ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql) ;;
    sqlite3) command -v sqlite3 >/dev/null || missing+=(sqlite3) ;;
    python3) python3 -c 'import sqlite3' >/dev/null 2>&1 || missing+=(python3) ;;
    chromium) { command -v chromium >/dev/null || [ -x /usr/bin/chromium ]; } || missing+=(chromium) ;;
    openssl) command -v openssl >/dev/null || missing+=(openssl) ;;
  esac
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[sluice] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
