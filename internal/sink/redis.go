package sink

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

	"github.com/redis/go-redis/v9"
)

// RedisOptions configures a Redis sink.
type RedisOptions struct {
	// KeyPattern is the key of a document, with "{id}" where the id goes,
	// such as "shop:{id}". Required.
	KeyPattern string
	// TombstoneTTL is how long tombstones live [7 days when 0]. After it a
	// write of any version is accepted again. Documents never expire.
	TombstoneTTL time.Duration
}

// DefaultTombstoneTTL is the TombstoneTTL used when none is set.
const DefaultTombstoneTTL = 7 * 24 * time.Hour

// Validate reports every problem with o at once.
func (o RedisOptions) Validate() error {
	var errs []error
	if !strings.Contains(o.KeyPattern, "{id}") {
		errs = append(errs, fmt.Errorf("sink: redis key pattern %q: no {id}", o.KeyPattern))
	}
	if o.TombstoneTTL < 0 || (o.TombstoneTTL > 0 && o.TombstoneTTL < time.Millisecond) {
		errs = append(errs, fmt.Errorf("sink: redis tombstone TTL %v: must be 0 (the default) or at least 1ms", o.TombstoneTTL))
	}
	return errors.Join(errs...)
}

// Redis stores one Redis string per id (see DecodeValue for its layout) and
// guards it with a Lua script on that one key, so it works on Redis Cluster.
// It is safe for concurrent use.
type Redis struct {
	c              redis.UniversalClient
	prefix, suffix string      // of the key, around the id
	ttl            any         // TombstoneTTL in milliseconds, as the script's argument
	err            error       // from RedisOptions.Validate, returned by every call
	src, sha       string      // the guard script and its SHA-1
	loaded         atomic.Bool // the script was loaded once
}

// NewRedis returns a sink writing through c. When o is invalid, every call
// returns the error that o.Validate reports.
func NewRedis(c redis.UniversalClient, o RedisOptions) *Redis {
	r := &Redis{c: c, err: o.Validate(), src: guardScript, sha: scriptSHA(guardScript)}
	r.prefix, r.suffix, _ = strings.Cut(o.KeyPattern, "{id}")
	ttl := o.TombstoneTTL
	if ttl == 0 {
		ttl = DefaultTombstoneTTL
	}
	r.ttl = strconv.FormatInt(ttl.Milliseconds(), 10)
	return r
}

// Key is the Redis key of id: KeyPattern with its first "{id}" replaced.
func (r *Redis) Key(id string) string { return r.prefix + id + r.suffix }

