// Package redisq is the queue.Queue of replicas: every replica that opens the same Redis
// (standalone, Sentinel or Cluster) with the same prefix shares one queue.
//
// Keys (P the prefix, <g> a group's GroupID.String(), every key of a group tagged
// {q:<g>} so that each script touches one slot):
//
//	P{q:<g>}:item:<id>   hash: the item (no body in List's reads), state, lease, finished
//	P{q:<g>}:ready       sorted set: QUEUED ids by NotBefore (µs; 0 = at once)
//	P{q:<g>}:leases      sorted set: SENDING ids by lease end (µs)
//	P{q:<g>}:live        sorted set: QUEUED and SENDING ids by Accepted (µs), for Stats
//	P{q:<g>}:finished    sorted set: ended ids by Finished (µs), for Expire
//	P{qid:<id>}          string: <g>, where item <id> lives (and the claim on the id)
//	P{qk:<key>}:items    sorted set, all scores 0: "<accepted ns, 19 digits>\x00<id>\x00<g>"
//	                     per item of API key <key>, for List (read by lex range)
//	P{q}:groups          sorted set: <g> by when it may next have work (µs)
//
// docs/queue.md explains the design and why it uses sorted sets where the first
// proposal had a stream. These keys are a stored format.
package redisq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mailgate/mailgate/server/queue"
	"github.com/mailgate/mailgate/server/store"
)

var _ queue.Queue = (*Queue)(nil)

// Options are the Redis queue's settings.
type Options struct {
	// Prefix starts every key (e.g. "mg:"), so that several deployments share one
	// Redis. It must not hold '{' or '}': the keys' hash tags follow it.
	Prefix string
	// Now is for tests only: when set, scripts take the time from it instead of from
	// Redis's TIME. In production every replica must leave it nil, so that replicas
	// with skewed clocks agree on when a lease ended.
	Now func() time.Time
}

// Queue is a queue.Queue in Redis.
type Queue struct {
	c      redis.UniversalClient
	prefix string
	now    func() time.Time
}

// New returns the queue kept in c under opts.Prefix. It does not own c: Close leaves
// it open.
func New(c redis.UniversalClient, opts Options) (*Queue, error) {
	if c == nil {
		return nil, errors.New("redisq: no Redis client")
	}
	if strings.ContainsAny(opts.Prefix, "{}") {
		return nil, fmt.Errorf("redisq: prefix %q holds '{' or '}': the keys' hash tags must come first", opts.Prefix)
	}
	return &Queue{c: c, prefix: opts.Prefix, now: opts.Now}, nil
}

// far is the index score of a group with nothing queued or leased: 2^52 µs, well
// within a double's exact integers.
const far = 1 << 52

// Scripts take ARGV[1] "now" in µs, or "" to read Redis's TIME.
var clock = `
local function now()
  if ARGV[1] ~= '' then return tonumber(ARGV[1]) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
-- rfc3339 formats µs since the epoch as Go's time.RFC3339Nano does, in UTC (days to
-- a civil date: Howard Hinnant's algorithm).
local function rfc3339(us)
  local s = math.floor(us / 1000000)
  local frac = us - s * 1000000
  local days = math.floor(s / 86400)
  local rem = s - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  local f = ''
  if frac > 0 then f = string.gsub(string.format('.%06d', frac), '0+$', '') end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d%sZ', y, m, d, math.floor(rem / 3600), math.floor(rem % 3600 / 60), rem % 60, f)
end
-- next: when the group may next have work, from its two sorted sets.
local function nextdue(ready, leases)
  local n = ` + strconv.Itoa(far) + `
  local r = redis.call('ZRANGE', ready, 0, 0, 'WITHSCORES')
  if r[2] then n = math.min(n, tonumber(r[2])) end
  local l = redis.call('ZRANGE', leases, 0, 0, 'WITHSCORES')
  if l[2] then n = math.min(n, tonumber(l[2])) end
  return n
end
`

// KEYS item, ready, leases, live. ARGV now, id, score, accepted µs, then field/value
// pairs. Returns {1, next, accepted ns} if the item exists, else {0, next}.
var enqueueScript = redis.NewScript(clock + `
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {1, tostring(nextdue(KEYS[2], KEYS[3])), redis.call('HGET', KEYS[1], 'accepted')}
end
local f = {}
for i = 5, #ARGV do f[#f+1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(f))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[2])
return {0, tostring(nextdue(KEYS[2], KEYS[3]))}
`)

// KEYS ready, leases, the item key's prefix (P{q:<g>}:item:). ARGV now, lease µs,
// the takeover message's format.
// Returns {next} when nothing is due, else {next, item fields (HGETALL)}.
// The item keys are built here from KEYS[3]: they share its hash tag, so its slot.
var leaseScript = redis.NewScript(clock + `
local t = now()
local d = tonumber(ARGV[2])
local id, lapsed
local l = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if l[2] and tonumber(l[2]) <= t then id, lapsed = l[1], l[2] end
if not id then
  local r = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if r[2] and tonumber(r[2]) <= t then id = r[1] end
end
if not id then return {tostring(nextdue(KEYS[1], KEYS[2]))} end
local key = KEYS[3] .. id
if lapsed then
  redis.call('HSET', KEYS[3] .. id, 'lasterr', string.format(ARGV[3], rfc3339(tonumber(lapsed))), 'nb', '')
end
redis.call('ZREM', KEYS[1], id)
local lend = t + d
redis.call('ZADD', KEYS[2], lend, id)
redis.call('HINCRBY', key, 'token', 1)
redis.call('HSET', key, 'state', 'SENDING', 'until', string.format('%.0f', lend), 'tko', lapsed and '1' or '')
return {tostring(nextdue(KEYS[1], KEYS[2])), redis.call('HGETALL', key)}
`)

