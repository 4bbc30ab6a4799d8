#!/usr/bin/env bash
# High-latency destination: Outrider's delivery rate per connection with and without
# PIPELINING, and how many connections one destination needs for TARGET msg/s.
#
#   smtp-source --loopback--> Outrider --veth, netem RTT_MS--> smtp-sink (own netns)
#
# The benchmark creates a network namespace and a veth pair (10.231.47.1/30 outside,
# 10.231.47.2/30 inside), adds RTT_MS/2 of netem delay on both ends (or, without
# sch_netem, relays through bench/latency_proxy.py delaying each way), and runs
# smtp-sink in the namespace. Traffic never leaves the machine. For each run: a fresh
# Outrider whose queue for bench.test is paused, MESSAGES messages injected over
# loopback (no delay), the queue resumed; the figure is MESSAGES / (time from resume
# to smtp-sink having received the last message). Connection set-up and the adaptive
# window's slow start are included, so use enough MESSAGES for the run to last.
#
# Runs: 1 connection with PIPELINING (smtp-sink default) and without (smtp-sink -p:
# not announced, so Outrider sends one command per round trip), then max-smtp-out
# in SWEEP with PIPELINING and max-msg-per-connection = 0 (unlimited).
#
# Usage (as root, from the repo root):  bench/latency.sh
# Environment knobs (defaults in brackets):
#   RTT_MS [50]  SWEEP ["1 2 4 8 16 32"]  TARGET [500] msg/s  SIZE_KB [4]
#   SECONDS_PER_RUN [10]: each run sends about this many seconds' worth of messages
#   (estimated from the single-connection rate), at least MIN_MESSAGES [100]
#   SINK_PORT [2600]  OUTRIDER_PORT [2537]  BENCH_TMPDIR [/var/tmp]  KEEP [0]
#   OUTRIDER [<repo>/.venv/bin/outrider]
#   DELAY [auto]: netem, or proxy (bench/latency_proxy.py in the namespace, each way
#   RTT_MS/2); auto uses netem and falls back to the proxy when the kernel lacks it
set -euo pipefail

RTT_MS=${RTT_MS:-50}
SWEEP=${SWEEP:-1 2 4 8 16 32}
TARGET=${TARGET:-500}
SIZE_KB=${SIZE_KB:-4}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
MIN_MESSAGES=${MIN_MESSAGES:-100}
SINK_PORT=${SINK_PORT:-2600}
OUTRIDER_PORT=${OUTRIDER_PORT:-2537}
BENCH_TMPDIR=${BENCH_TMPDIR:-/var/tmp}
KEEP=${KEEP:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUTRIDER=${OUTRIDER:-$ROOT/.venv/bin/outrider}
SMTP_SOURCE=/usr/sbin/smtp-source
SMTP_SINK=/usr/sbin/smtp-sink
RUN_TIMEOUT=300

NS=outrider-lat-$$
VETH_OUT=orl$$o
VETH_IN=orl$$i
ADDR_OUT=10.231.47.1
ADDR_IN=10.231.47.2
SINK_ADDR=$ADDR_IN # 127.0.0.1 in the namespace when the delay proxy listens on ADDR_IN
DELAY=${DELAY:-auto}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}

# State the cleanup trap needs; every process is stopped by the PID recorded here.
WORK=""
SINK_PID=""
OUTRIDER_PID=""
PROXY_PID=""
NS_MADE=0

log() { printf '%s latency.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }
is_uint() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

pid_alive() {
    local state
    [[ -r /proc/$1/stat ]] || return 1
    state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n $state && $state != Z ]]
}

