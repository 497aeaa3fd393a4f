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
# What it shares with bench/shim.sh (settings, the sink, Postfix, the measurement, the
# summary) is in bench/lib.sh.
#
# Usage: bench/relay.sh   (as root: Postfix runs as a private instance; the BENCH_* variables
# are in bench/README.md, read by read_settings in bench/lib.sh)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. bench/lib.sh

# shellcheck disable=SC2119 # no settings of its own
read_settings
# hey gives each worker N/C requests: N must divide evenly for it to send N.
((N % C == 0 && WARMUP % C == 0)) || die "BENCH_N ($N) and BENCH_WARMUP ($WARMUP) must be multiples of BENCH_C ($C)"
check_paths
if want mailgate; then
	install_tools hey jq curl
fi

make_tmp relay
# shellcheck disable=SC2119 # no ports of its own
pick_ports
start_sink

# ---------------------------------------------------------------- the message
# The same message for both paths (make_message in lib.sh).
make_message bench/relay.sh

# ---------------------------------------------------------------- (a) mailgate
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

run_mailgate() {
	build_mailgate
	write_mailgate_config "relay backend configuration"
	jq -n --arg text "$body_text" '{from: {address: "app@contoso.test"}, to: [{address: "user@contoso.test"}],
		subject: "bench", text: ($text + "\n")}' >"$tmp/body.json"

	log "(a) starting mailgate on 127.0.0.1:$HTTP_PORT, relay backend -> 127.0.0.1:$SINK_PORT"
	start_mailgate
	warm_up a hey_run
	log "(a) $N messages at concurrency $C"
	measure_path mailgate hey_run mailgate_ticks
	res_note[mailgate]="hey reports $(awk '/Requests\/sec:/ { printf "%.0f", $2 }' "$tmp/hey.last") requests/s"
	stop_mailgate
}

want mailgate && run_mailgate
want postfix && run_postfix source_file_run

# ---------------------------------------------------------------- summary
print_summary "relay benchmark" \
	"$N messages per path after $WARMUP warm-up, concurrency $C; message of about $(($(wc -c <"$tmp/message.eml") + $(wc -l <"$tmp/message.eml"))) bytes ($BODY_BYTES-byte body)" \
	"(a) hey → mailgate REST → relay backend → smtp-sink" "load generator"