// KEYS ready, leases. Returns when the group may next have work.
var nextScript = redis.NewScript(clock + `return tostring(nextdue(KEYS[1], KEYS[2]))`)

// KEYS item, ready, leases, live, finished. ARGV now, id, token, op, then per op:
// extend: lease µs; release/retry: nb (ns or ”), score, [attempt JSON, error];
// settle (SENT, FAILED, UNKNOWN): attempt JSON, error.
// Returns {0, until or next} done, {1} no item, {2, state} stale.
var settleScript = redis.NewScript(clock + `
local st = redis.call('HMGET', KEYS[1], 'state', 'token')
if not st[1] then return {1} end
if st[1] ~= 'SENDING' or st[2] ~= ARGV[3] then return {2, st[1]} end
local op = ARGV[4]
local function attempt(a, e)
  local old = redis.call('HGET', KEYS[1], 'attempts') or '[]'
  if old == '[]' then old = '[' .. a .. ']' else old = string.sub(old, 1, -2) .. ',' .. a .. ']' end
  redis.call('HSET', KEYS[1], 'attempts', old, 'lasterr', e)
end
if op == 'extend' then
  local lend = now() + tonumber(ARGV[5])
  redis.call('ZADD', KEYS[3], lend, ARGV[2])
  redis.call('HSET', KEYS[1], 'until', string.format('%.0f', lend))
  return {0, string.format('%.0f', lend)}
end
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('HDEL', KEYS[1], 'until')
if op == 'release' or op == 'retry' then
  if op == 'retry' then attempt(ARGV[7], ARGV[8]) end
  redis.call('HSET', KEYS[1], 'state', 'QUEUED', 'nb', ARGV[5])
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[2])
  return {0, tostring(nextdue(KEYS[2], KEYS[3]))}
end
attempt(ARGV[5], ARGV[6])
local fin = string.format('%.0f', now())
redis.call('HSET', KEYS[1], 'state', op, 'fin', fin)
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('ZADD', KEYS[5], fin, ARGV[2])
return {0, ''}
`)

// KEYS item, ready, leases, live, finished. ARGV now, id.
// Returns {0} canceled, {1} no item, {2, state}.
var cancelScript = redis.NewScript(clock + `
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {1} end
if st ~= 'QUEUED' then return {2, st} end
local fin = string.format('%.0f', now())
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('ZADD', KEYS[5], fin, ARGV[2])
redis.call('HSET', KEYS[1], 'state', 'CANCELED', 'fin', fin)
return {0}
`)

// KEYS item, ready, leases, live, finished. ARGV now, id, nb (ns), score, deadline (ns).
// Returns {0, next} requeued, {1} no item, {2, state} not requeueable.
var requeueScript = redis.NewScript(clock + `
local st = redis.call('HMGET', KEYS[1], 'state', 'accepted')
if not st[1] then return {1} end
if st[1] ~= 'FAILED' and st[1] ~= 'UNKNOWN' and st[1] ~= 'CANCELED' then return {2, st[1]} end
redis.call('HSET', KEYS[1], 'state', 'QUEUED', 'nb', ARGV[3], 'deadline', ARGV[5], 'fin', '')
redis.call('ZREM', KEYS[5], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
-- accepted is ns, too many digits for a double: µs is its string less three digits.
local us = string.sub(st[2] or '', 1, -4)
if us == '' then us = '0' end
redis.call('ZADD', KEYS[4], us, ARGV[2])
return {0, tostring(nextdue(KEYS[2], KEYS[3]))}
`)

// KEYS item, ready, leases, live, finished. ARGV now, id.
// Returns {0, key, accepted ns} deleted, {1} no item, {2, state} leased.
var deleteScript = redis.NewScript(clock + `
local st = redis.call('HMGET', KEYS[1], 'state', 'key', 'accepted')
if not st[1] then return {1} end
if st[1] == 'SENDING' then return {2, st[1]} end
redis.call('DEL', KEYS[1])
for i = 2, 5 do redis.call('ZREM', KEYS[i], ARGV[2]) end
return {0, st[2], st[3]}
`)

// KEYS finished, the item key's prefix (P{q:<g>}:item:). ARGV now, the exclusive
// upper bound ("(µs"), max.
// Deletes up to max items finished before the bound; returns {id, key, accepted ns}
// for each, flat, for the caller to remove their claims and List entries.
var expireScript = redis.NewScript(clock + `
local ids = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[2], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', KEYS[2] .. id, 'key', 'accepted')
  redis.call('DEL', KEYS[2] .. id)
  redis.call('ZREM', KEYS[1], id)
  out[#out+1] = id
  out[#out+1] = f[1] or ''
  out[#out+1] = f[2] or ''
end
return out
`)

