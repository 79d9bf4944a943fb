#!/usr/bin/env bash
# Disk use of a node's fjall database after a write load, per keyspace, for one or more
# flotilla binaries one after the other: each gets a fresh 3-node loopback cluster,
# DURATION of `flotilla bench` writes (64 groups, 1 KiB values, Batch streams by
# default). Node 1's keyspace directories are measured every SAMPLE seconds during the
# load (a raft log that stops growing is bounded; the plugins' state grows with the
# keys written), at its end and IDLE seconds later, with the number of blob files
# (key-value separation) in each.
#
#   bench/disk-use.sh BINARY...   (DURATION=90s SAMPLE=30 IDLE=30 GROUP_COUNT=64
#                                  CLIENTS=64 VALUE_SIZE=1024 API=batch)
set -euo pipefail
DURATION=${DURATION:-90s}; IDLE=${IDLE:-30}; SAMPLE=${SAMPLE:-30}; GROUP_COUNT=${GROUP_COUNT:-64}; CLIENTS=${CLIENTS:-64}; VALUE_SIZE=${VALUE_SIZE:-1024}
API=${API:-batch}
WORK=$(mktemp -d)
trap 'pkill -f "$WORK" 2>/dev/null || true; rm -rf "$WORK"' EXIT
. "$(dirname "$0")/lib.sh"

# usage DIR: one line of MiB per keyspace directory, blob files per keyspace, and the
# journals' size. fjall names keyspace directories by number, in the order a new
# database opened them: 2 is raft_log and 5 is kv (the two with blob files).
usage() {
  local db=$1/db k
  printf 'keyspace MiB:'
  for k in "$db"/keyspaces/*; do printf ' %s=%s' "$(basename "$k")" "$(du -sm "$k" | cut -f1)"; done
  printf '; blob files:'
  for k in "$db"/keyspaces/*; do
    printf ' %s=%s' "$(basename "$k")" "$(find "$k" -path '*blobs*' -type f | wc -l)"
  done
  printf '; journals %s MiB\n' "$(du -smc "$db"/*.jnl 2>/dev/null | tail -1 | cut -f1)"
}

echo "# DURATION=$DURATION IDLE=${IDLE}s GROUP_COUNT=$GROUP_COUNT CLIENTS=$CLIENTS VALUE_SIZE=$VALUE_SIZE API=$API ($(nproc) cores)"
n=0
for bin in "$@"; do
  n=$((n + 1)); dir="$WORK/b$n"
  start_flotilla3 "$bin" "$dir" 7790
  echo "== $bin"
  "$bin" bench --endpoint 127.0.0.1:7790 --groups "$GROUP_COUNT" --clients "$CLIENTS" --value-size "$VALUE_SIZE" \
    --api "$API" --duration "$DURATION" --output json >"$dir/bench.json" 2>/dev/null &
  load=$!; t=0
  while sleep "$SAMPLE" && kill -0 $load 2>/dev/null; do
    t=$((t + SAMPLE)); echo "${t} s into the load: $(usage "$dir/n1")"
  done
  wait $load
  python3 -c "import json; d=json.load(open('$dir/bench.json')); print(d['ops'], 'writes,', round(d['ops_per_s']), '/s, p99', round(d['p99_ms'], 1), 'ms')"
  echo "end of load: $(usage "$dir/n1")"
  sleep "$IDLE"
  echo "${IDLE} s later: $(usage "$dir/n1")"
  pkill -f "$dir" || true; sleep 1
done
