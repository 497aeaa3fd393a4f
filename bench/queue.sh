#!/usr/bin/env bash
# Queued delivery on this machine, in one run (bench/README.md, "Queued delivery"):
#
#   accept  hey -> REST POST /v1/messages:send, how fast mailgate answers and how long one
#           answer takes:
#             (a) queued, local queue (bbolt, fsynced) -> 202 QUEUED; the relay backend
#                 drains it to smtp-sink meanwhile
#             (b) queued, a private Redis with appendonly yes, appendfsync always -> 202
#             (c) sync, discard backend -> 200 SENT (no queue, nothing behind it)
#             (d) Postfix: smtp-source -> private Postfix, 250 once in its queue
#   drain   DRAIN_N messages queued with one sendAt, then the rate at which they reach
#           smtp-sink once due, budgets off, on the local queue and on Redis; Redis's
#           used_memory per queued message is read while they wait
#   budget  BUDGET messages a minute for the backend, REPLICAS replicas on one Redis:
#           BUDGET x WINDOWS + 1 queued messages, and the rate at which they leave
#   memory  mailgate's peak RSS (VmHWM) while it queues and delivers one BIG_MIB message
#
# What it shares with bench/relay.sh and bench/shim.sh (settings, the sink, Postfix, the
# clocks) is in bench/lib.sh.
#
# Usage: bench/queue.sh   (as root for (d): Postfix runs as a private instance; the
# BENCH_* variables are in bench/README.md)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. bench/lib.sh

# ---------------------------------------------------------------- settings
: "${BENCH_N:=20000}" "${BENCH_C:=50}" "${BENCH_WARMUP:=500}" "${BENCH_BODY_BYTES:=2048}"
# read_settings's check of BENCH_PATHS is check_paths', which knows only mailgate and
# postfix: this script has paths of its own (QPATHS).
QPATHS=${BENCH_PATHS:-spool redis sync postfix}
BENCH_PATHS=postfix
DRAIN_N=${BENCH_DRAIN_N:-5000}
BUDGET=${BENCH_BUDGET:-30}
WINDOWS=${BENCH_WINDOWS:-2}
REPLICAS=${BENCH_REPLICAS:-2}
BIG_MIB=${BENCH_BIG_MIB:-30}
PARTS=${BENCH_PARTS:-accept drain budget memory}
RATE=${BENCH_RATE:-1000}
read_settings DRAIN_N BUDGET WINDOWS REPLICAS BIG_MIB RATE
((N % C == 0 && WARMUP % C == 0)) || die "BENCH_N ($N) and BENCH_WARMUP ($WARMUP) must be multiples of BENCH_C ($C)"
read -r -a qpaths <<<"${QPATHS//,/ }"
read -r -a parts <<<"${PARTS//,/ }"
for p in "${qpaths[@]}"; do
	[[ $p =~ ^(spool|redis|sync|postfix)$ ]] || die "BENCH_PATHS: want spool, redis, sync and/or postfix, not '$p'"
done
for p in "${parts[@]}"; do
	[[ $p =~ ^(accept|drain|budget|memory)$ ]] || die "BENCH_PARTS: want accept, drain, budget and/or memory, not '$p'"
done
part() { [[ " ${parts[*]} " == *" $1 "* ]]; }
qpath() { part accept && [[ " ${qpaths[*]} " == *" $1 "* ]]; }
if qpath postfix; then
	[[ $(id -u) -eq 0 ]] || die "path (d) Postfix needs root (a private Postfix instance); or leave postfix out of BENCH_PATHS"
fi
need_smtp_tools
install_tools hey jq curl redis-server # redis-cli comes with it
paths=(postfix) # run_postfix and print helpers in lib.sh read it

