package sink_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/testenv"
)

// openRefs returns a reverse lookup on the test Redis under a prefix of its
// own, whose keys are deleted when the test ends.
func openRefs(t testing.TB, tombstoneTTL time.Duration) (*sink.Refs, *redis.Client, string) {
	t.Helper()
	c := testenv.Redis(t)
	ns := testenv.Namespace(t)
	t.Cleanup(func() { deleteKeys(t, c, ns+":*") })
	prefix := ns + ":refs:"
	return sink.NewRefs(c, prefix, tombstoneTTL), c, prefix
}

// users lists, sorted, the documents that use entity key of source, and how
// many pages Users handed over.
func users(t testing.TB, r *sink.Refs, source, key string) (ids []string, pages int) {
	t.Helper()
	err := r.Users(testCtx(t), source, key, func(page []string) error {
		if len(page) == 0 {
			t.Errorf("Users(%q, %q) handed over an empty page", source, key)
		}
		ids = append(ids, page...)
		pages++
		return nil
	})
	if err != nil {
		t.Fatalf("Users(%q, %q): %v", source, key, err)
	}
	slices.Sort(ids)
	return ids, pages
}

// wantUsers checks the documents that use entity key of source.
func wantUsers(t testing.TB, r *sink.Refs, source, key string, want ...string) {
	t.Helper()
	got, _ := users(t, r, source, key)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("users of %s %q = %q, want %q", source, key, got, want)
	}
}

