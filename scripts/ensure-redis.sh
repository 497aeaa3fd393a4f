#!/usr/bin/env bash
# Make sure a Redis server answers on 127.0.0.1:${REDIS_PORT:-6379} (the tests need it).
# If nothing answers, install redis-server from apt when missing, then start it as a
# throwaway daemon (no persistence) and wait until it replies to PING.
set -euo pipefail

REDIS_HOST=127.0.0.1
REDIS_PORT="${REDIS_PORT:-6379}"
WAIT_SECONDS=10

# ping succeeds when the server at REDIS_HOST:REDIS_PORT replies PONG.
ping() {
  if command -v redis-cli >/dev/null 2>&1; then
    local cli=(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping)
    if command -v timeout >/dev/null 2>&1; then cli=(timeout 2 "${cli[@]}"); fi
    [[ "$("${cli[@]}" 2>/dev/null || true)" == PONG ]]
    return
  fi
  # No redis-cli: speak RESP over bash's /dev/tcp.
  local reply=""
  { exec 3<>"/dev/tcp/$REDIS_HOST/$REDIS_PORT"; } 2>/dev/null || return 1
  printf 'PING\r\n' >&3
  IFS= read -r -t 1 reply <&3 || true
  exec 3<&- 3>&-
  [[ "$reply" == "+PONG"* ]]
}

if ping; then
  echo "redis: already answering on $REDIS_HOST:$REDIS_PORT"
  exit 0
fi

if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis: redis-server not found, installing it with apt-get"
  sudo=()
  if [[ "$(id -u)" -ne 0 ]] && command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server
fi

# Right after an apt install the binary may sit outside a trimmed PATH.
redis_server="$(command -v redis-server || echo /usr/bin/redis-server)"

workdir="$(mktemp -d "${TMPDIR:-/tmp}/mailgate-redis-$REDIS_PORT.XXXXXX")"
echo "redis: starting redis-server on $REDIS_HOST:$REDIS_PORT (dir $workdir)"
"$redis_server" --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" \
  --save "" --appendonly no \
  --dir "$workdir" --logfile "$workdir/redis.log"

deadline=$((SECONDS + WAIT_SECONDS))
while ((SECONDS < deadline)); do
  if ping; then
    echo "redis: answering on $REDIS_HOST:$REDIS_PORT"
    exit 0
  fi
  sleep 0.1
done

echo "redis: ERROR: redis-server did not answer PING on $REDIS_HOST:$REDIS_PORT within ${WAIT_SECONDS}s" >&2
if [[ -s "$workdir/redis.log" ]]; then
  echo "redis: last lines of $workdir/redis.log:" >&2
  tail -n 20 "$workdir/redis.log" >&2
fi
exit 1
