package sinktest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/projections"
)

// The suites of the contracts operators' tools need of a store (see
// sink.Scanner, sink.Reader, sink.Counter, sink.Reindexer):
//   - RunScan: a Scan yields every id once or more, live ones apart from
//     tombstones, in pages whose positions resume where they say;
//   - RunReader: GetMany in the order asked, with versions as written;
//   - RunCounter: the live documents counted, tombstones left out;
//   - RunReindexer: a Reindex while the index serves loses nothing.
//
// A store whose scans, counts and searches see writes only after a refresh
// (Elasticsearch) has a method Refresh(ctx) error, which the suites call
// after writing, as RunSearch does.

// refresher is a store that makes writes visible on Refresh.
type refresher interface {
	Refresh(ctx context.Context) error
}

// refreshed calls s's Refresh, when it has one.
func refreshed(t *testing.T, s any) {
	t.Helper()
	if r, ok := s.(refresher); ok {
		if err := r.Refresh(ctx(t)); err != nil {
			t.Fatalf("Refresh: %v", err)
		}
	}
}

// writeBatches writes docs in batches of 200.
func writeBatches(t *testing.T, s Store, docs []sink.Doc) {
	t.Helper()
	for len(docs) > 0 {
		n := min(len(docs), 200)
		write(t, s, docs[:n]...)
		docs = docs[n:]
	}
}

// ScanStore is what RunScan tests.
type ScanStore interface {
	Store
	sink.Scanner
}

// RunScan runs the suite of sink.Scanner. open returns a new, empty store
// that is cleaned up when its test ends; each subtest opens its own and
// subtests run in parallel.
func RunScan(t *testing.T, open func(t *testing.T) ScanStore) {
	runCases(t, open, []testCase[ScanStore]{
		{"every id, tombstones apart", testScanAll},
		{"an empty store", testScanEmpty},
		{"a page's At starts with that page again", testScanAt},
		{"a page's Next yields the remaining ids", testScanNext},
		{"fn's error stops the scan", testScanStops},
		{"an unknown position is an error", testScanBadPosition},
		{"writes during a scan", testScanWhileWriting},
	})
}

// scanN is how many ids the scan tests write: more than two pages of 500
// (every store's page size), and not a multiple of it.
const scanN = 1234

// scanIDs are ids for the scan tests: hostile ones, and "|" and ":", which
// positions may use as separators.
func scanID(i int) string {
	extra := []string{"a|b", "|", "x:y|z", "ü|日本:", " "}
	all := append(slices.Clone(HostileIDs), extra...)
	return fmt.Sprintf("%s#%d", all[i%len(all)], i)
}

// scanFixture writes scanN ids: documents, tombstones, documents deleted
// since, and tombstones since re-created. It returns the live ids and the
// tombstones.
func scanFixture(t *testing.T, s Store) (live, deleted map[string]bool) {
	t.Helper()
	live, deleted = map[string]bool{}, map[string]bool{}
	var first, then []sink.Doc
	for i := range scanN {
		id := scanID(i)
		switch {
		case i%7 == 3:
			first = append(first, tomb(id, 2))
			deleted[id] = true
		case i%11 == 5:
			first = append(first, doc(id, 1, "deleted since"))
			then = append(then, tomb(id, 2))
			deleted[id] = true
		case i%13 == 4:
			first = append(first, tomb(id, 1))
			then = append(then, doc(id, 2, "re-created"))
			live[id] = true
		default:
			first = append(first, doc(id, 1, "live"))
			live[id] = true
		}
	}
	writeBatches(t, s, first)
	writeBatches(t, s, then)
	refreshed(t, s)
	return live, deleted
}

