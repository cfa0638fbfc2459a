package sinktest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/readside/readside/internal/sink"
)

// DocStore is what RunDocs tests: the doc store contract.
type DocStore = sink.DocStore

// RunDocs runs the suite of the reads the query API relies on: GetMany
// answers in the order of the ids it was given, with nil for an absent id
// and tombstones as Deleted; BuiltAt comes back to the millisecond; any id
// reads back; and what comes back is the caller's. open returns a new, empty
// store that is cleaned up when its test ends; each subtest opens its own and
// subtests run in parallel.
func RunDocs(t *testing.T, open func(t *testing.T) DocStore) {
	runCases(t, open, append(getManyCases(),
		testCase[DocStore]{"build time round-trips to the millisecond", testBuiltAt},
		testCase[DocStore]{"hostile ids read back", testGetManyHostile},
		testCase[DocStore]{"results are the caller's", testResultsOwned},
	))
}

// getManyCases are the cases of GetMany's order and absent ids, which
// RunDocs and RunReader share.
func getManyCases() []testCase[DocStore] {
	return []testCase[DocStore]{
		{"GetMany keeps the order of ids", testGetManyOrder},
		{"GetMany of no ids", testGetManyNone},
		{"GetMany of ids never written", testGetManyAbsent},
		{"GetMany of many ids", testGetManyMany},
	}
}

// getMany calls GetMany and checks that it answered once for each id.
func getMany(t *testing.T, s DocStore, ids ...string) []*sink.Stored {
	t.Helper()
	got, err := s.GetMany(ctx(t), ids)
	if err != nil {
		t.Fatalf("GetMany(%d ids): %v", len(ids), err)
	}
	if len(got) != len(ids) {
		t.Fatalf("GetMany returned %d results for %d ids", len(got), len(ids))
	}
	return got
}

// describe is a Stored in a few words, for comparing and printing: "" for
// nil, "v4 deleted" for a tombstone, "v1 {...}" for a document.
func describe(s *sink.Stored) string {
	switch {
	case s == nil:
		return ""
	case s.Deleted && s.Body != nil:
		return fmt.Sprintf("v%d deleted with a body %s", s.Version, s.Body)
	case s.Deleted:
		return fmt.Sprintf("v%d deleted", s.Version)
	}
	return fmt.Sprintf("v%d %s", s.Version, s.Body)
}

func describeDoc(d sink.Doc) string {
	if d.Deleted {
		return describe(&sink.Stored{Version: d.Version, Deleted: true})
	}
	return describe(&sink.Stored{Version: d.Version, Body: d.Body})
}

// wantMany checks GetMany(ids) against want, indexed by id; an id missing
// from want must be absent.
func wantMany(t *testing.T, s DocStore, ids []string, want map[string]sink.Doc) {
	t.Helper()
	got := getMany(t, s, ids...)
	for i, id := range ids {
		var w string
		if d, ok := want[id]; ok {
			w = describeDoc(d)
		}
		if have := describe(got[i]); have != w {
			t.Errorf("GetMany[%d] (%.40q) = %q, want %q", i, id, have, w)
		}
	}
}

func testGetManyOrder(t *testing.T, s DocStore) {
	a, c, tb := doc("a", 1, "a"), doc("c", 3, "c"), tomb("t", 4)
	write(t, s, a, c, tb)
	// Absent ids around and between the stored ones, an id twice, and ids
	// that prefix or extend stored ones.
	ids := []string{"missing-1", "c", "a", "missing-2", "t", "a", "missing-3", "", "aa", "t "}
	wantMany(t, s, ids, map[string]sink.Doc{"a": a, "c": c, "t": tb})
	wantMany(t, s, []string{"t", "t", "t"}, map[string]sink.Doc{"t": tb})
}

func testGetManyNone(t *testing.T, s DocStore) {
	write(t, s, doc("a", 1, "a"))
	for _, ids := range [][]string{nil, {}} {
		got, err := s.GetMany(ctx(t), ids)
		if err != nil || len(got) != 0 {
			t.Errorf("GetMany(%#v) = %v, %v; want no results and no error", ids, got, err)
		}
	}
}

func testGetManyAbsent(t *testing.T, s DocStore) {
	// On a store never written, then on one holding other ids.
	wantMany(t, s, []string{"x", "y", "x"}, nil)
	write(t, s, doc("a", 1, "a"))
	wantMany(t, s, []string{"x", "y", "x"}, nil)
}

func testGetManyMany(t *testing.T, s DocStore) {
	const n = 1000
	var docs []sink.Doc
	want := make(map[string]sink.Doc)
	var ids []string
	for i := range n {
		id := fmt.Sprintf("id-%04d", i)
		ids = append(ids, id, "absent-"+id)
		d := doc(id, int64(i), strings.Repeat("y", i%50))
		if i%7 == 6 {
			d = tomb(id, int64(i))
		}
		docs = append(docs, d)
		want[id] = d
	}
	write(t, s, docs...)
	// Reversed, so the order of the answer is not the order of the keys.
	for i, j := 0, len(ids)-1; i < j; i, j = i+1, j-1 {
		ids[i], ids[j] = ids[j], ids[i]
	}
	wantMany(t, s, ids, want)
}

