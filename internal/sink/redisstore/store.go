// Package redisstore keeps a projection's documents and its reverse lookup
// of joined entities in Redis, standalone or Cluster: Store is the doc store
// (sink.DocStore), Refs the reverse lookup (sink.RefIndex).
//
// Format: Store keeps one Redis string per document, under a key of the
// projection's pattern (Options.KeyPattern), holding the stored value of
// package sink (see sink.DecodeValue); a tombstone expires after
// Options.TombstoneTTL, a document never. Refs keeps a sorted set per joined
// entity and a record per document under a prefix (see sink.RefsPrefix).
//
// Administration: there is nothing to create. The write guard is a Lua
// script each Store loads on first use and again when Redis has lost it (a
// restart, a failover). Every script runs on one key, and reads of many ids
// are pipelined on a cluster, so Redis Cluster needs no hash tags.
package redisstore

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"

	"github.com/readside/readside/internal/sink"
)

// Options configures a Store.
type Options struct {
	// KeyPattern is the key of a document, with "{id}" where the id goes,
	// such as "shop:{id}". Required.
	KeyPattern string
	// TombstoneTTL is how long tombstones live [7 days when 0]. After it a
	// write of any version is accepted again. Documents never expire.
	TombstoneTTL time.Duration
}

// Validate reports every problem with o at once.
func (o Options) Validate() error {
	var errs []error
	if !strings.Contains(o.KeyPattern, "{id}") {
		errs = append(errs, fmt.Errorf("sink: redis key pattern %q: no {id}", o.KeyPattern))
	}
	if o.TombstoneTTL < 0 || (o.TombstoneTTL > 0 && o.TombstoneTTL < time.Millisecond) {
		errs = append(errs, fmt.Errorf("sink: redis tombstone TTL %v: must be 0 (the default) or at least 1ms", o.TombstoneTTL))
	}
	return errors.Join(errs...)
}

// Store stores one Redis string per id (see sink.DecodeValue for its layout)
// and guards it with a Lua script on that one key, so it works on Redis
// Cluster. It is safe for concurrent use.
type Store struct {
	c              redis.UniversalClient
	prefix, suffix string      // of the key, around the id
	ttl            any         // TombstoneTTL in milliseconds, as the script's argument
	err            error       // from Options.Validate, returned by every call
	src, sha       string      // the guard script and its SHA-1
	loaded         atomic.Bool // the script was loaded once
}

// New returns a Store writing through c. When o is invalid, every call
// returns the error that o.Validate reports.
func New(c redis.UniversalClient, o Options) *Store {
	r := &Store{c: c, err: o.Validate(), src: guardScript, sha: scriptSHA(guardScript)}
	r.prefix, r.suffix, _ = strings.Cut(o.KeyPattern, "{id}")
	ttl := o.TombstoneTTL
	if ttl == 0 {
		ttl = sink.DefaultTombstoneTTL
	}
	r.ttl = strconv.FormatInt(ttl.Milliseconds(), 10)
	return r
}

// Key is the Redis key of id: KeyPattern with its first "{id}" replaced.
func (r *Store) Key(id string) string { return r.prefix + id + r.suffix }

// guardScript writes ARGV[1], a value in the layout of sink.DecodeValue, to
// KEYS[1] unless what the key holds outranks it: a higher version, or, for a
// tombstone, a document of the same version (see sink.Doc.Deleted).
// Fixed-width version prefixes compare as strings in numeric order, which
// avoids Lua's doubles. A value whose prefix is not a version is overwritten.
// A tombstone (kind t or T) gets the TTL ARGV[2] in milliseconds; a document
// is SET without one, which clears the TTL of a tombstone it replaces. It
// returns 0 when dropped, 1 when written, 2 when a document replaced a
// tombstone.
const guardScript = `local new = ARGV[1]
local kind = string.sub(new, 21, 21)
local tomb = kind == 't' or kind == 'T'
local cur = redis.call('GET', KEYS[1])
local revived = 0
if cur then
  local v = string.sub(cur, 1, 20)
  if #v == 20 and not string.find(v, '%D') then
    local nv = string.sub(new, 1, 20)
    local ck = string.sub(cur, 21, 21)
    local curTomb = ck == 't' or ck == 'T'
    if v > nv or (tomb and v == nv and not curTomb) then
      return 0
    end
    if curTomb and not tomb then
      revived = 1
    end
  end
end
if tomb then
  redis.call('SET', KEYS[1], new, 'PX', ARGV[2])
else
  redis.call('SET', KEYS[1], new)
end
return 1 + revived
`

func scriptSHA(src string) string {
	h := sha1.Sum([]byte(src))
	return hex.EncodeToString(h[:])
}