func (q *Queue) tag(g string) string         { return q.prefix + "{q:" + g + "}" }
func (q *Queue) itemKey(g, id string) string { return q.tag(g) + ":item:" + id }
func (q *Queue) readyKey(g string) string    { return q.tag(g) + ":ready" }
func (q *Queue) leasesKey(g string) string   { return q.tag(g) + ":leases" }
func (q *Queue) liveKey(g string) string     { return q.tag(g) + ":live" }
func (q *Queue) finishedKey(g string) string { return q.tag(g) + ":finished" }
func (q *Queue) locKey(id string) string     { return q.prefix + "{qid:" + id + "}" }
func (q *Queue) byKeyKey(key string) string  { return q.prefix + "{qk:" + key + "}:items" }
func (q *Queue) groupsKey() string           { return q.prefix + "{q}:groups" }
func (q *Queue) groupKeys(g string) []string { return []string{q.readyKey(g), q.leasesKey(g)} }

// itemKeys are the keys of the scripts that change an item's state: item, ready,
// leases, live, finished.
func (q *Queue) itemKeys(g, id string) []string {
	return []string{q.itemKey(g, id), q.readyKey(g), q.leasesKey(g), q.liveKey(g), q.finishedKey(g)}
}

// listMember is an item's member of its key's List index: the Accepted in ns, fixed
// width so that lex order is time order, then the id and the group, after NUL bytes
// (neither holds one) so that ids that are prefixes of others sort as strings do.
func listMember(acceptedNS int64, id, g string) string {
	return listPos(acceptedNS, id) + "\x00" + g
}

// listPos is the part of a List member that orders it.
func listPos(acceptedNS int64, id string) string {
	return fmt.Sprintf("%019d\x00%s", max(acceptedNS, 0), id)
}

// clock is the queue's time in Go, for the one value a script cannot make: the
// Accepted that both the item and its List entry (another slot) carry.
func (q *Queue) clock() time.Time {
	if q.now != nil {
		return q.now()
	}
	return time.Now()
}

// nowArg is the scripts' clock argument: "" (Redis's TIME) unless a test clock is set.
func (q *Queue) nowArg() string {
	if q.now == nil {
		return ""
	}
	return strconv.FormatInt(q.now().UnixMicro(), 10)
}

func score(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func nsString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixNano(), 10)
}

// Enqueue claims the id (P{qid:<id>}, SET NX), writes the item in its group's slot,
// then, pipelined, lowers the group's index entry and adds the key's List entry. A retry after a partial failure finds its own
// claim and finishes the job; ErrExists when the item was already written.
func (q *Queue) Enqueue(ctx context.Context, it *queue.Item) error {
	if err := queue.CheckNew(it); err != nil {
		return err
	}
	accepted := it.Accepted
	if accepted.IsZero() {
		accepted = q.clock()
	}
	g := it.Group.String()
	ok, err := q.c.SetNX(ctx, q.locKey(it.ID), g, 0).Result()
	if err != nil {
		return fmt.Errorf("redisq: enqueue %s: %w", it.ID, err)
	}
	if !ok {
		owner, err := q.c.Get(ctx, q.locKey(it.ID)).Result()
		if err != nil {
			return fmt.Errorf("redisq: enqueue %s: %w", it.ID, err)
		}
		if owner != g {
			return fmt.Errorf("%w: message %s", queue.ErrExists, it.ID)
		}
	}
	backends, err := json.Marshal(it.Backends)
	if err != nil {
		return fmt.Errorf("redisq: enqueue %s: %w", it.ID, err)
	}
	tags, err := json.Marshal(it.Tags)
	if err != nil {
		return fmt.Errorf("redisq: enqueue %s: %w", it.ID, err)
	}
	rcpts, err := json.Marshal(it.Recipients)
	if err != nil {
		return fmt.Errorf("redisq: enqueue %s: %w", it.ID, err)
	}
	args := []any{q.nowArg(), it.ID, score(it.NotBefore), accepted.UnixMicro(),
		"id", it.ID, "key", it.Key, "gk", int(it.Group.Kind), "gn", it.Group.Name,
		"backends", backends, "body", it.Body, "accepted", nsString(accepted),
		"nb", nsString(it.NotBefore), "deadline", nsString(it.Deadline),
		"msgid", it.MessageID, "from", it.From, "route", it.Route, "tags", tags, "rcpts", rcpts,
		"state", "QUEUED", "token", 0, "attempts", "[]", "lasterr", "", "fin", ""}
	res, err := enqueueScript.Run(ctx, q.c, q.itemKeys(g, it.ID)[:4], args...).Slice()
	if err != nil {
		return fmt.Errorf("redisq: enqueue %s: %w", it.ID, err)
	}
	next, err := strconv.ParseFloat(fmt.Sprint(res[1]), 64)
	if err != nil {
		return fmt.Errorf("redisq: enqueue %s: bad next time %v: %w", it.ID, res[1], err)
	}
	exists := res[0].(int64) == 1
	ns := accepted.UnixNano()
	if exists {
		// A retry of an Enqueue that wrote the item: its List entry is the stored
		// Accepted's, which may be a clock reading of the first call.
		if ns, err = strconv.ParseInt(fmt.Sprint(res[2]), 10, 64); err != nil {
			return fmt.Errorf("redisq: enqueue %s: stored accepted %v: %w", it.ID, res[2], err)
		}
	}
	// The readiness index and the key's List index, in two other slots, in one round
	// trip. Both come after the item: an index entry always names an item that was
	// written, so List may drop one whose item is gone.
	_, err = q.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAddLT(ctx, q.groupsKey(), redis.Z{Score: next, Member: g})
		p.ZAdd(ctx, q.byKeyKey(it.Key), redis.Z{Member: listMember(ns, it.ID, g)})
		return nil
	})
	if err != nil {
		return fmt.Errorf("redisq: enqueue %s: %w", it.ID, err)
	}
	if exists {
		return fmt.Errorf("%w: message %s", queue.ErrExists, it.ID)
	}
	return nil
}

