#!/usr/bin/env bash
# `make run`: the whole Sluice stack on embedded defaults, in the foreground (Ctrl-C stops it all).
# A private nats-server (JetStream + MQTT listener) with its store under .data/, every cloud role
# in one process with the SQLite read store under .data/, and a demo device writing rows.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"

DATA="${SLUICE_DATA_DIR:-$ROOT/.data}"
NATS_PORT="${SLUICE_NATS_PORT:-14222}"
MQTT_PORT="${SLUICE_MQTT_PORT:-11883}"
API_PORT="${SLUICE_API_PORT:-8080}"
PROJECT_ID="${SLUICE_PROJECT_ID:-0190a000-0000-7000-8000-000000000001}"
DEV_TOKEN="${SLUICE_DEV_TOKEN:-sluice-dev-token-0000}"
DEMO_DEVICE="${SLUICE_DEMO_DEVICE:-demo-gw-01}"

# shellcheck source=infra/dev/stack-lib.sh
source "$ROOT/infra/dev/stack-lib.sh"

bash "$ROOT/infra/dev/ensure-deps.sh" nats-server
# The CLIs and the console run compiled; rebuild them so edited sources are what runs.
node "$ROOT/infra/build/build.mjs"

ports_free "$NATS_PORT" "$MQTT_PORT" "$API_PORT"

mkdir -p "$DATA/nats" "$DATA/logs" "$DATA/demo"
cat > "$DATA/nats/nats.conf" <<CONF
server_name: sluice_local
listen: 127.0.0.1:$NATS_PORT
max_payload: 8MB
jetstream { store_dir: "$DATA/nats/js" }
mqtt { listen: 127.0.0.1:$MQTT_PORT }
CONF


start_nats "$DATA/nats/nats.conf"
say "nats-server on 127.0.0.1:$NATS_PORT (MQTT on $MQTT_PORT), store in $DATA/nats"

export SLUICE_NATS_URL="nats://127.0.0.1:$NATS_PORT"
export SLUICE_MQTT_URL="mqtt://127.0.0.1:$MQTT_PORT"
export SLUICE_API_PORT="$API_PORT"
export SLUICE_PROJECT_ID="$PROJECT_ID"
export SLUICE_READ_STORE="${SLUICE_READ_STORE:-sqlite:$DATA/sluice.db}"
DEV_TOKENS=$(printf '[{"token":"%s","project_id":"%s","permissions":["PROJECT_CAN_READ_DEVICES","PROJECT_CAN_MANAGE_DEVICES"],"name":"dev"}]' "$DEV_TOKEN" "$PROJECT_ID")
export SLUICE_API_TOKENS="${SLUICE_API_TOKENS:-$DEV_TOKENS}"

"$ROOT/bin/sluice" all >"$DATA/logs/cloud.log" 2>&1 &
PIDS+=($!)
wait_port "$API_PORT" "sluice all (API)"
say "cloud roles running (bridge, worker, projector, api); log: $DATA/logs/cloud.log"

start_demo_app "$DATA/demo/app.db"
SLUICE_DEVICE_ID="$DEMO_DEVICE" SLUICE_ROOT_TOPIC="demo/$DEMO_DEVICE" \
  SLUICE_DEMO_SOURCE_DB="$DATA/demo/app.db" SLUICE_DEMO_STATE_DB="$DATA/demo/state.db" \
  "$ROOT/bin/sluice-agent" run --config "$ROOT/edge-agent/demo/device.yaml" >"$DATA/logs/agent.log" 2>&1 &
PIDS+=($!)
say "demo device $DEMO_DEVICE writing to $DATA/demo/app.db; agent log: $DATA/logs/agent.log"

BASE="http://127.0.0.1:$API_PORT/core/api/v1/projects/$PROJECT_ID/edge"
# The banner shows the token in force: the dev token only when SLUICE_API_TOKENS did not replace it.
if [ "$SLUICE_API_TOKENS" = "$DEV_TOKENS" ]; then
  TOKEN_LINE="Dev token  $DEV_TOKEN"
  SHOW_TOKEN="$DEV_TOKEN"
else
  TOKEN_LINE="Tokens     from SLUICE_API_TOKENS (the dev token is not accepted)"
  SHOW_TOKEN='<your token>'
fi
cat <<INFO

  API        http://127.0.0.1:$API_PORT   (OpenAPI: /openapi.json, console: /console)
  Project    $PROJECT_ID
  $TOKEN_LINE

  For the CLI in another shell (bin/sluice; \`projections status\` reads NATS and the store too):
    export SLUICE_API_URL=http://127.0.0.1:$API_PORT SLUICE_TOKEN='$SHOW_TOKEN' SLUICE_PROJECT_ID=$PROJECT_ID
    export SLUICE_NATS_URL=$SLUICE_NATS_URL SLUICE_READ_STORE=$SLUICE_READ_STORE

  Try (the first batch arrives within ~5 s):
    bin/sluice lineages ls
    curl -s -H 'Authorization: Bearer $SHOW_TOKEN' $BASE/schema-reviews?status=queued | jq
  Then follow the 5-minute tour in README.md (claim, approve, watch mirror rows fill).
  Ctrl-C stops everything; state stays in $DATA (rm -rf it to start over).

INFO
wait_stack
