package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	_ Store       = (*Redis)(nil)
	_ DataWatcher = (*Redis)(nil)
)

// Redis is a Store shared by every replica that uses the same Redis (standalone,
// Sentinel or Cluster). Every read-modify-write is one Lua script, and every script
// touches keys of one hash slot only, so it runs unchanged on a Cluster:
//
//	<prefix>{mb:<mailbox>}:msgs|rcpts|conc|pause  a mailbox's budgets, slots and pause
//	<prefix>{be:<backend>}:pause                  a pause of a backend that sends as no mailbox
//	<prefix>{key:<name>}:msgs|pause               an API key's budget
//	<prefix>{idem:<scope>:<sha256 of key>}        an idempotency claim (a hash)
//	<prefix>msg:<scope>:<id>                      a GetMessage record
//	<prefix>{meta}:marker, <prefix>{meta}:lost    whether Redis kept its data (marker.go)
//
// "mb", "be", "key" are GroupKind's String, "msgs", "rcpts", "conc" LimitID's; each
// budget is a list and its running sum (the same key with ":sum"). Concurrent slots are
// kept as a window is, one entry of cost 1 per holder, so that a holder that never
// completes lapses after the period as a window's entry does, and the list's expiry
// (a period after the last admission) leaves nothing behind. Replicas of different
// releases share these keys during an upgrade: they are a stored format.
//
// Scripts read the clock with Redis's TIME, so replicas with skewed clocks still share
// one notion of "now".
type Redis struct {
	c       redis.UniversalClient
	prefix  string
	replica string
	watch   watch
}

// NewRedis returns a store on c; prefix starts every key (e.g. "mg:"), so that several
// deployments can share one Redis.
func NewRedis(c redis.UniversalClient, prefix string) *Redis {
	return &Redis{c: c, prefix: prefix, replica: "mailgate"}
}

// Reserves every limit in a group, all or nothing, unless the group is paused. Each limit
// is a sliding window: a list of "<ms>:<cost>:<token>" entries, oldest first, and their
// running sum.
// KEYS[1] the pause flag; then per limit its list and its sum.
// ARGV[1] the request's token; then per limit: period ms, count, cost, and the longest
// wait to report for it in ms (0: none; a Concurrent limit's ConcurrentRetry).
// Returns {0, now} taken, {1, wait ms, index} refused (the limit that frees up last: the
// wait covers every refusing limit), {2, wait ms} paused.
var reserveScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local paused = redis.call('PTTL', KEYS[1])
if paused > 0 then return {2, paused} end
local n = (#KEYS - 1) / 2
local sums = {}
local wait, refused = 0, 0
for i = 1, n do
  local log, sumkey = KEYS[2*i], KEYS[2*i+1]
  local j = 2 + (i-1) * 4
  local period, count, cost, longest = tonumber(ARGV[j]), tonumber(ARGV[j+1]), tonumber(ARGV[j+2]), tonumber(ARGV[j+3])
  local sum = tonumber(redis.call('GET', sumkey) or '0')
  local pruned = false
  while true do
    local head = redis.call('LINDEX', log, 0)
    if not head then sum = 0 break end
    local at, c = string.match(head, '^(%d+):(%d+):')
    if tonumber(at) + period > now then break end
    redis.call('LPOP', log)
    sum = sum - tonumber(c)
    pruned = true
  end
  -- What was pruned stays pruned, whatever this request's fate.
  if pruned then
    if sum > 0 then redis.call('SET', sumkey, sum, 'KEEPTTL') else redis.call('DEL', sumkey) end
  end
  if sum + cost > count then
    -- Walk the oldest entries, a page at a time, until enough would have left.
    local need, w, from = sum + cost - count, period, 0
    while need > 0 do
      local page = redis.call('LRANGE', log, from, from + 99)
      if #page == 0 then break end
      for _, e in ipairs(page) do
        local at, c = string.match(e, '^(%d+):(%d+):')
        need = need - tonumber(c)
        if need <= 0 then w = tonumber(at) + period - now break end
      end
      from = from + 100
    end
    if longest > 0 and w > longest then w = longest end
    if w > wait then wait, refused = w, i end
  end
  sums[i] = sum
end
if refused > 0 then return {1, wait, refused} end
for i = 1, n do
  local j = 2 + (i-1) * 4
  local period, cost = tonumber(ARGV[j]), tonumber(ARGV[j+2])
  redis.call('RPUSH', KEYS[2*i], string.format('%.0f:%d:%s', now, cost, ARGV[1]))
  redis.call('PEXPIRE', KEYS[2*i], period)
  redis.call('SET', KEYS[2*i+1], sums[i] + cost, 'PX', period)
end
return {0, now}
`)

// Takes back what reserveScript took for one request. KEYS per limit its list and sum;
// ARGV[1] the entry suffix ":<token>"; ARGV[1+i] the i-th limit's entry.
var refundScript = redis.NewScript(`
for i = 1, #KEYS / 2 do
  local entry = ARGV[1 + i]
  if redis.call('LREM', KEYS[2*i-1], 1, entry) == 1 then
    local cost = tonumber(string.match(entry, '^%d+:(%d+):'))
    local sum = redis.call('DECRBY', KEYS[2*i], cost)
    if sum <= 0 then redis.call('DEL', KEYS[2*i]) end
  end
end
return 0
`)

// Claims an idempotency key. KEYS[1] the claim; ARGV fingerprint, token, lock ms.
// Returns {"new"}, {"mismatch"}, {"inflight", ttl ms} or {"done", outcome}. The same token
// claiming again gets "new", so a retried round trip never locks itself out.
var claimScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'state', 'fp', 'token', 'outcome')
if not h[1] then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'fp', ARGV[1], 'token', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'new'}
end
if h[2] ~= ARGV[1] then return {'mismatch'} end
if h[1] == 'pending' then
  if h[3] == ARGV[2] then return {'new'} end
  return {'inflight', redis.call('PTTL', KEYS[1])}
end
return {'done', h[4]}
`)

