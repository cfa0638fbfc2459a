// Package sinktest holds the conformance suites every store passes, Redis,
// Elasticsearch and the embedded ones alike:
//   - Run: the write guard every store keeps: idempotent upserts, the
//     highest version wins (an equal one overwrites), tombstones block older
//     writes and yield to newer ones, and a batch is judged item by item;
//   - RunDocs: the doc store's reads by id (GetMany keeps order);
//   - RunRefs: the reverse lookup of joined entities;
//   - RunSearch: the list and search behaviour the query API relies on
//     (filters, sorts, text, geo, paging by After).
//
// and those of what operators' tools need of a store (see admin.go):
// RunScan, RunReader, RunCounter and RunReindexer.
package sinktest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/readside/readside/internal/sink"
)

// Store is what the suite tests.
type Store interface {
	Write(ctx context.Context, docs []sink.Doc) error
	Get(ctx context.Context, id string) (sink.Stored, error)
}

// Run runs the suite. open returns a new, empty store that is cleaned up when
// its test ends; each subtest opens its own and subtests run in parallel.
func Run(t *testing.T, open func(t *testing.T) Store) {
	runCases(t, open, []testCase[Store]{
		{"missing id is ErrNotFound", testMissing},
		{"empty batch is a no-op", testEmptyBatch},
		{"idempotent upsert", testIdempotent},
		{"newer overwrites", testNewerOverwrites},
		{"stale version dropped", testStaleDropped},
		{"equal version overwrites", testEqualOverwrites},
		{"version zero and max", testVersionBounds},
		{"tombstone then stale write does not resurrect", testTombstoneBlocksStale},
		{"tombstone then newer write re-creates", testTombstoneThenNewer},
		{"tombstone then equal version re-creates", testTombstoneThenEqual},
		{"stale tombstone dropped", testStaleTombstone},
		{"tombstone never hides a document of its version", testTombstoneBelowEqualDoc},
		{"outcomes reported", testOutcomes},
		{"batch mixing new, stale and tombstones", testMixedBatch},
		{"same id twice in a batch applies in order", testSameIDInBatch},
		{"many ids in one batch", testManyIDs},
		{"hostile ids", testHostileIDs},
		{"invalid docs are permanent item errors", testInvalidDocs},
	})
}

// testCase is one case of a suite over stores of type S.
type testCase[S any] struct {
	name string
	run  func(t *testing.T, s S)
}

// runCases runs each case as a parallel subtest on a store of its own,
// which open makes.
func runCases[S any](t *testing.T, open func(t *testing.T) S, cases []testCase[S]) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, open(t))
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// doc is a document for id at version v whose body names both, plus note.
func doc(id string, v int64, note string) sink.Doc {
	b, err := json.Marshal(map[string]any{"id": id, "version": v, "note": note})
	if err != nil {
		panic(err)
	}
	return sink.Doc{ID: id, Version: v, Body: b}
}

func tomb(id string, v int64) sink.Doc { return sink.Doc{ID: id, Version: v, Deleted: true} }

