#!/usr/bin/env bash
# Relay throughput: Outrider vs Postfix, same box, same load, same sink.
#
#   smtp-source --(SESSIONS sessions)--> system under test --(CONCURRENCY conns)--> smtp-sink
#
# For each system: a fresh smtp-sink that exits after MESSAGES messages, the system
# started from scratch in a temp dir, MESSAGES messages injected with smtp-source.
# Figures: injection time (smtp-source wall time), end-to-end time (first injection
# to the sink receiving the last message) and CPU seconds used by the system's own
# process tree. See bench/README.md for the method and its limits.
#
# Usage (as root, from the repo root):  bench/relay.sh
# Environment knobs (defaults in brackets):
#   MESSAGES [20000]  SESSIONS [20]  SIZE_KB [4]  CONCURRENCY [20]
#   SYSTEMS ["postfix outrider"]   SOURCE_OPTS [-d]   PHASE_TIMEOUT [600] seconds
#   ROUNDS [1]: run every system ROUNDS times, alternating the order each round, and
#   report each system's median (this VM's speed drifts between runs)
#   SINK_PORT [2600]  POSTFIX_PORT [2526]  OUTRIDER_PORT [2527]
#   BENCH_TMPDIR [/var/tmp]  KEEP [0]  OUTRIDER [<repo>/.venv/bin/outrider]
#   RECEIVERS [""]: Outrider's receiver-processes (unset: the shipped default)
#   OUTRIDER_EXTRA [""]: TOML appended to Outrider's config, e.g. to measure with the
#   HTTP listener on: OUTRIDER_EXTRA=$'[http]\naddress = "127.0.0.1:8089"' 
#   PROFILE [""]: a directory; py-spy records Outrider (all its processes) during the
#   injection and writes PROFILE/outrider-<round>.svg (a flame graph; PROFILE_FORMAT=raw for collapsed
#   stacks, PROFILE_SECONDS [15], PROFILE_OPTS e.g. --gil for on-CPU Python only). Skews
#   the CPU figures.
set -euo pipefail

