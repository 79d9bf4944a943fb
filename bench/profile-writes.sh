#!/usr/bin/env bash
# Where a node's CPU goes under a write load (or WORKLOAD=read): a fresh 3-node
# loopback cluster, one unprofiled case that measures throughput and CPU per operation
# over the bench's timed run (`--cpu-pids`; the whole bench process for a bench without
# it), then `perf record` on node 1 during a second case, summarized per thread and per
# named cost by bench/perf_shares.py, as shares of node 1's samples and as node 1's CPU
# per operation.
#
#   bench/profile-writes.sh BINARY OUTDIR        (RAFT_GROUPS=64 VALUE_SIZE=16 CLIENTS=256 API=unary)
#
# WORKLOAD=read profiles linearizable reads of preloaded keys instead of writes.
#
# Needs `perf` (Debian: linux-perf) and permission to profile the node processes.
# OUTDIR gets perf.data, script.txt (perf script), shares.txt and the bench JSON.
set -euo pipefail
BIN=$1; OUT=$2
RAFT_GROUPS=${RAFT_GROUPS:-64}; VALUE_SIZE=${VALUE_SIZE:-16}; CLIENTS=${CLIENTS:-256}; PORT=${PORT:-7790}
API=${API:-unary}; WORKLOAD=${WORKLOAD:-write}
command -v perf >/dev/null || { echo "profile-writes: perf is not installed (apt-get install linux-perf)" >&2; exit 2; }
python3 "$(dirname "$0")/perf_shares.py" --self-test >/dev/null
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'pkill -f "$WORK" 2>/dev/null || true; rm -rf "$WORK"' EXIT
. "$(dirname "$0")/lib.sh"
start_flotilla3 "$BIN" "$WORK" "$PORT"
pids=("${NODE_PIDS[@]}")
# An older bench without --cpu-pids is bracketed whole, creating and removing its groups
# included (the summary line says which).
bench_cpu_args "$BIN" "${pids[@]}"
bench() { # duration json-out [command prefix...]
  local duration=$1 json=$2; shift 2
  "$@" "$BIN" bench --endpoint 127.0.0.1:$PORT --clients "$CLIENTS" --groups "$RAFT_GROUPS" --duration "$duration" \
    --value-size "$VALUE_SIZE" --api "$API" --workload "$WORKLOAD" --output json ${BENCH_CPU_ARGS[@]+"${BENCH_CPU_ARGS[@]}"} >"$json"
}
before=$(cpu_ticks "${pids[@]}")
bench 8s "$OUT/bench.json" /usr/bin/time -f "%U %S" -o "$WORK/gen-time"
after=$(cpu_ticks "${pids[@]}")
python3 - "$OUT/bench.json" "$WORK/gen-time" "$before" "$after" <<'PY' | tee "$OUT/summary.txt"
import json, os, sys
d = json.load(open(sys.argv[1])); u, s = map(float, open(sys.argv[2]).read().split()[-2:])
ops = max(d["ops"], 1); tck = os.sysconf("SC_CLK_TCK")
c = d.get("cpu_ticks")
if c:
    server, gen, window = c["servers"] / tck * 1e6 / ops, c["generator"] / tck * 1e6 / ops, "timed run"
else:
    server = (int(sys.argv[4]) - int(sys.argv[3])) / tck * 1e6 / ops
    gen, window = (u + s) * 1e6 / ops, "whole bench process"
print(f"{d['workload']}s, {d['groups']} groups, {d['value_size']} B, {d['clients']} clients: {d['ops_per_s']:.0f} ops/s, "
      f"p99 {d['p99_ms']:.1f} ms; CPU per op ({window}): servers {server:.1f} us, load generator {gen:.1f} us")
PY
bench 14s "$OUT/bench-profiled.json" &
load=$!
sleep 3
perf record -F 499 -e cpu-clock --call-graph dwarf,16384 -p "${pids[0]}" -o "$OUT/perf.data" -- sleep 8 \
  >/dev/null 2>"$OUT/perf.log"
wait $load
perf script -i "$OUT/perf.data" >"$OUT/script.txt" 2>/dev/null
# Node CPU per operation: samples over 499 Hz, divided by the operations of the 8 s
# sampled (the profiled run's average rate times 8).
ops=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["ops_per_s"] * 8)' "$OUT/bench-profiled.json")
python3 "$(dirname "$0")/perf_shares.py" --per-op 499 "$ops" <"$OUT/script.txt" | tee "$OUT/shares.txt"