type redisItem struct {
	i   int    // index in the docs of Write
	key string // Redis key
	val []byte // stored value
}

// Write writes docs in one pipelined round trip of EVALSHA, each guarded on
// its own key. Items in docs with the same id are applied in order. The
// script is loaded on the first call; when Redis answers NOSCRIPT (after a
// restart or a failover) it is loaded again and those items retried once.
//
// Write returns nil, a *sink.BatchError (a WRONGTYPE key or an invalid doc is
// a permanent item error; any other Redis error reply, or a node of a Redis
// Cluster that cannot be reached while others can, a transient one), or
// another error when the call failed as a whole (Redis unreachable, ctx
// done); some items may have been written then, which a retry makes good.
func (r *Store) Write(ctx context.Context, docs []sink.Doc) error {
	_, err := r.WriteReport(ctx, docs)
	return err
}

// WriteReport is Write, reporting what the guard did with each doc.
func (r *Store) WriteReport(ctx context.Context, docs []sink.Doc) ([]sink.Outcome, error) {
	if r.err != nil {
		return nil, r.err
	}
	out := make([]sink.Outcome, len(docs))
	if len(docs) == 0 {
		return out, nil
	}
	var failed sink.Failures
	size := 0
	for i := range docs {
		size += sink.MaxValueOverhead // the build time's digits too
		if !docs[i].Deleted {
			size += len(docs[i].Body)
		}
	}
	buf := make([]byte, 0, size) // every value, in one allocation
	items := make([]redisItem, 0, len(docs))
	for i := range docs {
		d := &docs[i]
		if err := d.Check(); err != nil {
			failed.Add(i, err)
			continue
		}
		start := len(buf)
		buf = sink.AppendValue(buf, d)
		items = append(items, redisItem{i: i, key: r.Key(d.ID), val: buf[start:len(buf):len(buf)]})
	}
	for i := range out {
		out[i] = sink.Dropped // until the script says otherwise
	}
	if len(items) == 0 {
		return out, failed.Err()
	}
	if !r.loaded.Load() {
		if err := r.load(ctx); err != nil {
			return nil, err
		}
	}
	again, err := r.exec(ctx, items, out, &failed)
	if err != nil {
		return nil, err
	}
	if len(again) > 0 {
		if err := r.load(ctx); err != nil {
			return nil, err
		}
		if again, err = r.exec(ctx, again, out, &failed); err != nil {
			return nil, err
		}
		for _, it := range again {
			failed.Add(it.i, fmt.Errorf("sink: redis %q: script missing right after loading it", it.key))
		}
	}
	return out, failed.Err()
}

func (r *Store) load(ctx context.Context) error {
	if err := r.c.ScriptLoad(ctx, r.src).Err(); err != nil {
		return fmt.Errorf("sink: redis: load script: %w", err)
	}
	r.loaded.Store(true)
	return nil
}

// exec runs the guard for items in one pipeline. It sets the outcome of each
// item the script ran for, adds item errors to failed, returns the items
// Redis answered NOSCRIPT for, and returns an error when the pipeline failed
// as a whole: every item failed to reach Redis. On Redis Cluster an item
// whose node cannot be reached (a master just lost, until its replica takes
// over) is a transient item error while the items of the other masters are
// written.
func (r *Store) exec(ctx context.Context, items []redisItem, out []sink.Outcome, failed *sink.Failures) (noscript []redisItem, err error) {
	keys := make([]string, len(items))
	cmds := make([]*redis.Cmd, len(items))
	pipe := r.c.Pipeline()
	for j := range items {
		keys[j] = items[j].key
		cmds[j] = pipe.EvalSha(ctx, r.sha, keys[j:j+1:j+1], items[j].val, r.ttl)
	}
	_, execErr := pipe.Exec(ctx)
	var unreachable []int // indices in items
	var firstUnreachable error
	for j, cmd := range cmds {
		err := cmd.Err()
		switch {
		case err == nil:
			switch cmd.Val() {
			case int64(0):
				out[items[j].i] = sink.Dropped
			case int64(1):
				out[items[j].i] = sink.Written
			case int64(2):
				out[items[j].i] = sink.Revived
			default:
				return nil, fmt.Errorf("sink: redis write: unexpected reply %v (%v)", cmd.Val(), execErr)
			}
		case redis.HasErrorPrefix(err, "NOSCRIPT"):
			noscript = append(noscript, items[j])
		case redis.HasErrorPrefix(err, "WRONGTYPE"):
			failed.Add(items[j].i, &sink.PermanentError{Err: fmt.Errorf("sink: redis %q: %w", items[j].key, err)})
		case isReply(err):
			failed.Add(items[j].i, fmt.Errorf("sink: redis %q: %w", items[j].key, err))
		default:
			unreachable = append(unreachable, j)
			if firstUnreachable == nil {
				firstUnreachable = err
			}
		}
	}
	if len(unreachable) > 0 && (len(unreachable) == len(items) || ctx.Err() != nil) {
		return nil, fmt.Errorf("sink: redis write: %w", firstUnreachable)
	}
	for _, j := range unreachable {
		failed.Add(items[j].i, fmt.Errorf("sink: redis %q: %w", items[j].key, cmds[j].Err()))
	}
	return noscript, nil
}

