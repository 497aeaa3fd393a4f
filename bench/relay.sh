#!/usr/bin/env bash
# Relay throughput, mailgate vs Postfix, on this machine in one run (bench/README.md):
#
#   (a) mailgate: hey -> REST POST /v1/messages:send -> mailgate, relay backend -> smtp-sink
#   (b) Postfix:  smtp-source -> private Postfix (scripts/postfix-relay.sh, relayhost)  -> smtp-sink
#
# Both paths send the same message (same headers as mailgate writes, a 1 KB text body) to
# one smtp-sink, which counts what arrives. msgs/s = messages counted at the sink ÷ wall
# time from the start of the load to the last message at the sink. For mailgate, which
# answers only after the sink has accepted, that is also when hey ends; Postfix answers
# once the message is in its queue and delivers later, so its clock runs until the sink
# has the last one.
#
# Usage: bench/relay.sh   (as root: Postfix runs as a private instance; see variables below)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

N=${BENCH_N:-5000}
C=${BENCH_C:-20}
WARMUP=${BENCH_WARMUP:-200}
BODY_BYTES=${BENCH_BODY_BYTES:-1024}
PATHS=${BENCH_PATHS:-mailgate postfix}
HTTP_PORT=${BENCH_HTTP_PORT:-18080}
GRPC_PORT=${BENCH_GRPC_PORT:-19090}
SINK_PORT=${BENCH_SINK_PORT:-12525}
POSTFIX_PORT=${BENCH_POSTFIX_PORT:-12526}
KEEP=${BENCH_KEEP:-0}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'relay.sh: %s\n' "$*" >&2; exit 1; }