func testBuiltAt(t *testing.T, s DocStore) {
	at := time.Date(2026, 5, 17, 9, 30, 15, 123456789, time.UTC)
	atMs := time.UnixMilli(at.UnixMilli())
	built := doc("built", 2, "with a build time")
	built.BuiltAt = at
	gone := tomb("gone", 3)
	gone.BuiltAt = at.Add(time.Second)
	plain := doc("plain", 1, "without one")
	write(t, s, built, gone, plain)

	wantAt := map[string]time.Time{"built": atMs, "gone": atMs.Add(time.Second), "plain": {}}
	check := func(id string, got sink.Stored) {
		t.Helper()
		if w := wantAt[id]; !got.BuiltAt.Equal(w) || got.BuiltAt.IsZero() != w.IsZero() {
			t.Errorf("%s: BuiltAt = %v, want %v", id, got.BuiltAt, w)
		}
	}
	ids := []string{"built", "gone", "plain"}
	for _, id := range ids {
		got, err := s.Get(ctx(t), id)
		if err != nil {
			t.Fatalf("Get(%q): %v", id, err)
		}
		check(id, got)
	}
	for i, got := range getMany(t, s, ids...) {
		if got == nil {
			t.Fatalf("GetMany: %q is absent", ids[i])
		}
		check(ids[i], *got)
	}
	want(t, s, built)
	want(t, s, gone)

	// A rewrite without a build time forgets the old one.
	again := doc("built", 3, "rebuilt")
	write(t, s, again)
	wantAt["built"] = time.Time{}
	got, err := s.Get(ctx(t), "built")
	if err != nil {
		t.Fatal(err)
	}
	check("built", got)
}

// longIDs are ids far longer than any real one, which a store must still
// take: a few kilobytes.
var longIDs = []string{strings.Repeat("x", 1000), strings.Repeat("日本", 700), strings.Repeat("a:b/", 2500)}

func testGetManyHostile(t *testing.T, s DocStore) {
	for _, d := range readHostile(t, s, longIDs) {
		want(t, s, d)
	}
}

// readHostile writes a document (every fourth a tombstone) for each of the
// hostile ids and long, reads them back with GetMany, together with ids
// they would collide with under a naive key (prefixes, decoded and
// case-folded forms), and returns what it wrote.
func readHostile(t *testing.T, s DocStore, long []string) []sink.Doc {
	ids := append(slices.Clone(HostileIDs), long...)
	stored := make(map[string]sink.Doc)
	var docs []sink.Doc
	for i, id := range ids {
		d := doc(id, int64(i+1), "hostile")
		if i%4 == 3 {
			d = tomb(id, int64(i+1))
		}
		docs = append(docs, d)
		stored[id] = d
	}
	write(t, s, docs...)
	asked := append(slices.Clone(ids), "a", "x", "/", "%2f", "\"quoted", "LONG", "Ü")
	if len(long) > 0 {
		asked = append(asked, long[0][1:], long[0]+"x")
	}
	wantMany(t, s, asked, stored)
	return docs
}

// fillers are n documents of a kilobyte whose ids start with prefix.
func fillers(prefix string, n int) []sink.Doc {
	docs := make([]sink.Doc, n)
	for i := range docs {
		docs[i] = doc(fmt.Sprint(prefix, i), 1, strings.Repeat("z", 1000))
	}
	return docs
}

func testResultsOwned(t *testing.T, s DocStore) {
	// Enough other documents that a store keeping them in a mapped file
	// reads them from there rather than from a copy.
	a, b := doc("a", 1, "first"), doc("b", 1, "first")
	write(t, s, append(fillers("filler-", 2000), a, b)...)

	// A caller may scribble on a body without changing the store.
	got := getMany(t, s, "a", "b")
	clear(got[0].Body)
	one, err := s.Get(ctx(t), "b")
	if err != nil {
		t.Fatal(err)
	}
	clear(one.Body)
	want(t, s, a)
	want(t, s, b)

	// What was read stays as it was, through newer versions and enough more
	// documents to move whatever a store holds in memory or maps.
	got = getMany(t, s, "a", "b")
	if one, err = s.Get(ctx(t), "a"); err != nil {
		t.Fatal(err)
	}
	before := []string{describe(got[0]), describe(got[1]), describe(&one)}
	write(t, s, append(fillers("more-", 4000), doc("a", 2, "second"), doc("b", 2, "second"))...)
	after := []string{describe(got[0]), describe(got[1]), describe(&one)}
	for i := range before {
		if before[i] != after[i] {
			t.Errorf("result %d changed from %q to %q after later writes", i, before[i], after[i])
		}
	}
	want(t, s, doc("a", 2, "second"))
}