make_tmp queue
# More to stop than lib.sh's stop_all knows: the extra replicas and the private Redis.
extra_pids='' redis_pid=''
stop_queue_bench() {
	local rc=$? pid
	set +e
	for pid in $extra_pids; do
		kill -KILL "$pid" 2>/dev/null || true
	done
	if [[ -n $redis_pid ]]; then
		kill -TERM "$redis_pid" 2>/dev/null || true
		wait "$redis_pid" 2>/dev/null || true
	fi
	(exit "$rc")
	stop_all # lib.sh's: the generator, Postfix, the sink, $tmp; exits with $rc
}
on_exit stop_queue_bench
pick_port SINK_PORT
pick_port HTTP_PORT
pick_port GRPC_PORT
qpath postfix && pick_port POSTFIX_PORT
start_sink
build_mailgate

# ---------------------------------------------------------------- the private Redis
# start_redis: a redis-server of this run's own on a Unix socket, durable as a queue
# needs it: every write in the append-only file and fsynced before Redis answers.
start_redis() {
	mkdir -p "$tmp/redis"
	redis-server --port 0 --unixsocket "$tmp/redis/redis.sock" --unixsocketperm 700 \
		--dir "$tmp/redis" --appendonly yes --appendfsync always --save '' \
		>"$tmp/redis/redis.log" 2>&1 &
	redis_pid=$!
	for _ in {1..50}; do
		redis-cli -s "$tmp/redis/redis.sock" ping >/dev/null 2>&1 && return 0
		kill -0 "$redis_pid" 2>/dev/null || break
		sleep 0.1
	done
	cat "$tmp/redis/redis.log" >&2
	die "the private redis-server did not start"
}
rcli() { redis-cli -s "$tmp/redis/redis.sock" "$@"; }
redis_used() { rcli info memory | awk -F: '$1 == "used_memory" { print $2 + 0 }'; }
if part drain || part budget || qpath redis || part memory; then
	start_redis
	log "private Redis $(rcli info server | awk -F: '$1 == "redis_version" { print $2 }' | tr -d '\r'): appendonly $(rcli config get appendonly | tail -n1), appendfsync $(rcli config get appendfsync | tail -n1)"
fi

# ---------------------------------------------------------------- mailgate
# mg_config NAME DELIVERY QUEUE BACKEND PER_MINUTE HTTP GRPC [PREFIX]: write
# $tmp/NAME.yaml: the bench key allowed any sender, one route with DELIVERY (sync or
# queued) to backend "out", BACKEND relay (to the sink) or discard, the queue in
# $tmp/spool-NAME (QUEUE spool) or in the private Redis under the key prefix PREFIX
# (default NAME; replicas share one), at most PER_MINUTE messages a minute per mailbox
# (0: off), and check it with check-config.
mg_config() {
	local name=$1 delivery=$2 queue=$3 backend=$4 mpm=$5 http=$6 grpc=$7 prefix=${8:-$1}
	{
		cat <<-EOF
			listen: {http: 127.0.0.1:$http, grpc: 127.0.0.1:$grpc, shutdown_timeout: 5s}
			keys:
			  - {name: bench, hash: "$mg_hash", senders: ["*"]}
			routes:
			  - {match: "*", backend: out, delivery: $delivery}
			limits:
			  mailbox: {messages_per_minute: $mpm, recipients_per_day: 0}
			log: {level: warn, format: json}
		EOF
		if [[ $backend == relay ]]; then
			echo "backends: {out: {type: relay, address: 127.0.0.1:$SINK_PORT, tls: opportunistic, accepted_domains: [contoso.test], max_connections: 10}}"
		else
			echo "backends: {out: {type: discard}}"
		fi
		if [[ $queue == redis ]]; then
			echo "redis: {url: unix://$tmp/redis/redis.sock, key_prefix: \"$prefix:\"}"
		else
			echo "queue: {dir: $tmp/spool-$name}"
		fi
	} >"$tmp/$name.yaml"
	"$tmp/mailgate" check-config "$tmp/$name.yaml" >/dev/null 2>"$tmp/check.err" ||
		{ cat "$tmp/check.err" >&2; die "this build does not accept the benchmark's configuration $tmp/$name.yaml"; }
}

