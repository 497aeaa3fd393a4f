#!/usr/bin/env bash
# bench/load.sh: end-to-end load test of mailgate's SendMail, over REST (hey) and gRPC
# (ghz), against a freshly built server with the discard backend, all on loopback.
# See bench/README.md. Every knob is an environment variable:
#
#   BENCH_N=20000          requests per measurement (REST and gRPC each)
#   BENCH_C=50             concurrent workers of each load generator
#   BENCH_WARMUP=500       warm-up requests before each measurement (not counted)
#   BENCH_HTTP_PORT=18080  loopback port of the REST listener
#   BENCH_GRPC_PORT=19090  loopback port of the gRPC listener
#   BENCH_GHZ_CONNS=1      gRPC connections ghz spreads its workers over (ghz's default)
#   BENCH_GRPC_SCHEMA=reflection  how ghz learns the API: reflection, or proto (the .proto file)
#   BENCH_DELAY=0s         discard backend's per-message delay, to stand in for a real backend
#   BENCH_TIMEOUT=60+N/1000  seconds each load-generator run may take before it is killed
#   BENCH_KEEP=0           1: keep the temp dir (config, server log, raw tool output)
#   BENCH_STORE=memory     memory (in-process store) or redis (shared store, as replicas use)
#   BENCH_REDIS_URL=redis://127.0.0.1:6379/0  the Redis for BENCH_STORE=redis
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. bench/lib.sh