// lower moves the group's index entry to next if that is earlier (ZADD LT).
func (q *Queue) lower(ctx context.Context, g string, next any) error {
	n, err := strconv.ParseFloat(fmt.Sprint(next), 64)
	if err != nil {
		return fmt.Errorf("bad next time %v: %w", next, err)
	}
	return q.c.ZAddLT(ctx, q.groupsKey(), redis.Z{Score: n, Member: g}).Err()
}

// Lease pages through the groups the index says have due work, earliest first, and
// runs the lease script on each the predicate accepts. After each script it raises the
// group's entry to what the script found (ZADD GT), then checks the group once more and
// lowers it (ZADD LT): an Enqueue that slipped in between wrote its item before its own
// ZADD LT, so either that ZADD comes after ours or the check sees the item.
func (q *Queue) Lease(ctx context.Context, ready func(store.GroupID) bool, d time.Duration) (*queue.Item, error) {
	if ready == nil {
		return nil, fmt.Errorf("%w: Lease needs a ready predicate", queue.ErrInvalid)
	}
	if d <= 0 {
		return nil, fmt.Errorf("%w: lease duration %s is not positive", queue.ErrInvalid, d)
	}
	if d < time.Microsecond {
		d = time.Microsecond
	}
	const page = 100
	seen := map[string]bool{}
	refused, off := 0, 0
	for {
		// The bound is read anew each page; a test clock's now, or Redis's.
		max, err := q.indexNow(ctx)
		if err != nil {
			return nil, fmt.Errorf("redisq: lease: %w", err)
		}
		groups, err := q.c.ZRangeArgs(ctx, redis.ZRangeArgs{Key: q.groupsKey(), ByScore: true,
			Start: "-inf", Stop: max, Offset: int64(off), Count: page}).Result()
		if err != nil {
			return nil, fmt.Errorf("redisq: lease: %w", err)
		}
		if len(groups) == 0 {
			return nil, queue.ErrEmpty
		}
		progressed := false
		for _, g := range groups {
			if seen[g] {
				continue
			}
			seen[g], progressed = true, true
			id, ok := parseGroup(g)
			if !ok {
				return nil, fmt.Errorf("redisq: lease: index %s holds %q, not a group", q.groupsKey(), g)
			}
			if !ready(id) {
				refused++
				continue
			}
			it, err := q.leaseIn(ctx, g, d)
			if err != nil {
				return nil, fmt.Errorf("redisq: lease in %s: %w", g, err)
			}
			if it != nil {
				return it, nil
			}
		}
		if progressed {
			off = refused
		} else {
			off += len(groups)
		}
	}
}

// indexNow is the upper bound of due index entries: the test clock's now, or Redis's.
func (q *Queue) indexNow(ctx context.Context) (string, error) {
	if q.now != nil {
		return q.nowArg(), nil
	}
	t, err := q.c.Time(ctx).Result()
	if err != nil {
		return "", err
	}
	return strconv.FormatInt(t.UnixMicro(), 10), nil
}

func (q *Queue) leaseIn(ctx context.Context, g string, d time.Duration) (*queue.Item, error) {
	res, err := leaseScript.Run(ctx, q.c, []string{q.readyKey(g), q.leasesKey(g), q.itemKey(g, "")},
		q.nowArg(), d.Microseconds(), "lease until %s lapsed: its worker stopped; taken over").Slice()
	if err != nil {
		return nil, err
	}
	n, err := strconv.ParseFloat(fmt.Sprint(res[0]), 64)
	if err != nil {
		return nil, fmt.Errorf("bad next time %v", res[0])
	}
	if err := q.c.ZAddGT(ctx, q.groupsKey(), redis.Z{Score: n, Member: g}).Err(); err != nil {
		return nil, err
	}
	next, err := nextScript.Run(ctx, q.c, q.groupKeys(g), q.nowArg()).Result()
	if err != nil {
		return nil, err
	}
	if err := q.lower(ctx, g, next); err != nil {
		return nil, err
	}
	if len(res) < 2 {
		return nil, nil
	}
	return decode(res[1])
}

