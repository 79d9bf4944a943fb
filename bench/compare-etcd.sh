#!/usr/bin/env bash
# Flotilla vs etcd on one machine (issue 5): a 3-member etcd cluster and a 3-node Flotilla
# cluster on loopback, both fsyncing (etcd's default; Flotilla always does), driven by
# the same load generator, `flotilla bench` (etcd through its KV gRPC API, Put and
# Range; both with each request sent to the leader).
#
# Per run, for value sizes 16 B and 1 KiB and 1, 16 and 256 clients, it measures, one
# after the other (systems interleaved, order reversed on even runs so drift hits both):
#   etcd writes | Flotilla writes, 1 group | Flotilla writes, 64 groups |
#   etcd linearizable reads | Flotilla linearizable reads, 1 group and 64 groups
# Flotilla's cases run once per API in APIS: "unary" (one Propose or Query call per
# request, as etcd's clients make one Put or Range call) and "batch" (`--api batch`:
# the same closed-loop clients, their requests multiplexed on one `Batch` stream per
# connection, as TiKV's client does; systems named flotilla-*-batch).
# Reads are of keys each client wrote just before (etcd: Range serializable=false;
# Flotilla: Query LINEARIZABLE, i.e. ReadIndex). Each case also records the CPU time
# (user + system) of the measured system's three server processes and of the load
# generator during the timed run (`flotilla bench --cpu-pids`; setup such as creating
# groups or preloading keys is left out), per operation, and the server cores it kept
# busy: on a machine whose cores both systems fill, the ratio of CPU per operation is
# what bounds the ratio of throughput. Then it prints the medians across runs (ops/s, p50, p99, CPU), the
# Flotilla/etcd ratios, the issue's targets as measured, and every run's numbers.
#
# Usage: bench/compare-etcd.sh            (about 16 minutes: RUNS=3, DURATION=5s)
#        QUICK=1 bench/compare-etcd.sh    (one run of 2 s cases, a smoke test)
# Env: RUNS, DURATION, VALUE_SIZES ("16 1024"), CLIENTS ("1 16 256"), MANY_GROUPS (64),
#      APIS ("unary batch"), CODEC (json: how Flotilla's requests to the kv plugin are
#      encoded; "binary" sends the SDK's compact binary codec, as etcd gets protobuf),
#      CONNECTIONS (4: gRPC connections per node or member, shared by the clients),
#      ETCD_PORT (23790: clients on +1..+3, peers on +11..+13), FLOTILLA_PORT (7730:
#      nodes on +1..+3), FLOTILLA (a built binary: skips `cargo build --release`),
#      WORKDIR (parent of the data dirs; default $TMPDIR or /tmp, i.e. the same disk
#      for both), KEEP_JSON (a path to keep the raw JSON lines), FLOTILLA_SERVER_ARGS
#      (extra `flotilla server` flags, e.g. "--worker-threads 1") and ETCD_GOMAXPROCS
#      (Go's thread count for each etcd member): both unset by default, so each system
#      runs as shipped; set both to give each of the 3 colocated nodes its share of the
#      cores.
# Installs etcd with `apt-get install etcd-server` (Debian: etcd 3.4) when `etcd` is
# missing, without letting the package start its own service. Everything it started
# is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ "${QUICK:-0}" = 1 ]; then RUNS=${RUNS:-1}; DURATION=${DURATION:-2s}; fi
RUNS=${RUNS:-3}
DURATION=${DURATION:-5s}
VALUE_SIZES=${VALUE_SIZES:-"16 1024"}
CLIENTS=${CLIENTS:-"1 16 256"}
APIS=${APIS:-"unary batch"}
CODEC=${CODEC:-json}
MANY_GROUPS=${MANY_GROUPS:-64}
CONNECTIONS=${CONNECTIONS:-4}
ETCD_PORT=${ETCD_PORT:-23790}
FLOTILLA_PORT=${FLOTILLA_PORT:-7730}

PIDS=()
ETCD_PIDS=()
FLOTILLA_PIDS=()
WORK=$(mktemp -d "${WORKDIR:-${TMPDIR:-/tmp}}/compare-etcd.XXXXXX")
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "${KEEP_JSON:-}" ] && [ -f "$WORK/results.jsonl" ]; then cp "$WORK/results.jsonl" "$KEEP_JSON"; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_etcd() {
  command -v etcd >/dev/null && return
  echo "etcd not found: installing Debian's etcd-server" >&2
  # Keep the package from starting (and enabling) its own etcd on the default ports.
  local policy=/usr/sbin/policy-rc.d added=0
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee $policy >/dev/null
    as_root chmod +x $policy
    added=1
  fi
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq etcd-server >/dev/null
  [ $added = 1 ] && as_root rm -f $policy
  if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
    as_root systemctl disable --now etcd || true
  fi
  command -v etcd >/dev/null || { echo "etcd did not install" >&2; exit 1; }
}

