# Shared by the bench scripts (source it): a fresh 3-node loopback cluster and the CPU
# time of processes.

# cpu_ticks PID...: utime+stime of the processes, in clock ticks (fields 14 and 15 of
# /proc/PID/stat).
cpu_ticks() {
  local p sum=0
  for p in "$@"; do sum=$((sum + $(awk '{print $14+$15}' "/proc/$p/stat"))); done
  echo $sum
}

# start_flotilla3 BINARY DIR PORT: starts nodes 1-3 of a new cluster on 127.0.0.1:PORT..+2
# with their data and logs under DIR, waits until node 1 answers `cluster status`, and
# leaves the node pids in NODE_PIDS. Extra `flotilla server` flags come from SERVER_ARGS
# (an array, optional).
start_flotilla3() {
  local bin=$1 dir=$2 port=$3 i
  local ic="1=127.0.0.1:$port,2=127.0.0.1:$((port+1)),3=127.0.0.1:$((port+2))"
  NODE_PIDS=()
  mkdir -p "$dir"
  for i in 1 2 3; do
    FLOTILLA_LOG=warn "$bin" server --id $i --listen 127.0.0.1:$((port+i-1)) --data-dir "$dir/n$i" \
      --initial-cluster "$ic" ${SERVER_ARGS[@]+"${SERVER_ARGS[@]}"} 2>"$dir/n$i.log" >/dev/null &
    NODE_PIDS+=($!)
  done
  for _ in $(seq 200); do
    "$bin" cluster status --endpoint 127.0.0.1:$port >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "start_flotilla3: the cluster on 127.0.0.1:$port did not answer within 20 s (logs in $dir)" >&2
  return 1
}

# bench_cpu_args BINARY PID...: sets BENCH_CPU_ARGS to `--cpu-pids PID,...` when BINARY's
# bench has that flag (it then reads the nodes' CPU over its timed run alone, in the JSON's
# `cpu_ticks`), or to nothing for an older build, whose CPU callers bracket whole.
bench_cpu_args() {
  local bin=$1; shift
  BENCH_CPU_ARGS=()
  if "$bin" bench --help 2>/dev/null | grep -q -- --cpu-pids; then
    BENCH_CPU_ARGS=(--cpu-pids "$(IFS=,; echo "$*")")
  fi
}