// parseGroup reads back a GroupID.String().
func parseGroup(s string) (store.GroupID, bool) {
	kind, name, ok := strings.Cut(s, ":")
	if !ok {
		return store.GroupID{}, false
	}
	for _, k := range []store.GroupKind{store.Mailbox, store.Backend, store.APIKey} {
		if k.String() == kind {
			return store.GroupID{Kind: k, Name: name}, true
		}
	}
	return store.GroupID{}, false
}

// parseState reads back a State's String; 0 when it is none.
func parseState(name string) queue.State {
	for s := queue.Queued; s <= queue.Unknown; s++ {
		if s.String() == name {
			return s
		}
	}
	return 0
}

// decode turns HGETALL's reply (a flat list from a script, or a map) into an Item.
func decode(v any) (*queue.Item, error) {
	f := map[string]string{}
	switch v := v.(type) {
	case []any:
		for i := 0; i+1 < len(v); i += 2 {
			f[fmt.Sprint(v[i])] = fmt.Sprint(v[i+1])
		}
	case map[string]string:
		f = v
	default:
		return nil, fmt.Errorf("item reply is %T", v)
	}
	bad := func(field string, err error) (*queue.Item, error) {
		return nil, fmt.Errorf("item %s: field %s %q: %v", f["id"], field, f[field], err)
	}
	ns := func(field string) (time.Time, error) {
		if f[field] == "" {
			return time.Time{}, nil
		}
		n, err := strconv.ParseInt(f[field], 10, 64)
		if err != nil {
			return time.Time{}, err
		}
		return time.Unix(0, n).UTC(), nil
	}
	it := &queue.Item{ID: f["id"], Key: f["key"], Body: []byte(f["body"]), LastError: f["lasterr"],
		MessageID: f["msgid"], From: f["from"], Route: f["route"], TakenOver: f["tko"] == "1"}
	kind, err := strconv.Atoi(f["gk"])
	if err != nil {
		return bad("gk", err)
	}
	it.Group = store.GroupID{Kind: store.GroupKind(kind), Name: f["gn"]}
	if err := json.Unmarshal([]byte(f["backends"]), &it.Backends); err != nil {
		return bad("backends", err)
	}
	if err := json.Unmarshal([]byte(f["attempts"]), &it.Attempts); err != nil {
		return bad("attempts", err)
	}
	if f["tags"] != "" {
		if err := json.Unmarshal([]byte(f["tags"]), &it.Tags); err != nil {
			return bad("tags", err)
		}
	}
	if f["rcpts"] != "" && f["rcpts"] != "null" {
		if err := json.Unmarshal([]byte(f["rcpts"]), &it.Recipients); err != nil {
			return bad("rcpts", err)
		}
	}
	if f["fin"] != "" {
		us, err := strconv.ParseInt(f["fin"], 10, 64)
		if err != nil {
			return bad("fin", err)
		}
		it.Finished = time.UnixMicro(us).UTC()
	}
	for _, t := range []struct {
		field string
		to    *time.Time
	}{{"accepted", &it.Accepted}, {"nb", &it.NotBefore}, {"deadline", &it.Deadline}} {
		if *t.to, err = ns(t.field); err != nil {
			return bad(t.field, err)
		}
	}
	if it.State = parseState(f["state"]); it.State == 0 {
		return bad("state", errors.New("not a state"))
	}
	if it.State == queue.Sending {
		tok, err := strconv.ParseUint(f["token"], 10, 64)
		if err != nil {
			return bad("token", err)
		}
		until, err := strconv.ParseInt(f["until"], 10, 64)
		if err != nil {
			return bad("until", err)
		}
		it.Lease = queue.Lease{ID: it.ID, Token: tok, Until: time.UnixMicro(until).UTC()}
	}
	return it, nil
}

// locate returns the group item id lives in; ErrNotFound when there is none.
func (q *Queue) locate(ctx context.Context, id string) (string, error) {
	g, err := q.c.Get(ctx, q.locKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("%w: message %s", queue.ErrNotFound, id)
	}
	if err != nil {
		return "", fmt.Errorf("redisq: locate %s: %w", id, err)
	}
	return g, nil
}

// settle runs the settle script for l; it returns the item's group and the script's
// second value.
func (q *Queue) settle(ctx context.Context, l queue.Lease, op string, args ...any) (g, val string, err error) {
	g, err = q.locate(ctx, l.ID)
	if err != nil {
		return "", "", err
	}
	argv := append([]any{q.nowArg(), l.ID, strconv.FormatUint(l.Token, 10), op}, args...)
	res, err := settleScript.Run(ctx, q.c, q.itemKeys(g, l.ID), argv...).Slice()
	if err != nil {
		return "", "", fmt.Errorf("redisq: %s %s: %w", op, l.ID, err)
	}
	switch res[0].(int64) {
	case 1:
		return "", "", fmt.Errorf("%w: message %s", queue.ErrNotFound, l.ID)
	case 2:
		return "", "", &queue.StateError{ID: l.ID, State: parseState(fmt.Sprint(res[1])), Err: queue.ErrStaleLease}
	}
	if len(res) > 1 {
		return g, fmt.Sprint(res[1]), nil
	}
	return g, "", nil
}

