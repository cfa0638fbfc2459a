package redisstore_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/redisstore"
	"github.com/readside/readside/internal/sink/sinktest"
	"github.com/readside/readside/internal/testenv"
)

// openRefs returns a reverse lookup on the test Redis under a prefix of its
// own, whose keys are deleted when the test ends.
func openRefs(t testing.TB, tombstoneTTL time.Duration) (*redisstore.Refs, *redis.Client, string) {
	t.Helper()
	c := testenv.Redis(t)
	ns := testenv.Namespace(t)
	t.Cleanup(func() { deleteKeys(t, c, ns+":*") })
	prefix := ns + ":refs:"
	return redisstore.NewRefs(c, prefix, tombstoneTTL), c, prefix
}

func TestRefsConformance(t *testing.T) {
	t.Parallel()
	sinktest.RunRefs(t, func(t *testing.T) sinktest.RefIndex {
		r, _, _ := openRefs(t, 0)
		return r
	})
}

// TestRefsRecordOlder: a commit older than the stored record leaves the
// record as it is, TTL included (the suite sees only its effects).
func TestRefsRecordOlder(t *testing.T) {
	t.Parallel()
	r, c, prefix := openRefs(t, 0)
	ctx := sinktest.Context(t)
	newer := []sink.Ref{{ID: "1", Source: "owner", Key: "8", Version: 5}}
	if err := r.Add(ctx, newer); err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(ctx, []sink.Built{{ID: "1", Version: 5, Refs: newer}}); err != nil {
		t.Fatal(err)
	}
	before, err := c.Get(ctx, prefix+"deps:1").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []sink.Built{
		{ID: "1", Version: 4, Refs: []sink.Ref{{ID: "1", Source: "owner", Key: "7"}}},
		{ID: "1", Version: 4},
		{ID: "1", Version: 0, Deleted: true},
	} {
		if err := r.Commit(ctx, []sink.Built{b}); err != nil {
			t.Fatal(err)
		}
		if after, err := c.Get(ctx, prefix+"deps:1").Result(); err != nil || after != before {
			t.Errorf("after committing %+v, the stored record is %q (%v); want it unchanged, %q", b, after, err, before)
		}
		if d := c.PTTL(ctx, prefix+"deps:1").Val(); d != -1 {
			t.Errorf("after committing %+v, the record's TTL is %v; want none", b, d)
		}
	}
}

// TestRefsTombstoneTTL: the record of a deleted document expires after the
// TTL, and a document that replaces it does not inherit the TTL.
func TestRefsTombstoneTTL(t *testing.T) {
	t.Parallel()
	const ttl = time.Hour
	r, c, prefix := openRefs(t, ttl)
	ctx := sinktest.Context(t)
	refs := []sink.Ref{{ID: "1", Source: "owner", Key: "7"}, {ID: "1", Source: "company", Key: "c1"}}
	if err := r.Add(ctx, refs); err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(ctx, []sink.Built{{ID: "1", Version: 1, Refs: refs}}); err != nil {
		t.Fatal(err)
	}
	if d := c.PTTL(ctx, prefix+"deps:1").Val(); d != -1 {
		t.Errorf("TTL of a document's record = %v, want none", d)
	}

	if err := r.Commit(ctx, []sink.Built{{ID: "1", Version: 2, Deleted: true}}); err != nil {
		t.Fatal(err)
	}
	if d := c.PTTL(ctx, prefix+"deps:1").Val(); d <= ttl-time.Minute || d > ttl {
		t.Errorf("TTL of a tombstone's record = %v, want about %v", d, ttl)
	}

	// A late build from before the delete changes nothing: the record stays a tombstone.
	if err := r.Commit(ctx, []sink.Built{{ID: "1", Version: 1, Refs: refs}}); err != nil {
		t.Fatal(err)
	}
	if d := c.PTTL(ctx, prefix+"deps:1").Val(); d <= ttl-time.Minute || d > ttl {
		t.Errorf("TTL of the tombstone's record after an older commit = %v, want about %v", d, ttl)
	}

	// The entity is created again: its record must not inherit the TTL.
	again := []sink.Ref{{ID: "1", Source: "owner", Key: "9"}}
	if err := r.Add(ctx, again); err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(ctx, []sink.Built{{ID: "1", Version: 3, Refs: again}}); err != nil {
		t.Fatal(err)
	}
	if d := c.PTTL(ctx, prefix+"deps:1").Val(); d != -1 {
		t.Errorf("TTL of the record of a document replacing a tombstone = %v, want none", d)
	}
}
