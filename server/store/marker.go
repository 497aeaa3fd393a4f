package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Redis without persistence forgets every idempotency record when it restarts, and
// mailgate would then send retried requests a second time. Nothing in the records
// themselves can tell "never seen" from "forgotten", so each replica watches a marker
// instead: a key without expiry that mailgate writes once and never deletes. A marker
// that disappears, or comes back with another generation, means the data went with it.
//
// The loss is recorded in Redis itself (<prefix>{meta}:lost), so that every replica
// reports it, not only the one that noticed, until an operator acknowledges it.
//
//	<prefix>{meta}:marker        the marker (a hash: gen, created, by, acked)
//	<prefix>{meta:<n>}:marker    on a Cluster, one marker on each master: n is chosen
//	                             so that the key's slot is one the master serves
//	<prefix>{meta}:lost          the recorded loss (JSON), until acknowledged

// DataWatcher is a Store that can lose its data behind mailgate's back (Redis).
type DataWatcher interface {
	// CheckData checks the markers, records a loss it finds, and reports the state.
	CheckData(ctx context.Context) (DataState, error)
}

// DataState is what CheckData found.
type DataState struct {
	// Lost is the recorded loss, until an operator acknowledges it; nil when none.
	Lost *Loss
	// Detected is set when this call found the loss first and recorded it.
	Detected bool
	// Created lists markers that were absent and that this replica had never seen: a
	// new Redis, or one that lost its data while no replica was watching.
	Created []string
}

// Loss is a recorded loss of Redis's data.
type Loss struct {
	At time.Time `json:"at"`
	// By is the replica that noticed (its host name).
	By string `json:"by"`
	// Reason says what was seen, e.g. which marker was gone and whether Redis restarted.
	Reason string `json:"reason"`
}

func (l *Loss) String() string {
	return fmt.Sprintf("%s (noticed by %s at %s)", l.Reason, l.By, l.At.UTC().Format(time.RFC3339))
}

// Creates the marker if it is absent. KEYS[1] the marker; ARGV new generation, time,
// replica. Returns {generation, acked, created (1 or 0)}.
var ensureMarkerScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'gen', 'acked')
if h[1] then return {h[1], h[2] or '', 0} end
redis.call('HSET', KEYS[1], 'gen', ARGV[1], 'created', ARGV[2], 'by', ARGV[3])
return {ARGV[1], '', 1}
`)

// Marks the marker acknowledged, creating it if absent. KEYS[1] the marker; ARGV as
// ensureMarkerScript.
var ackMarkerScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'gen', ARGV[1], 'created', ARGV[2], 'by', ARGV[3])
end
redis.call('HSET', KEYS[1], 'acked', ARGV[2])
return 0
`)

// watch is what one replica remembers of the markers between checks.
type watch struct {
	mu     sync.Mutex
	seen   map[string]string // marker key → generation
	runIDs map[string]string // node address → run_id, for the log
}

// SetReplica names this replica in recorded losses (default: "mailgate").
func (r *Redis) SetReplica(name string) { r.replica = name }

func (r *Redis) lostKey() string { return r.prefix + "{meta}:lost" }

// markerKeys are the markers to watch: one, or on a Cluster one per master.
func (r *Redis) markerKeys(ctx context.Context) ([]string, error) {
	cc, ok := r.c.(*redis.ClusterClient)
	if !ok {
		return []string{r.prefix + "{meta}:marker"}, nil
	}
	//lint:ignore SA1019 CLUSTER SHARDS needs Redis 7; CLUSTER SLOTS works on every version mailgate supports
	shards, err := cc.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("store: cluster slots: %w", err)
	}
	owner := make(map[int]string, 16384) // slot → master address
	masters := map[string]bool{}
	for _, s := range shards {
		if len(s.Nodes) == 0 {
			continue
		}
		masters[s.Nodes[0].Addr] = true
		for slot := s.Start; slot <= s.End; slot++ {
			owner[slot] = s.Nodes[0].Addr
		}
	}
	var keys []string
	covered := map[string]bool{}
	// A prefix with a hash tag of its own puts every key in one slot: then one marker
	// is all there can be, and all the data is on its master anyway.
	for n := 0; n < 1<<20 && len(covered) < len(masters); n++ {
		key := r.prefix + "{meta:" + strconv.Itoa(n) + "}:marker"
		if addr, ok := owner[keySlot(key)]; ok && !covered[addr] {
			covered[addr] = true
			keys = append(keys, key)
		}
	}
	sort.Strings(keys)
	return keys, nil
}