// Extend moves the lease's end to now + d.
func (q *Queue) Extend(ctx context.Context, l queue.Lease, d time.Duration) (queue.Lease, error) {
	if d <= 0 {
		return queue.Lease{}, fmt.Errorf("%w: lease duration %s is not positive", queue.ErrInvalid, d)
	}
	_, until, err := q.settle(ctx, l, "extend", max(d.Microseconds(), 1))
	if err != nil {
		return queue.Lease{}, err
	}
	u, err := strconv.ParseInt(until, 10, 64)
	if err != nil {
		return queue.Lease{}, fmt.Errorf("redisq: extend %s: bad lease end %q", l.ID, until)
	}
	l.Until = time.UnixMicro(u).UTC()
	return l, nil
}

func (q *Queue) requeue(ctx context.Context, l queue.Lease, op string, at time.Time, a *queue.Attempt) error {
	args := []any{nsString(at), score(at)}
	if a != nil {
		j, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("redisq: %s %s: %w", op, l.ID, err)
		}
		args = append(args, j, a.Error)
	}
	g, next, err := q.settle(ctx, l, op, args...)
	if err != nil {
		return err
	}
	if err := q.lower(ctx, g, next); err != nil {
		return fmt.Errorf("redisq: %s %s: %w", op, l.ID, err)
	}
	return nil
}

// Release puts the item back, ready at notBefore, recording no attempt.
func (q *Queue) Release(ctx context.Context, l queue.Lease, notBefore time.Time) error {
	return q.requeue(ctx, l, "release", notBefore, nil)
}

// Retry records a and puts the item back, ready at at.
func (q *Queue) Retry(ctx context.Context, l queue.Lease, at time.Time, a queue.Attempt) error {
	return q.requeue(ctx, l, "retry", at, &a)
}

func (q *Queue) end(ctx context.Context, l queue.Lease, st queue.State, a queue.Attempt) error {
	j, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("redisq: settle %s: %w", l.ID, err)
	}
	_, _, err = q.settle(ctx, l, st.String(), j, a.Error)
	return err
}

// Complete records a and ends the item Sent.
func (q *Queue) Complete(ctx context.Context, l queue.Lease, a queue.Attempt) error {
	return q.end(ctx, l, queue.Sent, a)
}

// Fail records a and ends the item Failed.
func (q *Queue) Fail(ctx context.Context, l queue.Lease, a queue.Attempt) error {
	return q.end(ctx, l, queue.Failed, a)
}

// MarkUnknown records a and ends the item Unknown.
func (q *Queue) MarkUnknown(ctx context.Context, l queue.Lease, a queue.Attempt) error {
	return q.end(ctx, l, queue.Unknown, a)
}

// Cancel ends a Queued item Canceled.
func (q *Queue) Cancel(ctx context.Context, id string) error {
	g, err := q.locate(ctx, id)
	if err != nil {
		return err
	}
	res, err := cancelScript.Run(ctx, q.c, q.itemKeys(g, id), q.nowArg(), id).Slice()
	if err != nil {
		return fmt.Errorf("redisq: cancel %s: %w", id, err)
	}
	switch res[0].(int64) {
	case 1:
		return fmt.Errorf("%w: message %s", queue.ErrNotFound, id)
	case 2:
		return &queue.StateError{ID: id, State: parseState(fmt.Sprint(res[1])), Err: queue.ErrNotCancelable}
	}
	return nil
}

// Get returns a copy of the item.
func (q *Queue) Get(ctx context.Context, id string) (*queue.Item, error) {
	g, err := q.locate(ctx, id)
	if err != nil {
		return nil, err
	}
	f, err := q.c.HGetAll(ctx, q.itemKey(g, id)).Result()
	if err != nil {
		return nil, fmt.Errorf("redisq: get %s: %w", id, err)
	}
	if len(f) == 0 {
		// The id was claimed by an Enqueue that failed before writing the item.
		return nil, fmt.Errorf("%w: message %s", queue.ErrNotFound, id)
	}
	it, err := decode(f)
	if err != nil {
		return nil, fmt.Errorf("redisq: get %s: %w", id, err)
	}
	return it, nil
}

// listFields are the item's fields but its body: what List reads.
var listFields = []string{"id", "key", "gk", "gn", "backends", "accepted", "nb", "deadline",
	"msgid", "from", "route", "tags", "rcpts", "state", "token", "until", "attempts", "lasterr", "fin"}

