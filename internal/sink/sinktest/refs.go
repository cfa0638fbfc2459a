package sinktest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/readside/readside/internal/sink"
)

// RefIndex is what RunRefs tests: the reverse lookup contract.
type RefIndex = sink.RefIndex

// RunRefs runs the suite of the reverse lookup: Add records a document in
// an entity's set at a version that only grows; Commit keeps the refs of
// the newest build and takes a document out of the sets its previous build
// used and this one does not, unless a build at least as new recorded it
// there; Users hands the set over in pages, outside any transaction. open
// returns a new, empty index that is cleaned up when its test ends; each
// subtest opens its own and subtests run in parallel.
func RunRefs(t *testing.T, open func(t *testing.T) RefIndex) {
	runCases(t, open, []testCase[RefIndex]{
		{"add and users", testAddUsers},
		{"empty calls are no-ops", testRefsEmpty},
		{"a popular entity comes in pages", testUsersPages},
		{"an error from fn stops Users", testUsersStops},
		{"fn may write to the index", testUsersReentrant},
		{"a document's version in a set only grows", testAddGrows},
		{"commit replaces the refs of the previous build", testCommitReplaces},
		{"an older commit changes nothing", testCommitOlder},
		{"a tombstone takes the document out of its sets", testCommitTombstone},
		{"unusual ids and keys", testRefsUnusual},
		{"concurrent commits keep the highest version's refs", testConcurrentCommits},
		{"overlapping builds", testOverlappingBuilds},
	})
}

