# Shared by the `make run` launchers (run-stack.sh, run-stack-secure.sh): messages, ports, and the
# processes of the stack. Source it after setting ROOT and DATA.

say() { printf '\033[1m[sluice]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[sluice] %s\033[0m\n' "$*" >&2; exit 1; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { for _ in $(seq 1 200); do port_busy "$1" && return 0; sleep 0.1; done; die "$2 did not open port $1 (see $DATA/logs)"; }
ports_free() {
  for p in "$@"; do
    port_busy "$p" && die "port $p is already in use; set SLUICE_NATS_PORT / SLUICE_MQTT_PORT / SLUICE_API_PORT to free ports"
  done
  return 0
}

# Each process runs in its own process group (job control): Ctrl-C reaches the launcher only, and
# the launcher stops the others in reverse order of start (the agent first, NATS last).
set -m
PIDS=()
STOPPING=0
cleanup() {
  trap - EXIT INT TERM
  say "stopping..."
  for ((i=${#PIDS[@]}-1; i>=0; i--)); do kill "${PIDS[$i]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
# Ctrl-C (or a TERM) is the normal way to stop: everything stops, and the exit status is 0.
stop_requested() { STOPPING=1; cleanup; say "stopped"; exit 0; }
trap cleanup EXIT
trap stop_requested INT TERM

# nats-server with config $1 (JetStream and the MQTT listener); returns once both ports are open.
start_nats() {
  nats-server -c "$1" >"$DATA/logs/nats.log" 2>&1 &
  PIDS+=($!)
  wait_port "$NATS_PORT" nats-server
  wait_port "$MQTT_PORT" "nats-server MQTT listener"
}

# The demo application, writing into $1; returns once its tables exist (it says so in its log),
# since the agent captures an existing database.
start_demo_app() {
  node --import "$ROOT/node_modules/tsx/dist/loader.mjs" "$ROOT/edge-agent/demo/demo-app.ts" "$1" >"$DATA/logs/demo-app.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 300); do grep -q 'writing to' "$DATA/logs/demo-app.log" 2>/dev/null && return 0; sleep 0.1; done
  die "the demo application did not start (see $DATA/logs/demo-app.log)"
}

# Until a process of the stack exits by itself (an error) or a signal stops the launcher.
wait_stack() {
  wait -n "${PIDS[@]}" || true
  [ "$STOPPING" = 1 ] && exit 0
  die "a process exited; see the logs in $DATA/logs"
}
