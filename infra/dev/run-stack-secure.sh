#!/usr/bin/env bash
# `make run-secure`: `make run` with TLS everywhere and device identity from certificates
# (docs/security.md, "make run-secure"). A private CA (`sluice devices certs`) issues the server
# certificate, the bridge's and the demo device's; nats-server runs the shipped TLS template
# (TLS client port for the cloud roles with their password, mutual-TLS MQTT with verify_and_map);
# the API serves HTTPS; the API token is random. Everything lives under $SLUICE_DATA_DIR
# (default .data/secure); a second start reuses the CA, certificates and secrets there.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"

DATA="${SLUICE_DATA_DIR:-$ROOT/.data/secure}"
NATS_PORT="${SLUICE_NATS_PORT:-14222}"
MQTT_PORT="${SLUICE_MQTT_PORT:-11883}"
API_PORT="${SLUICE_API_PORT:-8443}"
PROJECT_ID="${SLUICE_PROJECT_ID:-0190a000-0000-7000-8000-000000000001}"
DEMO_DEVICE="${SLUICE_DEMO_DEVICE:-demo-gw-01}"
ROOT_TOPIC="demo/$DEMO_DEVICE"

# shellcheck source=infra/dev/stack-lib.sh
source "$ROOT/infra/dev/stack-lib.sh"

bash "$ROOT/infra/dev/ensure-deps.sh" nats-server openssl
node "$ROOT/infra/build/build.mjs"

ports_free "$NATS_PORT" "$MQTT_PORT" "$API_PORT"

umask 077
mkdir -p "$DATA/broker" "$DATA/logs" "$DATA/demo" "$DATA/bridge"
CA="$DATA/ca"
STORE="$DATA/credentials.json"
SLUICE="$ROOT/bin/sluice"

if [ ! -f "$DATA/secrets.env" ]; then
  say "first start: making a CA, certificates and secrets in $DATA"
  "$SLUICE" devices certs issue --server localhost,127.0.0.1 --ca-dir "$CA" --store "$STORE" --cert-out "$DATA/broker" >/dev/null
  "$SLUICE" devices certs issue --service bridge --ca-dir "$CA" --store "$STORE" --cert-out "$DATA/bridge" >/dev/null
  "$SLUICE" devices certs issue "$ROOT_TOPIC" --ca-dir "$CA" --store "$STORE" --cert-out "$DATA/demo" >/dev/null
  CLOUD_PASSWORD=$("$SLUICE" devices credentials issue --service cloud --store "$STORE" --ca-dir "$CA" --json |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>process.stdout.write(JSON.parse(s).password))')
  {
    printf 'CLOUD_PASSWORD=%q\n' "$CLOUD_PASSWORD"
    printf 'API_TOKEN=%q\n' "sluice-$(openssl rand -hex 24)"
  } >"$DATA/secrets.env"
fi
# shellcheck disable=SC1091
source "$DATA/secrets.env"
# Broker files from the CA and the store (a fresh CRL each start); nats-server reads them below.
"$SLUICE" devices certs render --ca-dir "$CA" --store "$STORE" --out "$DATA/broker" >/dev/null

sed -e "s|{{SERVER_NAME}}|sluice_secure|" -e "s|{{NATS_LISTEN}}|127.0.0.1:$NATS_PORT|" \
  -e "s|{{MQTT_LISTEN}}|127.0.0.1:$MQTT_PORT|" -e "s|{{STORE_DIR}}|$DATA/nats|" \
  -e "s|{{CONF_DIR}}|$DATA/broker|" \
  "$ROOT/infra/nats/nats-server-tls.conf.template" >"$DATA/broker/nats-server.conf"

start_nats "$DATA/broker/nats-server.conf"
say "nats-server: TLS on 127.0.0.1:$NATS_PORT, mutual-TLS MQTT on $MQTT_PORT; config $DATA/broker"

export SLUICE_NATS_URL="tls://127.0.0.1:$NATS_PORT"
export SLUICE_NATS_TLS_CA="$CA/ca.crt"
export SLUICE_NATS_USER=sluice-cloud
export SLUICE_NATS_PASSWORD="$CLOUD_PASSWORD"
export SLUICE_MQTT_URL="mqtts://127.0.0.1:$MQTT_PORT"
export SLUICE_MQTT_TLS_CA="$CA/ca.crt"
export SLUICE_MQTT_TLS_CERT="$DATA/bridge/sluice-bridge.crt"
export SLUICE_MQTT_TLS_KEY="$DATA/bridge/sluice-bridge.key"
export SLUICE_API_PORT="$API_PORT"
export SLUICE_API_TLS_CERT="$DATA/broker/server.crt"
export SLUICE_API_TLS_KEY="$DATA/broker/server.key"
export SLUICE_PROJECT_ID="$PROJECT_ID"
export SLUICE_READ_STORE="${SLUICE_READ_STORE:-sqlite:$DATA/sluice.db}"
SLUICE_API_TOKENS=$(printf '[{"token":"%s","project_id":"%s","permissions":["PROJECT_CAN_READ_DEVICES","PROJECT_CAN_MANAGE_DEVICES"],"name":"secure-dev"}]' "$API_TOKEN" "$PROJECT_ID")
export SLUICE_API_TOKENS

"$SLUICE" all >"$DATA/logs/cloud.log" 2>&1 &
PIDS+=($!)
wait_port "$API_PORT" "sluice all (API)"
say "cloud roles running over TLS; log: $DATA/logs/cloud.log"

start_demo_app "$DATA/demo/app.db"
# The demo device's YAML plus its TLS files (connection.mqtt.tls.*_env): no username, no password.
sed -e 's|^    clean_session: false$|    clean_session: false\n    tls: { ca_env: SLUICE_TLS_CA, cert_env: SLUICE_TLS_CERT, key_env: SLUICE_TLS_KEY }|' \
  "$ROOT/edge-agent/demo/device.yaml" >"$DATA/demo/device.yaml"
SLUICE_DEVICE_ID="$DEMO_DEVICE" SLUICE_ROOT_TOPIC="$ROOT_TOPIC" \
  SLUICE_DEMO_SOURCE_DB="$DATA/demo/app.db" SLUICE_DEMO_STATE_DB="$DATA/demo/state.db" \
  SLUICE_TLS_CA="$DATA/demo/ca.crt" SLUICE_TLS_CERT="$DATA/demo/demo_$DEMO_DEVICE.crt" \
  SLUICE_TLS_KEY="$DATA/demo/demo_$DEMO_DEVICE.key" \
  "$ROOT/bin/sluice-agent" run --config "$DATA/demo/device.yaml" >"$DATA/logs/agent.log" 2>&1 &
PIDS+=($!)
say "demo device $ROOT_TOPIC with its certificate; agent log: $DATA/logs/agent.log"

BASE="https://127.0.0.1:$API_PORT/core/api/v1/projects/$PROJECT_ID/edge"
cat <<INFO

  API        https://127.0.0.1:$API_PORT   (certificate from the CA in $CA/ca.crt)
  Project    $PROJECT_ID
  Token      $API_TOKEN

  Try (the first batch arrives within ~5 s):
    curl -s --cacert $CA/ca.crt -H 'Authorization: Bearer $API_TOKEN' $BASE/lineages | jq
  The CLI: SLUICE_API_URL=https://127.0.0.1:$API_PORT SLUICE_TOKEN=$API_TOKEN NODE_EXTRA_CA_CERTS=$CA/ca.crt bin/sluice lineages ls
  Ctrl-C stops everything; state stays in $DATA (rm -rf it to start over).

INFO
wait_stack
