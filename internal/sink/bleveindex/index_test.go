package bleveindex_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/bleveindex"
	"github.com/readside/readside/internal/sink/sinktest"
	"github.com/readside/readside/projections"
)

// openBleve opens a new index of fields in a temporary directory, closed
// when the test ends.
func openBleve(t testing.TB, fields []projections.Field) (*bleveindex.Index, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "search", "shops")
	b, err := bleveindex.Open(dir, bleveindex.Options{Name: "shops", Fields: fields})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b, dir
}

func TestBleveConformance(t *testing.T) {
	t.Parallel()
	fields := []projections.Field{{Name: "note", Type: projections.Text, Search: true, Filter: true, Sort: true}}
	sinktest.Run(t, func(t *testing.T) sinktest.Store {
		b, _ := openBleve(t, fields)
		return b
	})
}

func TestBleveSearchConformance(t *testing.T) {
	t.Parallel()
	sinktest.RunSearch(t, func(t *testing.T, def *projections.Definition) sinktest.SearchStore {
		b, _ := openBleve(t, def.Fields)
		return b
	})
}

func TestBleveScan(t *testing.T) {
	t.Parallel()
	sinktest.RunScan(t, func(t *testing.T) sinktest.ScanStore {
		b, _ := openBleve(t, nil)
		return b
	})
}

func TestBleveReader(t *testing.T) {
	t.Parallel()
	sinktest.RunReader(t, func(t *testing.T) sinktest.ReaderStore {
		b, _ := openBleve(t, nil)
		return b
	})
}

func TestBleveCounter(t *testing.T) {
	t.Parallel()
	sinktest.RunCounter(t, func(t *testing.T) sinktest.CounterStore {
		b, _ := openBleve(t, nil)
		return b
	})
}

func TestBleveReindexer(t *testing.T) {
	t.Parallel()
	sinktest.RunReindexer(t, func(t *testing.T, def *projections.Definition) sinktest.ReindexStore {
		b, _ := openBleve(t, def.Fields)
		return b
	})
}

// bleveShopFields are the fields of the shops the search tests index: one of
// every type, a list of each kind, and one field that is not indexed.
var bleveShopFields = []projections.Field{
	{Name: "name", Type: projections.Text, Search: true, Filter: true, Sort: true},
	{Name: "about", Type: projections.Text, Search: true},
	{Name: "city", Type: projections.Keyword, Filter: true, Sort: true},
	{Name: "tags", Type: projections.Keyword, Array: true, Filter: true},
	{Name: "sizes", Type: projections.Integer, Array: true, Filter: true, Sort: true},
	{Name: "rating", Type: projections.Float, Filter: true, Sort: true},
	{Name: "seats", Type: projections.Integer, Filter: true, Sort: true},
	{Name: "open", Type: projections.Boolean, Filter: true, Sort: true},
	{Name: "since", Type: projections.Date, Filter: true, Sort: true},
	{Name: "location", Type: projections.GeoPoint},
	{Name: "extra", Type: projections.Object},
}

// bleveShops are the search tests' documents, around (52.52, 13.40): a is
// there, b 1.1 km away, c 3.3 km, f 6.8 km, e 8.9 km, d has no location.
// Every sort value is distinct, and each sorted field is missing somewhere.
var bleveShops = map[string]string{
	"a": `{"id":"a","name":"Pizza Roma","about":"the best pizza in town","city":"Berlin","tags":["vegan","terrace"],"sizes":[2,8],
		"rating":4.5,"seats":40,"open":true,"since":"2024-05-01T13:00:00Z","location":{"lat":52.52,"lon":13.40},"extra":{"x":[1]}}`,
	"b": `{"id":"b","name":"Pizzeria Napoli","about":"wood fired","city":"Hamburg","tags":["terrace"],"sizes":[4],
		"rating":3.9,"seats":12,"open":false,"since":"2024-05-02","location":{"lat":52.53,"lon":13.40}}`,
	"c": `{"id":"c","name":"The Golden Dragon","about":"dim sum","city":"Berlin","tags":[],
		"rating":4.1,"seats":null,"open":true,"since":1714521600000,"location":{"lat":52.55,"lon":13.40}}`,
	"d": `{"id":"d","name":"pizza","about":"pizza pizza","city":"Munich","tags":["late"],"sizes":[3,16],
		"rating":2.0,"seats":100,"open":true,"since":"2023-12-31"}`,
	"e": `{"id":"e","name":"Sushi Bar","about":"fresh fish","city":"Berlin","tags":["vegan"],
		"rating":4.8,"seats":20,"open":false,"since":"2024-05-01T23:59:59.999Z","location":{"lat":52.60,"lon":13.40}}`,
	"f": `{"id":"f","name":"Curry House the Second","about":"Spicy","seats":60,"open":true,"location":{"lat":52.52,"lon":13.50}}`,
}