// Completes a claim, fenced by its token. KEYS[1] the claim; ARGV token, outcome ("" to
// release), retention ms. Returns 1, or 0 when the claim is no longer this token's.
var completeScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('HSET', KEYS[1], 'state', 'done', 'outcome', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// Extends a pause, never shortens it. KEYS[1] the flag; ARGV ms.
var pauseScript = redis.NewScript(`
local left = redis.call('PTTL', KEYS[1])
if left < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
return 0
`)

// groupTag starts every key of the group: "<prefix>{mb:<mailbox>}:". The braces make the
// group one hash slot on a Cluster.
func (r *Redis) groupTag(g GroupID) string { return r.prefix + "{" + g.String() + "}:" }

func (r *Redis) groupKeys(g Group, token string) (keys []string, args []any) {
	tag := r.groupTag(g.ID())
	keys = append(keys, tag+"pause")
	args = append(args, token)
	for _, l := range activeLimits(g) {
		var longest time.Duration // the wait a refusal reports at most; 0: none
		if l.ID == Concurrent {
			longest = ConcurrentRetry
		}
		keys = append(keys, tag+l.ID.String(), tag+l.ID.String()+":sum")
		args = append(args, l.Period.Milliseconds(), l.Count, l.Cost, longest.Milliseconds())
	}
	return keys, args
}

func (r *Redis) claimKey(c *Claim) string {
	sum := sha256.Sum256([]byte(c.Key))
	return r.prefix + "{idem:" + c.Scope + ":" + hex.EncodeToString(sum[:]) + "}"
}

func (r *Redis) recordKey(key string) string { return r.prefix + key }

// Admit implements Store in one round trip on the happy path: the claim and every
// group's reservation travel in one pipeline. When one of them says no, what the others
// took is given back in a second round trip.
func (r *Redis) Admit(ctx context.Context, a *Admission) (*Ticket, error) {
	if err := a.invalid(); err != nil {
		return nil, err
	}
	t := &Ticket{claim: a.Claim, token: newToken()}
	pipe := r.c.Pipeline()
	var claim *redis.Cmd
	if c := a.Claim; c != nil {
		claim = claimScript.Eval(ctx, pipe, []string{r.claimKey(c)}, c.Fingerprint, t.token, c.LockTTL.Milliseconds())
	}
	reserves := make([]*redis.Cmd, len(a.Groups))
	for i, g := range a.Groups {
		keys, args := r.groupKeys(g, t.token)
		reserves[i] = reserveScript.Eval(ctx, pipe, keys, args...)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		// Some scripts may have run: give back what they took, best effort; a claim
		// left pending expires with its lock.
		r.undo(context.WithoutCancel(ctx), t, a.Groups, reserves, claim)
		return nil, fmt.Errorf("store: admit: %w", err)
	}

	var taken []Group
	var takenAt []time.Time
	for i, cmd := range reserves {
		res, _ := cmd.Slice()
		switch code(res, 0) {
		case 0:
			taken = append(taken, a.Groups[i])
			takenAt = append(takenAt, time.UnixMilli(code(res, 1)))
		case 1, 2:
			// Of several refusals, report the one that lasts longest: retrying sooner
			// would only be refused again.
			if wait := time.Duration(code(res, 1)) * time.Millisecond; t.Decision != Throttled || wait > t.RetryAfter {
				t.Decision, t.RetryAfter = Throttled, wait
				t.Refused = &Refusal{Group: a.Groups[i].ID(), Paused: true}
				if code(res, 0) == 1 {
					t.Refused = &Refusal{Group: a.Groups[i].ID(), Limit: activeLimits(a.Groups[i])[code(res, 2)-1].ID}
				}
			}
		}
	}
	claimed := false
	if claim != nil {
		// The claim decides before the budgets: what a limit said is then moot.
		res, _ := claim.Slice()
		state, _ := at(res, 0).(string)
		switch state {
		case "new":
			claimed = true
		case "mismatch":
			t.Decision, t.RetryAfter, t.Refused = Mismatch, 0, nil
		case "inflight":
			t.Decision, t.RetryAfter, t.Refused = InFlight, time.Duration(code(res, 1))*time.Millisecond, nil
		case "done":
			outcome, _ := at(res, 1).(string)
			t.Decision, t.Outcome, t.RetryAfter, t.Refused = Replay, []byte(outcome), 0, nil
		}
	}
	if t.Decision == 0 {
		t.Decision, t.groups, t.at = Proceed, taken, takenAt
		return t, nil
	}
	// Refused: nothing may stay taken.
	pipe = r.c.Pipeline()
	r.refund(ctx, pipe, taken, takenAt, t.token, allLimits)
	if claimed {
		completeScript.Eval(ctx, pipe, []string{r.claimKey(a.Claim)}, t.token, "", 0)
	}
	if pipe.Len() > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("store: undo admit: %w", err)
		}
	}
	return t, nil
}

