#!/usr/bin/env bash
# Reproduces the mqbench rows of docs/BENCHMARKS.md on this machine: release binaries, one
# name server and one broker on 127.0.0.1, a topic with 8 queues, 1 KiB bodies.
#   bash benches/mqbench.sh [async|sync_flush|batch|drain|latency|latency_busy|e2e|e2e_busy|ha|startup|delay|all] [RUNS=3]
#   (delay: 10,000 messages at delay level 2 (5 s), sent at 5,000/s; the consumer counts any
#   that arrived before their due time and prints due→delivered percentiles)
#   (ha: a master with one slave, async_master then sync_master, interleaved per run; also
#   prints how long the slave's lag takes to reach 0 once the producer stops)
#   BIN_DIR=/path/to/other/release bash benches/mqbench.sh async 3   (compare another build)
#   BROKER_EXTRA='server_worker_threads = 2' bash benches/mqbench.sh async 3 (extra broker keys)
#   bash benches/mqbench.sh all 3 | tee bench.txt; python3 benches/mqbench_summary.py bench.txt
#     (medians per row beside the targets of docs/BENCHMARKS.md)
#   NS_PORT / BROKER_PORT choose the ports (default 39876 / 39911); a port already in use stops
#   the script, since a left-over broker would otherwise be measured in place of the new one.
# Every run is bounded by --count and --duration. Stores go under $BENCH_DIR (default a
# fresh temp folder), which is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
runs=${2:-3}
# BIN_DIR runs other builds of the binaries (say, an older commit's) for an A/B comparison.
if [[ -z ${BIN_DIR:-} ]]; then cargo build --release --bins >/dev/null; fi
bin=${BIN_DIR:-target/release}
dir=${BENCH_DIR:-$(mktemp -d)}
ns_port=${NS_PORT:-39876}
broker_port=${BROKER_PORT:-39911}
ns="127.0.0.1:$ns_port"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

# Refuses a bench port that something already listens on: a broker left over from an
# interrupted run would answer in place of the one started here, and the figures would be its.
require_free_port() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    echo "port $1 is in use (a name server or broker left over from an earlier run?): stop it, or choose other ports with NS_PORT and BROKER_PORT" >&2
    exit 1
  fi
}
# Waits for process $2 to log that it listens (in $1); fails if it exits first or takes 10 s.
await_listening() {
  local deadline=$(( SECONDS + 10 ))  # bash's own clock: no fork in the loop
  until grep -q "listening on" "$1" 2>/dev/null; do
    if ! kill -0 "$2" 2>/dev/null; then
      echo "process $2 exited before listening; the end of its log:" >&2; tail -n 5 "$1" >&2; exit 1
    fi
    if (( SECONDS > deadline )); then echo "no 'listening on' in $1 within 10 s" >&2; exit 1; fi
    sleep 0.002
  done
}