// openBleveShops opens an index holding bleveShops, and a deleted shop g
// that matched most queries while it lived.
func openBleveShops(t *testing.T) *bleveindex.Index {
	t.Helper()
	b, _ := openBleve(t, bleveShopFields)
	var docs []sink.Doc
	for id, body := range bleveShops {
		docs = append(docs, sink.Doc{ID: id, Version: 1, Body: []byte(body)})
	}
	docs = append(docs, sink.Doc{ID: "g", Version: 1, Body: []byte(`{"name":"Pizza Ghost","about":"the pizza","city":"Berlin","tags":["vegan"],
		"rating":5,"seats":1,"open":true,"since":"2024-05-01","location":{"lat":52.52,"lon":13.40}}`)})
	if err := b.Write(sinktest.Context(t), docs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := b.Write(sinktest.Context(t), []sink.Doc{{ID: "g", Version: 2, Deleted: true}}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return b
}

var bleveCentre = &sink.LatLon{Lat: 52.52, Lon: 13.40}

func filterEq(field string, values ...any) sink.Filter {
	return sink.Filter{Field: field, Values: values}
}

func filterCmp(field, op string, value any) sink.Filter {
	return sink.Filter{Field: field, Op: op, Values: []any{value}}
}

func sortBy(keys ...string) []sink.SortKey {
	var out []sink.SortKey
	for _, k := range keys {
		out = append(out, sink.SortKey{Field: strings.TrimPrefix(k, "-"), Desc: strings.HasPrefix(k, "-")})
	}
	return out
}

func TestBleveWriteRefusesWhatDoesNotFit(t *testing.T) {
	t.Parallel()
	b, _ := openBleve(t, bleveShopFields)
	batch := []sink.Doc{
		{ID: "ok", Version: 1, Body: []byte(`{"seats":"12","rating":"4.5","open":"true","city":7,"since":"2024-05-01T10:00:00"}`)},
		{ID: "array", Version: 1, Body: []byte(`[1,2]`)},
		{ID: "seats", Version: 1, Body: []byte(`{"seats":"many"}`)},
		{ID: "open", Version: 1, Body: []byte(`{"open":"yes"}`)},
		{ID: "since", Version: 1, Body: []byte(`{"since":"yesterday"}`)},
		{ID: "location", Version: 1, Body: []byte(`{"location":{"lat":91,"lon":0}}`)},
		{ID: "city", Version: 1, Body: []byte(`{"city":{"name":"Berlin"}}`)},
		{ID: "unindexed", Version: 1, Body: []byte(`{"extra":"anything","about":null,"other":{"x":1}}`)},
	}
	err := b.Write(sinktest.Context(t), batch)
	var be *sink.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("Write = %v, want a *BatchError", err)
	}
	for i, d := range batch {
		ie, failed := be.Items[i]
		if want := d.ID != "ok" && d.ID != "unindexed"; failed != want {
			t.Errorf("%s: failed %v (%v), want failed %v", d.ID, failed, ie, want)
		} else if failed && !sink.IsPermanent(ie) {
			t.Errorf("%s: %v is not permanent", d.ID, ie)
		}
	}
	for _, id := range []string{"ok", "unindexed"} {
		if _, err := b.Get(sinktest.Context(t), id); err != nil {
			t.Errorf("Get(%s): %v", id, err)
		}
	}
	// Coerced like Elasticsearch does: numeric strings, "true", a number as a keyword.
	q := sink.Query{Limit: 10, Filters: []sink.Filter{filterEq("seats", int64(12)), filterCmp("rating", "gt", 4.0), filterEq("open", true), filterEq("city", "7"),
		filterEq("since", "2024-05-01T10:00:00Z")}}
	if got := blevePage(t, b, q, nil).IDs; !slices.Equal(got, []string{"ok"}) {
		t.Fatalf("coerced values: got %v, want [ok]", got)
	}
}

func TestBleveRespectsContext(t *testing.T) {
	t.Parallel()
	b := openBleveShops(t)
	ctx, cancel := context.WithCancel(sinktest.Context(t))
	cancel()
	if err := b.Write(ctx, []sink.Doc{{ID: "x", Version: 1, Body: []byte(`{}`)}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Write = %v, want context.Canceled", err)
	}
	if _, err := b.Search(ctx, sink.Query{Limit: 1}); !errors.Is(err, context.Canceled) {
		t.Errorf("Search = %v, want context.Canceled", err)
	}
	if _, err := b.Get(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get = %v, want context.Canceled", err)
	}
}

func TestBleveClosed(t *testing.T) {
	t.Parallel()
	b := openBleveShops(t)
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close again: %v", err)
	}
	if err := b.Write(sinktest.Context(t), []sink.Doc{{ID: "x", Version: 1, Body: []byte(`{}`)}}); err == nil {
		t.Error("Write after Close succeeded")
	}
	if _, err := b.Get(sinktest.Context(t), "a"); err == nil || errors.Is(err, sink.ErrNotFound) {
		t.Errorf("Get after Close = %v, want a failure", err)
	}
	if _, err := b.Search(sinktest.Context(t), sink.Query{Limit: 1}); err == nil || errors.Is(err, sink.ErrBadQuery) {
		t.Errorf("Search after Close = %v, want a failure", err)
	}
}

// BenchmarkBleveWrite writes batches of 100 new documents to a growing
// index: the cost of a batch must not grow with the index.
func BenchmarkBleveWrite(b *testing.B) {
	idx, _ := openBleve(b, bleveShopFields)
	docs := make([]sink.Doc, 100)
	n := 0
	for b.Loop() {
		for i := range docs {
			body := strings.Replace(bleveShops["a"], `"id":"a"`, fmt.Sprintf(`"id":"s%d"`, n), 1)
			docs[i] = sink.Doc{ID: fmt.Sprintf("s%d", n), Version: 1, Body: []byte(body)}
			n++
		}
		if err := idx.Write(sinktest.Context(b), docs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n), "docs")
}

// BenchmarkBleveSearch pages through a filtered, sorted list of 10,000
// documents.
func BenchmarkBleveSearch(b *testing.B) {
	idx, _ := openBleve(b, bleveShopFields)
	var docs []sink.Doc
	for n := range 10_000 {
		body := fmt.Sprintf(`{"name":"Shop %d","about":"pizza number %d","city":"c%d","seats":%d,"open":%v,"location":{"lat":%g,"lon":13.4}}`,
			n, n, n%10, n%500, n%2 == 0, 52+float64(n%1000)/1000)
		docs = append(docs, sink.Doc{ID: fmt.Sprintf("s%05d", n), Version: 1, Body: []byte(body)})
		if len(docs) == 1000 {
			if err := idx.Write(sinktest.Context(b), docs); err != nil {
				b.Fatal(err)
			}
			docs = docs[:0]
		}
	}
	q := sink.Query{Text: "pizza num", Filters: []sink.Filter{filterEq("open", true)}, Near: bleveCentre, Within: 50_000,
		Sort: sortBy("-seats"), Limit: 20}
	for b.Loop() {
		p, err := idx.Search(sinktest.Context(b), q)
		if err != nil || len(p.IDs) == 0 {
			b.Fatal(p.IDs, err)
		}
		q.After = p.After
		if len(p.IDs) < q.Limit {
			q.After = nil // start again
		}
	}
}