// isReply reports whether err is an error reply from Redis, rather than a
// failure to talk to it.
func isReply(err error) bool {
	var reply redis.Error
	return errors.As(err, &reply)
}

// Get returns what is stored for id: a document, a tombstone (Deleted set,
// nil Body), or sink.ErrNotFound. Body shares the reply's memory (see
// replyBytes): read it, never write into it.
func (r *Store) Get(ctx context.Context, id string) (sink.Stored, error) {
	if r.err != nil {
		return sink.Stored{}, r.err
	}
	key := r.Key(id)
	v, err := r.c.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return sink.Stored{}, sink.ErrNotFound
	}
	if err != nil {
		return sink.Stored{}, fmt.Errorf("sink: redis get %q: %w", key, err)
	}
	s, err := sink.DecodeValue(replyBytes(v))
	if err != nil {
		return sink.Stored{}, fmt.Errorf("sink: redis get %q: %w", key, err)
	}
	return s, nil
}

// GetMany returns what is stored for ids in one round trip, in the order of
// ids, with nil where nothing is stored: one GET for one id, one MGET on a
// single Redis, and on a Redis Cluster (which refuses MGET across slots) a
// pipeline of GETs. Bodies read by GET or MGET share the memory of the
// replies (strings, never written again) instead of a copy each: read them,
// never write into them. When some ids could not be read because their Redis
// Cluster node could not be reached before ctx ended (a master just lost,
// until its replica takes over) while others were read, it returns what it
// read with nil for those and a *sink.BatchError listing them by index. Any
// other failure, including an error reply or a value that does not decode,
// fails the whole call.
func (r *Store) GetMany(ctx context.Context, ids []string) ([]*sink.Stored, error) {
	if r.err != nil {
		return nil, r.err
	}
	out := make([]*sink.Stored, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	if len(ids) == 1 {
		// One id: one GET, no pipeline to set up.
		d, err := r.Get(ctx, ids[0])
		switch {
		case errors.Is(err, sink.ErrNotFound):
			return out, nil
		case err != nil:
			return nil, err
		}
		out[0] = &d
		return out, nil
	}
	if _, cluster := r.c.(*redis.ClusterClient); !cluster {
		return r.mget(ctx, ids, out)
	}
	// A cluster spreads the keys over nodes: MGET would need them in one
	// slot. A pipeline sends each node its GETs at once instead.
	cmds := make([]*redis.StringCmd, len(ids))
	pipe := r.c.Pipeline()
	for i, id := range ids {
		cmds[i] = pipe.Get(ctx, r.Key(id))
	}
	_, _ = pipe.Exec(ctx) // errors are on the commands
	all := make([]sink.Stored, len(ids))
	var failed sink.Failures
	for i, cmd := range cmds {
		v, err := cmd.Bytes()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil && !isReply(err) {
			// Its node could not be reached in time; what other nodes
			// answered is still good.
			failed.Add(i, fmt.Errorf("sink: redis get %q: %w", r.Key(ids[i]), err))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("sink: redis get %q: %w", r.Key(ids[i]), err)
		}
		if all[i], err = sink.DecodeValue(v); err != nil {
			return nil, fmt.Errorf("sink: redis get %q: %w", r.Key(ids[i]), err)
		}
		out[i] = &all[i]
	}
	if len(failed) == len(ids) {
		return nil, failed[0]
	}
	return out, failed.Err()
}

// replyBytes is a reply string's bytes, without a copy: go-redis makes a new
// string of every reply and keeps no reference to it, so nothing writes
// those bytes again. The slice's capacity is its length, so an append
// copies. (A copy of every document was 5 % of a multi-get's CPU.)
func replyBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// mget reads ids with one MGET, on a single Redis.
func (r *Store) mget(ctx context.Context, ids []string, out []*sink.Stored) ([]*sink.Stored, error) {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = r.Key(id)
	}
	vals, err := r.c.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("sink: redis mget of %d keys: %w", len(keys), err)
	}
	all := make([]sink.Stored, len(ids))
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // nil: no such key
		}
		if all[i], err = sink.DecodeValue(replyBytes(s)); err != nil {
			return nil, fmt.Errorf("sink: redis get %q: %w", keys[i], err)
		}
		out[i] = &all[i]
	}
	return out, nil
}