port_free() { ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

start_etcd() {
  local ic="" i
  for i in 1 2 3; do ic+="${ic:+,}e$i=http://127.0.0.1:$((ETCD_PORT + 10 + i))"; done
  for i in 1 2 3; do
    local c=$((ETCD_PORT + i)) p=$((ETCD_PORT + 10 + i))
    port_free $c && port_free $p || { echo "port $c or $p is taken (set ETCD_PORT)" >&2; exit 1; }
    env ${ETCD_GOMAXPROCS:+"GOMAXPROCS=$ETCD_GOMAXPROCS"} etcd --name "e$i" --data-dir "$WORK/etcd-$i" \
      --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
      --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
      --initial-cluster "$ic" --initial-cluster-state new --initial-cluster-token "compare-$$" \
      --quota-backend-bytes $((8 * 1024 * 1024 * 1024)) \
      --logger zap --log-level warn >"$WORK/etcd-$i.log" 2>&1 &
    PIDS+=($!)
    ETCD_PIDS+=($!)
  done
  for _ in $(seq 200); do
    curl -fsS "http://127.0.0.1:$((ETCD_PORT + 1))/health" 2>/dev/null | grep -q '"health":"true"' && return
    sleep 0.1
  done
  echo "etcd did not become healthy; its log:" >&2; tail -20 "$WORK/etcd-1.log" >&2; exit 1
}

start_flotilla() {
  local ic="" i
  for i in 1 2 3; do ic+="${ic:+,}$i=127.0.0.1:$((FLOTILLA_PORT + i))"; done
  for i in 1 2 3; do
    local a=$((FLOTILLA_PORT + i))
    port_free $a || { echo "port $a is taken (set FLOTILLA_PORT)" >&2; exit 1; }
    local extra=()
    read -r -a extra <<<"${FLOTILLA_SERVER_ARGS:-}"
    "$F" server --id $i --listen "127.0.0.1:$a" --data-dir "$WORK/flotilla-$i" \
      --initial-cluster "$ic" ${extra[@]+"${extra[@]}"} >"$WORK/flotilla-$i.log" 2>&1 &
    PIDS+=($!)
    FLOTILLA_PIDS+=($!)
  done
  for _ in $(seq 200); do
    if "$F" cluster status --endpoint "127.0.0.1:$((FLOTILLA_PORT + 1))" >/dev/null 2>&1; then
      # CPU is read from these PIDs: they must be the nodes, not a wrapper around them.
      local p exe
      for p in "${FLOTILLA_PIDS[@]}"; do
        exe=$(basename "$(readlink "/proc/$p/exe")")
        case $exe in bash | sh | dash) echo "FLOTILLA=$F left a shell ($exe) as the node process: CPU would be measured on it (exec the binary)" >&2; exit 1 ;; esac
      done
      return
    fi
    sleep 0.1
  done
  echo "flotilla did not come up; its log:" >&2; tail -20 "$WORK/flotilla-1.log" >&2; exit 1
}

