#!/usr/bin/env bash
# CPU per operation by thread, summed over the three nodes of a fresh loopback cluster:
# the user+system time of every thread (fields 14 and 15 of /proc/PID/task/TID/stat)
# before and after one `flotilla bench` case, grouped by thread name, divided by the
# operations the case completed. Unlike `profile-writes.sh` it samples nothing, so it
# costs the nodes nothing and covers all three of them, not only node 1.
#
#   bench/thread-cpu.sh BINARY        (RAFT_GROUPS=64 VALUE_SIZE=16 CLIENTS=256 API=batch
#                                      WORKLOAD=write DURATION=8s PORT=7790)
#
# A 2 s case first creates the groups and warms the nodes; the measured case follows.
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
    --value-size "$VALUE_SIZE" --api "$API" --workload "$WORKLOAD" --output json
}
# name ticks, one line per thread of every node
threads() {
  local p t
  for p in "${NODE_PIDS[@]}"; do
    for t in /proc/"$p"/task/*; do
      printf '%s\t%s\n' "$(cat "$t/comm")" "$(cut -d')' -f2 "$t/stat" | awk '{print $12+$13}')"
    done
  done
}
bench 2s >/dev/null
threads >"$WORK/before"
bench "$DURATION" >"$WORK/bench.json"
threads >"$WORK/after"
python3 - "$WORK/bench.json" "$WORK/before" "$WORK/after" <<'PY'
import collections, json, os, sys
d = json.load(open(sys.argv[1])); ops = max(d["ops"], 1); tck = os.sysconf("SC_CLK_TCK")
def load(path):
    by = collections.Counter()
    for line in open(path):
        name, ticks = line.rstrip("\n").rsplit("\t", 1)
        by[name] += int(ticks)
    return by
before, after = load(sys.argv[2]), load(sys.argv[3])
print(f"{d['workload']}s, {d['groups']} groups, {d['value_size']} B, {d['clients']} clients, {d['api']}: "
      f"{d['ops_per_s']:.0f} ops/s; server CPU per op by thread, all three nodes:")
total = 0.0
for name in sorted(after, key=lambda n: after[n] - before.get(n, 0), reverse=True):
    us = (after[name] - before.get(name, 0)) / tck * 1e6 / ops
    total += us
    if us >= 0.05:
        print(f"  {name:<18} {us:6.1f} us/op")
print(f"  {'total':<18} {total:6.1f} us/op")
PY