start_cluster() { # $1 = flush type, $2 = the broker's busy_poll_us (default 0: off), $3 = the master's role with a slave (none: no slave)
  require_free_port $ns_port; require_free_port $broker_port
  local role=${3:-}
  cluster_store="$dir/store-$RANDOM"
  local store=$cluster_store
  cat >"$dir/broker.toml" <<EOT
listen_host = "127.0.0.1"
broker_ip1 = "127.0.0.1"
flush_disk_type = "$1"
busy_poll_us = ${2:-0}
store_path_root_dir = "$store"
# Keeps retention from deleting a run's data on a crowded shared disk.
disk_max_used_space_ratio = 95
disk_space_warning_level_ratio = 98
${BROKER_EXTRA:-}
EOT
  if [[ -n $role ]]; then
    echo "broker_role = \"$role\"" >>"$dir/broker.toml"
    require_free_port $((broker_port + 1)); require_free_port $((broker_port + 10))
    sed -e "s#$store#$store-slave#" -e '/^broker_role/d' "$dir/broker.toml" >"$dir/slave.toml"
    printf 'broker_role = "slave"\nbroker_id = 1\n' >>"$dir/slave.toml"
  fi
  "$bin/mqnamesrv" --listen-port $ns_port 2>"$dir/ns.log" & pids+=($!)
  await_listening "$dir/ns.log" "${pids[-1]}"
  "$bin/mqbroker" -c "$dir/broker.toml" -n "$ns" --listen-port $broker_port 2>"$dir/broker.log" & broker_pid=$!; pids+=($broker_pid)
  await_listening "$dir/broker.log" "$broker_pid"
  if [[ -n $role ]]; then
    "$bin/mqbroker" -c "$dir/slave.toml" -n "$ns" --listen-port $((broker_port + 10)) 2>"$dir/slave.log" & slave_pid=$!; pids+=($slave_pid)
    await_listening "$dir/slave.log" "$slave_pid"
    for _ in $(seq 200); do "$bin/mqadmin" -n "$ns" haStatus -b "127.0.0.1:$broker_port" 2>/dev/null | grep -q "1 in sync" && break; sleep 0.05; done
  fi
  local up=""
  for _ in $(seq 100); do "$bin/mqadmin" -n "$ns" clusterList 2>/dev/null | grep -q broker-a && { up=1; break; }; sleep 0.05; done
  if [[ -z $up ]]; then echo "broker did not register; logs:" >&2; tail -n 5 "$dir/ns.log" "$dir/broker.log" >&2; exit 1; fi
  "$bin/mqadmin" -n "$ns" updateTopic -c DefaultCluster -t BenchmarkTest -r 8 -w 8 >/dev/null
  for _ in $(seq 100); do "$bin/mqadmin" -n "$ns" topicRoute -t BenchmarkTest >/dev/null 2>&1 && break; sleep 0.05; done
}
# Each run's store is removed with its cluster, so every row starts from the same state: with
# the earlier runs' gigabytes left behind, the batch row of an `all` run measured 146k msgs/s
# against 278k once they were removed.
stop_cluster() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
  rm -rf "${cluster_store:?}" "${cluster_store:?}-slave"
}
# Latency rows measure a broker in its steady state: routes and connections made, the first
# commit-log segment warmed (its pages are faulted in by a background thread at start).
warm_up() { "$bin/mqbench" producer -n "$ns" -t BenchmarkTest -s 1024 -w 64 --count 20000 --mode sync >/dev/null; sleep 5; }
rss_anon_kib() { awk '/RssAnon/ {print $2}' "/proc/$1/status"; }
# CPU time (user + system, clock ticks) of each thread of process $1, as "name ticks" lines.
cpu_ticks() { for t in /proc/"$1"/task/*; do echo "$(cat "$t/comm") $(awk '{print $14 + $15}' "$t/stat")"; done; }
# CPU per message of each broker thread since an earlier cpu_ticks snapshot ($2), for $3
# messages: steadier than msgs/s on a host whose speed drifts.
cpu_per_msg() {
  awk -v hz="$(getconf CLK_TCK)" -v n="$3" 'NR == FNR {b[$1] += $2; next} {a[$1] += $2}
    END {for (k in a) if (a[k] > b[k]) printf "%s %.2f µs  ", k, (a[k] - b[k]) / hz / n * 1e6; print ""}' \
    <(echo "$2") <(cpu_ticks "$1")
}

# Time the host ran something else while this VM's vCPUs wanted to run (`steal` in
# /proc/stat, both vCPUs), in ms: latency tails on this machine follow it.
steal_ms() { awk -v hz="$(getconf CLK_TCK)" '/^cpu / {printf "%d", $9 * 1000 / hz}' /proc/stat; }
run() { local s0; s0=$(steal_ms); echo "## $*"; "$@" | tail -1; echo "host steal during the run: $(( $(steal_ms) - s0 )) ms"; }
# Busy CPU time of the whole machine (user, nice, system, irq, softirq; both vCPUs), in clock
# ticks: with the kernel's own threads (writeback, page reporting) it is what a message
# really costs, and it drifts less with the host's speed than msgs/s do.
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
# A producer row's command, then the machine's CPU per acknowledged message during it.
run_costed() {
  local t0 out acked
  t0=$(machine_ticks)
  out=$(run "$@")
  echo "$out"
  acked=$(echo "$out" | grep "^{" | tail -1 | sed -n 's/.*"acked":\([0-9]*\).*/\1/p')
  if [[ -n $acked && $acked -gt 0 ]]; then
    awk -v a="$t0" -v b="$(machine_ticks)" -v n="$acked" -v hz="$(getconf CLK_TCK)" \
      'BEGIN {printf "machine CPU per message: %.2f µs\n", (b - a) / hz / n * 1e6}'
  fi
}