func write(t *testing.T, s Store, docs ...sink.Doc) {
	t.Helper()
	if err := s.Write(ctx(t), docs); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

// want checks that s holds d for d.ID: same version, deletion and JSON body.
func want(t *testing.T, s Store, d sink.Doc) {
	t.Helper()
	got, err := s.Get(ctx(t), d.ID)
	if err != nil {
		t.Fatalf("Get(%q): %v", d.ID, err)
	}
	if got.Version != d.Version || got.Deleted != d.Deleted {
		t.Fatalf("Get(%q) = version %d deleted %v, want version %d deleted %v",
			d.ID, got.Version, got.Deleted, d.Version, d.Deleted)
	}
	if d.Deleted {
		if got.Body != nil {
			t.Fatalf("Get(%q) of a tombstone: body %s, want nil", d.ID, got.Body)
		}
		return
	}
	if !jsonEqual(got.Body, d.Body) {
		t.Fatalf("Get(%q) body = %s, want %s", d.ID, got.Body, d.Body)
	}
}

func wantNotFound(t *testing.T, s Store, id string) {
	t.Helper()
	got, err := s.Get(ctx(t), id)
	if !errors.Is(err, sink.ErrNotFound) {
		t.Fatalf("Get(%q) = %+v, %v; want ErrNotFound", id, got, err)
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(x, y)
}

func testMissing(t *testing.T, s Store) {
	wantNotFound(t, s, "never-written")
}

func testEmptyBatch(t *testing.T, s Store) {
	write(t, s)
	write(t, s, []sink.Doc{}...)
}

func testIdempotent(t *testing.T, s Store) {
	d := doc("a", 3, "once")
	write(t, s, d)
	write(t, s, d)
	want(t, s, d)
}

func testNewerOverwrites(t *testing.T, s Store) {
	write(t, s, doc("a", 1, "old"))
	newer := doc("a", 2, "new")
	write(t, s, newer)
	want(t, s, newer)
}

func testStaleDropped(t *testing.T, s Store) {
	cur := doc("a", 5, "current")
	write(t, s, cur)
	write(t, s, doc("a", 3, "stale")) // dropped silently: no error
	write(t, s, doc("a", 4, "stale"), doc("a", 0, "stale"))
	want(t, s, cur)
}

func testEqualOverwrites(t *testing.T, s Store) {
	write(t, s, doc("a", 5, "first fetch"))
	again := doc("a", 5, "second fetch")
	write(t, s, again)
	want(t, s, again)
}

func testVersionBounds(t *testing.T, s Store) {
	zero := doc("zero", 0, "v0")
	write(t, s, zero)
	want(t, s, zero)
	// Versions beyond 2^53 must compare exactly, not as doubles.
	const big = int64(1) << 60
	write(t, s, doc("big", big+1, "newer"))
	write(t, s, doc("big", big, "older"))
	want(t, s, doc("big", big+1, "newer"))
	maxed := doc("max", 1<<63-1, "max")
	write(t, s, maxed)
	write(t, s, doc("max", 1<<63-2, "older"))
	want(t, s, maxed)
}

func testTombstoneBlocksStale(t *testing.T, s Store) {
	write(t, s, doc("a", 5, "live"))
	write(t, s, tomb("a", 6))
	write(t, s, doc("a", 5, "late stale fetch"))
	write(t, s, doc("a", 1, "very late"))
	want(t, s, tomb("a", 6))
	// A tombstone for an id never written blocks older writes too.
	write(t, s, tomb("b", 4))
	write(t, s, doc("b", 3, "stale"))
	want(t, s, tomb("b", 4))
}

func testTombstoneThenNewer(t *testing.T, s Store) {
	write(t, s, doc("a", 5, "live"), tomb("a", 6))
	again := doc("a", 7, "re-created")
	write(t, s, again)
	want(t, s, again)
}

func testTombstoneThenEqual(t *testing.T, s Store) {
	write(t, s, tomb("a", 6))
	again := doc("a", 6, "re-created at the same version")
	write(t, s, again)
	want(t, s, again)
}

func testStaleTombstone(t *testing.T, s Store) {
	cur := doc("a", 9, "live")
	write(t, s, cur)
	write(t, s, tomb("a", 8))
	want(t, s, cur)
}

// A tombstone of version v means "deleted after version v-1": a document of
// version v may be the entity re-created, written by another replica while
// this one saw the deletion. Neither order of the two writes may hide it.
func testTombstoneBelowEqualDoc(t *testing.T, s Store) {
	live := doc("a", 6, "re-created")
	write(t, s, live)
	write(t, s, tomb("a", 6))
	want(t, s, live)
	write(t, s, tomb("b", 6))
	again := doc("b", 6, "re-created")
	write(t, s, again)
	want(t, s, again)
	// Between tombstones, the newer one wins and an equal one is no change.
	write(t, s, tomb("c", 6), tomb("c", 7), tomb("c", 7), tomb("c", 5))
	want(t, s, tomb("c", 7))
}

// testOutcomes checks what a store that is a sink.Reporter says its guard did.
func testOutcomes(t *testing.T, s Store) {
	r, ok := s.(sink.Reporter)
	if !ok {
		t.Skip("not a sink.Reporter")
	}
	write(t, s, doc("doc", 5, "live"), tomb("tomb", 5))
	batch := []sink.Doc{
		doc("doc", 6, "newer"),                   // written
		doc("doc", 4, "stale"),                   // dropped
		tomb("tomb", 4),                          // dropped
		doc("tomb", 5, "re-created"),             // revived
		tomb("tomb", 5),                          // dropped: a document of its version
		doc("new", 1, "first"),                   // written
		tomb("gone", 3),                          // written
		{ID: "", Version: 1, Body: []byte(`{}`)}, // invalid: dropped, and an item error
	}
	got, err := r.WriteReport(ctx(t), batch)
	var be *sink.BatchError
	if !errors.As(err, &be) || len(be.Items) != 1 || be.Items[len(batch)-1] == nil {
		t.Fatalf("WriteReport error = %v, want a *BatchError for the invalid last item alone", err)
	}
	wantOut := []sink.Outcome{sink.Written, sink.Dropped, sink.Dropped, sink.Revived, sink.Dropped, sink.Written, sink.Written, sink.Dropped}
	if !reflect.DeepEqual(got, wantOut) {
		t.Fatalf("WriteReport outcomes = %v, want %v", got, wantOut)
	}
	want(t, s, doc("doc", 6, "newer"))
	want(t, s, doc("tomb", 5, "re-created"))
}

func testMixedBatch(t *testing.T, s Store) {
	write(t, s, doc("new-over", 5, "old"), doc("stale", 5, "kept"), doc("deleted", 5, "live"),
		tomb("tomb-blocks", 5), doc("stale-tomb", 5, "kept"))
	batch := []sink.Doc{
		doc("new-over", 6, "newer"),
		doc("stale", 4, "stale"),
		tomb("deleted", 6),
		doc("fresh", 1, "first"),
		doc("tomb-blocks", 4, "stale"),
		tomb("never-existed", 3),
		tomb("stale-tomb", 2),
	}
	write(t, s, batch...)
	want(t, s, doc("new-over", 6, "newer"))
	want(t, s, doc("stale", 5, "kept"))
	want(t, s, tomb("deleted", 6))
	want(t, s, doc("fresh", 1, "first"))
	want(t, s, tomb("tomb-blocks", 5))
	want(t, s, tomb("never-existed", 3))
	want(t, s, doc("stale-tomb", 5, "kept"))
}

func testSameIDInBatch(t *testing.T, s Store) {
	write(t, s, doc("a", 1, "one"), doc("a", 3, "three"), doc("a", 2, "two"),
		doc("b", 1, "one"), tomb("b", 2), doc("b", 2, "back"))
	want(t, s, doc("a", 3, "three"))
	want(t, s, doc("b", 2, "back"))
}

func testManyIDs(t *testing.T, s Store) {
	const n = 500
	docs := make([]sink.Doc, n)
	for i := range docs {
		if i%10 == 9 {
			docs[i] = tomb(fmt.Sprintf("id-%03d", i), int64(i))
		} else {
			docs[i] = doc(fmt.Sprintf("id-%03d", i), int64(i), strings.Repeat("x", i))
		}
	}
	write(t, s, docs...)
	for _, d := range docs {
		want(t, s, d)
	}
}

// HostileIDs are ids that break naive keys, URL paths and JSON.
var HostileIDs = []string{
	"a b", "x/y", "/lead", "ü", "日本", "😀", "{id}", "{", "}", "*", "?", "?x=1", "#frag", "%2F", "%",
	`"quoted"`, `'single'`, `back\slash`, "a:b", "a,b", "+", "..", ".", "line\nbreak", "tab\there",
	"<tag>&amp;", "_id", "-", strings.Repeat("long", 100),
}

func testHostileIDs(t *testing.T, s Store) {
	var docs []sink.Doc
	for i, id := range HostileIDs {
		docs = append(docs, doc(id, int64(i+1), "hostile"))
	}
	write(t, s, docs...)
	for _, d := range docs {
		want(t, s, d)
	}
	// Each id is its own entity: deleting one leaves the others alone.
	write(t, s, tomb("x/y", 100), doc("{id}", 0, "stale"))
	want(t, s, tomb("x/y", 100))
	want(t, s, doc("{id}", int64(indexOf(HostileIDs, "{id}")+1), "hostile"))
	want(t, s, doc("/lead", int64(indexOf(HostileIDs, "/lead")+1), "hostile"))
	wantNotFound(t, s, "x")
	wantNotFound(t, s, "a")
}

func indexOf(ids []string, id string) int {
	for i, x := range ids {
		if x == id {
			return i
		}
	}
	panic(id)
}

func testInvalidDocs(t *testing.T, s Store) {
	batch := []sink.Doc{
		doc("ok-1", 1, "fine"),
		{ID: "", Version: 1, Body: []byte(`{"a":1}`)},
		{ID: "neg", Version: -1, Body: []byte(`{"a":1}`)},
		{ID: "nobody", Version: 1},
		{ID: "bad\xffutf8", Version: 1, Body: []byte(`{"a":1}`)},
		doc("ok-2", 2, "fine"),
	}
	err := s.Write(ctx(t), batch)
	var be *sink.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("Write = %v, want a *BatchError", err)
	}
	for i := range batch {
		ie, failed := be.Items[i]
		if wantFail := i >= 1 && i <= 4; failed != wantFail {
			t.Errorf("item %d (%q) failed=%v (%v), want failed=%v", i, batch[i].ID, failed, ie, wantFail)
		} else if failed && !sink.IsPermanent(ie) {
			t.Errorf("item %d (%q): %v is not permanent", i, batch[i].ID, ie)
		}
	}
	if !sink.IsPermanent(err) {
		t.Errorf("IsPermanent(%v) = false for a batch whose failed items are all permanent", err)
	}
	want(t, s, batch[0])
	want(t, s, batch[5])
	wantNotFound(t, s, "neg")
	wantNotFound(t, s, "nobody")
}