MESSAGES=${MESSAGES:-20000}
SESSIONS=${SESSIONS:-20}
ROUNDS=${ROUNDS:-1}
ROUND=1
SIZE_KB=${SIZE_KB:-4}
CONCURRENCY=${CONCURRENCY:-20}
SYSTEMS=${SYSTEMS:-postfix outrider}
# -d: keep each smtp-source session open for its share of the messages (bulk
# injection over persistent connections). Set SOURCE_OPTS= for one message per
# connection.
SOURCE_OPTS=${SOURCE_OPTS--d}
PHASE_TIMEOUT=${PHASE_TIMEOUT:-600}
SINK_PORT=${SINK_PORT:-2600}
POSTFIX_PORT=${POSTFIX_PORT:-2526}
OUTRIDER_PORT=${OUTRIDER_PORT:-2527}
BENCH_TMPDIR=${BENCH_TMPDIR:-/var/tmp}
KEEP=${KEEP:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
OUTRIDER=${OUTRIDER:-$ROOT/.venv/bin/outrider}
SMTP_SOURCE=/usr/sbin/smtp-source
SMTP_SINK=/usr/sbin/smtp-sink
POSTFIX=/usr/sbin/postfix
START_TIMEOUT=60
STOP_TIMEOUT=30

# State the cleanup trap needs; every process is stopped by the PID recorded here.
WORK=""
SINK_WRAPPER=""
SINK_PID=""
SLEEPER=""
SOURCE_PID=""
POSTFIX_CONF=""
POSTFIX_MASTER=""
OUTRIDER_PID=""

log() { printf '%s relay.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# ---------------------------------------------------------------- helpers

is_uint() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

# Float arithmetic without bc: calc EXPR (awk syntax) -> printed result.
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }

port_open() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# smtp_greets PORT: true if a server on PORT sends a 220 greeting (accepting the TCP
# connection is not enough: a broken SMTP server may accept and then drop it).
smtp_greets() {
    local fd line=""
    { exec {fd}<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
    IFS= read -r -t 5 -u "$fd" line || true
    { printf 'QUIT\r\n' 1>&"$fd"; } 2>/dev/null || true
    exec {fd}>&-
    [[ $line == 220* ]]
}

# wait_smtp PORT DEADLINE_SECONDS [PID]: wait until PORT greets; fail early if PID dies.
wait_smtp() {
    local port=$1 deadline=$((SECONDS + $2)) pid=${3:-}
    until smtp_greets "$port"; do
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# pid_alive PID: true while PID exists and is not a zombie.
pid_alive() {
    local state
    [[ -r /proc/$1/stat ]] || return 1
    state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n $state && $state != Z ]]
}

# wait_gone PID SECONDS: wait for PID to exit (works for non-children too).
wait_gone() {
    local deadline=$((SECONDS + $2))
    while pid_alive "$1"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# tree_pids PID: PID and all its descendants, one per line.
tree_pids() {
    # A process that exits between the glob and the read makes cat fail: ignore that
    # (pipefail would otherwise report the system under test as vanished).
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
        { pid = $1; sub(/^.*\) /, ""); split($0, f, " "); kids[f[2]] = kids[f[2]] " " pid }
        END {
            n = 1; q[1] = root
            for (i = 1; i <= n; i++) {
                print q[i]
                c = split(kids[q[i]], k, " ")
                for (j = 1; j <= c; j++) q[++n] = k[j]
            }
        }'
}

# tree_cpu_ticks PID: utime+stime+cutime+cstime (clock ticks) summed over PID and all
# its live descendants. Children that exited and were reaped are already folded into
# their parent's cutime/cstime, so deltas of this value cover short-lived workers too.
tree_cpu_ticks() {
    # A process that exits between the glob and the read makes cat fail: ignore that
    # (pipefail would otherwise report the system under test as vanished).
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
        {
            pid = $1; sub(/^.*\) /, ""); split($0, f, " ")
            # After stripping "pid (comm) ": f[2]=ppid, f[12..15]=utime stime cutime cstime.
            kids[f[2]] = kids[f[2]] " " pid
            ticks[pid] = f[12] + f[13] + f[14] + f[15]
        }
        END {
            if (!(root in ticks)) { print "NaN"; exit 1 }
            n = 1; q[1] = root; sum = 0
            for (i = 1; i <= n; i++) {
                sum += ticks[q[i]]
                c = split(kids[q[i]], k, " ")
                for (j = 1; j <= c; j++) q[++n] = k[j]
            }
            print sum
        }'
}

# ---------------------------------------------------------------- setup