if [[ $what == async || $what == all ]]; then
  for i in $(seq "$runs"); do
    start_cluster async_flush
    echo "broker RssAnon idle: $(rss_anon_kib "$broker_pid") KiB"
    before=$(cpu_ticks "$broker_pid")
    run_costed "$bin/mqbench" producer -n "$ns" -t BenchmarkTest -s 1024 -w 256 --count 1000000 --duration 60 --mode async --json
    echo "broker CPU per message, by thread: $(cpu_per_msg "$broker_pid" "$before" 1000000)"
    echo "broker RssAnon after 1M: $(rss_anon_kib "$broker_pid") KiB"
    if [[ $what == all ]]; then
      run "$bin/mqbench" consumer -n "$ns" -t BenchmarkTest -g "drain-$i" --from-beginning --count 1000000 --duration 60 --json
    fi
    stop_cluster
  done
fi
# A master with one slave, both async_flush; async_master and sync_master alternate within
# each run so both see the same host. The slave's catch-up is timed from the producer's end
# to its lag reading 0 (polled every 50 ms through mqadmin, so ~50 ms is the resolution).
if [[ $what == ha || $what == all ]]; then
  for i in $(seq "$runs"); do
    for role in async_master sync_master; do
      start_cluster async_flush 0 $role
      run_costed "$bin/mqbench" producer -n "$ns" -t BenchmarkTest -s 1024 -w 256 --count 1000000 --duration 30 --mode async --json
      t0=$(date +%s%N)
      for _ in $(seq 400); do
        lag=$("$bin/mqadmin" -n "$ns" haStatus -b "127.0.0.1:$((broker_port + 10))" 2>/dev/null | awk -F: '/^lag/ {gsub(/ /, "", $2); print $2}')
        [[ $lag == 0 ]] && break
        sleep 0.05
      done
      echo "## $role slave lag 0 after $(( ($(date +%s%N) - t0) / 1000000 )) ms (lag $lag)"
      stop_cluster
    done
  done
fi
if [[ $what == drain ]]; then
  for i in $(seq "$runs"); do
    start_cluster async_flush
    "$bin/mqbench" producer -n "$ns" -t BenchmarkTest -s 1024 -w 1024 --count 1000000 --duration 60 --mode batch --batch-size 32 --json >/dev/null
    run "$bin/mqbench" consumer -n "$ns" -t BenchmarkTest -g "drain-$i" --from-beginning --count 1000000 --duration 60 --json
    stop_cluster
  done
fi
if [[ $what == sync_flush || $what == all ]]; then
  for i in $(seq "$runs"); do
    start_cluster sync_flush
    run_costed "$bin/mqbench" producer -n "$ns" -t BenchmarkTest -s 1024 -w 256 --count 1000000 --duration 15 --mode async --json
    stop_cluster
  done
fi
# The batch row's target fixes no in-flight bound, and -w counts messages: 1024 keeps 32
# batches in flight, where 256 would leave 8 (one per queue) and the row would measure round
# trips rather than the broker. Both were measured on 2026-11-26; docs/BENCHMARKS.md gives
# the figures.
if [[ $what == batch || $what == all ]]; then
  for i in $(seq "$runs"); do
    start_cluster async_flush
    run_costed "$bin/mqbench" producer -n "$ns" -t BenchmarkTest -s 1024 -w 1024 --count 1000000 --duration 60 --mode batch --batch-size 32 --json
    stop_cluster
  done
fi
# The *_busy rows run the same workload with the broker busy-polling for 500 µs after each
# request (`busy_poll_us`), which trades a busy core for the wake-up of every request.
for row in latency latency_busy; do
  [[ $what == "$row" || $what == all ]] || continue
  busy=0; [[ $row == latency_busy ]] && busy=500
  for i in $(seq "$runs"); do
    start_cluster async_flush $busy
    warm_up
    # The machine's own floor at the same moment: the same schedule against an echo server
    # (busy-polling as the broker does, or not), no broker involved.
    run "$bin/mqbench" floor -s 1024 -w 256 --rate 5000 --duration 10 --server-busy-poll-us $busy --json
    run "$bin/mqbench" producer -n "$ns" -t BenchmarkTest -s 1024 -w 256 --rate 5000 --duration 10 --mode async --json
    stop_cluster
  done