# mg_start NAME HTTP: start mailgate with $tmp/NAME.yaml (log in $tmp/NAME.log) and wait
# for /readyz on HTTP; sets mg_pid. (Not run in $(...): the server would hold its pipe.)
mg_start() {
	local name=$1 http=$2 code
	"$tmp/mailgate" serve --config "$tmp/$name.yaml" >"$tmp/$name.log" 2>&1 &
	mg_pid=$!
	extra_pids+=" $mg_pid"
	for _ in {1..100}; do
		kill -0 "$mg_pid" 2>/dev/null || { cat "$tmp/$name.log" >&2; die "mailgate ($name) exited during start-up"; }
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$http/readyz" || true)
		[[ $code == 200 ]] && return 0
		sleep 0.1
	done
	cat "$tmp/$name.log" >&2
	die "mailgate ($name) not ready on /readyz after 10 s"
}

# mg_stop PID NAME: SIGTERM and wait; show what it logged (at warn or above: none expected).
mg_stop() {
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	extra_pids=${extra_pids/ $1/}
	if grep -q . "$tmp/$2.log"; then
		log "mailgate ($2) logged $(grep -c . "$tmp/$2.log") line(s) at warn or above; the first:"
		head -n 3 "$tmp/$2.log" >&2
	fi
}

# hwm_kb PID: the peak resident memory of PID so far (VmHWM), in kB.
hwm_kb() { awk '$1 == "VmHWM:" { print $2 }' "/proc/$1/status"; }

# ---------------------------------------------------------------- the messages
# The same message for every path (make_message in lib.sh).
make_message bench/queue.sh
# body_json FILE [SENDAT]: the SendMail request, with sendAt SENDAT if given.
body_json() {
	jq -n --arg text "$body_text" --arg at "${2:-}" '{from: {address: "app@contoso.test"},
		to: [{address: "user@contoso.test"}], subject: "bench", text: ($text + "\n")}
		+ (if $at == "" then {} else {sendAt: $at} end)' >"$1"
}
body_json "$tmp/body.json"

# hey_run HTTP N BODY WANT [RATE]: N REST requests of BODY at concurrency min(C, N) to
# 127.0.0.1:HTTP, at most RATE a second if given; all must be answered WANT (200 or
# 202). The report is in $tmp/hey.last.
hey_run() {
	local http=$1 n=$2 body=$3 want=$4 rate=${5:-} c=$C ok q=()
	((n < C)) && c=$n
	[[ -n $rate ]] && q=(-q "$(awk -v r="$rate" -v c="$c" 'BEGIN { print r / c }')") # hey's -q is per worker
	bg_wait timeout "$RUN_TIMEOUT" hey -n "$n" -c "$c" "${q[@]}" -t 20 -m POST -T application/json \
		-H "Authorization: Bearer $mg_key" -D "$body" \
		"http://127.0.0.1:$http/v1/messages:send" >"$tmp/hey.last" 2>&1 ||
		{ cat "$tmp/hey.last" >&2; die "hey failed or timed out (${RUN_TIMEOUT}s)"; }
	ok=$(awk -v w="[$want]" '$1 == w { n += $2 } END { print n + 0 }' "$tmp/hey.last")
	if ((ok != n)); then
		sed -n '/Status code distribution/,$p' "$tmp/hey.last" >&2
		die "$((n - ok)) of $n requests were not answered $want"
	fi
}

# hey_stat WHAT: from $tmp/hey.last: rate (requests/s), or the p50/p99 latency in ms.
hey_stat() {
	case $1 in
	rate) awk '/Requests\/sec:/ { printf "%.0f", $2 }' "$tmp/hey.last" ;;
	p50 | p99) awk -v q="${1#p}%" '$1 == q && $2 == "in" { printf "%.1f", $3 * 1000 }' "$tmp/hey.last" ;;
	esac
}

