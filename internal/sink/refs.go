package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Ref says that document ID uses entity Key of joined source Source.
type Ref struct {
	ID, Source, Key string
}

// Refs is the reverse lookup of joined entities, in Redis: for every entity
// a set of the documents that use it ("<prefix>rev:<source>:<key>"), and for
// every document a record of the version it was built from and the entities
// it used ("<prefix>deps:<id>").
//
// The projector Adds a ref before it fetches the joined entity, so a change
// of that entity made after the fetch always finds the document; it Commits
// the refs after the document is written, which removes the document from
// the sets of entities it no longer uses. Commit is guarded by version like
// the documents: an older build cannot remove a newer build's refs. Every
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
		tombstoneTTL = DefaultTombstoneTTL
	}
	return &Refs{c: c, prefix: prefix, ttl: tombstoneTTL}
}

func (r *Refs) setKey(source, key string) string { return r.prefix + "rev:" + source + ":" + key }
func (r *Refs) depsKey(id string) string         { return r.prefix + "deps:" + id }

// Add records that each ref's document uses its entity. Idempotent.
func (r *Refs) Add(ctx context.Context, refs []Ref) error {
	if len(refs) == 0 {
		return nil
	}
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, ref := range refs {
			p.SAdd(ctx, r.setKey(ref.Source, ref.Key), ref.ID)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sink: recording refs: %w", err)
	}
	return nil
}

// Built is one written document and the refs it was built with (none for a
// tombstone).
type Built struct {
	ID      string
	Version int64
	Deleted bool
	Refs    []Ref
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

var commit = redis.NewScript(commitScript)

// Commit stores the refs of written documents and removes each document from
// the sets of the entities its previous build used and this one does not.
func (r *Refs) Commit(ctx context.Context, built []Built) error {
	if len(built) == 0 {
		return nil
	}
	cmds := make([]*redis.Cmd, len(built))
	run := func() error {
		_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, b := range built {
				ttl := ""
				if b.Deleted {
					ttl = fmt.Sprint(r.ttl.Milliseconds())
				}
				cmds[i] = commit.EvalSha(ctx, p, []string{r.depsKey(b.ID)}, fmt.Sprintf("%020d", b.Version), encodeRefs(b.Refs), ttl)
			}
			return nil
		})
		return err
	}
	err := run()
	if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
		if err = commit.Load(ctx, r.c).Err(); err == nil {
			err = run()
		}
	}
	if err != nil {
		return fmt.Errorf("sink: committing refs: %w", err)
	}
	var stale []Ref
	for i, b := range built {
		old, err := cmds[i].Text()
		if err != nil || len(old) < 20 { // older than what is stored, or nothing stored
			continue
		}
		for _, ref := range decodeRefs(b.ID, old[20:]) {
			if !slices.Contains(b.Refs, ref) {
				stale = append(stale, ref)
			}
		}
	}
	if len(stale) == 0 {
		return nil
	}
	_, err = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, ref := range stale {
			p.SRem(ctx, r.setKey(ref.Source, ref.Key), ref.ID)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sink: removing old refs: %w", err)
	}
	return nil
}

// Users calls fn with the ids of the documents that use entity key of
// source, a page at a time (SSCAN: a popular entity never blocks Redis).
func (r *Refs) Users(ctx context.Context, source, key string, fn func(ids []string) error) error {
	var cursor uint64
	for {
		ids, next, err := r.c.SScan(ctx, r.setKey(source, key), cursor, "", 1000).Result()
		if err != nil {
			return fmt.Errorf("sink: reading the users of %s %s: %w", source, key, err)
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

// encodeRefs writes refs as a JSON array of [source, key] pairs; the ids are
// the document's own.
func encodeRefs(refs []Ref) string {
	pairs := make([][2]string, len(refs))
	for i, ref := range refs {
		pairs[i] = [2]string{ref.Source, ref.Key}
	}
	b, _ := json.Marshal(pairs)
	return string(b)
}

func decodeRefs(id, s string) []Ref {
	var pairs [][2]string
	if json.Unmarshal([]byte(s), &pairs) != nil {
		return nil
	}
	out := make([]Ref, len(pairs))
	for i, p := range pairs {
		out[i] = Ref{ID: id, Source: p[0], Key: p[1]}
	}
	return out
}
