# Shared by scripts/demo and tests/e2e_two_gateways.sh: run our two gateways in the
# netns-topology. Source it after setting: bin (dataplane binary), p (namespace prefix),
# work (scratch directory), here (repository root).

gw_pids=()

# gw_start a|b LCORE [BAD_INBOUND_KEY]
gw_start() {
  "$here/scripts/gw-config" "$1" "$2" "$p$1" ${3:+"$3"} >"$work/$1.toml"
  # Directly, not through a shell function: $! must be the dataplane itself, for kill and wait.
  ip netns exec "$p-gw$1" "$bin" run --config "$work/$1.toml" --control-socket "$work/$1.sock" \
    >"$work/$1.out" 2>"$work/$1.err" &
  gw_pids+=($!)
}

# Waits until both control sockets exist (the gateways are forwarding by then).
gw_wait_up() {
  local _
  for _ in $(seq 150); do
    [ -S "$work/a.sock" ] && [ -S "$work/b.sock" ] && return 0
    sleep 0.1
  done
  cat "$work"/*.err >&2
  return 1
}

# Stops both gateways; each prints its final counters into $work/NAME.out.
gw_stop() {
  local pid
  for pid in "${gw_pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${gw_pids[@]}"; do wait "$pid" 2>/dev/null; done
  gw_pids=()
}