N=${BENCH_N:-20000}
C=${BENCH_C:-50}
WARMUP=${BENCH_WARMUP:-500}
HTTP_PORT=${BENCH_HTTP_PORT:-18080}
GRPC_PORT=${BENCH_GRPC_PORT:-19090}
GHZ_CONNS=${BENCH_GHZ_CONNS:-1}
GRPC_SCHEMA=${BENCH_GRPC_SCHEMA:-reflection}
DELAY=${BENCH_DELAY:-0s}
RUN_TIMEOUT=${BENCH_TIMEOUT:-}
KEEP=${BENCH_KEEP:-0}
STORE=${BENCH_STORE:-memory}
REDIS_URL=${BENCH_REDIS_URL:-redis://127.0.0.1:6379/0}

GHZ_VERSION=v0.121.0 # the module proxy lists only v0.93.0 here, but serves this one
TOOLS_BIN=$repo/.cache/bin # gitignored
GHZ=$TOOLS_BIN/ghz

for v in N C WARMUP HTTP_PORT GRPC_PORT GHZ_CONNS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "BENCH_$v must be a positive integer, not '${!v}'"
done
RUN_TIMEOUT=${RUN_TIMEOUT:-$((60 + N / 1000))}
[[ $RUN_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "BENCH_TIMEOUT must be a positive integer, not '$RUN_TIMEOUT'"
# hey gives each worker N/C requests, so N must divide evenly for both tools to send N.
((N % C == 0 && WARMUP % C == 0)) || die "BENCH_N ($N) and BENCH_WARMUP ($WARMUP) must be multiples of BENCH_C ($C)"
[[ $GRPC_SCHEMA == reflection || $GRPC_SCHEMA == proto ]] ||
	die "BENCH_GRPC_SCHEMA must be reflection or proto, not '$GRPC_SCHEMA'"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mailgate-bench.XXXXXX")
cleanup() {
	local rc=$?
	stop_generator
	stop_server
	# The benchmark's keys (message records live a day) would weigh on a shared Redis.
	if [[ -n ${redis_prefix:-} ]] && command -v redis-cli >/dev/null; then
		redis-cli -u "$REDIS_URL" --scan --pattern "$redis_prefix*" | xargs -r -n 1000 redis-cli -u "$REDIS_URL" unlink >/dev/null || true
	fi
	remove_tmp
	exit "$rc"
}
on_exit cleanup

# ---------------------------------------------------------------- load tools
if ! command -v hey >/dev/null || ! command -v jq >/dev/null || ! command -v curl >/dev/null; then
	log "installing hey, jq, curl from Debian"
	if ! apt-get install -y hey jq curl >"$tmp/apt.log" 2>&1; then
		if ! { apt-get update && apt-get install -y hey jq curl; } >>"$tmp/apt.log" 2>&1; then
			cat "$tmp/apt.log" >&2
			die "could not install hey/jq/curl"
		fi
	fi
fi
ghz_version() { go version -m "$GHZ" 2>/dev/null | awk '$1 == "mod" && $2 == "github.com/bojand/ghz" { print $3 }'; }
if [[ ! -x $GHZ || $(ghz_version) != "$GHZ_VERSION" ]]; then
	log "installing ghz $GHZ_VERSION into $TOOLS_BIN (one time; takes a few minutes)"
	mkdir -p "$TOOLS_BIN"
	(cd "$tmp" && GOBIN="$TOOLS_BIN" GOFLAGS=-mod=mod go install "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION")
	[[ $(ghz_version) == "$GHZ_VERSION" ]] || die "ghz $GHZ_VERSION did not install into $TOOLS_BIN"
fi

# ---------------------------------------------------------------- server
build_mailgate

# A port something answers on is taken (port_taken): the load would go to someone else's
# server. A port given in the environment must be free; a default one moves up to the next
# free port. (Not lib.sh's pick_port: its messages differ.)
pick_port() { # pick_port VAR: settle the port in VAR
	local var=$1 port=${!1} env=BENCH_$1
	if [[ -n ${!env:-} ]]; then
		! port_taken "$port" || die "127.0.0.1:$port ($env) is already in use"
		return
	fi
	for ((; port < ${!var} + 100; port++)); do
		[[ $var == HTTP_PORT || $port != "$HTTP_PORT" ]] || continue
		if ! port_taken "$port"; then
			[[ $port == "${!var}" ]] || log "127.0.0.1:${!var} is in use; using $port (set $env to choose)"
			printf -v "$var" '%s' "$port"
			return
		fi
	done
	die "no free port in 127.0.0.1:${!var}-$((${!var} + 99)); set $env"
}
pick_port HTTP_PORT
pick_port GRPC_PORT

# The store: the in-process one (the embedded default), or Redis shared by replicas.
case $STORE in
memory) redis_section="" ;;
redis)
	redis_prefix="mgbench:$$:$(date +%s):"
	redis_section="redis: {url: \"$REDIS_URL\", key_prefix: \"$redis_prefix\"}"
	;;
*) die "BENCH_STORE must be memory or redis, not $STORE" ;;
esac

# Per-mailbox rate limits (Exchange Online's 30 messages a minute by default) would turn
# the load into 429s: they are off here (0), as they would be for a discard backend.
cat >"$tmp/mailgate.yaml" <<EOF
listen:
  http: 127.0.0.1:$HTTP_PORT
  grpc: 127.0.0.1:$GRPC_PORT
  shutdown_timeout: 5s
keys:
  - name: bench
    hash: $mg_hash
    senders: ["*"]
routes:
  - {match: "*", backend: sink}
backends:
  sink: {type: discard, delay: $DELAY}
limits: {mailbox: {messages_per_minute: 0, recipients_per_day: 0}}
log: {level: warn, format: json}
$redis_section
EOF
if ! "$tmp/mailgate" check-config "$tmp/mailgate.yaml" >/dev/null 2>"$tmp/check.err"; then
	cat "$tmp/check.err" >&2
	die "the benchmark's configuration is invalid for this build"
fi

log "starting mailgate on 127.0.0.1:$HTTP_PORT (REST) and 127.0.0.1:$GRPC_PORT (gRPC)"
start_mailgate

