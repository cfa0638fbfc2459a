package redisstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readside/readside/internal/sink"
)

// Refs is the reverse lookup of joined entities (sink.RefIndex), in Redis:
// for every entity a sorted set of the documents that use it
// ("<prefix>rev:<source>:<key>"), each scored with the newest version of the
// document that used it; and for every document a record of the version it
// was last built at and the entities it used ("<prefix>deps:<id>"). A
// Commit removes a document from a set only where its score is older than
// the committing build, which is what keeps the newest build's refs. Every
// call touches keys one at a time, so Refs works on Redis Cluster.
type Refs struct {
	c      redis.UniversalClient
	prefix string
	ttl    time.Duration
}

// NewRefs keeps the reverse lookup under prefix (e.g. "readside:shops:").
// The record of a deleted document expires after tombstoneTTL [7 days].
func NewRefs(c redis.UniversalClient, prefix string, tombstoneTTL time.Duration) *Refs {
	if tombstoneTTL <= 0 {
		tombstoneTTL = sink.DefaultTombstoneTTL
	}
	return &Refs{c: c, prefix: prefix, ttl: tombstoneTTL}
}

func (r *Refs) setKey(source, key string) string { return r.prefix + "rev:" + source + ":" + key }
func (r *Refs) depsKey(id string) string         { return r.prefix + "deps:" + id }

// Add records that each ref's document uses its entity, at the ref's
// version (a set member's score only grows). Idempotent.
func (r *Refs) Add(ctx context.Context, refs []sink.Ref) error {
	if len(refs) == 0 {
		return nil
	}
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, ref := range refs {
			p.ZAddGT(ctx, r.setKey(ref.Source, ref.Key), redis.Z{Score: float64(ref.Version), Member: ref.ID})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sink: recording refs: %w", err)
	}
	return nil
}

// commitScript stores a document's refs unless a newer build's are stored,
// and returns the refs it replaced (0 when it was older).
const commitScript = `local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, 20) > ARGV[1] then return 0 end
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[1], ARGV[1] .. ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[1] .. ARGV[2])
end
return cur or ''`

// removeScript removes a document from an entity's set unless a build at
// least as new as the remover's has recorded it there.
const removeScript = `local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) < tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) return 1 end
return 0`

var (
	commit = redis.NewScript(commitScript)
	remove = redis.NewScript(removeScript)
)

// Commit stores the refs of written documents and removes each document from
// the sets of the entities its previous build used and this one does not,
// where no newer build has recorded it.
func (r *Refs) Commit(ctx context.Context, built []sink.Built) error {
	if len(built) == 0 {
		return nil
	}
	cmds := make([]*redis.Cmd, len(built))
	err := r.pipelineScripts(ctx, func(p redis.Pipeliner) {
		for i, b := range built {
			ttl := ""
			if b.Deleted {
				ttl = strconv.FormatInt(r.ttl.Milliseconds(), 10)
			}
			cmds[i] = commit.EvalSha(ctx, p, []string{r.depsKey(b.ID)}, fmt.Sprintf("%020d", b.Version), sink.EncodeRefs(b.Refs), ttl)
		}
	})
	if err != nil {
		return fmt.Errorf("sink: committing refs: %w", err)
	}
	type removal struct {
		ref     sink.Ref
		version int64
	}
	var stale []removal
	for i, b := range built {
		old, err := cmds[i].Text()
		if err != nil || len(old) < 20 { // older than what is stored, or nothing stored
			continue
		}
		for _, ref := range sink.DecodeRefs(b.ID, old[20:]) {
			if !slices.ContainsFunc(b.Refs, func(n sink.Ref) bool { return n.Source == ref.Source && n.Key == ref.Key }) {
				stale = append(stale, removal{ref, b.Version})
			}
		}
	}
	if len(stale) == 0 {
		return nil
	}
	err = r.pipelineScripts(ctx, func(p redis.Pipeliner) {
		for _, s := range stale {
			remove.EvalSha(ctx, p, []string{r.setKey(s.ref.Source, s.ref.Key)}, s.ref.ID, s.version)
		}
	})
	if err != nil {
		return fmt.Errorf("sink: removing old refs: %w", err)
	}
	return nil
}

// pipelineScripts runs a pipeline of EVALSHA calls, loading the scripts and
// running it once more when Redis has lost them (a restart, a failover).
func (r *Refs) pipelineScripts(ctx context.Context, fill func(redis.Pipeliner)) error {
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error { fill(p); return nil })
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		if err = commit.Load(ctx, r.c).Err(); err == nil {
			if err = remove.Load(ctx, r.c).Err(); err == nil {
				_, err = r.c.Pipelined(ctx, func(p redis.Pipeliner) error { fill(p); return nil })
			}
		}
	}
	return err
}

// Users calls fn with the ids of the documents that use entity key of
// source, a page at a time (ZSCAN: a popular entity never blocks Redis).
func (r *Refs) Users(ctx context.Context, source, key string, fn func(ids []string) error) error {
	var cursor uint64
	for {
		kv, next, err := r.c.ZScan(ctx, r.setKey(source, key), cursor, "", 1000).Result()
		if err != nil {
			return fmt.Errorf("sink: reading the users of %s %s: %w", source, key, err)
		}
		ids := make([]string, 0, len(kv)/2)
		for i := 0; i < len(kv); i += 2 { // member, score, member, score...
			ids = append(ids, kv[i])
		}
		if len(ids) > 0 {
			if err := fn(ids); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}