// scanAll scans s from from to the end.
func scanAll(t *testing.T, s ScanStore, from string) []sink.ScanPage {
	t.Helper()
	var pages []sink.ScanPage
	err := s.Scan(ctx(t), from, func(p sink.ScanPage) error {
		pages = append(pages, p)
		if len(pages) > 100_000 {
			return errors.New("more than 100,000 pages: the scan does not end")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Scan(%q): %v", from, err)
	}
	return pages
}

// union is the set of the ids and of the tombstones of pages.
func union(pages ...sink.ScanPage) (ids, deleted map[string]bool) {
	ids, deleted = map[string]bool{}, map[string]bool{}
	for _, p := range pages {
		for _, id := range p.IDs {
			ids[id] = true
		}
		for _, id := range p.Deleted {
			deleted[id] = true
		}
	}
	return ids, deleted
}

// wantSet checks that got holds exactly want.
func wantSet(t *testing.T, what string, got, want map[string]bool) {
	t.Helper()
	var missing, extra []string
	for id := range want {
		if !got[id] {
			missing = append(missing, id)
		}
	}
	for id := range got {
		if !want[id] {
			extra = append(extra, id)
		}
	}
	if len(missing) > 0 || len(extra) > 0 {
		slices.Sort(missing)
		slices.Sort(extra)
		t.Errorf("%s: %d of %d missing (first: %.5q), %d unexpected (first: %.5q)", what, len(missing), len(want), missing, len(extra), extra)
	}
}

// nonEmpty are the indexes of the pages that hold an id.
func nonEmpty(pages []sink.ScanPage) []int {
	var out []int
	for i, p := range pages {
		if len(p.IDs)+len(p.Deleted) > 0 {
			out = append(out, i)
		}
	}
	return out
}

func testScanAll(t *testing.T, s ScanStore) {
	live, deleted := scanFixture(t, s)
	pages := scanAll(t, s, "")
	ids, dels := union(pages...)
	wantSet(t, "Scan's IDs", ids, live)
	wantSet(t, "Scan's Deleted", dels, deleted)
	if n := len(nonEmpty(pages)); n < 3 {
		t.Errorf("%d ids in %d pages (%d with an id): want them in pages of at most 500", scanN, len(pages), n)
	}
	for i, p := range pages {
		if last := i == len(pages)-1; last != (p.Next == "") {
			t.Errorf("page %d of %d: Next = %q; want \"\" for the last page alone", i+1, len(pages), p.Next)
		}
	}
}

func testScanEmpty(t *testing.T, s ScanStore) {
	refreshed(t, s)
	pages := scanAll(t, s, "")
	if ids, dels := union(pages...); len(ids)+len(dels) > 0 {
		t.Errorf("Scan of an empty store: %d ids and %d tombstones", len(ids), len(dels))
	}
	if len(pages) > 0 && pages[len(pages)-1].Next != "" {
		t.Errorf("Scan of an empty store: last page's Next = %q, want \"\"", pages[len(pages)-1].Next)
	}
}

// errStop is what the tests' fn returns to stop a scan.
var errStop = errors.New("sinktest: stop the scan")

// covers checks that a scan from a position, which gave got, gave every id
// of want, with its kind.
func covers(t *testing.T, what string, got, want []sink.ScanPage) {
	t.Helper()
	gotIDs, gotDels := union(got...)
	wantIDs, wantDels := union(want...)
	missing := 0
	var first string
	for _, c := range []struct{ got, want map[string]bool }{{gotIDs, wantIDs}, {gotDels, wantDels}} {
		for id := range c.want {
			if !c.got[id] {
				if missing++; missing == 1 {
					first = id
				}
			}
		}
	}
	if missing > 0 {
		t.Errorf("%s: %d of the %d ids of the pages it stands for are missing (%q among them)", what, missing, len(wantIDs)+len(wantDels), first)
	}
}

// goesOn checks that a scan from a position after the page before, which
// gave got, did not give every id of that page again: it did not start
// over. (It may give some again: a Redis SCAN may repeat ids, and does
// when its table is resized meanwhile.)
func goesOn(t *testing.T, what string, got []sink.ScanPage, before sink.ScanPage) {
	t.Helper()
	gotIDs, gotDels := union(got...)
	ids, dels := union(before)
	again := 0
	for id := range ids {
		if gotIDs[id] {
			again++
		}
	}
	for id := range dels {
		if gotDels[id] {
			again++
		}
	}
	if again > 0 && again == len(ids)+len(dels) {
		t.Errorf("%s gives every id of an earlier page again", what)
	}
}

// A Scan from a page's At yields that page again, and what follows it: the
// page may differ by then (a Redis SCAN's does when other keys are written
// meanwhile), but it starts with ids of that page, and every id of it and
// of the pages after it that is still stored is in the scan.
func testScanAt(t *testing.T, s ScanStore) {
	scanFixture(t, s)
	pages := scanAll(t, s, "")
	full := nonEmpty(pages)
	if len(full) < 3 {
		t.Fatalf("%d pages with an id: want at least 3", len(full))
	}
	for _, k := range []int{full[0], full[len(full)/2], full[len(full)-1]} {
		what := fmt.Sprintf("Scan from page %d's At", k+1)
		got := scanAll(t, s, pages[k].At)
		covers(t, what, got, pages[k:])
		first := nonEmpty(got)
		if len(first) == 0 {
			continue // covers failed
		}
		ids, dels := union(pages[k])
		gotIDs, gotDels := union(got[first[0]])
		shared := false
		for id := range gotIDs {
			shared = shared || ids[id]
		}
		for id := range gotDels {
			shared = shared || dels[id]
		}
		if !shared {
			t.Errorf("%s starts with a page that shares no id with page %d", what, k+1)
		}
		if k != full[0] {
			goesOn(t, what, got, pages[full[0]])
		}
	}
}

// A Scan from a page's Next yields every id of the pages after it, and
// neither the page again nor the ones before.
func testScanNext(t *testing.T, s ScanStore) {
	scanFixture(t, s)
	pages := scanAll(t, s, "")
	full := nonEmpty(pages)
	if len(full) < 3 {
		t.Fatalf("%d pages with an id: want at least 3", len(full))
	}
	k := full[len(full)/2]
	what := fmt.Sprintf("Scan from page %d's Next", k+1)
	got := scanAll(t, s, pages[k].Next)
	covers(t, what, got, pages[k+1:])
	goesOn(t, what, got, pages[full[0]])
	goesOn(t, what, got, pages[k])
}

func testScanStops(t *testing.T, s ScanStore) {
	scanFixture(t, s)
	for _, stopAt := range []int{1, 2} {
		calls := 0
		err := s.Scan(ctx(t), "", func(sink.ScanPage) error {
			if calls++; calls == stopAt {
				return errStop
			}
			return nil
		})
		if !errors.Is(err, errStop) || calls != stopAt {
			t.Errorf("Scan with fn failing on call %d: %v after %d calls; want fn's error, and no call after it", stopAt, err, calls)
		}
	}
}

func testScanBadPosition(t *testing.T, s ScanStore) {
	scanFixture(t, s)
	for _, from := range []string{"not a position", "no|such:position", "\x00\xff"} {
		calls := 0
		err := s.Scan(ctx(t), from, func(sink.ScanPage) error { calls++; return nil })
		if !errors.Is(err, sink.ErrBadPosition) || calls > 0 {
			t.Errorf("Scan(%q) = %v after %d pages; want an error wrapping sink.ErrBadPosition and no page", from, err, calls)
		}
	}
}

// testScanWhileWriting writes new ids and newer versions of old ones while
// a scan runs: every id stored for the whole scan is still in a page, with
// its kind.
func testScanWhileWriting(t *testing.T, s ScanStore) {
	live, deleted := scanFixture(t, s)
	var all []sink.ScanPage
	pages := 0
	err := s.Scan(ctx(t), "", func(p sink.ScanPage) error {
		all = append(all, p)
		if pages++; pages > 3 {
			return nil
		}
		var docs []sink.Doc
		for i := range 150 { // before every id of the fixture, and after most
			docs = append(docs, doc(fmt.Sprintf("\tnew %d-%d", pages, i), 1, "written during the scan"),
				doc(fmt.Sprintf("~new %d-%d", pages, i), 1, "written during the scan"))
		}
		for id := range live { // 100 of them, newer
			if len(docs) == 400 {
				break
			}
			docs = append(docs, doc(id, 3, "newer, during the scan"))
		}
		writeBatches(t, s, docs)
		refreshed(t, s)
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	ids, dels := union(all...)
	for what, sets := range map[string][2]map[string]bool{"IDs": {ids, live}, "Deleted": {dels, deleted}} {
		missing := 0
		for id := range sets[1] {
			if !sets[0][id] {
				missing++
			}
		}
		if missing > 0 {
			t.Errorf("Scan while writing: %d of the %d %s stored throughout are missing", missing, len(sets[1]), what)
		}
	}
	for id := range ids {
		if deleted[id] {
			t.Errorf("Scan while writing: tombstone %q among the IDs", id)
		}
	}
}

// ReaderStore is what RunReader tests: the reads by id every store has.
type ReaderStore interface {
	Store
	sink.Reader
}

// RunReader runs the suite of sink.Reader: GetMany answers in the order of
// the ids it was given, with nil for an absent id, a tombstone as Deleted
// with its version, and every version as written. Unlike RunDocs, it asks
// for no build time and no id longer than Elasticsearch takes (512 bytes).
// open returns a new, empty store that is cleaned up when its test ends;
// each subtest opens its own and subtests run in parallel.
func RunReader(t *testing.T, open func(t *testing.T) ReaderStore) {
	runCases(t, func(t *testing.T) DocStore { return open(t) }, append(getManyCases(),
		testCase[DocStore]{"versions as written", testReaderVersions},
		testCase[DocStore]{"hostile ids read back", func(t *testing.T, s DocStore) { readHostile(t, s, nil) }},
	))
}

func testReaderVersions(t *testing.T, s DocStore) {
	docs := []sink.Doc{
		doc("zero", 0, "v0"), doc("2^53+1", 1<<53+1, "beyond a float64"), doc("max", math.MaxInt64, "max"),
		tomb("tomb-big", 1<<60+3), tomb("tomb-zero", 0), doc("then-newer", 4, "old"), doc("then-stale", 9, "kept"),
		doc("then-deleted", 1<<55, "live"),
	}
	write(t, s, docs...)
	write(t, s, doc("then-newer", 1<<53+2, "newer"), doc("then-stale", 8, "stale"), tomb("then-deleted", 1<<55+1))
	want := map[string]sink.Doc{}
	for _, d := range docs {
		want[d.ID] = d
	}
	want["then-newer"] = doc("then-newer", 1<<53+2, "newer")
	want["then-deleted"] = tomb("then-deleted", 1<<55+1)
	ids := slices.Sorted(maps.Keys(want))
	wantMany(t, s, append(ids, "absent"), want)
}

// CounterStore is what RunCounter tests.
type CounterStore interface {
	Store
	sink.Counter
}

// RunCounter runs the suite of sink.Counter: the live documents are
// counted, tombstones are not, through every change of kind. open returns a
// new, empty store that is cleaned up when its test ends.
func RunCounter(t *testing.T, open func(t *testing.T) CounterStore) {
	t.Run("live documents counted", func(t *testing.T) {
		t.Parallel()
		testCount(t, open(t))
	})
}

func testCount(t *testing.T, s CounterStore) {
	count := func(want int64, after string) {
		t.Helper()
		refreshed(t, s)
		n, err := s.Count(ctx(t))
		if err != nil {
			t.Fatalf("Count %s: %v", after, err)
		}
		if n != want {
			t.Errorf("Count %s = %d, want %d", after, n, want)
		}
	}
	count(0, "of an empty store")
	var docs []sink.Doc
	for i := range 700 {
		if i%7 == 0 {
			docs = append(docs, tomb(scanID(i), 1))
		} else {
			docs = append(docs, doc(scanID(i), 1, "live"))
		}
	}
	writeBatches(t, s, docs)
	count(600, "of 600 documents and 100 tombstones")
	write(t, s, tomb(scanID(1), 2), tomb(scanID(2), 2), tomb(scanID(3), 2))
	count(597, "after 3 documents deleted")
	write(t, s, doc(scanID(0), 2, "re-created"), doc(scanID(7), 1, "re-created at the same version"))
	count(599, "after 2 tombstones re-created")
	write(t, s, doc(scanID(1), 1, "stale"), tomb(scanID(4), 0), tomb("never written", 5), doc(scanID(5), 3, "newer"))
	count(599, "after stale writes, a newer version and a tombstone of an id never written")
}

// ReindexStore is what RunReindexer tests: a search index that re-indexes
// itself.
type ReindexStore interface {
	SearchStore
	sink.Reindexer
}

// ReindexDefinition is the projection RunReindexer indexes.
const ReindexDefinition = `name: notes
triggers: [{subject: notes.*}]
sources: [{name: n, url: "http://api/notes/{id}"}]
fields:
  - {name: note, from: n.note, type: text, search: true, filter: true, sort: true}
  - {name: version, from: n.version, type: integer, filter: true, sort: true}
redis: {key: "notes:{id}"}
elasticsearch: {alias: notes}
`

// RunReindexer runs the suite of sink.Reindexer: Reindex counts what it
// copies; reads and searches answer after it as before; writes made while
// it runs and after are kept, while reads go on; and one whose ctx ends,
// at any point, leaves the index as it was. open returns a new, empty index
// of def that is cleaned up when its test ends.
func RunReindexer(t *testing.T, open func(t *testing.T, def *projections.Definition) ReindexStore) {
	def, err := projections.Parse("notes.yaml", []byte(ReindexDefinition), projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	runCases(t, func(t *testing.T) ReindexStore { return open(t, def) }, []testCase[ReindexStore]{
		{"answers as before", testReindexSame},
		{"writes during and after are kept", testReindexWhileWriting},
		{"a cancelled Reindex leaves the index as it was", testReindexCancelled},
	})
}

// reindexN is how many ids the Reindex tests write: more than one batch of
// a copy.
const reindexN = 1500

var reindexNotes = []string{"alpha red", "beta green", "gamma blue", "alpha green", "delta"}

// reindexFixture writes reindexN ids, one in 9 a tombstone.
func reindexFixture(t *testing.T, s ReindexStore) []sink.Doc {
	t.Helper()
	var docs []sink.Doc
	for i := range reindexN {
		id := fmt.Sprintf("note-%04d", i)
		if i%9 == 4 {
			docs = append(docs, tomb(id, int64(i)))
		} else {
			docs = append(docs, doc(id, int64(i), reindexNotes[i%len(reindexNotes)]))
		}
	}
	writeBatches(t, s, docs)
	refresh(t, s)
	return docs
}

// reindexQueries are the searches compared before and after a Reindex.
var reindexQueries = []sink.Query{
	{},
	{Sort: []sink.SortKey{{Field: "version", Desc: true}}},
	{Text: "alpha"},
	{Text: "gre", Sort: []sink.SortKey{{Field: "note"}}},
	{Filters: []sink.Filter{{Field: "version", Op: "gte", Values: []any{int64(700)}}}},
	{Filters: []sink.Filter{{Field: "note", Values: []any{"beta green", "delta"}}}},
}

// answers are what s answers to Get of ids and to reindexQueries, in a few
// words each.
func answers(t *testing.T, s ReindexStore, ids []string) []string {
	t.Helper()
	var out []string
	for _, id := range ids {
		got, err := s.Get(ctx(t), id)
		switch {
		case errors.Is(err, sink.ErrNotFound):
			out = append(out, id+": not found")
		case err != nil:
			t.Fatalf("Get(%q): %v", id, err)
		default:
			out = append(out, id+": "+describe(&got))
		}
	}
	for _, q := range reindexQueries {
		out = append(out, fmt.Sprintf("%+v: %q", q, pageAll(t, s, q, 300)))
	}
	return out
}

// sameAnswers checks that s answers as it did (see answers).
func sameAnswers(t *testing.T, s ReindexStore, ids, before []string, when string) {
	t.Helper()
	after := answers(t, s, ids)
	bad := 0
	for i := range before {
		if before[i] != after[i] {
			if bad++; bad <= 5 {
				t.Errorf("%s: %.200s, was %.200s", when, after[i], before[i])
			}
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d answers changed in all", when, bad)
	}
}

func idsOf(docs []sink.Doc) []string {
	ids := make([]string, len(docs))
	for i, d := range docs {
		ids[i] = d.ID
	}
	return append(ids, "absent")
}

func testReindexSame(t *testing.T, s ReindexStore) {
	docs := reindexFixture(t, s)
	ids := idsOf(docs)
	before := answers(t, s, ids)
	for round := range 2 {
		n, err := s.Reindex(ctx(t))
		if err != nil {
			t.Fatalf("Reindex %d: %v", round+1, err)
		}
		if n != reindexN {
			t.Errorf("Reindex %d copied %d documents, want %d (tombstones included)", round+1, n, reindexN)
		}
		refresh(t, s)
		sameAnswers(t, s, ids, before, fmt.Sprintf("after Reindex %d", round+1))
	}
}

func testReindexWhileWriting(t *testing.T, s ReindexStore) {
	docs := reindexFixture(t, s)
	// The reader reads ids the writer leaves alone.
	watched := idsOf(docs[1000:1100])
	before := answers(t, s, watched)
	var (
		mu      sync.Mutex
		written = map[string]sink.Doc{} // what the writer wrote, as last written
		stop    = make(chan struct{})
		wrote   = make(chan struct{}, 1) // a batch written
		failed  = make(chan struct{})    // closed when the writer stops on its own: it failed
		wg      sync.WaitGroup
		reads   atomic.Int64
	)
	wg.Add(2)
	go func() { // the writer: new ids and newer versions of old ones
		defer wg.Done()
		for j := 0; ; j++ {
			select {
			case <-stop:
				return
			default:
			}
			batch := []sink.Doc{doc(fmt.Sprintf("new-%04d", j), 1, "alpha written meanwhile"), doc(docs[j%500].ID, int64(10_000+j), "gamma rewritten")}
			if j%3 == 0 {
				batch = append(batch, tomb(docs[500+j%500].ID, int64(10_000+j)))
			}
			if err := s.Write(ctx(t), batch); err != nil {
				t.Errorf("Write during the Reindex: %v", err)
				close(failed)
				return
			}
			mu.Lock()
			for _, d := range batch {
				written[d.ID] = d
			}
			mu.Unlock()
			select {
			case wrote <- struct{}{}:
			default:
			}
		}
	}()
	go func() { // the reader: the watched ids, while the Reindex runs
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for i, id := range watched[:len(watched)-1] {
				got, err := s.Get(ctx(t), id)
				if err != nil && !errors.Is(err, sink.ErrNotFound) {
					t.Errorf("Get(%q) during the Reindex: %v", id, err)
					return
				}
				if have := id + ": " + describe(&got); err == nil && have != before[i] {
					t.Errorf("Get during the Reindex: %s, was %s", have, before[i])
					return
				}
			}
			if _, err := s.Search(ctx(t), sink.Query{Text: "alpha", Limit: 10}); err != nil {
				t.Errorf("Search during the Reindex: %v", err)
				return
			}
			reads.Add(1)
		}
	}()
	select { // a write before, others during
	case <-wrote:
	case <-failed: // and said so
	}
	n, err := s.Reindex(ctx(t))
	for range 3 { // and after
		select {
		case <-wrote:
		case <-failed:
		}
	}
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("Reindex: %v", err)
	}
	if n < reindexN {
		t.Errorf("Reindex copied %d documents, want at least %d", n, reindexN)
	}
	after := []sink.Doc{doc("after-1", 1, "alpha after"), doc(docs[0].ID, 20_000, "delta after"), tomb(docs[2].ID, 20_000)}
	write(t, s, after...)
	for _, d := range after {
		written[d.ID] = d
	}
	refresh(t, s)
	expect := map[string]sink.Doc{}
	for _, d := range docs {
		expect[d.ID] = d
	}
	maps.Copy(expect, written)
	var wantLive []string
	for id, d := range expect {
		want(t, s, d)
		if !d.Deleted {
			wantLive = append(wantLive, id)
		}
	}
	slices.Sort(wantLive)
	if got := pageAll(t, s, sink.Query{}, 500); !slices.Equal(got, wantLive) {
		t.Errorf("list after the Reindex: %d ids, want %d", len(got), len(wantLive))
	}
	t.Logf("%d writes and %d rounds of reads during and after the Reindex", len(written), reads.Load())
}

// cutCtx is a context that ends on the n-th time it is asked whether it
// has: it cuts a Reindex short at each point where it looks.
type cutCtx struct {
	context.Context
	left atomic.Int64
	once sync.Once
	done chan struct{}
}

func newCutCtx(parent context.Context, n int64) *cutCtx {
	c := &cutCtx{Context: parent, done: make(chan struct{})}
	c.left.Store(n)
	if n <= 0 {
		close(c.done)
	}
	return c
}

func (c *cutCtx) Done() <-chan struct{} { return c.done }

func (c *cutCtx) Err() error {
	if c.left.Add(-1) < 0 {
		c.once.Do(func() {
			select {
			case <-c.done:
			default:
				close(c.done)
			}
		})
		return context.Canceled
	}
	return nil
}

func testReindexCancelled(t *testing.T, s ReindexStore) {
	docs := reindexFixture(t, s)
	ids := idsOf(docs)
	before := answers(t, s, ids)
	for n := int64(0); ; n = max(1, n*2) {
		copied, err := s.Reindex(newCutCtx(ctx(t), n))
		if err == nil {
			if n == 0 {
				t.Errorf("Reindex with its ctx done: no error")
			}
			if copied != reindexN {
				t.Errorf("Reindex copied %d, want %d", copied, reindexN)
			}
			refresh(t, s)
			sameAnswers(t, s, ids, before, "after a Reindex that ends")
			t.Logf("Reindex cut short at %d points", n)
			return
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Reindex cut short after %d looks at ctx: %v, want context.Canceled", n, err)
		}
		refresh(t, s)
		sameAnswers(t, s, ids, before, fmt.Sprintf("after a Reindex cut short after %d looks at ctx", n))
		if t.Failed() {
			return
		}
		if n > 1<<20 {
			t.Fatalf("Reindex still cut short after %d looks at ctx", n)
		}
	}
}