# ---------------------------------------------------------------- load
body='{"from":{"address":"bench@example.com","name":"Bench"},"to":[{"address":"rcpt@example.com"}],"subject":"mailgate load test","text":"Hello from bench/load.sh: a small plain-text message.\n"}'
printf '%s' "$body" >"$tmp/body.json"
jq -n --arg k "Bearer $mg_key" '{authorization: $k}' >"$tmp/metadata.json"

# server_ticks prints the server's user+system CPU time so far, in clock ticks.
server_ticks() { awk '{ print $14 + $15 }' "/proc/$server_pid/stat"; }
now_ns() { date +%s%N; }
# (machine_ticks, child_secs and bg_wait, which runs the load generators: bench/lib.sh)

# hey_run N OUT: N REST requests at concurrency C; the summary goes to OUT.
hey_run() {
	bg_wait timeout "$RUN_TIMEOUT" hey -n "$1" -c "$C" -t 20 -m POST -T application/json \
		-H "Authorization: Bearer $mg_key" -D "$tmp/body.json" \
		"http://127.0.0.1:$HTTP_PORT/v1/messages:send" >"$2" 2>&1 ||
		{ cat "$2" >&2; die "hey failed or timed out (${RUN_TIMEOUT}s)"; }
	grep -q 'Requests/sec' "$2" || { cat "$2" >&2; die "hey printed no summary"; }
}
hey_ok() { awk '$1 == "[200]" { n += $2 } END { print n + 0 }' "$1"; }

# ghz_run N OUT: N gRPC calls at concurrency C; the JSON report goes to OUT.
ghz_run() {
	local schema=()
	if [[ $GRPC_SCHEMA == proto ]]; then
		schema=(--import-paths "proto,third_party" --proto proto/mailgate/v1/mail.proto)
	fi
	bg_wait timeout "$RUN_TIMEOUT" "$GHZ" --insecure "${schema[@]}" \
		--call mailgate.v1.MailService.SendMail \
		--data-file "$tmp/body.json" --metadata-file "$tmp/metadata.json" \
		--disable-template-functions --disable-template-data \
		-n "$1" -c "$C" --connections "$GHZ_CONNS" -t 20s \
		--format json --output "$2" "127.0.0.1:$GRPC_PORT" 2>"$2.err" ||
		{ cat "$2.err" "$2" >&2 2>/dev/null || true; die "ghz failed or timed out (${RUN_TIMEOUT}s)"; }
}
ghz_ok() { jq '.statusCodeDistribution.OK // 0' "$1"; }