# ================================================================ accept
declare -A acc_rate acc_p50 acc_p99 acc_cpu acc_note acc_rp50 acc_rp99 acc_label=(
	[spool]="(a) queued, local queue (bbolt, fsync)"
	[redis]="(b) queued, Redis appendfsync always"
	[sync]="(c) sync, discard backend"
	[postfix]="(d) Postfix, into its queue")

# accept_mailgate PATH DELIVERY QUEUE BACKEND: warm up, then N requests as fast as they
# are answered; the rate and latency hey measured, the cores mailgate used while hey
# ran, and for a queued path the time until the sink had every message. Then, once the
# sink has them, 10 s of requests at RATE a second: the latency at that load.
accept_mailgate() {
	local path=$1 delivery=$2 queue=$3 backend=$4 want=200 pid base t0 t1 s0 s1 drained
	[[ $delivery == queued ]] && want=202
	mg_config "$path" "$delivery" "$queue" "$backend" 0 "$HTTP_PORT" "$GRPC_PORT"
	log "${acc_label[$path]}: starting mailgate on 127.0.0.1:$HTTP_PORT"
	mg_start "$path" "$HTTP_PORT"
	pid=$mg_pid
	sink_update
	base=$sink_n
	log "${acc_label[$path]}: warm-up, $WARMUP requests"
	hey_run "$HTTP_PORT" "$WARMUP" "$tmp/body.json" "$want"
	if [[ $backend == relay ]]; then
		wait_sink $((base + WARMUP))
		base=$sink_n
	fi
	log "${acc_label[$path]}: $N requests at concurrency $C"
	s0=$(proc_ticks "$pid") t0=$(now_us)
	hey_run "$HTTP_PORT" "$N" "$tmp/body.json" "$want"
	t1=$(now_us) s1=$(proc_ticks "$pid")
	acc_rate[$path]=$(hey_stat rate) acc_p50[$path]=$(hey_stat p50) acc_p99[$path]=$(hey_stat p99)
	acc_cpu[$path]=$(awk -v s=$((s1 - s0)) -v hz="$clk_tck" -v us=$((t1 - t0)) 'BEGIN { printf "%.2f", s / hz / (us / 1e6) }')
	if [[ $backend == relay ]]; then
		wait_sink $((base + N))
		drained=$(awk -v us=$(($(now_us) - t0)) 'BEGIN { printf "%.1f", us / 1e6 }')
		acc_note[$path]="all $N at the sink ${drained} s after the first request"
		base=$sink_n
	else
		acc_note[$path]="nothing behind the discard backend"
	fi
	log "${acc_label[$path]}: $((RATE * 10)) requests at $RATE a second"
	hey_run "$HTTP_PORT" $((RATE * 10)) "$tmp/body.json" "$want" "$RATE"
	acc_rp50[$path]=$(hey_stat p50) acc_rp99[$path]=$(hey_stat p99)
	[[ $backend == relay ]] && wait_sink $((base + RATE * 10))
	mg_stop "$pid" "$path"
}