done
for row in e2e e2e_busy; do
  [[ $what == "$row" || $what == all ]] || continue
  busy=0; [[ $row == e2e_busy ]] && busy=500
  for i in $(seq "$runs"); do
    start_cluster async_flush $busy
    warm_up
    "$bin/mqbench" consumer -n "$ns" -t BenchmarkTest -g "e2e-$i" --duration 14 --json >"$dir/consumer.json" & c=$!
    sleep 2
    s0=$(steal_ms)
    "$bin/mqbench" producer -n "$ns" -t BenchmarkTest -s 1024 -w 256 --rate 5000 --duration 10 --mode async --json >/dev/null
    s1=$(steal_ms)
    wait $c || true
    echo "## $row consumer"; tail -1 "$dir/consumer.json"
    echo "host steal during the run: $(( s1 - s0 )) ms"
    stop_cluster
  done
done
# Delayed-delivery accuracy: a consumer waits on the topic, the producer sends 10,000
# messages with delay level 2 (5 s), and the consumer measures each arrival against the due
# time the broker stamped (store time + 5 s).
if [[ $what == delay || $what == all ]]; then
  for i in $(seq "$runs"); do
    start_cluster async_flush
    "$bin/mqbench" consumer -n "$ns" -t BenchmarkTest -g "delay-$i" --count 10000 --duration 60 >"$dir/delay-consumer.txt" & c=$!; pids+=($c)
    # The consumer has the 5 s delay to find its queues; 2 s is ample for that.
    sleep 2
    run "$bin/mqbench" producer -n "$ns" -t BenchmarkTest -s 1024 --rate 5000 --count 10000 --duration 60 --mode async --delay-level 2 --json
    wait $c || true
    echo "## delayed delivery, run $i"; tail -2 "$dir/delay-consumer.txt"
    stop_cluster
  done
fi
if [[ $what == startup || $what == all ]]; then
  start_cluster async_flush
  stop_cluster
  for i in $(seq "$runs"); do
    store="$dir/startup-$i"; mkdir -p "$store"
    printf 'listen_host = "127.0.0.1"\nbroker_ip1 = "127.0.0.1"\nstore_path_root_dir = "%s"\ndisk_max_used_space_ratio = 95\ndisk_space_warning_level_ratio = 98\n' "$store" >"$dir/s.toml"
    require_free_port $broker_port
    t0=$(date +%s%N); "$bin/mqbroker" -c "$dir/s.toml" -n "$ns" --listen-port $broker_port 2>"$dir/s.log" & p=$!; pids+=($p)
    await_listening "$dir/s.log" $p; t1=$(date +%s%N)
    echo "## start, empty store: $(( (t1 - t0) / 1000000 )) ms"
    # Fill the store through a name server (the broker's first registration fails and is
    # retried within a second), then restart the broker on it.
    require_free_port $ns_port
    "$bin/mqnamesrv" --listen-port $ns_port 2>/dev/null & q=$!; pids+=($q)
    for _ in $(seq 100); do "$bin/mqadmin" -n "$ns" clusterList 2>/dev/null | grep -q broker-a && break; sleep 0.05; done
    fill=$("$bin/mqbench" producer -n "$ns" -t Fill -s 1024 -w 1024 --count 1000000 --duration 60 --mode batch --json 2>/dev/null | tail -1)
    kill -TERM $p; wait $p || true; kill $q; wait $q 2>/dev/null || true
    segments=$(find "$store/commitlog" -type f -regextype posix-extended -regex '.*/[0-9]{20}' | wc -l)
    log_bytes=$(find "$store/commitlog" -type f -regextype posix-extended -regex '.*/[0-9]{20}' | sort | tail -1 | sed 's#.*/##' | sed 's/^0*//')
    t0=$(date +%s%N); "$bin/mqbroker" -c "$dir/s.toml" --listen-port $broker_port 2>"$dir/s2.log" & p=$!; pids+=($p)
    await_listening "$dir/s2.log" $p; t1=$(date +%s%N)
    echo "## start after a clean stop, store filled with: $fill"
    echo "##   commit-log segments: $segments (last starts at byte ${log_bytes:-0}): $(( (t1 - t0) / 1000000 )) ms"
    kill -TERM $p; wait $p || true
    rm -rf "$store"
  done
fi