// users lists, sorted, the documents that use entity key of source, and how
// many pages Users handed over.
func users(t *testing.T, r RefIndex, source, key string) (ids []string, pages int) {
	t.Helper()
	err := r.Users(ctx(t), source, key, func(page []string) error {
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
func wantUsers(t *testing.T, r RefIndex, source, key string, want ...string) {
	t.Helper()
	got, _ := users(t, r, source, key)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("users of %s %q = %q, want %q", source, key, got, want)
	}
}

func add(t *testing.T, r RefIndex, refs ...sink.Ref) {
	t.Helper()
	if err := r.Add(ctx(t), refs); err != nil {
		t.Fatalf("Add: %v", err)
	}
}

func commit(t *testing.T, r RefIndex, built ...sink.Built) {
	t.Helper()
	if err := r.Commit(ctx(t), built); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func testAddUsers(t *testing.T, r RefIndex) {
	refs := []sink.Ref{
		{ID: "1", Source: "owner", Key: "7"},
		{ID: "2", Source: "owner", Key: "7"},
		{ID: "3", Source: "owner", Key: "8"},
		{ID: "1", Source: "company", Key: "7"}, // the same key of another source
	}
	wantUsers(t, r, "owner", "7") // on an index never written
	add(t, r, refs...)
	add(t, r, refs...) // Add is idempotent
	wantUsers(t, r, "owner", "7", "1", "2")
	wantUsers(t, r, "owner", "8", "3")
	wantUsers(t, r, "company", "7", "1")
	wantUsers(t, r, "owner", "9") // used by none: fn is never called
	wantUsers(t, r, "owner", "")
	wantUsers(t, r, "owne", "r7")
}

func testRefsEmpty(t *testing.T, r RefIndex) {
	for _, err := range []error{r.Add(ctx(t), nil), r.Add(ctx(t), []sink.Ref{}), r.Commit(ctx(t), nil), r.Commit(ctx(t), []sink.Built{})} {
		if err != nil {
			t.Errorf("an empty call = %v", err)
		}
	}
}

// addMany records n documents, "0" to "<n-1>", as users of owner key.
func addMany(t *testing.T, r RefIndex, key string, n int) []string {
	t.Helper()
	var all []string
	for i := 0; i < n; i += 1000 {
		var batch []sink.Ref
		for j := i; j < min(i+1000, n); j++ {
			batch = append(batch, sink.Ref{ID: strconv.Itoa(j), Source: "owner", Key: key})
			all = append(all, strconv.Itoa(j))
		}
		add(t, r, batch...)
	}
	slices.Sort(all)
	return all
}

func testUsersPages(t *testing.T, r RefIndex) {
	const n = 2500
	all := addMany(t, r, "big", n)
	add(t, r, sink.Ref{ID: "x", Source: "owner", Key: "big2"}, sink.Ref{ID: "x", Source: "owner", Key: "bi"})
	got, pages := users(t, r, "owner", "big")
	if !slices.Equal(got, all) {
		t.Errorf("Users listed %d ids (%d distinct), want each of the %d once", len(got), len(slices.Compact(slices.Clone(got))), n)
	}
	if pages < 2 {
		t.Errorf("Users handed %d ids over in %d page; want pages of about 1000", n, pages)
	}
	t.Logf("%d ids in %d pages", len(got), pages)
}

func testUsersStops(t *testing.T, r RefIndex) {
	addMany(t, r, "big", 2500)
	errStop := errors.New("stop")
	calls := 0
	err := r.Users(ctx(t), "owner", "big", func([]string) error { calls++; return errStop })
	if !errors.Is(err, errStop) || calls != 1 {
		t.Errorf("Users = %v after %d calls; want %v after 1", err, calls, errStop)
	}
}

// fn runs outside any transaction of the index: it may publish, wait, or
// write to the index itself, a lot, without a deadlock.
func testUsersReentrant(t *testing.T, r RefIndex) {
	addMany(t, r, "7", 1500)
	c := ctx(t)
	done := make(chan error, 1)
	go func() {
		page := 0
		done <- r.Users(c, "owner", "7", func(ids []string) error {
			page++
			var refs []sink.Ref
			var built []sink.Built
			for _, id := range ids {
				ref := sink.Ref{ID: id, Source: "company", Key: fmt.Sprintf("%d-%s", page, strings.Repeat("k", 500)), Version: 1}
				refs = append(refs, ref)
				built = append(built, sink.Built{ID: id, Version: 1, Refs: []sink.Ref{ref}})
			}
			if err := r.Add(c, refs); err != nil {
				return err
			}
			if err := r.Commit(c, built); err != nil {
				return err
			}
			return r.Users(c, "owner", "8", func([]string) error { return nil })
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Users: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Users did not return: writing to the index from fn deadlocks")
	}
	got, _ := users(t, r, "company", "1-"+strings.Repeat("k", 500))
	if len(got) == 0 {
		t.Errorf("the refs added from fn are missing")
	}
}

func testAddGrows(t *testing.T, r RefIndex) {
	add(t, r, sink.Ref{ID: "1", Source: "owner", Key: "7", Version: 5})
	add(t, r, sink.Ref{ID: "1", Source: "owner", Key: "7", Version: 2}) // a slower build: keeps 5
	commit(t, r, sink.Built{ID: "1", Version: 2, Refs: []sink.Ref{{ID: "1", Source: "owner", Key: "7", Version: 2}}})
	// Build 4 drops owner 7, but build 5 recorded the document there: it stays.
	commit(t, r, sink.Built{ID: "1", Version: 4})
	wantUsers(t, r, "owner", "7", "1")
}

func testCommitReplaces(t *testing.T, r RefIndex) {
	v1 := []sink.Ref{{ID: "1", Source: "owner", Key: "7", Version: 1}, {ID: "1", Source: "company", Key: "c1", Version: 1}}
	other := []sink.Ref{{ID: "2", Source: "owner", Key: "7", Version: 1}}
	add(t, r, slices.Concat(v1, other)...)
	commit(t, r, sink.Built{ID: "1", Version: 1, Refs: v1}, sink.Built{ID: "2", Version: 1, Refs: other})
	wantUsers(t, r, "owner", "7", "1", "2")

	// The owner changed from 7 to 8; the company stayed.
	v2 := []sink.Ref{{ID: "1", Source: "owner", Key: "8", Version: 2}, {ID: "1", Source: "company", Key: "c1", Version: 2}}
	add(t, r, v2...)
	commit(t, r, sink.Built{ID: "1", Version: 2, Refs: v2})
	wantUsers(t, r, "owner", "7", "2")
	wantUsers(t, r, "owner", "8", "1")
	wantUsers(t, r, "company", "c1", "1")

	// The document no longer names an owner or a company.
	commit(t, r, sink.Built{ID: "1", Version: 3})
	wantUsers(t, r, "owner", "8")
	wantUsers(t, r, "company", "c1")
	wantUsers(t, r, "owner", "7", "2")
}

func testCommitOlder(t *testing.T, r RefIndex) {
	newer := []sink.Ref{{ID: "1", Source: "owner", Key: "8", Version: 5}}
	add(t, r, newer...)
	commit(t, r, sink.Built{ID: "1", Version: 5, Refs: newer})

	// Slower, older builds of the same document, which used owner 7.
	for _, b := range []sink.Built{
		{ID: "1", Version: 4, Refs: []sink.Ref{{ID: "1", Source: "owner", Key: "7"}}},
		{ID: "1", Version: 4},
		{ID: "1", Version: 0, Deleted: true},
	} {
		commit(t, r, b)
		wantUsers(t, r, "owner", "8", "1")
	}

	// Committing the same version again is harmless (a retried batch).
	commit(t, r, sink.Built{ID: "1", Version: 5, Refs: newer})
	wantUsers(t, r, "owner", "8", "1")

	// The stored refs are still version 5's: a newer build drops owner 8.
	commit(t, r, sink.Built{ID: "1", Version: 6})
	wantUsers(t, r, "owner", "8")
}

func testCommitTombstone(t *testing.T, r RefIndex) {
	refs := []sink.Ref{{ID: "1", Source: "owner", Key: "7"}, {ID: "1", Source: "company", Key: "c1"}}
	add(t, r, refs...)
	commit(t, r, sink.Built{ID: "1", Version: 1, Refs: refs})
	commit(t, r, sink.Built{ID: "1", Version: 2, Deleted: true})
	wantUsers(t, r, "owner", "7")
	wantUsers(t, r, "company", "c1")

	// A late build from before the delete changes nothing: the stored record
	// stays the tombstone's, so version 2 committed again (a retry) has
	// nothing to take the document out of.
	late := []sink.Ref{{ID: "1", Source: "owner", Key: "5", Version: 1}}
	add(t, r, late...)
	commit(t, r, sink.Built{ID: "1", Version: 1, Refs: late})
	commit(t, r, sink.Built{ID: "1", Version: 2, Deleted: true})
	wantUsers(t, r, "owner", "5", "1")

	// The entity is created again.
	again := []sink.Ref{{ID: "1", Source: "owner", Key: "9"}}
	add(t, r, again...)
	commit(t, r, sink.Built{ID: "1", Version: 3, Refs: again})
	wantUsers(t, r, "owner", "9", "1")
	commit(t, r, sink.Built{ID: "1", Version: 4})
	wantUsers(t, r, "owner", "9")
}

// Ids and keys come from users' data: separators, line breaks and any
// Unicode must neither break the layout nor make two entities collide.
func testRefsUnusual(t *testing.T, r RefIndex) {
	odd := []string{"a:b", "a", "b", "rev:owner:x", "line\nbreak", "line", "tab\there", `quote"back\slash`,
		"店舗-7", "ключ", "🍕", "caf\u00e9", "cafe\u0301", " ", "[\"owner\",\"x\"]", "\x00", "\x01a", "", strings.Repeat("long", 1000)}
	idOf := func(i int) string { return odd[(i+1)%len(odd)] + "/" + strconv.Itoa(i) } // an id just as odd
	for i, key := range odd {
		ref := sink.Ref{ID: idOf(i), Source: "owner", Key: key}
		add(t, r, ref)
		commit(t, r, sink.Built{ID: ref.ID, Version: 1, Refs: []sink.Ref{ref}})
	}
	for i, key := range odd {
		wantUsers(t, r, "owner", key, idOf(i))
	}
	// A newer build without refs takes each id out of exactly its own set,
	// which needs the stored record to give back every key exactly.
	for i := range odd {
		commit(t, r, sink.Built{ID: idOf(i), Version: 2})
	}
	for _, key := range odd {
		wantUsers(t, r, "owner", key)
	}
}

// Builds of one document may overlap (redelivery, several projector
// processes); whatever order their commits run in, the refs of the highest
// version are what is left.
func testConcurrentCommits(t *testing.T, r RefIndex) {
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
			add(t, r, refsOf(id, v)...) // every build records its refs before it fetches
			built = append(built, sink.Built{ID: id, Version: int64(v), Refs: refsOf(id, v)})
		}
	}
	rand.Shuffle(len(built), func(i, j int) { built[i], built[j] = built[j], built[i] })
	c := ctx(t)
	var wg sync.WaitGroup
	errs := make(chan error, len(built))
	for _, b := range built {
		wg.Go(func() {
			if err := r.Commit(c, []sink.Built{b}); err != nil {
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
	commit(t, r, tombstones...)
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
func testOverlappingBuilds(t *testing.T, r RefIndex) {
	owner := func(key string, v int64) []sink.Ref {
		return []sink.Ref{{ID: "1", Source: "owner", Key: key, Version: v}}
	}
	add(t, r, owner("7", 1)...)                                        // build 1 records owner 7
	commit(t, r, sink.Built{ID: "1", Version: 1, Refs: owner("7", 1)}) // and commits
	add(t, r, owner("8", 2)...)                                        // build 2 records owner 8
	add(t, r, owner("7", 3)...)                                        // build 3 records owner 7
	commit(t, r, sink.Built{ID: "1", Version: 2, Refs: owner("8", 2)}) // build 2 commits
	commit(t, r, sink.Built{ID: "1", Version: 3, Refs: owner("7", 3)}) // build 3 commits
	wantUsers(t, r, "owner", "7", "1")
}