check_args() {
    local v
    for v in MESSAGES SESSIONS SIZE_KB CONCURRENCY PHASE_TIMEOUT SINK_PORT POSTFIX_PORT \
        OUTRIDER_PORT ROUNDS; do
        is_uint "${!v}" || die "$v must be a positive integer (got '${!v}')"
    done
    for v in $SYSTEMS; do
        [[ $v == postfix || $v == outrider ]] || die "SYSTEMS: unknown system '$v'"
    done
    [[ -n ${SYSTEMS// /} ]] || die "SYSTEMS is empty"
    [[ $(id -u) == 0 ]] || die "must run as root (private Postfix instance, smtp-sink -u)"
    [[ -d $BENCH_TMPDIR ]] || die "BENCH_TMPDIR $BENCH_TMPDIR does not exist"
}

# Debian's postfix package ships smtp-source/smtp-sink. Install it without making it
# the system MTA, and make sure the packaged service is not left running.
ensure_postfix_tools() {
    if [[ -x $SMTP_SOURCE && -x $SMTP_SINK && -x $POSTFIX ]]; then
        return
    fi
    log "installing Debian's postfix package (for smtp-source, smtp-sink, postfix)"
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix >&2; then
        apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix >&2
    fi
    [[ -x $SMTP_SOURCE && -x $SMTP_SINK ]] || die "postfix installed but smtp-source/sink missing"
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet postfix 2>/dev/null; then
        log "stopping the system postfix service started by the package"
        systemctl stop postfix || true
    fi
    local pidf=/var/spool/postfix/pid/master.pid pid
    if [[ -s $pidf ]]; then
        pid=$(tr -d ' \n' <"$pidf")
        if [[ -n $pid ]] && pid_alive "$pid"; then
            log "stopping the system postfix master (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            wait_gone "$pid" "$STOP_TIMEOUT" || die "system postfix master $pid did not stop"
        fi
    fi
}

ensure_outrider() {
    if [[ ! -x $OUTRIDER ]]; then
        log "no $OUTRIDER: creating $ROOT/.venv"
        (cd "$ROOT" && python3 -m venv .venv && .venv/bin/pip install -q -e .) >&2
    fi
    "$OUTRIDER" --version >/dev/null 2>&1 ||
        die "'$OUTRIDER --version' fails; fix the install or run SYSTEMS=postfix $0"
}

# ---------------------------------------------------------------- cleanup

stop_pid() { # stop_pid PID NAME: SIGTERM, wait, SIGKILL.
    local pid=$1 name=$2
    pid_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
        log "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

stop_postfix() {
    [[ -n $POSTFIX_MASTER ]] || return 0
    local kids
    kids=$(tree_pids "$POSTFIX_MASTER" | tail -n +2)
    "$POSTFIX" -c "$POSTFIX_CONF" stop >/dev/null 2>&1 || kill -TERM "$POSTFIX_MASTER" 2>/dev/null || true
    if ! wait_gone "$POSTFIX_MASTER" "$STOP_TIMEOUT"; then
        log "postfix master (pid $POSTFIX_MASTER) did not stop; sending SIGKILL"
        kill -KILL "$POSTFIX_MASTER" 2>/dev/null || true
    fi
    local pid
    for pid in $kids; do stop_pid "$pid" "postfix child"; done
    POSTFIX_MASTER=""
}

stop_outrider() {
    [[ -n $OUTRIDER_PID ]] || return 0
    local kids pid
    kids=$(tree_pids "$OUTRIDER_PID" | tail -n +2)
    stop_pid "$OUTRIDER_PID" outrider
    wait "$OUTRIDER_PID" 2>/dev/null || true
    for pid in $kids; do
        if pid_alive "$pid"; then
            log "outrider child $pid survived its parent; stopping it"
            stop_pid "$pid" "outrider child"
        fi
    done
    OUTRIDER_PID=""
}

stop_sink() {
    if [[ -n $SINK_PID ]]; then
        kill -TERM "$SINK_PID" 2>/dev/null || true
    fi
    if [[ -n $SINK_WRAPPER ]]; then
        wait "$SINK_WRAPPER" 2>/dev/null || true
    fi
    SINK_PID=""
    SINK_WRAPPER=""
}

cleanup() {
    local rc=$?
    # A child forked for `cmd &` still carries this trap until it execs; if it is
    # killed in that window it must not tear down the run. Only the main shell cleans.
    [[ $BASHPID == "$$" ]] || return "$rc"
    trap - EXIT INT TERM
    if [[ -n $SLEEPER ]]; then kill "$SLEEPER" 2>/dev/null || true; fi
    if [[ -n $SOURCE_PID ]]; then # timeout(1) passes the signal on to smtp-source
        kill -TERM "$SOURCE_PID" 2>/dev/null || true
        wait "$SOURCE_PID" 2>/dev/null || true
    fi
    stop_outrider
    stop_postfix
    stop_sink
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ $KEEP == 1 ]]; then
            log "KEEP=1: work files kept in $WORK"
        else
            rm -rf -- "$WORK"
        fi
    fi
    exit "$rc"
}

# ---------------------------------------------------------------- sink

# A fresh smtp-sink per system: -M makes it exit as soon as it has received
# MESSAGES messages, and the wrapper stamps that moment. -c keeps running counters
# in sink.out so a timeout can report how many arrived.
start_sink() {
    local dir=$1
    port_open "$SINK_PORT" && die "port $SINK_PORT already in use"
    (
        "$SMTP_SINK" -c -u nobody -h sink.bench.test -M "$MESSAGES" \
            "127.0.0.1:$SINK_PORT" 1000 >"$dir/sink.out" 2>"$dir/sink.err" &
        echo $! >"$dir/sink.pid"
        rc=0
        wait $! || rc=$?
        echo "$rc $EPOCHREALTIME" >"$dir/sink.done"
    ) &
    SINK_WRAPPER=$!
    local deadline=$((SECONDS + 10))
    until [[ -s $dir/sink.pid ]]; do
        ((SECONDS < deadline)) || die "smtp-sink did not start"
        sleep 0.05
    done
    SINK_PID=$(<"$dir/sink.pid")
    wait_smtp "$SINK_PORT" 10 "$SINK_PID" || die "smtp-sink not greeting: $(cat "$dir/sink.err")"
}

sink_count() { # messages the sink has seen so far, from its -c counters
    tr '\r' '\n' <"$1/sink.out" | awk '/mesg=/ { sub(/.*mesg=/, ""); n = $1 } END { print n + 0 }'
}

# wait_sink DIR NAME: block until the sink has all messages (or PHASE_TIMEOUT); set
# SINK_END to the arrival time of the last message. (Not usable in $(...): it must
# wait for this shell's own children.)
SINK_END=""
wait_sink() {
    local dir=$1 name=$2 rc
    # The wrapper writes sink.done before it exits. Often the sink finishes while
    # smtp-source is still closing its sessions; bash may then have reaped the
    # wrapper already, and there is nothing to wait for.
    if [[ ! -s $dir/sink.done ]]; then
        sleep "$PHASE_TIMEOUT" 2>/dev/null &
        SLEEPER=$!
        wait -n "$SINK_WRAPPER" "$SLEEPER" 2>/dev/null || true
        if [[ ! -s $dir/sink.done ]]; then
            die "$name: delivery phase exceeded ${PHASE_TIMEOUT}s;" \
                "sink has $(sink_count "$dir") of $MESSAGES messages"
        fi
        kill "$SLEEPER" 2>/dev/null || true
        wait "$SLEEPER" 2>/dev/null || true
        SLEEPER=""
    fi
    wait "$SINK_WRAPPER" 2>/dev/null || true
    SINK_WRAPPER=""
    SINK_PID=""
    read -r rc SINK_END <"$dir/sink.done"
    [[ $rc == 0 ]] || die "$name: smtp-sink exited with status $rc: $(cat "$dir/sink.err")"
}

# ---------------------------------------------------------------- systems

render() { # render TEMPLATE OUT TMPDIR
    sed -e "s|@TMP@|$3|g" -e "s|@SINK_PORT@|$SINK_PORT|g" \
        -e "s|@POSTFIX_PORT@|$POSTFIX_PORT|g" -e "s|@OUTRIDER_PORT@|$OUTRIDER_PORT|g" \
        -e "s|@CONCURRENCY@|$CONCURRENCY|g" "$1" >"$2"
}

start_postfix() {
    local dir=$1
    mkdir -p "$dir/conf" "$dir/queue" "$dir/data"
    chown postfix:postfix "$dir/data"
    render "$BENCH/postfix/main.cf.in" "$dir/conf/main.cf" "$dir"
    render "$BENCH/postfix/master.cf.in" "$dir/conf/master.cf" "$dir"
    POSTFIX_CONF=$dir/conf
    port_open "$POSTFIX_PORT" && die "port $POSTFIX_PORT already in use"
    # Postfix reports config errors only to its log (stderr is not a tty here).
    if ! "$POSTFIX" -c "$POSTFIX_CONF" check >&2 || ! "$POSTFIX" -c "$POSTFIX_CONF" start >&2; then
        die "private postfix failed to start; $dir/maillog says: $(tail -5 "$dir/maillog" 2>/dev/null)"
    fi
    local pidf=$dir/queue/pid/master.pid deadline=$((SECONDS + START_TIMEOUT))
    until [[ -s $pidf ]]; do
        ((SECONDS < deadline)) || die "postfix master wrote no pid file"
        sleep 0.1
    done
    POSTFIX_MASTER=$(tr -d ' \n' <"$pidf")
    wait_smtp "$POSTFIX_PORT" "$START_TIMEOUT" "$POSTFIX_MASTER" ||
        die "postfix not greeting on $POSTFIX_PORT; $dir/maillog: $(tail -5 "$dir/maillog")"
    SUT_PID=$POSTFIX_MASTER
}

start_outrider() {
    local dir=$1
    mkdir -p "$dir/spool" "$dir/log"
    render "$BENCH/outrider-relay.toml.template" "$dir/outrider.toml" "$dir"
    if [ -n "${RECEIVERS:-}" ]; then
        sed -i "/^log-dir = /a receiver-processes = $RECEIVERS" "$dir/outrider.toml"
    fi
    if [ -n "${OUTRIDER_EXTRA:-}" ]; then printf '\n%s\n' "$OUTRIDER_EXTRA" >>"$dir/outrider.toml"; fi
    port_open "$OUTRIDER_PORT" && die "port $OUTRIDER_PORT already in use"
    "$OUTRIDER" run -c "$dir/outrider.toml" >"$dir/outrider.out" 2>&1 &
    OUTRIDER_PID=$!
    wait_smtp "$OUTRIDER_PORT" "$START_TIMEOUT" "$OUTRIDER_PID" ||
        die "outrider not greeting on $OUTRIDER_PORT; its output: $(tail -20 "$dir/outrider.out")"
    SUT_PID=$OUTRIDER_PID
}

# run_system NAME PORT: one full measurement; appends a result line to RESULTS.
SUT_PID=""
RESULTS=()
run_system() {
    local name=$1 port=$2 dir=$WORK/$1.$ROUND # fresh spool, queue and sink each round
    mkdir -p "$dir"
    chmod 755 "$dir"
    log "$name: starting sink and $name"
    sync # leave no dirty pages from the previous phase for this one to pay for
    start_sink "$dir"
    "start_$name" "$dir"
    sleep 1 # let on-demand workers settle before the CPU baseline

    local c0 c1 t0 t1 t2 rc=0
    c0=$(tree_cpu_ticks "$SUT_PID") || die "$name: process $SUT_PID vanished"
    log "$name: injecting $MESSAGES x ${SIZE_KB}KB over $SESSIONS sessions"
    t0=$EPOCHREALTIME
    # In the background so that a signal to this script interrupts `wait` at once.
    # shellcheck disable=SC2086  # SOURCE_OPTS is a word list
    timeout "$PHASE_TIMEOUT" "$SMTP_SOURCE" $SOURCE_OPTS -s "$SESSIONS" -m "$MESSAGES" \
        -l $((SIZE_KB * 1024)) -M client.bench.test -f sender@bench.test -t rcpt@bench.test \
        "127.0.0.1:$port" >"$dir/source.out" 2>&1 &
    SOURCE_PID=$!
    local spy=""
    if [[ -n ${PROFILE:-} && $name == outrider ]]; then
        mkdir -p "$PROFILE"
        "$(dirname "$OUTRIDER")/py-spy" record --subprocesses --nonblocking -r 250 ${PROFILE_OPTS:-} \
            -d "${PROFILE_SECONDS:-15}" -f "${PROFILE_FORMAT:-flamegraph}" \
            -o "$PROFILE/outrider-$ROUND.${PROFILE_FORMAT:-svg}" \
            --pid "$SUT_PID" >"$dir/py-spy.out" 2>&1 &
        spy=$!
    fi
    wait "$SOURCE_PID" || rc=$?
    [[ -z $spy ]] || wait "$spy" || log "py-spy failed: $(tail -3 "$dir/py-spy.out")"
    t1=$EPOCHREALTIME
    SOURCE_PID=""
    ((rc != 124)) || die "$name: injection phase exceeded ${PHASE_TIMEOUT}s"
    ((rc == 0)) || die "$name: smtp-source failed (status $rc): $(tail -5 "$dir/source.out")"
    log "$name: injected in $(calc "$t1 - $t0")s; waiting for the sink"
    wait_sink "$dir" "$name"
    t2=$SINK_END
    c1=$(tree_cpu_ticks "$SUT_PID") || die "$name: process $SUT_PID died during the run"
    log "$name: all $MESSAGES at the sink after $(calc "$t2 - $t0")s"
    "stop_$name"

    local tck inj e2e cpu
    tck=$(getconf CLK_TCK)
    inj=$(calc "$t1 - $t0" 3)
    e2e=$(calc "$t2 - $t0" 3)
    cpu=$(calc "($c1 - $c0) / $tck")
    RESULTS+=("$name $inj $e2e $cpu")
}

# ---------------------------------------------------------------- report

# median of the numbers given as arguments
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

report() {
    local line name inj e2e cpu
    local -A inj_all e2e_all cpu_all inj_s e2e_s cpu_s
    printf '%-9s %10s %12s %10s %12s %9s %11s\n' system inject_s inject_msg/s e2e_s \
        e2e_msg/s cpu_s cpu_ms/msg
    for line in "${RESULTS[@]}"; do
        read -r name inj e2e cpu <<<"$line"
        inj_all[$name]+="$inj "
        e2e_all[$name]+="$e2e "
        cpu_all[$name]+="$cpu "
        printf '%-9s %10s %12s %10s %12s %9s %11s\n' "$name" "$inj" \
            "$(calc "$MESSAGES / $inj" 0)" "$e2e" "$(calc "$MESSAGES / $e2e" 0)" "$cpu" \
            "$(calc "$cpu * 1000 / $MESSAGES" 3)"
    done
    for name in "${!inj_all[@]}"; do
        # shellcheck disable=SC2086  # word lists of numbers
        inj_s[$name]=$(median ${inj_all[$name]})
        # shellcheck disable=SC2086
        e2e_s[$name]=$(median ${e2e_all[$name]})
        # shellcheck disable=SC2086
        cpu_s[$name]=$(median ${cpu_all[$name]})
    done
    if ((ROUNDS > 1)); then
        echo
        echo "medians over $ROUNDS rounds:"
        for name in "${!inj_s[@]}"; do
            printf '%-9s %10s %12s %10s %12s %9s %11s\n' "$name" "${inj_s[$name]}" \
                "$(calc "$MESSAGES / ${inj_s[$name]}" 0)" "${e2e_s[$name]}" \
                "$(calc "$MESSAGES / ${e2e_s[$name]}" 0)" "${cpu_s[$name]}" \
                "$(calc "${cpu_s[$name]} * 1000 / $MESSAGES" 3)"
        done
    fi
    if [[ -n ${inj_s[postfix]:-} && -n ${inj_s[outrider]:-} ]]; then
        echo
        echo "Outrider/Postfix injection rate:  $(calc "${inj_s[postfix]} / ${inj_s[outrider]}")"
        echo "Outrider/Postfix end-to-end rate: $(calc "${e2e_s[postfix]} / ${e2e_s[outrider]}")"
        if [[ ${cpu_s[postfix]} != 0.00 ]]; then
            echo "Outrider/Postfix CPU seconds:     $(calc "${cpu_s[outrider]} / ${cpu_s[postfix]}")"
        fi
    fi
}

header() {
    local pv ov="-"
    pv=$(dpkg-query -W -f='${Version}' postfix 2>/dev/null) || pv="?"
    if [[ " $SYSTEMS " == *" outrider "* ]]; then
        ov=$("$OUTRIDER" --version 2>&1 | head -1)
    fi
    echo "bench/relay.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), $(nproc) CPUs, $(uname -r)"
    echo "messages=$MESSAGES sessions=$SESSIONS size=${SIZE_KB}KB outbound_concurrency=$CONCURRENCY rounds=$ROUNDS" \
        "smtp-source opts='$SOURCE_OPTS'"
    echo "postfix $pv; outrider $ov; work dir fs $(df -T "$BENCH_TMPDIR" | awk 'NR == 2 { print $2 }')"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the box skews results)"
}

main() {
    check_args
    ensure_postfix_tools
    if [[ " $SYSTEMS " == *" outrider "* ]]; then ensure_outrider; fi
    trap cleanup EXIT
    trap '[[ $BASHPID != "$$" ]] || log "interrupted"; exit 130' INT TERM
    WORK=$(mktemp -d "$BENCH_TMPDIR/outrider-relay-bench.XXXXXX")
    chmod 755 "$WORK" # postfix daemons run as the postfix user

    local hdr name port
    hdr=$(header)
    local order
    order=$SYSTEMS
    for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
        for name in $order; do
            port=$POSTFIX_PORT
            [[ $name == outrider ]] && port=$OUTRIDER_PORT
            run_system "$name" "$port"
        done
        # shellcheck disable=SC2086  # SYSTEMS is a word list
        order=$(printf "%s\n" $order | tac | tr "\n" " ") # alternate who goes first
    done

    mkdir -p "$BENCH/out"
    local out
    out=$BENCH/out/relay-$(date -u +%Y%m%dT%H%M%SZ).txt
    {
        printf '%s\n\n' "$hdr"
        report
    } | tee "$out"
    log "figures written to $out"
}

main "$@"
