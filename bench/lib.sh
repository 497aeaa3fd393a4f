# shellcheck shell=bash
# bench/lib.sh: code the benchmark scripts share (bench/README.md). Sourced, not run, by a
# script that has done `set -euo pipefail` and `cd` to the repo root (paths here are
# relative to it).
#
#   general                  log/die, temp dir and exit traps, ports, building and starting
#                            mailgate, CPU accounting: bench/load.sh, bench/relay.sh, bench/shim.sh
#   mailgate vs Postfix      settings, smtp-sink and its counter, Postfix, the measurement and
#                            the summary: bench/relay.sh and bench/shim.sh, which differ only in
#                            path (a), the mailgate set-up and its load
#
# Sourcing it sets the state below and defines functions; it starts nothing.

# ---------------------------------------------------------------- state
# What the exit trap must stop: '' (or 0) when nothing runs.
gen_pid='' server_pid='' sink_pid='' postfix_started=0
taken=' ' # the ports pick_port handed out, space-separated
clk_tck=$(getconf CLK_TCK)
# measure_path's results per path (mailgate, postfix), and a note per path for the summary.
declare -A res_n res_secs res_rate res_run res_cpu res_note

# ================================================================ general

# log MESSAGE...: print "==> MESSAGE" to stderr.
log() { printf '==> %s\n' "$*" >&2; }

# die MESSAGE...: print "SCRIPT: MESSAGE" to stderr (SCRIPT: the script's file name) and exit 1.
die() { printf '%s: %s\n' "${0##*/}" "$*" >&2; exit 1; }