// guardScript writes ARGV[1], a value in the layout of DecodeValue, to
// KEYS[1] unless the key holds a higher version. Fixed-width version prefixes
// compare as strings in numeric order, which avoids Lua's doubles. A value
// whose prefix is not a version is overwritten. A tombstone gets the TTL
// ARGV[2] in milliseconds; a document is SET without one, which clears the
// TTL of a tombstone it replaces. It returns 1 when written, 0 when dropped.
const guardScript = `local new = ARGV[1]
local cur = redis.call('GET', KEYS[1])
if cur then
  local v = string.sub(cur, 1, 20)
  if #v == 20 and not string.find(v, '%D') and v > string.sub(new, 1, 20) then
    return 0
  end
end
if string.sub(new, 21, 21) == 't' then
  redis.call('SET', KEYS[1], new, 'PX', ARGV[2])
else
  redis.call('SET', KEYS[1], new)
end
return 1
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
// Write returns nil, a *BatchError (a WRONGTYPE key or an invalid doc is a
// permanent item error, any other Redis error reply a transient one), or
// another error when the call failed as a whole (Redis unreachable, ctx
// done); some items may have been written then, which a retry makes good.
func (r *Redis) Write(ctx context.Context, docs []Doc) error {
	if r.err != nil {
		return r.err
	}
	if len(docs) == 0 {
		return nil
	}
	var failed failures
	size := 0
	for i := range docs {
		size += headerLen
		if !docs[i].Deleted {
			size += len(docs[i].Body)
		}
	}
	buf := make([]byte, 0, size) // every value, in one allocation
	items := make([]redisItem, 0, len(docs))
	for i := range docs {
		d := &docs[i]
		if err := d.check(); err != nil {
			failed.add(i, err)
			continue
		}
		start := len(buf)
		buf = appendValue(buf, d)
		items = append(items, redisItem{i: i, key: r.Key(d.ID), val: buf[start:len(buf):len(buf)]})
	}
	if len(items) == 0 {
		return failed.err()
	}
	if !r.loaded.Load() {
		if err := r.load(ctx); err != nil {
			return err
		}
	}
	again, err := r.exec(ctx, items, &failed)
	if err != nil {
		return err
	}
	if len(again) > 0 {
		if err := r.load(ctx); err != nil {
			return err
		}
		if again, err = r.exec(ctx, again, &failed); err != nil {
			return err
		}
		for _, it := range again {
			failed.add(it.i, fmt.Errorf("sink: redis %q: script missing right after loading it", it.key))
		}
	}
	return failed.err()
}

func (r *Redis) load(ctx context.Context) error {
	if err := r.c.ScriptLoad(ctx, r.src).Err(); err != nil {
		return fmt.Errorf("sink: redis: load script: %w", err)
	}
	r.loaded.Store(true)
	return nil
}

// exec runs the guard for items in one pipeline. It adds item errors to
// failed, returns the items Redis answered NOSCRIPT for, and returns an error
// when the pipeline failed as a whole.
func (r *Redis) exec(ctx context.Context, items []redisItem, failed *failures) (noscript []redisItem, err error) {
	keys := make([]string, len(items))
	cmds := make([]*redis.Cmd, len(items))
	pipe := r.c.Pipeline()
	for j := range items {
		keys[j] = items[j].key
		cmds[j] = pipe.EvalSha(ctx, r.sha, keys[j:j+1:j+1], items[j].val, r.ttl)
	}
	_, execErr := pipe.Exec(ctx)
	for j, cmd := range cmds {
		err := cmd.Err()
		switch {
		case err == nil:
			if _, ok := cmd.Val().(int64); !ok {
				return nil, fmt.Errorf("sink: redis write: unexpected reply %v (%v)", cmd.Val(), execErr)
			}
		case redis.HasErrorPrefix(err, "NOSCRIPT"):
			noscript = append(noscript, items[j])
		case redis.HasErrorPrefix(err, "WRONGTYPE"):
			failed.add(items[j].i, &PermanentError{Err: fmt.Errorf("sink: redis %q: %w", items[j].key, err)})
		case isReply(err):
			failed.add(items[j].i, fmt.Errorf("sink: redis %q: %w", items[j].key, err))
		default:
			return nil, fmt.Errorf("sink: redis write: %w", err)
		}
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
// nil Body), or ErrNotFound. Body aliases no buffer of the sink.
func (r *Redis) Get(ctx context.Context, id string) (Stored, error) {
	if r.err != nil {
		return Stored{}, r.err
	}
	key := r.Key(id)
	v, err := r.c.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return Stored{}, ErrNotFound
	}
	if err != nil {
		return Stored{}, fmt.Errorf("sink: redis get %q: %w", key, err)
	}
	s, err := DecodeValue(v)
	if err != nil {
		return Stored{}, fmt.Errorf("sink: redis get %q: %w", key, err)
	}
	return s, nil
}

// GetMany returns what is stored for ids in one round trip, in the order of
// ids, with nil where nothing is stored. It pipelines GETs rather than MGET,
// which Redis Cluster refuses across slots. Any failure, including a value
// that does not decode, fails the whole call.
func (r *Redis) GetMany(ctx context.Context, ids []string) ([]*Stored, error) {
	if r.err != nil {
		return nil, r.err
	}
	out := make([]*Stored, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	cmds := make([]*redis.StringCmd, len(ids))
	pipe := r.c.Pipeline()
	for i, id := range ids {
		cmds[i] = pipe.Get(ctx, r.Key(id))
	}
	_, _ = pipe.Exec(ctx) // errors are on the commands
	all := make([]Stored, len(ids))
	for i, cmd := range cmds {
		v, err := cmd.Bytes()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("sink: redis get %q: %w", r.Key(ids[i]), err)
		}
		if all[i], err = DecodeValue(v); err != nil {
			return nil, fmt.Errorf("sink: redis get %q: %w", r.Key(ids[i]), err)
		}
		out[i] = &all[i]
	}
	return out, nil
}

// Stored value layout: versionDigits ASCII digits of the zero-padded version,
// one kind byte, then the JSON body (nothing for a tombstone). The kinds 'D'
// and 'T' put timeDigits digits of the build time in Unix milliseconds
// between the kind and the body.
const (
	versionDigits     = 20 // more than int64 needs, so any version fits
	timeDigits        = 13 // Unix milliseconds until the year 2286
	headerLen         = versionDigits + 1
	kindDoc           = 'd'
	kindTombstone     = 't'
	kindDocTime       = 'D'
	kindTombstoneTime = 'T'
)

// appendValue appends the stored value of d to b.
func appendValue(b []byte, d *Doc) []byte {
	var tmp [versionDigits]byte
	digits := strconv.AppendInt(tmp[:0], d.Version, 10)
	for range versionDigits - len(digits) {
		b = append(b, '0')
	}
	b = append(b, digits...)
	switch {
	case d.BuiltAt.IsZero() && d.Deleted:
		return append(b, kindTombstone)
	case d.BuiltAt.IsZero():
		return append(append(b, kindDoc), d.Body...)
	case d.Deleted:
		b = append(b, kindTombstoneTime)
	default:
		b = append(b, kindDocTime)
	}
	b = fmt.Appendf(b, "%013d", max(d.BuiltAt.UnixMilli(), 0)%1e13)
	if d.Deleted {
		return b
	}
	return append(b, d.Body...)
}

// DecodeValue decodes a value stored by Redis: 20 ASCII digits of the
// zero-padded version, then 'd' and the JSON body of a document, or 't' and
// nothing for a tombstone; 'D' and 'T' are the same with 13 digits of the
// build time (Unix milliseconds) before the body. Body is a sub-slice of v, not a copy, so a caller
// can splice it into a response as it is.
func DecodeValue(v []byte) (Stored, error) {
	if len(v) < headerLen {
		return Stored{}, badValue(v, "too short")
	}
	var n int64
	for _, c := range v[:versionDigits] {
		if c < '0' || c > '9' {
			return Stored{}, badValue(v, "version is not digits")
		}
		d := int64(c - '0')
		if n > (1<<63-1-d)/10 {
			return Stored{}, badValue(v, "version overflows int64")
		}
		n = n*10 + d
	}
	kind, body := v[versionDigits], v[headerLen:]
	var built time.Time
	if kind == kindDocTime || kind == kindTombstoneTime {
		if len(body) < timeDigits {
			return Stored{}, badValue(v, "too short for its build time")
		}
		ms, err := strconv.ParseInt(string(body[:timeDigits]), 10, 64)
		if err != nil || ms < 0 {
			return Stored{}, badValue(v, "build time is not digits")
		}
		built, body = time.UnixMilli(ms), body[timeDigits:]
		kind += 'a' - 'A'
	}
	switch kind {
	case kindDoc:
		if len(body) == 0 {
			return Stored{}, badValue(v, "document without a body")
		}
		return Stored{Version: n, Body: body, BuiltAt: built}, nil
	case kindTombstone:
		if len(body) != 0 {
			return Stored{}, badValue(v, "tombstone with a body")
		}
		return Stored{Version: n, Deleted: true, BuiltAt: built}, nil
	}
	return Stored{}, badValue(v, "unknown kind")
}

func badValue(v []byte, why string) error {
	const show = 32
	if len(v) > show {
		return fmt.Errorf("sink: bad stored value %q...: %s", v[:show], why)
	}
	return fmt.Errorf("sink: bad stored value %q: %s", v, why)
}