# stop_pid PID: TERM, then KILL after 10 s; only ever the PIDs this script started.
stop_pid() {
    local pid=$1 i
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        pid_alive "$pid" || break
        sleep 0.1
    done
    pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    stop_pid "$OUTRIDER_PID"
    stop_pid "$SINK_PID"
    stop_pid "$PROXY_PID"
    if ((NS_MADE)); then
        ip link del "$VETH_OUT" 2>/dev/null || true
        ip netns del "$NS" 2>/dev/null || true
    fi
    if [[ -n $WORK && $KEEP == 0 ]]; then
        rm -rf "$WORK"
    elif [[ -n $WORK ]]; then
        log "kept $WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

check() {
    local v
    for v in RTT_MS TARGET SIZE_KB SECONDS_PER_RUN MIN_MESSAGES SINK_PORT OUTRIDER_PORT; do
        is_uint "${!v}" || die "$v must be a positive integer (got '${!v}')"
    done
    for v in $SWEEP; do
        is_uint "$v" || die "SWEEP: '$v' is not a positive integer"
    done
    [[ $(id -u) == 0 ]] || die "must run as root (network namespace, tc netem)"
    if ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
        log "installing iproute2"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q iproute2 >&2 ||
            { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q iproute2 >&2; }
    fi
    [[ -x $SMTP_SOURCE && -x $SMTP_SINK ]] || die "smtp-source/smtp-sink missing (apt-get install postfix)"
    [[ -x $OUTRIDER ]] || die "no $OUTRIDER (python3 -m venv .venv && .venv/bin/pip install -e .)"
}

make_network() {
    local half=$((RTT_MS / 2))
    ip netns add "$NS"
    NS_MADE=1
    ip link add "$VETH_OUT" type veth peer name "$VETH_IN"
    ip link set "$VETH_IN" netns "$NS"
    ip addr add "$ADDR_OUT/30" dev "$VETH_OUT"
    ip link set "$VETH_OUT" up
    ip netns exec "$NS" ip addr add "$ADDR_IN/30" dev "$VETH_IN"
    ip netns exec "$NS" ip link set "$VETH_IN" up
    ip netns exec "$NS" ip link set lo up
    if [[ $DELAY == proxy ]] ||
        ! tc qdisc add dev "$VETH_OUT" root netem delay "${half}ms" limit 100000 2>/dev/null; then
        [[ $DELAY != netem ]] || die "tc netem unavailable (no sch_netem in this kernel)"
        log "tc netem unavailable: delaying in userspace (bench/latency_proxy.py, ${half} ms each way)"
        DELAY=proxy
        SINK_ADDR=127.0.0.1
        ip netns exec "$NS" "$PYTHON" "$ROOT/bench/latency_proxy.py" "$ADDR_IN:$SINK_PORT" \
            "$SINK_ADDR:$SINK_PORT" "$half" >"$WORK/proxy.log" 2>&1 &
        PROXY_PID=$!
    else
        DELAY=netem
        ip netns exec "$NS" tc qdisc add dev "$VETH_IN" root netem delay "${half}ms" limit 100000
    fi
    local rtt="?"
    if [[ $DELAY == netem ]] && command -v ping >/dev/null; then
        rtt=$(ping -c 3 -i 0.2 -q "$ADDR_IN" 2>/dev/null | awk -F/ '/^rtt|^round-trip/ { print $5 }') || true
    fi
    log "namespace $NS: $ADDR_OUT <-> $ADDR_IN, $DELAY ${half} ms each way, ping RTT ${rtt:-?} ms"
}

# start_sink COUNT [OPTS...]: smtp-sink in the namespace, exiting after COUNT messages.
start_sink() {
    local count=$1
    shift
    ip netns exec "$NS" "$SMTP_SINK" -u nobody -M "$count" "$@" "$SINK_ADDR:$SINK_PORT" 1024 \
        >"$WORK/sink.log" 2>&1 &
    SINK_PID=$!
    local i
    for ((i = 0; i < 100; i++)); do
        if ip netns exec "$NS" bash -c "(: <>/dev/tcp/$SINK_ADDR/$SINK_PORT)" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    die "smtp-sink did not start: $(cat "$WORK/sink.log")"
}

# start_outrider CONNECTIONS: a fresh Outrider with the bench.test queue paused.
start_outrider() {
    local conns=$1 dir=$WORK/outrider
    rm -rf "$dir"
    mkdir -p "$dir"
    cat >"$dir/outrider.toml" <<EOF
[server]
hostname = "bench.outrider.test"
spool-dir = "$dir/spool"
log-dir = "$dir/log"

[dns]
# Nothing listens here: the only destination is statically routed.
nameservers = ["127.0.0.1:5399"]

[[listener]]
address = "127.0.0.1:$OUTRIDER_PORT"
relay-networks = ["127.0.0.0/8"]
max-messages-per-connection = 0
max-rcpt-per-connection = 0
max-connections-per-client = 0
max-connect-rate-per-client = "unlimited"

[domain."bench.test"]
route = "$ADDR_IN:$SINK_PORT"
max-smtp-out = $conns
max-msg-per-connection = 0
use-starttls = false
EOF
    "$OUTRIDER" run -c "$dir/outrider.toml" >"$dir/stderr.log" 2>&1 &
    OUTRIDER_PID=$!
    local i
    for ((i = 0; i < 300; i++)); do
        if (: <>"/dev/tcp/127.0.0.1/$OUTRIDER_PORT") 2>/dev/null; then
            "$OUTRIDER" pause queue bench.test -c "$dir/outrider.toml" >/dev/null ||
                die "cannot pause bench.test: see $dir/stderr.log"
            return 0
        fi
        pid_alive "$OUTRIDER_PID" || break
        sleep 0.1
    done
    die "outrider did not start: $(tail -5 "$dir/stderr.log")"
}

# one_run CONNECTIONS MESSAGES [SINK_OPTS...] -> prints msg/s
one_run() {
    local conns=$1 messages=$2
    shift 2
    start_sink "$messages" "$@"
    start_outrider "$conns"
    "$SMTP_SOURCE" -d -s 4 -m "$messages" -l $((SIZE_KB * 1024)) -f sender@outrider.test \
        -t rcpt@bench.test "127.0.0.1:$OUTRIDER_PORT" || die "injection failed"
    local t0 t1 deadline=$((SECONDS + RUN_TIMEOUT))
    t0=$(date +%s.%N)
    "$OUTRIDER" resume queue bench.test -c "$WORK/outrider/outrider.toml" >/dev/null
    while pid_alive "$SINK_PID"; do
        ((SECONDS < deadline)) || die "sink did not receive $messages messages in ${RUN_TIMEOUT}s"
        sleep 0.01
    done
    t1=$(date +%s.%N)
    wait "$SINK_PID" 2>/dev/null || true
    SINK_PID=""
    stop_pid "$OUTRIDER_PID"
    OUTRIDER_PID=""
    calc "$messages / ($t1 - $t0)"
}

messages_for() { # messages_for RATE -> MESSAGES for SECONDS_PER_RUN at RATE msg/s
    awk -v r="$1" -v s="$SECONDS_PER_RUN" -v m="$MIN_MESSAGES" \
        'BEGIN { n = int(r * s); if (n < m) n = m; print n }'
}

main() {
    check
    WORK=$(mktemp -d "$BENCH_TMPDIR/outrider-latency.XXXXXX")
    make_network

    log "1 connection, PIPELINING off (smtp-sink -p)"
    local off on
    off=$(one_run 1 "$(messages_for 5)" -p)
    log "  $off msg/s"
    log "1 connection, PIPELINING on"
    on=$(one_run 1 "$(messages_for 10)")
    log "  $on msg/s"

    local -a rows=()
    local conns rate msgs first_enough=""
    for conns in $SWEEP; do
        msgs=$(messages_for "$(calc "$on * $conns" 0)")
        log "max-smtp-out $conns, PIPELINING on, $msgs messages"
        rate=$(one_run "$conns" "$msgs")
        log "  $rate msg/s"
        rows+=("$conns $rate")
        if [[ -z $first_enough ]] && awk -v r="$rate" -v t="$TARGET" 'BEGIN { exit !(r >= t) }'; then
            first_enough=$conns
        fi
    done

    local needed
    needed=$(awk -v r="$on" -v t="$TARGET" 'BEGIN { n = t / r; if (n > int(n)) n = int(n) + 1; print n }')
    echo
    echo "High-latency destination: RTT ${RTT_MS} ms ($DELAY), ${SIZE_KB} KiB messages, smtp-sink in a netns"
    printf '%-44s %12s\n' "run" "msg/s"
    printf '%-44s %12s\n' "1 connection, no PIPELINING" "$off"
    printf '%-44s %12s\n' "1 connection, PIPELINING" "$on"
    printf '%-44s %12s\n' "  PIPELINING speed-up" "$(calc "$on / $off" 2)x"
    local row
    for row in "${rows[@]}"; do
        set -- $row
        printf '%-44s %12s\n' "max-smtp-out $1, PIPELINING" "$2"
    done
    printf '%-44s %12s\n' "connections for $TARGET msg/s (measured)" "${first_enough:-> ${SWEEP##* }}"
    printf '%-44s %12s\n' "connections for $TARGET msg/s ($TARGET / 1-conn rate)" "$needed"
}

main "$@"
