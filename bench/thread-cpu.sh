#!/usr/bin/env bash
# CPU per operation by thread, summed over the three nodes of a fresh loopback cluster:
# `flotilla bench --cpu-pids` reads the user+system time of every node thread right
# before and right after the timed run (creating and removing the bench's groups stays
# outside it), and this script prints it by thread name, divided by the operations of
# that run. Unlike `profile-writes.sh` it samples nothing, so it costs the nodes nothing
# and covers all three of them, not only node 1.
#
#   bench/thread-cpu.sh BINARY        (RAFT_GROUPS=64 VALUE_SIZE=16 CLIENTS=256 API=batch
#                                      WORKLOAD=write DURATION=8s PORT=7790)
#
# A 2 s case first warms the nodes; the measured case follows. A thread that ends during
# the run is missing from the split (the per-process total below it still has it).
set -euo pipefail
BIN=$1
RAFT_GROUPS=${RAFT_GROUPS:-64}; VALUE_SIZE=${VALUE_SIZE:-16}; CLIENTS=${CLIENTS:-256}
API=${API:-batch}; WORKLOAD=${WORKLOAD:-write}; DURATION=${DURATION:-8s}; PORT=${PORT:-7790}
WORK=$(mktemp -d)
trap 'pkill -f "$WORK" 2>/dev/null || true; rm -rf "$WORK"' EXIT
. "$(dirname "$0")/lib.sh"
start_flotilla3 "$BIN" "$WORK" "$PORT"
bench() { # duration
  "$BIN" bench --endpoint 127.0.0.1:$PORT --clients "$CLIENTS" --groups "$RAFT_GROUPS" --duration "$1" \
    --value-size "$VALUE_SIZE" --api "$API" --workload "$WORKLOAD" --output json \
    --cpu-pids "$(IFS=,; echo "${NODE_PIDS[*]}")"
}
bench 2s >/dev/null
bench "$DURATION" >"$WORK/bench.json"
python3 - "$WORK/bench.json" <<'PY'
import json, os, sys
d = json.load(open(sys.argv[1])); ops = max(d["ops"], 1); tck = os.sysconf("SC_CLK_TCK")
cpu = d["cpu_ticks"]
us = lambda ticks: ticks / tck * 1e6 / ops
print(f"{d['workload']}s, {d['groups']} groups, {d['value_size']} B, {d['clients']} clients, {d['api']}: "
      f"{d['ops_per_s']:.0f} ops/s; server CPU per op by thread, all three nodes, timed run only:")
for name, ticks in sorted(cpu["server_threads"].items(), key=lambda kv: -kv[1]):
    if us(ticks) >= 0.05:
        print(f"  {name:<18} {us(ticks):6.1f} us/op")
print(f"  {'threads, total':<18} {us(sum(cpu['server_threads'].values())):6.1f} us/op")
print(f"  {'processes':<18} {us(cpu['servers']):6.1f} us/op (load generator {us(cpu['generator']):.1f})")
PY