// List reads the key's List index (P{qk:<key>}:items) backwards by lex range, from the
// upper bound (AcceptedTo, or the page token's item) down to AcceptedFrom, a batch at
// a time, and each batch's items' fields but the body in one pipeline (in a Cluster,
// one per node). It stops after Limit+1 matches. An entry whose item is gone (a Delete
// or Expire that failed after removing the item) is skipped and removed.
func (q *Queue) List(ctx context.Context, lq queue.ListQuery) ([]*queue.Item, string, error) {
	after, err := queue.CheckListQuery(&lq)
	if err != nil {
		return nil, "", err
	}
	idx := q.byKeyKey(lq.Key)
	upper, lower := "+", "-"
	if !lq.AcceptedTo.IsZero() {
		upper = "(" + fmt.Sprintf("%019d", max(lq.AcceptedTo.UnixNano(), 0))
	}
	if !after.IsZero() {
		if b := "(" + listPos(after.Accepted.UnixNano(), after.ID); upper == "+" || b < upper {
			upper = b
		}
	}
	if !lq.AcceptedFrom.IsZero() {
		lower = "[" + fmt.Sprintf("%019d", max(lq.AcceptedFrom.UnixNano(), 0))
	}
	var (
		out   []*queue.Item
		stale []any
		more  bool
	)
	batch := int64(lq.Limit + 1)
	for !more {
		// ZRANGE … BYLEX REV takes the upper bound first.
		members, err := q.c.ZRangeArgs(ctx, redis.ZRangeArgs{Key: idx, ByLex: true, Rev: true,
			Start: upper, Stop: lower, Count: batch}).Result()
		if err != nil {
			return nil, "", fmt.Errorf("redisq: list: %w", err)
		}
		if len(members) == 0 {
			break
		}
		upper = "(" + members[len(members)-1]
		cmds := make([]*redis.SliceCmd, len(members))
		_, err = q.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, m := range members {
				parts := strings.SplitN(m, "\x00", 3)
				if len(parts) != 3 {
					return fmt.Errorf("index %s holds %q, not an entry", idx, m)
				}
				cmds[i] = p.HMGet(ctx, q.itemKey(parts[2], parts[1]), listFields...)
			}
			return nil
		})
		if err != nil {
			return nil, "", fmt.Errorf("redisq: list: %w", err)
		}
		for i, cmd := range cmds {
			vals := cmd.Val()
			f := make(map[string]string, len(vals))
			for j, v := range vals {
				if v != nil {
					f[listFields[j]] = fmt.Sprint(v)
				}
			}
			if f["state"] == "" {
				stale = append(stale, members[i])
				continue
			}
			it, err := decode(f)
			if err != nil {
				return nil, "", fmt.Errorf("redisq: list: %w", err)
			}
			it.Body = nil
			if !lq.Match(it) {
				continue
			}
			if len(out) == lq.Limit {
				more = true
				break
			}
			out = append(out, it)
		}
		if len(members) < int(batch) {
			break
		}
		// Later batches are larger: a filter that matches rarely costs fewer trips.
		batch = min(batch*2, queue.MaxListLimit+1)
	}
	if len(stale) > 0 {
		if err := q.c.ZRem(ctx, idx, stale...).Err(); err != nil {
			return nil, "", fmt.Errorf("redisq: list: removing entries of items gone: %w", err)
		}
	}
	next := ""
	if more {
		last := out[len(out)-1]
		next = queue.ListCursor{Accepted: last.Accepted, ID: last.ID}.Token()
	}
	return out, next, nil
}

// Requeue puts a Failed, Unknown or Canceled item back to Queued, ready at at.
func (q *Queue) Requeue(ctx context.Context, id string, at, deadline time.Time) error {
	if err := queue.CheckRequeue(id, at, deadline); err != nil {
		return err
	}
	g, err := q.locate(ctx, id)
	if err != nil {
		return err
	}
	res, err := requeueScript.Run(ctx, q.c, q.itemKeys(g, id), q.nowArg(), id, nsString(at), score(at), nsString(deadline)).Slice()
	if err != nil {
		return fmt.Errorf("redisq: requeue %s: %w", id, err)
	}
	switch res[0].(int64) {
	case 1:
		return fmt.Errorf("%w: message %s", queue.ErrNotFound, id)
	case 2:
		return &queue.StateError{ID: id, State: parseState(fmt.Sprint(res[1])), Err: queue.ErrNotRequeueable}
	}
	if err := q.lower(ctx, g, res[1]); err != nil {
		return fmt.Errorf("redisq: requeue %s: %w", id, err)
	}
	return nil
}

// Delete removes an item that is not leased: the item and its group's sets in one
// script, then its List entry and its claim (two other slots).
func (q *Queue) Delete(ctx context.Context, id string) error {
	g, err := q.locate(ctx, id)
	if err != nil {
		return err
	}
	res, err := deleteScript.Run(ctx, q.c, q.itemKeys(g, id), q.nowArg(), id).Slice()
	if err != nil {
		return fmt.Errorf("redisq: delete %s: %w", id, err)
	}
	switch res[0].(int64) {
	case 1:
		return fmt.Errorf("%w: message %s", queue.ErrNotFound, id)
	case 2:
		return &queue.StateError{ID: id, State: parseState(fmt.Sprint(res[1])), Err: queue.ErrLeased}
	}
	if err := q.forget(ctx, g, []gone{{id: id, key: fmt.Sprint(res[1]), accepted: fmt.Sprint(res[2])}}); err != nil {
		return fmt.Errorf("redisq: delete %s: %w", id, err)
	}
	return nil
}

