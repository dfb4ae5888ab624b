#!/usr/bin/env bash
# Install what a fresh Debian machine lacks: npm packages (npm ci) and the named Debian servers.
# Usage: ensure-deps.sh [nats-server] [mosquitto] [postgresql]
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "[sluice] installing npm packages (npm ci)"
  npm ci --no-audit --no-fund
fi

missing=()
for want in "$@"; do
  case "$want" in
    nats-server) command -v nats-server >/dev/null || missing+=(nats-server) ;;
    mosquitto) { command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; } || missing+=(mosquitto mosquitto-clients) ;;
    postgresql) ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql) ;;
  esac
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[sluice] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