func TestRefsAddUsers(t *testing.T) {
	t.Parallel()
	r, _, _ := openRefs(t, 0)
	ctx := testCtx(t)
	refs := []sink.Ref{
		{ID: "1", Source: "owner", Key: "7"},
		{ID: "2", Source: "owner", Key: "7"},
		{ID: "3", Source: "owner", Key: "8"},
		{ID: "1", Source: "company", Key: "7"}, // the same key of another source
	}
	for range 2 { // Add is idempotent
		if err := r.Add(ctx, refs); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Add(ctx, nil); err != nil {
		t.Errorf("Add(nil) = %v", err)
	}
	wantUsers(t, r, "owner", "7", "1", "2")
	wantUsers(t, r, "owner", "8", "3")
	wantUsers(t, r, "company", "7", "1")
	wantUsers(t, r, "owner", "9") // used by none: fn is never called

	t.Run("a popular entity comes in pages", func(t *testing.T) {
		const n = 2500
		var all []string
		for i := 0; i < n; i += 1000 {
			var batch []sink.Ref
			for j := i; j < min(i+1000, n); j++ {
				batch = append(batch, sink.Ref{ID: strconv.Itoa(j), Source: "owner", Key: "big"})
				all = append(all, strconv.Itoa(j))
			}
			if err := r.Add(ctx, batch); err != nil {
				t.Fatal(err)
			}
		}
		got, pages := users(t, r, "owner", "big")
		slices.Sort(all)
		if !slices.Equal(got, all) {
			t.Errorf("Users listed %d ids (%d distinct), want each of the %d once", len(got), len(slices.Compact(slices.Clone(got))), n)
		}
		if pages < 2 {
			t.Errorf("Users handed %d ids over in %d page; want pages of about 1000", n, pages)
		}
		t.Logf("%d ids in %d pages", len(got), pages)
	})

	t.Run("an error from fn stops the scan", func(t *testing.T) {
		errStop := errors.New("stop")
		calls := 0
		err := r.Users(ctx, "owner", "big", func([]string) error { calls++; return errStop })
		if !errors.Is(err, errStop) || calls != 1 {
			t.Errorf("Users = %v after %d calls; want %v after 1", err, calls, errStop)
		}
	})
}

func TestRefsCommitReplaces(t *testing.T) {
	t.Parallel()
	r, _, _ := openRefs(t, 0)
	ctx := testCtx(t)
	v1 := []sink.Ref{{ID: "1", Source: "owner", Key: "7", Version: 1}, {ID: "1", Source: "company", Key: "c1", Version: 1}}
	other := []sink.Ref{{ID: "2", Source: "owner", Key: "7", Version: 1}}
	if err := r.Add(ctx, slices.Concat(v1, other)); err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(ctx, []sink.Built{{ID: "1", Version: 1, Refs: v1}, {ID: "2", Version: 1, Refs: other}}); err != nil {
		t.Fatal(err)
	}
	wantUsers(t, r, "owner", "7", "1", "2")

	// The owner changed from 7 to 8; the company stayed.
	v2 := []sink.Ref{{ID: "1", Source: "owner", Key: "8", Version: 2}, {ID: "1", Source: "company", Key: "c1", Version: 2}}
	if err := r.Add(ctx, v2); err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(ctx, []sink.Built{{ID: "1", Version: 2, Refs: v2}}); err != nil {
		t.Fatal(err)
	}
	wantUsers(t, r, "owner", "7", "2")
	wantUsers(t, r, "owner", "8", "1")
	wantUsers(t, r, "company", "c1", "1")

	// The shop no longer names an owner or a company.
	if err := r.Commit(ctx, []sink.Built{{ID: "1", Version: 3}}); err != nil {
		t.Fatal(err)
	}
	wantUsers(t, r, "owner", "8")
	wantUsers(t, r, "company", "c1")
	wantUsers(t, r, "owner", "7", "2")
}

func TestRefsCommitOlder(t *testing.T) {
	t.Parallel()
	r, c, prefix := openRefs(t, 0)
	ctx := testCtx(t)
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

	// A slower, older build of the same document, which used owner 7.
	for _, b := range []sink.Built{
		{ID: "1", Version: 4, Refs: []sink.Ref{{ID: "1", Source: "owner", Key: "7"}}},
		{ID: "1", Version: 4},
		{ID: "1", Version: 0, Deleted: true},
	} {
		if err := r.Commit(ctx, []sink.Built{b}); err != nil {
			t.Fatal(err)
		}
		wantUsers(t, r, "owner", "8", "1")
		if after, err := c.Get(ctx, prefix+"deps:1").Result(); err != nil || after != before {
			t.Errorf("after committing %+v, the stored record is %q (%v); want it unchanged, %q", b, after, err, before)
		}
		if d := c.PTTL(ctx, prefix+"deps:1").Val(); d != -1 {
			t.Errorf("after committing %+v, the record's TTL is %v; want none", b, d)
		}
	}

	// Committing the same version again is harmless (a retried batch).
	if err := r.Commit(ctx, []sink.Built{{ID: "1", Version: 5, Refs: newer}}); err != nil {
		t.Fatal(err)
	}
	wantUsers(t, r, "owner", "8", "1")

	// The stored refs are still version 5's: a newer build drops owner 8.
	if err := r.Commit(ctx, []sink.Built{{ID: "1", Version: 6}}); err != nil {
		t.Fatal(err)
	}
	wantUsers(t, r, "owner", "8")
}

func TestRefsTombstone(t *testing.T) {
	t.Parallel()
	const ttl = time.Hour
	r, c, prefix := openRefs(t, ttl)
	ctx := testCtx(t)
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
	wantUsers(t, r, "owner", "7")
	wantUsers(t, r, "company", "c1")
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
	wantUsers(t, r, "owner", "9", "1")
}

// Ids and keys come from users' data: separators, line breaks and any
// Unicode must neither break the layout nor make two entities collide.
func TestRefsUnusualKeys(t *testing.T) {
	t.Parallel()
	r, _, _ := openRefs(t, 0)
	ctx := testCtx(t)
	odd := []string{"a:b", "a", "b", "rev:owner:x", "line\nbreak", "line", "tab\there", `quote"back\slash`,
		"店舗-7", "ключ", "🍕", "caf\u00e9", "cafe\u0301", " ", "[\"owner\",\"x\"]"}
	for i, key := range odd {
		id := odd[(i+1)%len(odd)] + "/" + strconv.Itoa(i) // an id just as odd
		ref := sink.Ref{ID: id, Source: "owner", Key: key}
		if err := r.Add(ctx, []sink.Ref{ref}); err != nil {
			t.Fatal(err)
		}
		if err := r.Commit(ctx, []sink.Built{{ID: id, Version: 1, Refs: []sink.Ref{ref}}}); err != nil {
			t.Fatal(err)
		}
	}
	for i, key := range odd {
		wantUsers(t, r, "owner", key, odd[(i+1)%len(odd)]+"/"+strconv.Itoa(i))
	}
	// A newer build without refs takes each id out of exactly its own set,
	// which needs the stored record to give back every key exactly.
	for i := range odd {
		id := odd[(i+1)%len(odd)] + "/" + strconv.Itoa(i)
		if err := r.Commit(ctx, []sink.Built{{ID: id, Version: 2}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, key := range odd {
		wantUsers(t, r, "owner", key)
	}
}

// Builds of one document may overlap (redelivery, several projector
// processes); whatever order their commits run in, the refs of the highest
// version are what is left.
func TestRefsConcurrentCommits(t *testing.T) {
	t.Parallel()
	r, _, _ := openRefs(t, 0)
	ctx := testCtx(t)
	const docs, versions = 20, 16
	// Version v of a document uses owner "o<v%3>" and company "c<v>": the
	// owners are shared between versions, the companies are not.
	refsOf := func(id string, v int) []sink.Ref {
		return []sink.Ref{ // every build records its refs at its version
			{ID: id, Source: "owner", Key: fmt.Sprintf("o%d", v%3), Version: int64(v)},
			{ID: id, Source: "company", Key: fmt.Sprintf("c%d", v), Version: int64(v)},
		}
	}
	var built []sink.Built
	for d := range docs {
		id := "doc" + strconv.Itoa(d)
		for v := 1; v <= versions; v++ {
			// Every build records its refs before it fetches.
			if err := r.Add(ctx, refsOf(id, v)); err != nil {
				t.Fatal(err)
			}
			built = append(built, sink.Built{ID: id, Version: int64(v), Refs: refsOf(id, v)})
		}
	}
	rand.Shuffle(len(built), func(i, j int) { built[i], built[j] = built[j], built[i] })
	var wg sync.WaitGroup
	errs := make(chan error, len(built))
	for _, b := range built {
		wg.Go(func() {
			if err := r.Commit(ctx, []sink.Built{b}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	highest := func(source string) string {
		for _, ref := range refsOf("", versions) {
			if ref.Source == source {
				return ref.Key
			}
		}
		panic(source)
	}
	contains := func(source, key, id string) bool {
		ids, _ := users(t, r, source, key)
		_, found := slices.BinarySearch(ids, id)
		return found
	}
	for d := range docs {
		id := "doc" + strconv.Itoa(d)
		for _, src := range []string{"owner", "company"} {
			if !contains(src, highest(src), id) {
				t.Errorf("%s is missing from the users of %s %s, which its highest version uses", id, src, highest(src))
			}
		}
	}

	// The stored refs are the highest version's: deleting the documents
	// takes them out of exactly those sets.
	var tombstones []sink.Built
	for d := range docs {
		tombstones = append(tombstones, sink.Built{ID: "doc" + strconv.Itoa(d), Version: versions + 1, Deleted: true})
	}
	if err := r.Commit(ctx, tombstones); err != nil {
		t.Fatal(err)
	}
	for d := range docs {
		id := "doc" + strconv.Itoa(d)
		for _, src := range []string{"owner", "company"} {
			if contains(src, highest(src), id) {
				t.Errorf("%s still uses %s %s after its tombstone: the stored refs were not the highest version's", id, src, highest(src))
			}
		}
	}
}

// Two builds of one document overlap. Version 1 used owner 7. Build 2 (owner
// 8) and build 3 (owner 7 again) both record their refs and fetch; build 2
// commits first, then build 3. The stored document is version 3's, showing
// owner 7, so a change of owner 7 must still find it.
func TestRefsOverlappingBuilds(t *testing.T) {
	t.Parallel()
	r, _, _ := openRefs(t, 0)
	ctx := testCtx(t)
	owner := func(key string, v int64) []sink.Ref {
		return []sink.Ref{{ID: "1", Source: "owner", Key: key, Version: v}}
	}
	steps := []struct {
		add, commit []sink.Ref
		version     int64
	}{
		{add: owner("7", 1)},                // build 1 records owner 7
		{commit: owner("7", 1), version: 1}, // and commits
		{add: owner("8", 2)},                // build 2 records owner 8
		{add: owner("7", 3)},                // build 3 records owner 7
		{commit: owner("8", 2), version: 2}, // build 2 commits
		{commit: owner("7", 3), version: 3}, // build 3 commits
	}
	for _, s := range steps {
		var err error
		if s.add != nil {
			err = r.Add(ctx, s.add)
		} else {
			err = r.Commit(ctx, []sink.Built{{ID: "1", Version: s.version, Refs: s.commit}})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	wantUsers(t, r, "owner", "7", "1")
}
