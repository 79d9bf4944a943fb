#!/usr/bin/env bash
# Idle groups on a 3-node loopback cluster: CPU and memory with and without hibernation.
#
#   IDLE_GROUPS=10000 MEASURE=30 bench/idle-groups.sh      (needs `cargo build --release`)
#
# For each mode (hibernation on, then off via FLOTILLA_HIBERNATE=off) it starts a fresh
# 3-process cluster, creates IDLE_GROUPS kv groups of 3 replicas, waits until they are idle
# (and, with hibernation, until every replica hibernates), then measures over MEASURE
# seconds the CPU time of the three processes (utime+stime from /proc, as % of one core)
# and their resident memory, and the time one proposal to a hibernating group takes
# (the CLI's own start-up included, so an upper bound).
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE_GROUPS=${IDLE_GROUPS:-10000}
MEASURE=${MEASURE:-30}
MODES=${MODES:-"on off"}
F=${FLOTILLA:-target/release/flotilla}
KV=target/wasm-plugins/wasm32-unknown-unknown/wasm-plugins/flotilla_plugin_kv.wasm
WORK=$(mktemp -d)
trap 'pkill -f "$WORK" 2>/dev/null || true; rm -rf "$WORK"' EXIT
HZ=$(getconf CLK_TCK)

cpu_ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
rss_kib() { local t=0; for p in "$@"; do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo $t; }
hibernating() { "$F" cluster status --endpoint "$1" --output json | python3 -c 'import json,sys; print(sum(n["hibernating"] for n in json.load(sys.stdin)["nodes"]))'; }

echo "# idle groups: $IDLE_GROUPS groups x 3 replicas on 3 nodes, $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in $MODES; do
  dir="$WORK/$mode"; mkdir -p "$dir"; base=7720
  ic="1=127.0.0.1:$base,2=127.0.0.1:$((base+1)),3=127.0.0.1:$((base+2))"
  pids=()
  for i in 1 2 3; do
    FLOTILLA_HIBERNATE=$mode FLOTILLA_LOG=warn "$F" server --id $i --listen 127.0.0.1:$((base+i-1)) \
      --data-dir "$dir/n$i" --initial-cluster "$ic" 2>"$dir/n$i.log" >/dev/null &
    pids+=($!)
  done
  ep=127.0.0.1:$base
  for _ in $(seq 200); do "$F" cluster status --endpoint $ep >/dev/null 2>&1 && break; sleep 0.1; done
  rss0=$(rss_kib "${pids[@]}")
  "$F" plugin deploy "$KV" --name kv --endpoint $ep >/dev/null
  "$F" group create --plugin kv --replicas 3 --count "$IDLE_GROUPS" --endpoint $ep
  want=$((IDLE_GROUPS * 3))
  if [ "$mode" = on ]; then
    for _ in $(seq 600); do h=$(hibernating $ep); [ "$h" -ge "$want" ] && break; sleep 1; done
    echo "hibernation on: $h of $want replicas hibernating"
  else
    sleep 10
  fi
  t0=$(cpu_ticks "${pids[@]}"); sleep "$MEASURE"; t1=$(cpu_ticks "${pids[@]}")
  rss1=$(rss_kib "${pids[@]}")
  cpu=$(python3 -c "print(f'{($t1-$t0)/$HZ/$MEASURE*100:.2f}')")
  per=$(python3 -c "print(f'{($rss1-$rss0)/$IDLE_GROUPS:.1f}')")
  echo "hibernation $mode: CPU $cpu% of one core (3 processes, ${MEASURE}s); RSS $((rss0/1024)) MiB empty -> $((rss1/1024)) MiB; $per KiB per group (3 replicas)"
  g=$((IDLE_GROUPS / 2))
  s=$(date +%s%N)
  "$F" propose --endpoint $ep --group $g '{"put":{"key":"wake","value":"up"}}' >/dev/null
  e=$(date +%s%N)
  echo "hibernation $mode: a proposal to group $g took $(( (e - s) / 1000000 )) ms (CLI start-up included)"
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
done