if part accept; then
	for p in "${qpaths[@]}"; do
		case $p in
		spool) accept_mailgate spool queued spool relay ;;
		redis) accept_mailgate redis queued redis relay ;;
		sync) accept_mailgate sync sync spool discard ;;
		postfix)
			run_postfix source_file_run
			acc_rate[postfix]=$(awk -v n="$N" -v s="${res_run[postfix]}" 'BEGIN { printf "%.0f", n / s }')
			acc_p50[postfix]=- acc_p99[postfix]=- acc_rp50[postfix]=- acc_rp99[postfix]=-
			acc_cpu[postfix]=${res_cpu[postfix]%%/*}
			acc_note[postfix]="all $N at the sink ${res_secs[postfix]} s after the first message; smtp-source gives no latencies"
			;;
		esac
	done
fi

# ================================================================ drain
declare -A dr_rate dr_start dr_mem

# iso_time EPOCH: EPOCH seconds as RFC 3339 UTC.
iso_time() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }

# drain QUEUE: DRAIN_N messages queued with one sendAt a few seconds ahead (mailbox
# budgets off); once due, the rate from the first to the last at the sink, and how long
# after sendAt the first arrived. On Redis, used_memory per message while they wait.
drain() {
	local queue=$1 name=drain-$1 pid base lead at mem0=0 mem1 t_first t_last now
	mg_config "$name" queued "$queue" relay 0 "$HTTP_PORT" "$GRPC_PORT"
	log "drain, $queue: starting mailgate; $DRAIN_N messages with one sendAt"
	mg_start "$name" "$HTTP_PORT"
	pid=$mg_pid
	lead=$((3 + DRAIN_N / 500))
	at=$(($(date +%s) + lead))
	body_json "$tmp/drain.json" "$(iso_time "$at")"
	[[ $queue == redis ]] && mem0=$(redis_used)
	sink_update
	base=$sink_n
	hey_run "$HTTP_PORT" "$DRAIN_N" "$tmp/drain.json" 202
	now=$(date +%s)
	((now < at)) || die "drain, $queue: queueing $DRAIN_N messages took longer than the ${lead} s before their sendAt; set BENCH_DRAIN_N lower"
	if [[ $queue == redis ]]; then
		mem1=$(redis_used)
		dr_mem[$queue]=$(((mem1 - mem0) / DRAIN_N))
	fi
	sink_update
	((sink_n == base)) || die "drain, $queue: $((sink_n - base)) messages reached the sink before their sendAt"
	wait_sink $((base + 1)) $((lead + 30))
	t_first=$(now_us)
	wait_sink $((base + DRAIN_N))
	t_last=$(now_us)
	dr_rate[$queue]=$(awk -v n="$DRAIN_N" -v us=$((t_last - t_first)) 'BEGIN { printf "%.0f", (n - 1) / (us / 1e6) }')
	dr_start[$queue]=$(awk -v us=$((t_first - at * 1000000)) 'BEGIN { printf "%.2f", us / 1e6 }')
	mg_stop "$pid" "$name"
}

if part drain; then
	drain spool
	drain redis
fi

# ================================================================ budget
# The replicas' ports: replica 1 has HTTP_PORT and GRPC_PORT, the others ports of their own.
r_http=("$HTTP_PORT") r_grpc=("$GRPC_PORT")
if part budget; then
	for ((k = 2; k <= REPLICAS; k++)); do
		printf -v "RHTTP$k" '%s' $((HTTP_PORT + 10 * k))
		printf -v "RGRPC$k" '%s' $((GRPC_PORT + 10 * k))
		pick_port "RHTTP$k"
		pick_port "RGRPC$k"
		v=RHTTP$k w=RGRPC$k
		r_http+=("${!v}") r_grpc+=("${!w}")
	done
fi

# sent_by HTTP: the queued deliveries this replica made (mailgate_queue_attempts_total, SENT).
sent_by() {
	curl -sf --max-time 5 "http://127.0.0.1:$1/metrics" |
		awk '/^mailgate_queue_attempts_total\{/ && /outcome="SENT"/ { n += $NF } END { print n + 0 }'
}

# budget: REPLICAS replicas on one Redis, BUDGET messages a minute per mailbox, the
# discard backend (relay has no per-mailbox budget: Microsoft sets none for a connector);
# BUDGET x WINDOWS + 1 messages for one mailbox, queued through the replicas in turn
# (each wakes its own workers when it queues). When each was
# sent is its finishTime (ListMessages). Sets budget_rate (messages 2..M over the time
# from the first to the last, a minute), budget_peak (the most sent in any 60 s) and
# budget_split (what each replica delivered).
budget_m=$((BUDGET * WINDOWS + 1)) budget_rate='' budget_peak='' budget_split=''
budget() {
	local k n t0 pids=() split='' list=$tmp/budget.list
	for ((k = 1; k <= REPLICAS; k++)); do
		mg_config "budget-$k" queued redis discard "$BUDGET" "${r_http[k - 1]}" "${r_grpc[k - 1]}" budget
		mg_start "budget-$k" "${r_http[k - 1]}"
		pids+=("$mg_pid")
	done
	log "budget: $REPLICAS replicas on one Redis, $BUDGET messages a minute; $budget_m messages, about $WINDOWS min"
	for ((k = 1; k <= REPLICAS; k++)); do
		n=$((budget_m / REPLICAS))
		((k > 1)) || n=$((n + budget_m % REPLICAS))
		hey_run "${r_http[k - 1]}" "$n" "$tmp/body.json" 202
	done
	t0=$SECONDS
	while :; do
		curl -sf --max-time 5 -H "Authorization: Bearer $mg_key" \
			"http://127.0.0.1:${r_http[0]}/v1/messages?status=SENT&pageSize=1000" >"$list" ||
			die "budget: ListMessages failed"
		n=$(jq '.messages | length' "$list")
		((n < budget_m)) || break
		((SECONDS - t0 < WINDOWS * 60 + 60)) || die "budget: $n of $budget_m messages sent after $((WINDOWS + 1)) min"
		sleep 1
	done
	# finishTime in µs since the epoch (jq's numbers are doubles: exact to 2^53 µs).
	jq -r '.messages[].finishTime | capture("^(?<s>[^.Z]+)(\\.(?<f>[0-9]+))?Z$")
		| ((.s + "Z") | fromdate) * 1000000 + (((.f // "") + "000000")[0:6] | tonumber)' "$list" |
		sort -n >"$tmp/budget.times"
	read -r budget_rate budget_peak < <(awk '{ t[NR] = $1 } END {
		rate = (NR - 1) * 60 / ((t[NR] - t[1]) / 1e6)
		for (i = 1; i <= NR; i++) {
			n = 0
			for (j = i; j <= NR && t[j] - t[i] < 60e6; j++) n++
			if (n > peak) peak = n
		}
		printf "%.2f %d\n", rate, peak }' "$tmp/budget.times")
	for ((k = 1; k <= REPLICAS; k++)); do
		split+=", replica $k: $(sent_by "${r_http[k - 1]}")"
	done
	budget_split=${split#, }
	for ((k = 1; k <= REPLICAS; k++)); do
		mg_stop "${pids[k - 1]}" "budget-$k"
	done
}
part budget && budget

# ================================================================ memory
declare -A big_base big_queued big_sent
big_bytes=0
# big_json: a request whose message is BIG_MIB MiB as MIME: one attachment of random
# bytes, which base64 in 76-character lines makes 78/57 of its size.
big_json() {
	local raw=$((BIG_MIB * 1048576 * 57 / 78))
	{
		printf '{"from":{"address":"app@contoso.test"},"to":[{"address":"user@contoso.test"}],"subject":"big","text":"A scan.\\n","attachments":[{"filename":"scan.pdf","contentType":"application/pdf","content":"'
		head -c "$raw" /dev/urandom | base64 -w0
		printf '"}]}'
	} >"$tmp/big.json"
	big_bytes=$(wc -c <"$tmp/big.json")
}

# big QUEUE: mailgate's VmHWM after a warm-up of small messages, after it answered the big
# one 202 (stored), and after the sink has it (sent).
big() {
	local queue=$1 name=big-$1 pid base code
	mg_config "$name" queued "$queue" relay 0 "$HTTP_PORT" "$GRPC_PORT"
	log "memory, $queue: one $BIG_MIB MiB message"
	mg_start "$name" "$HTTP_PORT"
	pid=$mg_pid
	sink_update
	base=$sink_n
	hey_run "$HTTP_PORT" "$WARMUP" "$tmp/body.json" 202
	wait_sink $((base + WARMUP))
	big_base[$queue]=$(hwm_kb "$pid")
	code=$(curl -s -o "$tmp/big.out" -w '%{http_code}' --max-time 120 -H "Authorization: Bearer $mg_key" \
		-H 'Content-Type: application/json' --data-binary "@$tmp/big.json" "http://127.0.0.1:$HTTP_PORT/v1/messages:send")
	[[ $code == 202 ]] || { cat "$tmp/big.out" >&2; die "memory, $queue: the $BIG_MIB MiB message was answered $code, not 202"; }
	big_queued[$queue]=$(hwm_kb "$pid")
	wait_sink $((base + WARMUP + 1)) 120
	big_sent[$queue]=$(hwm_kb "$pid")
	mg_stop "$pid" "$name"
}
if part memory; then
	big_json
	big spool
	big redis
fi

# ================================================================ summary
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
cat <<SUMMARY

queue benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(describe_tree "work tree: ")
$(nproc) CPUs shared by everything; messages with a ${BODY_BYTES}-byte text body
SUMMARY
if part accept; then
	cat <<-SUMMARY

		accept: $N requests per path after $WARMUP warm-up, concurrency $C (hey; for Postfix, smtp-source sessions)

		| path | accepted msgs/s | p50 ms | p99 ms | mailgate cores | at $RATE/s: p50 ms | p99 ms | |
		| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |
	SUMMARY
	for p in "${qpaths[@]}"; do
		printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "${acc_label[$p]}" "${acc_rate[$p]}" "${acc_p50[$p]}" \
			"${acc_p99[$p]}" "${acc_cpu[$p]}" "${acc_rp50[$p]}" "${acc_rp99[$p]}" "${acc_note[$p]}"
	done
	if [[ -n ${acc_rate[postfix]:-} ]]; then
		for p in spool redis; do
			[[ -n ${acc_rate[$p]:-} ]] || continue
			awk -v a="${acc_rate[$p]}" -v b="${acc_rate[postfix]}" -v l="${acc_label[$p]}" \
				'BEGIN { printf "%s vs Postfix: %.2fx\n", l, a / b }'
		done
	fi
fi
if part drain; then
	cat <<-SUMMARY

		drain: $DRAIN_N queued messages due at once, budgets off, relay backend to smtp-sink

		| queue | delivered msgs/s | first at the sink, s after sendAt | Redis used_memory per queued message |
		| --- | ---: | ---: | ---: |
		| local (bbolt) | ${dr_rate[spool]} | ${dr_start[spool]} | |
		| Redis | ${dr_rate[redis]} | ${dr_start[redis]} | ${dr_mem[redis]} B |
	SUMMARY
fi
if part budget; then
	cat <<-SUMMARY

		budget: $budget_m queued messages, $BUDGET messages a minute, $REPLICAS replicas on one Redis
		  from the first sent to the last: $budget_rate a minute, $(awk -v r="$budget_rate" -v b="$BUDGET" 'BEGIN { printf "%+.1f%%", (r - b) * 100 / b }') off the budget
		  the most sent in any 60 s: $budget_peak; delivered by $budget_split
	SUMMARY
fi
if part memory; then
	cat <<-SUMMARY

		memory: one message of $BIG_MIB MiB as MIME (a $(awk -v b="$big_bytes" 'BEGIN { printf "%.1f", b / 1048576 }') MiB JSON request), mailgate's peak RSS (VmHWM)

		| queue | after $WARMUP small messages | after the 202 | after it was sent |
		| --- | ---: | ---: | ---: |
		| local (bbolt) | $(mib "${big_base[spool]}") MiB | $(mib "${big_queued[spool]}") MiB | $(mib "${big_sent[spool]}") MiB |
		| Redis | $(mib "${big_base[redis]}") MiB | $(mib "${big_queued[redis]}") MiB | $(mib "${big_sent[redis]}") MiB |
	SUMMARY
fi