// undo gives back whatever a failed Admit pipeline may have taken.
func (r *Redis) undo(ctx context.Context, t *Ticket, groups []Group, reserves []*redis.Cmd, claim *redis.Cmd) {
	pipe := r.c.Pipeline()
	for i, cmd := range reserves {
		if res, err := cmd.Slice(); err == nil && code(res, 0) == 0 {
			r.refund(ctx, pipe, groups[i:i+1], []time.Time{time.UnixMilli(code(res, 1))}, t.token, allLimits)
		}
	}
	if claim != nil {
		completeScript.Eval(ctx, pipe, []string{r.claimKey(t.claim)}, t.token, "", 0)
	}
	pipe.Exec(ctx)
}

// refund takes back the entries a request made at the given times in the groups' limits
// that which selects.
func (r *Redis) refund(ctx context.Context, pipe redis.Pipeliner, groups []Group, at []time.Time, token string, which func(LimitID) bool) {
	for i, g := range groups {
		tag := r.groupTag(g.ID())
		var keys []string
		args := []any{":" + token}
		for _, l := range activeLimits(g) {
			if !which(l.ID) {
				continue
			}
			keys = append(keys, tag+l.ID.String(), tag+l.ID.String()+":sum")
			args = append(args, fmt.Sprintf("%d:%d:%s", at[i].UnixMilli(), l.Cost, token))
		}
		if len(keys) > 0 {
			refundScript.Eval(ctx, pipe, keys, args...)
		}
	}
}

// Complete implements Store in one round trip.
func (r *Redis) Complete(ctx context.Context, t *Ticket, c Completion) error {
	pipe := r.c.Pipeline()
	if cl := t.claim; cl != nil {
		completeScript.Eval(ctx, pipe, []string{r.claimKey(cl)}, t.token, c.Outcome, c.Retention.Milliseconds())
	}
	// A completed request no longer runs: its slots are free whether or not it refunds.
	which := isConcurrent
	if c.Refund {
		which = allLimits
	}
	r.refund(ctx, pipe, t.groups, t.at, t.token, which)
	if rec := c.Record; rec != nil {
		pipe.Set(ctx, r.recordKey(rec.Key), rec.Value, rec.TTL)
	}
	if pipe.Len() == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store: complete: %w", err)
	}
	return nil
}

// Pause implements Store.
func (r *Redis) Pause(ctx context.Context, group GroupID, d time.Duration) error {
	if err := invalidPause(group); err != nil {
		return err
	}
	ms := d.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	if err := pauseScript.Eval(ctx, r.c, []string{r.groupTag(group) + "pause"}, ms).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("store: pause: %w", err)
	}
	return nil
}

// Ping implements Store.
func (r *Redis) Ping(ctx context.Context) error { return r.c.Ping(ctx).Err() }

// GetRecord implements Store.
func (r *Redis) GetRecord(ctx context.Context, key string) ([]byte, error) {
	b, err := r.c.Get(ctx, r.recordKey(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	return b, err
}

func allLimits(LimitID) bool      { return true }
func isConcurrent(l LimitID) bool { return l == Concurrent }

func activeLimits(g Group) []Limit {
	var out []Limit
	for _, l := range g.Limits {
		if l.Count > 0 {
			out = append(out, l)
		}
	}
	return out
}

func at(res []any, i int) any {
	if i < len(res) {
		return res[i]
	}
	return nil
}

func code(res []any, i int) int64 {
	switch v := at(res, i).(type) {
	case int64:
		return v
	case string:
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	return -1
}