for v in N C WARMUP BODY_BYTES HTTP_PORT GRPC_PORT SINK_PORT POSTFIX_PORT; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "BENCH_$v must be a positive integer, not '${!v}'"
done
RUN_TIMEOUT=${BENCH_TIMEOUT:-$((60 + N / 100))}
[[ $RUN_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "BENCH_TIMEOUT must be a positive integer, not '$RUN_TIMEOUT'"
# hey gives each worker N/C requests: N must divide evenly for it to send N.
((N % C == 0 && WARMUP % C == 0)) || die "BENCH_N ($N) and BENCH_WARMUP ($WARMUP) must be multiples of BENCH_C ($C)"
read -r -a paths <<<"${PATHS//,/ }"
((${#paths[@]} > 0)) || die "BENCH_PATHS is empty"
for p in "${paths[@]}"; do
	[[ $p == mailgate || $p == postfix ]] || die "BENCH_PATHS: want mailgate and/or postfix, not '$p'"
done
want() { [[ " ${paths[*]} " == *" $1 "* ]]; }

if want postfix; then
	[[ $(id -u) -eq 0 ]] || die "the Postfix path needs root (a private Postfix instance); or set BENCH_PATHS=mailgate"
fi
for tool in smtp-sink smtp-source; do
	[[ -x /usr/sbin/$tool ]] || scripts/postfix-relay.sh install >&2 ||
		die "/usr/sbin/$tool is missing (it comes with Debian's postfix package)"
done
if want mailgate && { ! command -v hey >/dev/null || ! command -v jq >/dev/null || ! command -v curl >/dev/null; }; then
	log "installing hey, jq, curl from Debian"
	apt-get install -y hey jq curl >/dev/null 2>&1 || { apt-get update && apt-get install -y hey jq curl; } >/dev/null ||
		die "could not install hey/jq/curl"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mailgate-relay-bench.XXXXXX")
pfdir=$tmp/postfix
sink_pid='' server_pid='' gen_pid='' postfix_started=0
cleanup() {
	local rc=$?
	if [[ -n $gen_pid ]]; then # a load generator still running: stop it first
		kill -TERM "$gen_pid" 2>/dev/null || true
		wait "$gen_pid" 2>/dev/null || true
	fi
	if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		for _ in {1..50}; do # up to 5 s for the drain
			kill -0 "$server_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	if ((postfix_started)); then
		scripts/postfix-relay.sh stop "$pfdir" >/dev/null || true
	fi
	if [[ -n $sink_pid ]]; then
		kill -TERM "$sink_pid" 2>/dev/null || true
		wait "$sink_pid" 2>/dev/null || true
	fi
	if [[ $KEEP == 1 ]]; then
		log "kept $tmp"
	else
		rm -rf "$tmp"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# bg_wait CMD...: run CMD in the background and wait for it, so that a signal to this
# script is handled at once (bash runs traps only after a foreground command ends).
bg_wait() {
	"$@" &
	gen_pid=$!
	local rc=0
	wait "$gen_pid" || rc=$?
	gen_pid=
	return "$rc"
}

# A port something answers on is taken. A port given in the environment must be free; a
# default one moves up to the next free port.
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
taken=" "
pick_port() { # pick_port VAR: settle the port in VAR
	local var=$1 port=${!1} env=BENCH_$1
	if [[ -n ${!env:-} ]]; then
		if port_taken "$port" || [[ $taken == *" $port "* ]]; then
			die "127.0.0.1:$port ($env) is already in use"
		fi
	else
		for ((; port < ${!var} + 100; port++)); do
			[[ $taken != *" $port "* ]] && ! port_taken "$port" && break
		done
		((port < ${!var} + 100)) || die "no free port in 127.0.0.1:${!var}-$((${!var} + 99)); set $env"
		[[ $port == "${!var}" ]] || log "127.0.0.1:${!var} is not free; using $port (set $env to choose)"
		printf -v "$var" '%s' "$port"
	fi
	taken+="$port "
}
pick_port SINK_PORT
want mailgate && pick_port HTTP_PORT && pick_port GRPC_PORT
want postfix && pick_port POSTFIX_PORT

# ---------------------------------------------------------------- clocks and CPU
# The sink is polled every 10 ms while the load runs. The polling forks nothing (no sleep,
# no tail): on a 2-core machine a hundred processes a second would be part of the load.
now_us() { printf '%s\n' "${EPOCHREALTIME//[!0-9]/}"; } # µs; the separator follows the locale
exec {nap_fd}<> <(:) # never readable: read -t on it is a sleep without a process
nap() { read -r -t "$1" -u "$nap_fd" _ || true; }
clk_tck=$(getconf CLK_TCK)
# machine_ticks prints the busy CPU time of the whole machine so far, in clock ticks.
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
# proc_ticks PID: user+system CPU ticks of PID and of the children it has reaped.
proc_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# session_ticks PID: the same summed over PID's session. For the Postfix master that is all
# of Postfix: its daemons run in its session, and when one exits the master reaps it.
session_ticks() {
	local sid
	sid=$(awk '{ sub(/^.*\) /, ""); print $4 }' "/proc/$1/stat")
	{ cat /proc/[0-9]*/stat 2>/dev/null || true; } |
		awk -v sid="$sid" '{ sub(/^.*\) /, "") } $4 == sid { t += $12 + $13 + $14 + $15 } END { print t + 0 }'
}
# child_secs VAR: set VAR to the CPU seconds (user+system) of this shell's reaped children,
# the load generators among them. (A command substitution would count its own children.)
child_secs() {
	times >"$tmp/times"
	printf -v "$1" '%s' "$(awk 'NR == 2 {
		for (i = 1; i <= 2; i++) { split($i, t, "m"); sub("s", "", t[2]); s += t[1] * 60 + t[2] }
		print s }' "$tmp/times")"
}

# ---------------------------------------------------------------- the sink
# smtp-sink -c prints "sess=S quit=Q mesg=M" at every session end, QUIT and ".", separated
# by CR; mesg is the count of messages received so far.
log "starting smtp-sink on 127.0.0.1:$SINK_PORT"
smtp-sink -c -u nobody -m 1024 "127.0.0.1:$SINK_PORT" 1024 >"$tmp/sink.out" 2>"$tmp/sink.err" &
sink_pid=$!
for _ in {1..50}; do
	port_taken "$SINK_PORT" && break
	kill -0 "$sink_pid" 2>/dev/null || { cat "$tmp/sink.err" >&2; die "smtp-sink exited during start-up"; }
	sleep 0.1
done
port_taken "$SINK_PORT" || die "smtp-sink does not listen on 127.0.0.1:$SINK_PORT"
exec {sink_fd}<"$tmp/sink.out"
sink_n=0 sink_partial=''
# sink_update: read what the sink printed since the last call; sets sink_n.
sink_update() {
	local rec
	while IFS= read -r -d $'\r' -u "$sink_fd" rec; do
		rec=$sink_partial$rec sink_partial=''
		if [[ $rec == *mesg=* ]]; then
			rec=${rec##*mesg=}
			sink_n=${rec//[!0-9]/}
		fi
	done
	sink_partial+=$rec # a record not complete yet
}
# wait_sink COUNT: wait until the sink has counted COUNT messages in all.
wait_sink() {
	local deadline=$((SECONDS + RUN_TIMEOUT))
	while sink_update && ((sink_n < $1)); do
		kill -0 "$sink_pid" 2>/dev/null || die "smtp-sink died"
		((SECONDS < deadline)) || die "the sink has $sink_n of $1 messages after ${RUN_TIMEOUT}s"
		nap 0.01
	done
}

# ---------------------------------------------------------------- the message
# The same text for both paths: BODY_BYTES of 64-byte lines (63 characters and LF).
body_text=$(awk -v n="$BODY_BYTES" 'BEGIN {
	for (i = 1; n > 0; i++) {
		line = sprintf("Line %03d of the relay benchmark message, sent by bench/relay.sh...", i)
		len = (n >= 64 ? 63 : n - 1); print substr(line, 1, len); n -= len + 1
	} }')
# For smtp-source, the headers mailgate writes (quoted-printable leaves these lines as they are).
{
	printf 'Date: %s\n' "$(date -R)"
	printf 'MIME-Version: 1.0\n'
	printf 'Message-ID: <bench.%s@contoso.test>\n' "$(date +%s%N)"
	printf 'Subject: bench\nFrom: <app@contoso.test>\nTo: <user@contoso.test>\n'
	printf 'Content-Transfer-Encoding: quoted-printable\nContent-Type: text/plain; charset=UTF-8\n\n'
	printf '%s\n' "$body_text"
} >"$tmp/message.eml"

# measure PATH RUN SERVER_TICKS: send N messages with "RUN N" and wait until the sink has
# them all; record the wall time and the CPU the server (SERVER_TICKS, a command printing
# its CPU ticks so far), the sink, the load generator and the rest of the machine used.
measure() {
	local path=$1 run=$2 server=$3 base t0 tq t1 m0 m1 s0 s1 k0 k1 g0 g1
	sink_update
	base=$sink_n
	child_secs g0
	s0=$($server) k0=$(proc_ticks "$sink_pid") m0=$(machine_ticks) t0=$(now_us)
	$run "$N"
	tq=$(now_us)
	wait_sink $((base + N))
	t1=$(now_us)
	m1=$(machine_ticks) k1=$(proc_ticks "$sink_pid") s1=$($server)
	child_secs g1
	res_n[$path]=$((sink_n - base))
	read -r "res_secs[$path]" "res_rate[$path]" "res_run[$path]" "res_cpu[$path]" < <(awk \
		-v n="$N" -v us="$((t1 - t0))" -v usq="$((tq - t0))" -v hz="$clk_tck" \
		-v s="$((s1 - s0))" -v k="$((k1 - k0))" -v m="$((m1 - m0))" -v g="$(awk -v a="$g0" -v b="$g1" 'BEGIN { print b - a }')" 'BEGIN {
		w = us / 1e6; srv = s / hz / w; snk = k / hz / w; gen = g / w; oth = m / hz / w - srv - snk - gen
		printf "%.2f %.0f %.2f %.2f/%.2f/%.2f/%.2f\n", w, n / w, usq / 1e6, srv, snk, gen, (oth < 0 ? 0 : oth) }')
}

declare -A res_n res_secs res_rate res_run res_cpu res_note

# ---------------------------------------------------------------- (a) mailgate
mg_key=''
# hey_run N: N REST requests at concurrency C; all must return 200.
hey_run() {
	local out=$tmp/hey.$1
	bg_wait timeout "$RUN_TIMEOUT" hey -n "$1" -c "$C" -t 20 -m POST -T application/json \
		-H "Authorization: Bearer $mg_key" -D "$tmp/body.json" \
		"http://127.0.0.1:$HTTP_PORT/v1/messages:send" >"$out" 2>&1 ||
		{ cat "$out" >&2; die "hey failed or timed out (${RUN_TIMEOUT}s)"; }
	local ok
	ok=$(awk '$1 == "[200]" { n += $2 } END { print n + 0 }' "$out")
	if ((ok != $1)); then
		sed -n '/Status code distribution/,$p' "$out" >&2
		tail -n 5 "$tmp/server.log" >&2
		die "(a) mailgate: $(($1 - ok)) of $1 requests did not return 200"
	fi
	cp "$out" "$tmp/hey.last"
}
mailgate_ticks() { proc_ticks "$server_pid"; }

run_mailgate() {
	log "building mailgate"
	go build -o "$tmp/mailgate" ./cmd/mailgate
	"$tmp/mailgate" keys new bench >"$tmp/key.txt"
	local hash
	mg_key=$(grep -m1 -E '^mg_[A-Za-z0-9_-]+$' "$tmp/key.txt" || true)
	hash=$(sed -n 's/^[[:space:]]*hash:[[:space:]]*\(sha256:[0-9a-f]*\).*/\1/p' "$tmp/key.txt" | head -n1)
	[[ -n $mg_key && -n $hash ]] || { cat "$tmp/key.txt" >&2; die "could not parse the output of 'mailgate keys new'"; }
	cat >"$tmp/mailgate.yaml" <<-EOF
		listen: {http: 127.0.0.1:$HTTP_PORT, grpc: 127.0.0.1:$GRPC_PORT, shutdown_timeout: 5s}
		keys:
		  - {name: bench, hash: "$hash", senders: ["*"]}
		routes:
		  - {match: "*", backend: relay}
		backends:
		  relay:
		    type: relay
		    address: 127.0.0.1:$SINK_PORT
		    tls: opportunistic
		    accepted_domains: [contoso.test]
		    max_connections: 10
		limits:
		  mailbox: {messages_per_minute: 0, recipients_per_day: 0}
		log: {level: warn, format: json}
	EOF
	if ! "$tmp/mailgate" check-config "$tmp/mailgate.yaml" >/dev/null 2>"$tmp/check.err"; then
		cat "$tmp/check.err" >&2
		die "(a) mailgate: this build does not accept the benchmark's relay backend configuration (above); BENCH_PATHS=postfix runs (b) alone"
	fi
	jq -n --arg text "$body_text" '{from: {address: "app@contoso.test"}, to: [{address: "user@contoso.test"}],
		subject: "bench", text: ($text + "\n")}' >"$tmp/body.json"

	log "(a) starting mailgate on 127.0.0.1:$HTTP_PORT, relay backend -> 127.0.0.1:$SINK_PORT"
	"$tmp/mailgate" serve --config "$tmp/mailgate.yaml" 2>"$tmp/server.log" &
	server_pid=$!
	local ready=0 code
	for _ in {1..100}; do # up to ~10 s
		kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/server.log" >&2; die "mailgate exited during start-up"; }
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$HTTP_PORT/readyz" || true)
		if [[ $code == 200 ]]; then ready=1 && break; fi
		sleep 0.1
	done
	((ready)) || { cat "$tmp/server.log" >&2; die "mailgate not ready on /readyz after 10 s"; }

	log "(a) warm-up: $WARMUP messages"
	sink_update
	local base=$sink_n
	hey_run "$WARMUP"
	wait_sink $((base + WARMUP))
	log "(a) $N messages at concurrency $C"
	measure mailgate hey_run mailgate_ticks
	res_note[mailgate]="hey reports $(awk '/Requests\/sec:/ { printf "%.0f", $2 }' "$tmp/hey.last") requests/s"

	kill -TERM "$server_pid" 2>/dev/null || true
	wait "$server_pid" 2>/dev/null || true
	server_pid=''
	if grep -q . "$tmp/server.log"; then
		log "(a) mailgate logged $(grep -c . "$tmp/server.log") line(s) at warn or above; the first:"
		head -n 3 "$tmp/server.log" >&2
	fi
}

# ---------------------------------------------------------------- (b) Postfix
# source_run N: N messages over C sessions, each session kept for its messages (-d).
source_run() {
	bg_wait timeout "$RUN_TIMEOUT" smtp-source -d -s "$C" -m "$1" -M bench.contoso.test \
		-f app@contoso.test -t user@contoso.test -F "$tmp/message.eml" \
		"127.0.0.1:$POSTFIX_PORT" >"$tmp/smtp-source.out" 2>&1 || {
		cat "$tmp/smtp-source.out" >&2
		tail -n 5 "$pfdir/postfix.log" >&2
		die "smtp-source failed or timed out (${RUN_TIMEOUT}s)"
	}
}
postfix_master=''
postfix_ticks() { session_ticks "$postfix_master"; }

run_postfix() {
	log "(b) starting Postfix on 127.0.0.1:$POSTFIX_PORT, relayhost 127.0.0.1:$SINK_PORT"
	postfix_started=1
	local rc=0
	scripts/postfix-relay.sh start "$pfdir" "$POSTFIX_PORT" --no-client-cert --no-tls \
		--relayhost "127.0.0.1:$SINK_PORT" >"$tmp/postfix-start.log" 2>&1 || rc=$?
	if ((rc != 0)); then
		((rc != 3)) || postfix_started=0
		cat "$tmp/postfix-start.log" >&2
		die "(b) Postfix did not start (scripts/postfix-relay.sh exit $rc)"
	fi
	postfix_master=$(awk '{ print $1 }' "$pfdir/queue/pid/master.pid")
	[[ -d /proc/$postfix_master ]] || die "(b) no Postfix master at pid '$postfix_master'"

	log "(b) warm-up: $WARMUP messages"
	sink_update
	local base=$sink_n
	source_run "$WARMUP"
	wait_sink $((base + WARMUP))
	log "(b) $N messages over $C sessions"
	measure postfix source_run postfix_ticks
	res_note[postfix]=$(awk -v n="$N" -v s="${res_run[postfix]}" 'BEGIN {
		printf "smtp-source had all %d in the queue after %.2f s (%.0f/s)", n, s, n / s }')
	if grep -qE 'status=(deferred|bounced)' "$pfdir/postfix.log"; then
		log "(b) Postfix deferred or bounced some messages:"
		grep -E 'status=(deferred|bounced)' "$pfdir/postfix.log" | head -n 3 >&2
	fi
	scripts/postfix-relay.sh stop "$pfdir" >/dev/null
	postfix_started=0
}

want mailgate && run_mailgate
want postfix && run_postfix

# ---------------------------------------------------------------- summary
describe_tree() {
	local rev
	if ! rev=$(git rev-parse --short HEAD 2>/dev/null); then
		echo "a tree outside git"
	elif [[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
		echo "work tree: commit $rev + uncommitted changes"
	else
		echo "work tree: commit $rev"
	fi
}
declare -A label=([mailgate]="(a) hey → mailgate REST → relay backend → smtp-sink"
	[postfix]="(b) smtp-source → Postfix $(postconf -h mail_version 2>/dev/null) → smtp-sink")
cat <<EOF

relay benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(describe_tree)
$N messages per path after $WARMUP warm-up, concurrency $C; message of about $(($(wc -c <"$tmp/message.eml") + $(wc -l <"$tmp/message.eml"))) bytes ($BODY_BYTES-byte body); $(nproc) CPUs shared by everything

| path | messages | seconds | msgs/s |
| --- | ---: | ---: | ---: |
EOF
for p in "${paths[@]}"; do
	printf '| %s | %s | %s | %s |\n' "${label[$p]}" "${res_n[$p]}" "${res_secs[$p]}" "${res_rate[$p]}"
done
echo
if want mailgate && want postfix; then
	awk -v a="${res_rate[mailgate]}" -v b="${res_rate[postfix]}" 'BEGIN { printf "ratio mailgate/postfix: %.2f\n\n", a / b }'
fi
echo "CPU cores used while each path ran (server / smtp-sink / load generator / rest of machine, of $(nproc)):"
for p in "${paths[@]}"; do
	printf '  %-8s %s; %s\n' "$p" "${res_cpu[$p]//\// \/ }" "${res_note[$p]}"
done