# ---------------------------------------------------------------- exit and clean-up
# on_exit FUNCTION: run FUNCTION on every exit, Ctrl-C (status 130) and SIGTERM (143)
# included. FUNCTION starts with `local rc=$?` and ends with `exit "$rc"`.
on_exit() {
	trap -- "$1" EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# stop_generator: stop the load generator bg_wait is waiting for (gen_pid), if any.
stop_generator() {
	if [[ -n $gen_pid ]]; then # a load generator still running: stop it first
		kill -TERM "$gen_pid" 2>/dev/null || true
		wait "$gen_pid" 2>/dev/null || true
	fi
}

# stop_server: stop mailgate (server_pid) if it still runs: SIGTERM, up to 5 s for its
# drain, then SIGKILL.
stop_server() {
	if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		for _ in {1..50}; do # up to 5 s for the drain, then no more waiting
			kill -0 "$server_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
}

# remove_tmp: remove the temp dir $tmp, or keep it and say where when KEEP (BENCH_KEEP) is 1.
remove_tmp() {
	if [[ $KEEP == 1 ]]; then
		log "kept $tmp"
	else
		rm -rf "$tmp"
	fi
}

# bg_wait CMD...: run CMD in the background and wait for it, so that a signal to this
# script is handled at once (bash runs traps only after a foreground command ends). Its
# pid is in gen_pid meanwhile, for stop_generator. Returns CMD's exit status.
bg_wait() {
	"$@" &
	gen_pid=$!
	local rc=0
	wait "$gen_pid" || rc=$?
	gen_pid=
	return "$rc"
}

# ---------------------------------------------------------------- ports
# port_taken PORT: true if something answers on 127.0.0.1:PORT.
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_port VAR: settle the port in VAR (SINK_PORT, ...), whose setting is BENCH_VAR. A port
# given in the environment must be free; a default one moves up to the next free port,
# skipping those picked before. (bench/load.sh has a pick_port of its own.)
pick_port() {
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

# ---------------------------------------------------------------- mailgate
# build_mailgate: build mailgate from the work tree into $tmp/mailgate and make an API key
# named bench (output in $tmp/key.txt); sets mg_key, the key, and mg_hash, its hash for
# the configuration's keys: list.
build_mailgate() {
	log "building mailgate"
	go build -o "$tmp/mailgate" ./cmd/mailgate
	"$tmp/mailgate" keys new bench >"$tmp/key.txt"
	mg_key=$(grep -m1 -E '^mg_[A-Za-z0-9_-]+$' "$tmp/key.txt" || true)
	mg_hash=$(sed -n 's/^[[:space:]]*hash:[[:space:]]*\(sha256:[0-9a-f]*\).*/\1/p' "$tmp/key.txt" | head -n1)
	[[ -n $mg_key && -n $mg_hash ]] || { cat "$tmp/key.txt" >&2; die "could not parse the output of 'mailgate keys new'"; }
}

# start_mailgate: start `$tmp/mailgate serve` with $tmp/mailgate.yaml, its log going to
# $tmp/server.log, and wait up to ~10 s for http://127.0.0.1:$HTTP_PORT/readyz to answer
# 200 (curl). Sets server_pid; dies if mailgate exits or does not get ready.
start_mailgate() {
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
}

# describe_tree [PREFIX]: print what the binary was built from: PREFIX followed by
# "commit REV" or "commit REV + uncommitted changes" (tracked files only), or
# "a tree outside git".
describe_tree() {
	local rev
	if ! rev=$(git rev-parse --short HEAD 2>/dev/null); then
		echo "a tree outside git"
	elif [[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
		echo "${1:-}commit $rev + uncommitted changes"
	else
		echo "${1:-}commit $rev"
	fi
}

# ---------------------------------------------------------------- clocks and CPU
# The sink is polled every 10 ms while the load runs. The polling forks nothing (no sleep,
# no tail): on a 2-core machine a hundred processes a second would be part of the load.

# now_us: print the wall clock in µs (EPOCHREALTIME; its separator follows the locale).
now_us() { printf '%s\n' "${EPOCHREALTIME//[!0-9]/}"; }

# nap SECONDS: sleep without starting a process (read -t on nap_fd, which start_sink opens
# and nothing ever writes to).
nap() { read -r -t "$1" -u "$nap_fd" _ || true; }

# machine_ticks: print the busy CPU time of the whole machine so far, in clock ticks.
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }

# proc_ticks PID: print the user+system CPU ticks of PID and of the children it has
# reaped; 0 if PID is gone.
proc_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# session_ticks PID: print the same summed over PID's session. For the Postfix master that
# is all of Postfix: its daemons run in its session, and when one exits the master reaps it.
session_ticks() {
	local sid
	sid=$(awk '{ sub(/^.*\) /, ""); print $4 }' "/proc/$1/stat")
	{ cat /proc/[0-9]*/stat 2>/dev/null || true; } |
		awk -v sid="$sid" '{ sub(/^.*\) /, "") } $4 == sid { t += $12 + $13 + $14 + $15 } END { print t + 0 }'
}

# child_secs VAR: set VAR to the CPU seconds (user+system) of this shell's reaped children,
# the load generators among them, using $tmp/times. (A command substitution would count
# its own children.)
child_secs() {
	times >"$tmp/times"
	printf -v "$1" '%s' "$(awk 'NR == 2 {
		for (i = 1; i <= 2; i++) { split($i, t, "m"); sub("s", "", t[2]); s += t[1] * 60 + t[2] }
		print s }' "$tmp/times")"
}

# ================================================================ mailgate vs Postfix
# (bench/relay.sh, bench/shim.sh) Path (a) is mailgate, path (b) Postfix; both deliver to
# one smtp-sink, which counts what arrives.

# ---------------------------------------------------------------- settings
# read_settings [PORT_VAR...]: read the settings both scripts have from BENCH_* (N, C,
# WARMUP, BODY_BYTES, PATHS, HTTP_PORT, GRPC_PORT, SINK_PORT, POSTFIX_PORT, KEEP, and
# RUN_TIMEOUT from BENCH_TIMEOUT, defaults as in bench/README.md) and check that the
# numbers are positive integers, the script's own PORT_VARs (set before) among them.
# shellcheck disable=SC2034 # the scripts use what this file does not
read_settings() {
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
	local v
	for v in N C WARMUP BODY_BYTES HTTP_PORT GRPC_PORT "$@" SINK_PORT POSTFIX_PORT; do
		[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "BENCH_$v must be a positive integer, not '${!v}'"
	done
	RUN_TIMEOUT=${BENCH_TIMEOUT:-$((60 + N / 100))}
	[[ $RUN_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "BENCH_TIMEOUT must be a positive integer, not '$RUN_TIMEOUT'"
}

# check_paths: split PATHS (BENCH_PATHS: mailgate and/or postfix, by spaces or commas) into
# the array paths, and check what the paths need: root for postfix; smtp-sink and
# smtp-source, installed with `scripts/postfix-relay.sh install` if missing.
check_paths() {
	read -r -a paths <<<"${PATHS//,/ }"
	((${#paths[@]} > 0)) || die "BENCH_PATHS is empty"
	local p
	for p in "${paths[@]}"; do
		[[ $p == mailgate || $p == postfix ]] || die "BENCH_PATHS: want mailgate and/or postfix, not '$p'"
	done
	if want postfix; then
		[[ $(id -u) -eq 0 ]] || die "the Postfix path needs root (a private Postfix instance); or set BENCH_PATHS=mailgate"
	fi
	need_smtp_tools
}

# need_smtp_tools: smtp-sink and smtp-source, installed with `scripts/postfix-relay.sh
# install` if missing.
need_smtp_tools() {
	local tool
	for tool in smtp-sink smtp-source; do
		[[ -x /usr/sbin/$tool ]] || scripts/postfix-relay.sh install >&2 ||
			die "/usr/sbin/$tool is missing (it comes with Debian's postfix package)"
	done
}

# want PATH: true if PATH (mailgate or postfix) is to run (check_paths has set paths).
want() { [[ " ${paths[*]} " == *" $1 "* ]]; }

# install_tools TOOL...: if any of the commands is missing, install the Debian packages of
# the same names with apt-get (apt-get update first if that fails).
install_tools() {
	local tool missing=0 list
	for tool; do
		command -v "$tool" >/dev/null || missing=1
	done
	((missing)) || return 0
	printf -v list ', %s' "$@"
	log "installing ${list#, } from Debian"
	apt-get install -y "$@" >/dev/null 2>&1 || { apt-get update && apt-get install -y "$@"; } >/dev/null ||
		die "could not install $(IFS=/ && echo "$*")"
}

# make_tmp NAME: create the temp dir $tmp ($TMPDIR/mailgate-NAME-bench.XXXXXX), with
# $pfdir for Postfix's instance in it, and set stop_all to run on every exit.
make_tmp() {
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/mailgate-$1-bench.XXXXXX")
	pfdir=$tmp/postfix
	on_exit stop_all
}

# stop_all: the exit trap of make_tmp: stop the load generator, mailgate, Postfix and the
# sink, whichever run, remove $tmp (unless BENCH_KEEP=1) and exit with the script's status.
stop_all() {
	local rc=$?
	stop_generator
	stop_server
	if ((postfix_started)); then
		scripts/postfix-relay.sh stop "$pfdir" >/dev/null || true
	fi
	if [[ -n $sink_pid ]]; then
		kill -TERM "$sink_pid" 2>/dev/null || true
		wait "$sink_pid" 2>/dev/null || true
	fi
	remove_tmp
	exit "$rc"
}

# pick_ports [PORT_VAR...]: settle SINK_PORT; HTTP_PORT, GRPC_PORT and the script's own
# PORT_VARs if mailgate runs; POSTFIX_PORT if Postfix runs (pick_port's rule).
pick_ports() {
	local var
	pick_port SINK_PORT
	if want mailgate; then
		for var in HTTP_PORT GRPC_PORT "$@"; do
			pick_port "$var"
		done
	fi
	if want postfix; then
		pick_port POSTFIX_PORT
	fi
}

# ---------------------------------------------------------------- the sink
# smtp-sink -c prints "sess=S quit=Q mesg=M" at every session end, QUIT and ".", separated
# by CR; mesg is the count of messages received so far.

# start_sink: start smtp-sink on 127.0.0.1:$SINK_PORT (its output in $tmp/sink.out, read
# by sink_update), wait until it listens, and open nap's fd. Sets sink_pid.
start_sink() {
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
	exec {nap_fd}<> <(:) # never readable
}

# sink_update: read what the sink printed since the last call; sets sink_n, the number of
# messages it has counted.
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

# wait_sink COUNT [SECONDS]: wait until the sink has counted COUNT messages in all; dies
# after SECONDS (default RUN_TIMEOUT) or if the sink dies.
wait_sink() {
	local deadline=$((SECONDS + ${2:-$RUN_TIMEOUT}))
	while sink_update && ((sink_n < $1)); do
		kill -0 "$sink_pid" 2>/dev/null || die "smtp-sink died"
		((SECONDS < deadline)) || die "the sink has $sink_n of $1 messages after ${2:-$RUN_TIMEOUT}s"
		nap 0.01
	done
}

# ---------------------------------------------------------------- warm-up and measurement
# warm_up LETTER RUN [SECONDS]: log "(LETTER) warm-up", send WARMUP messages with
# "RUN WARMUP" and wait (up to SECONDS, default RUN_TIMEOUT) until the sink has them all.
warm_up() {
	log "($1) warm-up: $WARMUP messages"
	sink_update
	local base=$sink_n
	$2 "$WARMUP"
	wait_sink $((base + WARMUP)) "${3:-$RUN_TIMEOUT}"
}

# measure_path PATH RUN SERVER_TICKS: send N messages with "RUN N" and wait until the sink
# has them all; record in res_*[PATH] the messages counted, the wall time, the rate, when
# RUN ended, and the CPU the server (SERVER_TICKS, a command printing its CPU ticks so
# far), the sink, the load generator and the rest of the machine used.
measure_path() {
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

# ---------------------------------------------------------------- (a) mailgate
# write_mailgate_config WHAT [EXTRA]: write $tmp/mailgate.yaml: listeners on HTTP_PORT and
# GRPC_PORT, the key from build_mailgate (mg_hash) allowed any sender, everything routed
# to a relay backend to the sink, mailbox limits off, the local queue in $tmp/spool,
# log level warn, and EXTRA (YAML
# lines, each ending in a newline) before the log line. Dies if this build's check-config
# rejects it, naming the configuration WHAT.
write_mailgate_config() {
	{
		cat <<-EOF
			listen: {http: 127.0.0.1:$HTTP_PORT, grpc: 127.0.0.1:$GRPC_PORT, shutdown_timeout: 5s}
			keys:
			  - {name: bench, hash: "$mg_hash", senders: ["*"]}
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
			queue: {dir: $tmp/spool}
		EOF
		printf '%s' "${2:-}"
		echo 'log: {level: warn, format: json}'
	} >"$tmp/mailgate.yaml"
	if ! "$tmp/mailgate" check-config "$tmp/mailgate.yaml" >/dev/null 2>"$tmp/check.err"; then
		cat "$tmp/check.err" >&2
		die "(a) mailgate: this build does not accept the benchmark's $1 (above); BENCH_PATHS=postfix runs (b) alone"
	fi
}

# mailgate_ticks: print mailgate's CPU ticks so far (measure_path's SERVER_TICKS for (a)).
mailgate_ticks() { proc_ticks "$server_pid"; }

# stop_mailgate: stop mailgate after path (a) (SIGTERM, and wait) and show the first of
# the lines it logged, if any (at level warn or above: none expected).
stop_mailgate() {
	kill -TERM "$server_pid" 2>/dev/null || true
	wait "$server_pid" 2>/dev/null || true
	server_pid=''
	if grep -q . "$tmp/server.log"; then
		log "(a) mailgate logged $(grep -c . "$tmp/server.log") line(s) at warn or above; the first:"
		head -n 3 "$tmp/server.log" >&2
	fi
}

# ---------------------------------------------------------------- (b) Postfix
# postfix_ticks: print the CPU ticks of the whole Postfix instance so far (measure_path's
# SERVER_TICKS for (b)).
postfix_ticks() { session_ticks "$postfix_master"; }

# run_postfix RUN: path (b): start a private Postfix in $pfdir on 127.0.0.1:$POSTFIX_PORT
# relaying to the sink (scripts/postfix-relay.sh), warm up, measure with "RUN N" (the
# script's function that sends N messages to Postfix) and stop it; sets res_*[postfix].
run_postfix() {
	local run=$1
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

	warm_up b "$run"
	log "(b) $N messages over $C sessions"
	measure_path postfix "$run" postfix_ticks
	res_note[postfix]=$(awk -v n="$N" -v s="${res_run[postfix]}" 'BEGIN {
		printf "smtp-source had all %d in the queue after %.2f s (%.0f/s)", n, s, n / s }')
	if grep -qE 'status=(deferred|bounced)' "$pfdir/postfix.log"; then
		log "(b) Postfix deferred or bounced some messages:"
		grep -E 'status=(deferred|bounced)' "$pfdir/postfix.log" | head -n 3 >&2
	fi
	scripts/postfix-relay.sh stop "$pfdir" >/dev/null
	postfix_started=0
}

# ---------------------------------------------------------------- the message
# make_message SCRIPT: set body_text to BODY_BYTES of 64-byte lines (63 characters and LF)
# naming SCRIPT, and write $tmp/message.eml for smtp-source: the headers mailgate writes
# (quoted-printable leaves these lines as they are) and the same text, so that both
# paths carry the same message.
make_message() {
	body_text=$(awk -v n="$BODY_BYTES" -v who="$1" 'BEGIN {
		for (i = 1; n > 0; i++) {
			line = sprintf("Line %03d of the benchmark message, sent by %s..................", i, who)
			len = (n >= 64 ? 63 : n - 1); print substr(line, 1, len); n -= len + 1
		} }')
	{
		printf 'Date: %s\n' "$(date -R)"
		printf 'MIME-Version: 1.0\n'
		printf 'Message-ID: <bench.%s@contoso.test>\n' "$(date +%s%N)"
		printf 'Subject: bench\nFrom: <app@contoso.test>\nTo: <user@contoso.test>\n'
		printf 'Content-Transfer-Encoding: quoted-printable\nContent-Type: text/plain; charset=UTF-8\n\n'
		printf '%s\n' "$body_text"
	} >"$tmp/message.eml"
}

# source_file_run N: N messages of $tmp/message.eml over C sessions to Postfix, each
# session kept for its messages (-d): run_postfix's RUN for bench/relay.sh and
# bench/queue.sh.
source_file_run() {
	bg_wait timeout "$RUN_TIMEOUT" smtp-source -d -s "$C" -m "$1" -M bench.contoso.test \
		-f app@contoso.test -t user@contoso.test -F "$tmp/message.eml" \
		"127.0.0.1:$POSTFIX_PORT" >"$tmp/smtp-source.out" 2>&1 || {
		cat "$tmp/smtp-source.out" >&2
		tail -n 5 "$pfdir/postfix.log" >&2
		die "smtp-source failed or timed out (${RUN_TIMEOUT}s)"
	}
}

# ---------------------------------------------------------------- summary
# print_summary TITLE DETAILS LABEL GENERATOR: print the results to stdout: "TITLE, time,
# tree", DETAILS (the load), a markdown table of the paths that ran (LABEL names path (a)),
# the ratio mailgate/postfix if both ran, and the cores each path used, GENERATOR naming
# the load generator's column.
print_summary() {
	local p
	local -A label=([mailgate]=$3
		[postfix]="(b) smtp-source → Postfix $(postconf -d -h mail_version 2>/dev/null) → smtp-sink")
	cat <<-EOF

		$1, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(describe_tree "work tree: ")
		$2; $(nproc) CPUs shared by everything

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
	echo "CPU cores used while each path ran (server / smtp-sink / $4 / rest of machine, of $(nproc)):"
	for p in "${paths[@]}"; do
		printf '  %-8s %s; %s\n' "$p" "${res_cpu[$p]//\// \/ }" "${res_note[$p]}"
	done
}