// gone is an item a script deleted, whose List entry and claim remain.
type gone struct{ id, key, accepted string }

// forget removes the List entries and claims of items deleted in group g, in one
// pipeline. If it fails, List drops the entries it meets; a claim left behind makes
// Get of the id ErrNotFound (its item is gone) and keeps the id taken.
func (q *Queue) forget(ctx context.Context, g string, items []gone) error {
	_, err := q.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, it := range items {
			p.Del(ctx, q.locKey(it.id))
			if it.key == "" {
				// The item was not there to say (its hash gone before the script ran):
				// its List entry, if any, is List's to drop.
				continue
			}
			ns, err := strconv.ParseInt(it.accepted, 10, 64)
			if err != nil {
				return fmt.Errorf("item %s: accepted %q: %w", it.id, it.accepted, err)
			}
			p.ZRem(ctx, q.byKeyKey(it.key), listMember(ns, it.id, g))
		}
		return nil
	})
	return err
}

// groups returns every group the readiness index holds: each group that ever had an
// item. Expire and Stats visit them all.
func (q *Queue) groups(ctx context.Context) ([]string, error) {
	return q.c.ZRange(ctx, q.groupsKey(), 0, -1).Result()
}

// Expire counts, per group, the finished items before finishedBefore (one pipelined
// ZCOUNT per group), then runs the expire script on the groups that have some, up to
// max items in all. Per-group finished sets, not one global set: a terminal move and
// its finished entry are then one script, so no failure between them can leave an
// ended item that never expires; the price is a ZCOUNT per group per call.
func (q *Queue) Expire(ctx context.Context, finishedBefore time.Time, max int) (int, error) {
	if err := queue.CheckExpire(max); err != nil {
		return 0, err
	}
	gs, err := q.groups(ctx)
	if err != nil {
		return 0, fmt.Errorf("redisq: expire: %w", err)
	}
	ns := finishedBefore.UnixNano()
	if finishedBefore.IsZero() || ns < 0 {
		ns = 0
	}
	// Finished is in µs: before a bound in ns is before its µs rounded up.
	bound := "(" + strconv.FormatInt((ns+999)/1000, 10)
	counts := make([]*redis.IntCmd, len(gs))
	_, err = q.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, g := range gs {
			counts[i] = p.ZCount(ctx, q.finishedKey(g), "-inf", bound)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("redisq: expire: %w", err)
	}
	n := 0
	for i, g := range gs {
		if n == max {
			break
		}
		if counts[i].Val() == 0 {
			continue
		}
		res, err := expireScript.Run(ctx, q.c, []string{q.finishedKey(g), q.itemKey(g, "")}, q.nowArg(), bound, max-n).StringSlice()
		if err != nil {
			return n, fmt.Errorf("redisq: expire in %s: %w", g, err)
		}
		var done []gone
		for j := 0; j+2 < len(res); j += 3 {
			done = append(done, gone{id: res[j], key: res[j+1], accepted: res[j+2]})
		}
		n += len(done)
		if err := q.forget(ctx, g, done); err != nil {
			return n, fmt.Errorf("redisq: expire in %s: %w", g, err)
		}
	}
	return n, nil
}

// Stats visits every group in one pipeline (in a Cluster, one per node): ZCARD and
// ZCOUNT of ready, ZCARD of leases, and the first of live, whose score is the oldest
// Accepted of the group's Queued and Sending items. Four commands per group that
// ever had an item; no item is read.
func (q *Queue) Stats(ctx context.Context) (queue.Stats, error) {
	gs, err := q.groups(ctx)
	if err != nil {
		return queue.Stats{}, fmt.Errorf("redisq: stats: %w", err)
	}
	now, err := q.indexNow(ctx)
	if err != nil {
		return queue.Stats{}, fmt.Errorf("redisq: stats: %w", err)
	}
	type cmds struct {
		queued, due, sending *redis.IntCmd
		oldest               *redis.ZSliceCmd
	}
	cs := make([]cmds, len(gs))
	_, err = q.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, g := range gs {
			cs[i] = cmds{
				queued:  p.ZCard(ctx, q.readyKey(g)),
				due:     p.ZCount(ctx, q.readyKey(g), "-inf", now),
				sending: p.ZCard(ctx, q.leasesKey(g)),
				oldest:  p.ZRangeWithScores(ctx, q.liveKey(g), 0, 0),
			}
		}
		return nil
	})
	if err != nil {
		return queue.Stats{}, fmt.Errorf("redisq: stats: %w", err)
	}
	var (
		st     queue.Stats
		oldest int64
		found  bool
	)
	for _, c := range cs {
		st.Queued += int(c.queued.Val())
		st.Due += int(c.due.Val())
		st.Sending += int(c.sending.Val())
		if z := c.oldest.Val(); len(z) > 0 && (!found || int64(z[0].Score) < oldest) {
			oldest, found = int64(z[0].Score), true
		}
	}
	if found {
		st.OldestQueued = time.UnixMicro(oldest).UTC()
	}
	return st, nil
}

// Close does nothing: the client is the caller's.
func (q *Queue) Close() error { return nil }