// CheckData implements DataWatcher.
func (r *Redis) CheckData(ctx context.Context) (DataState, error) {
	var st DataState
	keys, err := r.markerKeys(ctx)
	if err != nil {
		return st, err
	}
	runIDs := r.runIDs(ctx)
	gen, now := newToken(), time.Now().UTC().Format(time.RFC3339Nano)

	pipe := r.c.Pipeline()
	lost := pipe.Get(ctx, r.lostKey())
	markers := make([]*redis.Cmd, len(keys))
	for i, k := range keys {
		markers[i] = ensureMarkerScript.Eval(ctx, pipe, []string{k}, gen, now, r.replica)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return st, fmt.Errorf("store: check markers: %w", err)
	}

	r.watch.mu.Lock()
	defer r.watch.mu.Unlock()
	if r.watch.seen == nil {
		r.watch.seen = map[string]string{}
	}
	var reasons []string
	seen := make(map[string]string, len(keys))
	for i, k := range keys {
		res, err := markers[i].Slice()
		if err != nil {
			return st, fmt.Errorf("store: check marker %s: %w", k, err)
		}
		g, _ := at(res, 0).(string)
		acked, _ := at(res, 1).(string)
		created := code(res, 2) == 1
		prev, known := r.watch.seen[k]
		seen[k] = g
		switch {
		case created && known:
			reasons = append(reasons, "the marker "+k+" is gone")
		case created:
			st.Created = append(st.Created, k)
		case known && g != prev && acked == "":
			// Another replica (one that had never seen it, e.g. one just started)
			// wrote the marker again after it was gone.
			reasons = append(reasons, "the marker "+k+" was written again after it was gone")
		}
	}
	r.watch.seen = seen
	if len(reasons) > 0 {
		for addr, id := range runIDs {
			if old, ok := r.watch.runIDs[addr]; ok && old != id {
				reasons = append(reasons, "Redis at "+addr+" restarted (its run_id changed)")
			}
		}
	}
	if len(runIDs) > 0 {
		r.watch.runIDs = runIDs
	}

	if s, err := lost.Result(); err == nil {
		var l Loss
		if json.Unmarshal([]byte(s), &l) != nil {
			l = Loss{Reason: "a loss was recorded (unreadable record)"}
		}
		st.Lost = &l
	} else if !errors.Is(err, redis.Nil) {
		return st, fmt.Errorf("store: check markers: %w", err)
	}
	if len(reasons) == 0 || st.Lost != nil {
		return st, nil
	}
	l := &Loss{At: time.Now().UTC(), By: r.replica, Reason: strings.Join(reasons, "; ")}
	b, _ := json.Marshal(l)
	// The first record of a loss stays: every replica that notices it reports the same.
	set, err := r.c.SetNX(ctx, r.lostKey(), b, 0).Result()
	if err != nil {
		return st, fmt.Errorf("store: record data loss: %w", err)
	}
	if !set {
		if s, err := r.c.Get(ctx, r.lostKey()).Result(); err == nil && json.Unmarshal([]byte(s), l) != nil {
			l.Reason = "a loss was recorded (unreadable record)"
		}
	}
	st.Lost, st.Detected = l, set
	return st, nil
}

// DataLoss returns the recorded loss, or nil when none is recorded. It changes nothing.
func (r *Redis) DataLoss(ctx context.Context) (*Loss, error) {
	s, err := r.c.Get(ctx, r.lostKey()).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: read data loss: %w", err)
	}
	var l Loss
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return &Loss{Reason: "a loss was recorded (unreadable record)"}, nil
	}
	return &l, nil
}

// AckDataLoss acknowledges a recorded loss, for every replica: the markers are marked
// acknowledged (written anew where absent), then the record is deleted. It returns the
// loss it acknowledged, or nil when none was recorded.
func (r *Redis) AckDataLoss(ctx context.Context) (*Loss, error) {
	l, err := r.DataLoss(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := r.markerKeys(ctx)
	if err != nil {
		return nil, err
	}
	gen, now := newToken(), time.Now().UTC().Format(time.RFC3339Nano)
	pipe := r.c.Pipeline()
	for _, k := range keys {
		ackMarkerScript.Eval(ctx, pipe, []string{k}, gen, now, r.replica)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: acknowledge markers: %w", err)
	}
	// Only after the markers: a replica that still remembers a marker's old generation
	// accepts the new one because it is acknowledged.
	if err := r.c.Del(ctx, r.lostKey()).Err(); err != nil {
		return nil, fmt.Errorf("store: acknowledge data loss: %w", err)
	}
	return l, nil
}

// runIDs are the masters' run_ids, for the log of a loss: a restart changes them. INFO
// may be refused (managed Redis); then there is nothing to say.
func (r *Redis) runIDs(ctx context.Context) map[string]string {
	out := map[string]string{}
	var mu sync.Mutex
	get := func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "server").Result()
		if err != nil {
			return err
		}
		if id := infoField(info, "run_id"); id != "" {
			mu.Lock()
			out[c.Options().Addr] = id
			mu.Unlock()
		}
		return nil
	}
	switch c := r.c.(type) {
	case *redis.ClusterClient:
		c.ForEachMaster(ctx, get)
	case *redis.Client:
		get(ctx, c)
	}
	return out
}

// infoField is a field of INFO's "name:value" lines.
func infoField(info, name string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// keySlot is the Cluster hash slot of a key: CRC16 (XMODEM) of its hash tag (the part
// in the first non-empty pair of braces) or of the whole key, modulo 16384.
func keySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}
