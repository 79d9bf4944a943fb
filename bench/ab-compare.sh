#!/usr/bin/env bash
# Two flotilla binaries side by side on the same machine in one run: for each of RUNS
# rounds, each binary gets a fresh 3-node loopback cluster and the same `flotilla bench`
# cases (writes, 16 B values, 256 clients, 1 and 64 groups; fsync on), alternating which
# binary goes first (WORKLOAD=read: linearizable reads of preloaded keys instead;
# VALUE_SIZE=1024 for 1 KiB values).
# Prints every run, then the median ops/s, p99, p999 and server CPU per
# operation (user+system time of the 3 node processes over the timed run, divided by the
# operations done: the figure that other load on a shared machine disturbs least) per
# binary and case, and the ratio NEW/OLD. A binary whose bench predates --cpu-pids is
# measured over its whole bench process instead ("cpu:whole" on its rows): compare the
# CPU of two such sides only when both rows say the same.
# API=batch drives the nodes through Batch streams. OLD_ARGS and NEW_ARGS add `flotilla
# server` flags to each side, so one binary can be compared with itself under two
# settings (e.g. OLD_ARGS="--storage-threads 2"). OLD_BENCH_ARGS and NEW_BENCH_ARGS add
# `flotilla bench` flags to each side's load (e.g. NEW_BENCH_ARGS="--codec binary").
#
#   bench/ab-compare.sh OLD_BINARY NEW_BINARY        (RUNS=3 DURATION=10s by default)
set -euo pipefail
OLD=$1; NEW=$2
RUNS=${RUNS:-3}; DURATION=${DURATION:-10s}; CLIENTS=${CLIENTS:-256}; WORKLOAD=${WORKLOAD:-write}; VALUE_SIZE=${VALUE_SIZE:-16}
API=${API:-unary}
WORK=$(mktemp -d)
trap 'pkill -f "$WORK" 2>/dev/null || true; rm -rf "$WORK"' EXIT
. "$(dirname "$0")/lib.sh"
one() { # bin tag run
  local bin=$1 tag=$2 run=$3 dir="$WORK/$2-$3" base=7790 extra bench_extra
  if [ "$tag" = old ]; then extra=${OLD_ARGS:-}; bench_extra=${OLD_BENCH_ARGS:-}; else extra=${NEW_ARGS:-}; bench_extra=${NEW_BENCH_ARGS:-}; fi
  read -r -a SERVER_ARGS <<<"$extra"
  local bench_args
  read -r -a bench_args <<<"$bench_extra"
  start_flotilla3 "$bin" "$dir" $base
  local pids=("${NODE_PIDS[@]}")
  # An older bench without --cpu-pids is bracketed whole, creating and removing its
  # groups included (each result row ends in cpu:timed or cpu:whole).
  bench_cpu_args "$bin" "${pids[@]}"
  local window=whole
  if [ ${#BENCH_CPU_ARGS[@]} -gt 0 ]; then window=timed; bench_args+=("${BENCH_CPU_ARGS[@]}"); fi
  for g in 1 64; do
    local before after
    before=$(cpu_ticks "${pids[@]}")
    "$bin" bench --endpoint 127.0.0.1:$base --clients "$CLIENTS" --groups $g --duration "$DURATION" --workload "$WORKLOAD" --value-size "$VALUE_SIZE" --api "$API" ${bench_args[@]+"${bench_args[@]}"} --output json >"$dir/bench.json"
    after=$(cpu_ticks "${pids[@]}")
    python3 -c "import json,sys; d=json.load(open('$dir/bench.json')); c=d.get('cpu_ticks'); t=(c['servers'] if c else $after-$before)/$(getconf CLK_TCK); print('$tag', $run, $g, round(d['ops_per_s']), round(d['p99_ms'],1), d['errors'], round(t*1e6/max(d['ops'],1),1), round(d['p999_ms'],1), 'cpu:$window')" | tee -a "$WORK/results"
  done
  pkill -f "$dir" || true; sleep 1
  # Each cluster's data goes once its cases are done: ten 1 KiB runs kept to the end
  # filled the disk.
  rm -rf "$dir"
}
echo "# OLD=$OLD ${OLD_ARGS:-} ${OLD_BENCH_ARGS:+(bench: $OLD_BENCH_ARGS)} NEW=$NEW ${NEW_ARGS:-} ${NEW_BENCH_ARGS:+(bench: $NEW_BENCH_ARGS)} WORKLOAD=$WORKLOAD VALUE_SIZE=$VALUE_SIZE API=$API"
echo "# tag run groups ops/s p99_ms errors server_cpu_us_per_op p999_ms cpu_window   ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
for r in $(seq "$RUNS"); do
  if [ $((r % 2)) = 1 ]; then one "$OLD" old $r; one "$NEW" new $r; else one "$NEW" new $r; one "$OLD" old $r; fi
done
python3 - "$WORK/results" <<'PY'
import sys, statistics as st
rows=[l.split() for l in open(sys.argv[1])]
for g in ("1","64"):
    med={t: [st.median(float(r[c]) for r in rows if r[0]==t and r[2]==g) for c in (3,4,6,7)]
         for t in ("old","new")}
    o,n=med['old'],med['new']
    print(f"groups={g}: old {o[0]:.0f} ops/s p99 {o[1]:.1f} p999 {o[3]:.1f} ms cpu {o[2]:.0f} us/op | new {n[0]:.0f} ops/s p99 {n[1]:.1f} p999 {n[3]:.1f} ms cpu {n[2]:.0f} us/op | new/old throughput {n[0]/o[0]:.2f}, p99 {n[1]/o[1]:.2f}, p999 {n[3]/o[3]:.2f}, cpu per op {n[2]/o[2]:.2f}")
PY