# measure NAME: warm up, then measure; sets res_* for the summary.
declare -A res_rps res_p50 res_p99 res_err res_cpu res_gen res_other
measure() {
	local name=$1 run ok t0 t1 c0 c1 m0 m1 g0 g1 out=$tmp/$1.out
	case $name in
		REST) run=hey_run ok=hey_ok ;;
		gRPC) run=ghz_run ok=ghz_ok ;;
	esac
	log "$name: warm-up, $WARMUP requests"
	$run "$WARMUP" "$tmp/$name.warmup"
	[[ $($ok "$tmp/$name.warmup") == "$WARMUP" ]] ||
		{ report "$name" "$tmp/$name.warmup"; die "$name warm-up had errors"; }
	log "$name: $N requests at concurrency $C"
	child_secs g0
	c0=$(server_ticks)
	m0=$(machine_ticks) t0=$(now_ns)
	$run "$N" "$out"
	kill -0 "$server_pid" 2>/dev/null || { tail -n 20 "$tmp/server.log" >&2; die "mailgate died during the $name load"; }
	c1=$(server_ticks)
	m1=$(machine_ticks) t1=$(now_ns)
	child_secs g1
	# CPU cores in use on average while the measurement ran: server, load generator, and
	# everything else on the machine (other work here makes the numbers noisy).
	read -r "res_cpu[$name]" "res_gen[$name]" "res_other[$name]" < <(awk -v c="$((c1 - c0))" \
		-v m="$((m1 - m0))" -v g0="$g0" -v g1="$g1" -v hz="$clk_tck" -v ns="$((t1 - t0))" 'BEGIN {
		w = ns / 1e9; srv = c / hz / w; gen = (g1 - g0) / w; oth = m / hz / w - srv - gen
		printf "%.2f %.2f %.2f\n", srv, gen, (oth < 0 ? 0 : oth) }')
	res_err[$name]=$((N - $($ok "$out")))
	case $name in
		REST)
			res_rps[$name]=$(awk '/Requests\/sec:/ { printf "%.0f", $2 }' "$out")
			res_p50[$name]=$(awk '$1 == "50%" && $2 == "in" { printf "%.2f", $3 * 1000 }' "$out")
			res_p99[$name]=$(awk '$1 == "99%" && $2 == "in" { printf "%.2f", $3 * 1000 }' "$out")
			;;
		gRPC)
			res_rps[$name]=$(jq '.rps | round' "$out")
			res_p50[$name]=$(jq -r '(.latencyDistribution // [])[] | select(.percentage == 50) | .latency' "$out" | awk '{ printf "%.2f", $1 / 1e6 }')
			res_p99[$name]=$(jq -r '(.latencyDistribution // [])[] | select(.percentage == 99) | .latency' "$out" | awk '{ printf "%.2f", $1 / 1e6 }')
			;;
	esac
	# "-": the tool reported no such number (every request failed)
	: "${res_rps[$name]:=-}" "${res_p50[$name]:=-}" "${res_p99[$name]:=-}"
	if ((res_err[$name] != 0)); then
		log "$name: ${res_err[$name]} of $N requests failed"
		report "$name" "$out"
	fi
}

# report NAME OUT: print the outcome counts of a load-generator run to stderr.
report() {
	if [[ $1 == REST ]]; then
		sed -n '/Status code distribution/,$p' "$2" | grep . >&2 || true
	else
		jq '{count, statusCodeDistribution, errorDistribution}' "$2" >&2 || true
	fi
}

loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)
measure REST
measure gRPC

kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/server.log" >&2; die "mailgate died during the load"; }
hwm_kb=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$server_pid/status")
rss_kb=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$server_pid/status")
warnings=$(grep -c . "$tmp/server.log" || true)

# ---------------------------------------------------------------- summary
cat <<EOF

mailgate load test, $(date -u +%Y-%m-%dT%H:%M:%SZ), built from $(describe_tree)
$N requests per API at concurrency $C after $WARMUP warm-up; discard backend (delay $DELAY); ghz: $GHZ_CONNS connection(s), $GRPC_SCHEMA
store: $STORE${redis_section:+ ($REDIS_URL)}; mailbox rate limits off
CPUs: $(nproc), shared by the load generator and the server; load average before: $loadavg_before

EOF
printf '%-6s %9s %8s %8s %7s   %s\n' API 'msgs/s' 'p50 ms' 'p99 ms' errors 'CPUs used: server / load generator / rest of machine'
for name in REST gRPC; do
	printf '%-6s %9s %8s %8s %7s   %s / %s / %s\n' "$name" "${res_rps[$name]}" "${res_p50[$name]}" \
		"${res_p99[$name]}" "${res_err[$name]}" "${res_cpu[$name]}" "${res_gen[$name]}" "${res_other[$name]}"
done
printf '\nserver peak RSS (VmHWM): %d MiB (%d kB); RSS at the end: %d MiB\n' \
	"$((hwm_kb / 1024))" "$hwm_kb" "$((rss_kb / 1024))"
printf 'server log lines at level warn or above: %d\n' "$warnings"
if ((warnings > 0)); then
	head -n 5 "$tmp/server.log"
fi

if ((res_err[REST] + res_err[gRPC] > 0)); then
	die "requests failed: REST ${res_err[REST]}, gRPC ${res_err[gRPC]} (all must succeed)"
fi