# One case: `bench_case RUN SYSTEM WORKLOAD VALUE CLIENTS` appends one JSON line (or a
# failure record) to results.jsonl and prints a one-line summary.
bench_case() {
  local run=$1 system=$2 workload=$3 value=$4 clients=$5 args out servers
  case $system in
    etcd) args=(--target etcd --endpoints "$ETCD_ENDPOINTS"); servers=("${ETCD_PIDS[@]}") ;;
    flotilla-1g*) args=(--endpoint "$FLOTILLA_ENDPOINT" --groups 1); servers=("${FLOTILLA_PIDS[@]}") ;;
    flotilla-*) args=(--endpoint "$FLOTILLA_ENDPOINT" --groups "$MANY_GROUPS"); servers=("${FLOTILLA_PIDS[@]}") ;;
  esac
  case $system in *-batch) args+=(--api batch) ;; esac
  case $system in flotilla-*) args+=(--codec "$CODEC") ;; esac
  if out=$("$F" bench "${args[@]}" --workload "$workload" --value-size "$value" \
      --clients "$clients" --connections "$CONNECTIONS" --duration "$DURATION" --output json \
      --cpu-pids "$(IFS=,; echo "${servers[*]}")" 2>"$WORK/bench.err"); then
    jq -c --argjson run "$run" --arg system "$system" --argjson tck "$(getconf CLK_TCK)" \
      '. + {run: $run, system: $system,
            server_cpu_us_per_op: (.cpu_ticks.servers / $tck * 1e6 / ([.ops, 1] | max)),
            server_cores_busy: (.cpu_ticks.servers / $tck / .duration_s),
            generator_cpu_us_per_op: (.cpu_ticks.generator / $tck * 1e6 / ([.ops, 1] | max))}' \
      <<<"$out" | tee -a "$WORK/results.jsonl" |
      jq -r '"run \(.run)  \(.workload) \(.value_size) B  \(.clients) clients  \(.system | . + "                  " | .[:18]) \(.ops_per_s | floor) ops/s  p50 \(.p50_ms) ms  p99 \(.p99_ms) ms  errors \(.errors)  server CPU \(.server_cpu_us_per_op | floor) us/op on \(.server_cores_busy * 100 | floor / 100) cores"'
  else
    local msg; msg=$(tail -1 "$WORK/bench.err")
    jq -nc --argjson run "$run" --arg system "$system" --arg workload "$workload" \
      --argjson value_size "$value" --argjson clients "$clients" --arg message "$msg" \
      '{run: $run, system: $system, workload: $workload, value_size: $value_size, clients: $clients, failed: true, message: $message}' \
      >>"$WORK/results.jsonl"
    echo "run $run  $workload $value B  $clients clients  $system FAILED: $msg"
  fi
}

command -v jq >/dev/null || { command -v apt-get >/dev/null && apt-get install -y jq >/dev/null; }
for tool in jq curl python3 ss; do
  command -v $tool >/dev/null || { echo "$tool is needed" >&2; exit 1; }
done
python3 "$ROOT/bench/compare_etcd_table.py" --self-test >/dev/null
install_etcd
if [ -z "${FLOTILLA:-}" ]; then
  (cd "$ROOT" && cargo build --release --bin flotilla)
  F="${CARGO_TARGET_DIR:-$ROOT/target}/release/flotilla"
else
  F=$FLOTILLA
fi
ETCD_ENDPOINTS="127.0.0.1:$((ETCD_PORT + 1)),127.0.0.1:$((ETCD_PORT + 2)),127.0.0.1:$((ETCD_PORT + 3))"
FLOTILLA_ENDPOINT="127.0.0.1:$((FLOTILLA_PORT + 1))"

echo "== compare-etcd $(date -u +%Y-%m-%dT%H:%M:%SZ) =="
echo "runs $RUNS, $DURATION per case, values [$VALUE_SIZES] B, clients [$CLIENTS], $MANY_GROUPS groups, $CONNECTIONS connections per node, Flotilla APIs [$APIS], Flotilla codec $CODEC"
echo "$(etcd --version | head -1); flotilla $("$F" --version | awk '{print $2}') at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "etcd GOMAXPROCS: ${ETCD_GOMAXPROCS:-default}; flotilla server flags: ${FLOTILLA_SERVER_ARGS:-default}"
echo "machine: $(nproc) cores, $(uname -sr); data dirs on $(df -P "$WORK" | awk 'NR==2{print $1}')"
echo "load at start: $(uptime)"
start_etcd
start_flotilla
echo "clusters up: etcd $ETCD_ENDPOINTS; flotilla 127.0.0.1:$((FLOTILLA_PORT + 1))-$((FLOTILLA_PORT + 3))"
echo

for run in $(seq "$RUNS"); do
  for value in $VALUE_SIZES; do
    for clients in $CLIENTS; do
      flotillas=()
      for api in $APIS; do
        case $api in
          unary) suffix="" ;;
          batch) suffix="-batch" ;;
          *) echo "APIS: unknown API '$api' (unary, batch)" >&2; exit 2 ;;
        esac
        flotillas+=("flotilla-1g$suffix" "flotilla-${MANY_GROUPS}g$suffix")
      done
      order=()
      for workload in write read; do
        order+=("etcd $workload")
        for f in "${flotillas[@]}"; do order+=("$f $workload"); done
      done
      if [ $((run % 2)) = 0 ]; then
        reversed=()
        for workload in write read; do
          for ((k = ${#flotillas[@]} - 1; k >= 0; k--)); do reversed+=("${flotillas[k]} $workload"); done
          reversed+=("etcd $workload")
        done
        order=("${reversed[@]}")
      fi
      for c in "${order[@]}"; do
        read -r system workload <<<"$c"
        bench_case "$run" "$system" "$workload" "$value" "$clients"
      done
    done
  done
done

echo
echo "load at end: $(uptime)"
echo
python3 "$ROOT/bench/compare_etcd_table.py" "$WORK/results.jsonl"
