#!/usr/bin/env bash
# Runs `flotilla bench` against a fresh 3-node loopback cluster (three processes) and a
# fresh single node, side by side, RUNS times: 1 group and 64 groups, 64 clients.
# Usage: bench/cluster-bench.sh [RUNS] [DURATION]   (needs `cargo build --release`)
set -euo pipefail
RUNS=${1:-3}
DUR=${2:-8s}
F=${FLOTILLA:-$(dirname "$0")/../target/release/flotilla}
WORK=$(mktemp -d)
trap 'pkill -f "$WORK" 2>/dev/null || true; rm -rf "$WORK"' EXIT
start_cluster() {
  local dir=$1 base=$2
  local ic="1=127.0.0.1:$base,2=127.0.0.1:$((base+1)),3=127.0.0.1:$((base+2))"
  for i in 1 2 3; do
    "$F" server --id $i --listen 127.0.0.1:$((base+i-1)) --data-dir "$dir/n$i" --initial-cluster "$ic" 2>"$dir/n$i.log" &
  done
  for _ in $(seq 100); do "$F" cluster status --endpoint 127.0.0.1:$base >/dev/null 2>&1 && return; sleep 0.1; done
}
for r in $(seq "$RUNS"); do
  for mode in cluster single; do
    dir="$WORK/$mode-$r"; mkdir -p "$dir"; base=$((7600 + r * 10))
    if [ $mode = cluster ]; then start_cluster "$dir" $base; else
      "$F" server --listen 127.0.0.1:$base --data-dir "$dir/n1" 2>"$dir/n1.log" &
      for _ in $(seq 100); do "$F" cluster status --endpoint 127.0.0.1:$base >/dev/null 2>&1 && break; sleep 0.1; done
    fi
    for g in 1 64; do
      echo -n "run $r $mode groups=$g: "
      "$F" bench --endpoint 127.0.0.1:$base --clients 64 --groups $g --duration "$DUR" --value-size 16
    done
    pkill -f "$dir" || true; sleep 1
  done
done
