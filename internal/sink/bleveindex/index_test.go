package bleveindex_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
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
	if err := b.Write(testCtx(t), docs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := b.Write(testCtx(t), []sink.Doc{{ID: "g", Version: 2, Deleted: true}}); err != nil {
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

// bleveCases are queries on bleveShops and their answers, in order.
var bleveCases = []struct {
	name string
	q    sink.Query
	want string // ids in order
}{
	{"everything by id", sink.Query{}, "abcdef"},

	{"text: the last word is a prefix", sink.Query{Text: "piz"}, "abd"},
	{"text: every word, the last a prefix", sink.Query{Text: "pizza ro"}, "a"},
	{"text: case does not matter", sink.Query{Text: "SUSHI"}, "e"},
	{"text: stop words are words", sink.Query{Text: "the"}, "acf"},
	{"text: a stop word then a prefix", sink.Query{Text: "the gol"}, "c"},
	{"text: every word in the same field", sink.Query{Text: "dragon sum"}, ""},
	{"text: any searchable field", sink.Query{Text: "fish"}, "e"},
	{"text: punctuation splits words", sink.Query{Text: "dim-sum!"}, "c"},
	{"text: no word matches nothing", sink.Query{Text: "!!!"}, ""},

	{"keyword", sink.Query{Filters: []sink.Filter{filterEq("city", "Berlin")}}, "ace"},
	{"keyword: one of", sink.Query{Filters: []sink.Filter{filterEq("city", "Berlin", "Munich")}}, "acde"},
	{"keyword: exact", sink.Query{Filters: []sink.Filter{filterEq("city", "berlin")}}, ""},
	{"text: the whole value", sink.Query{Filters: []sink.Filter{filterEq("name", "Pizza Roma")}}, "a"},
	{"text: the whole value, case and all", sink.Query{Filters: []sink.Filter{filterEq("name", "pizza roma")}}, ""},
	{"text: not a word of it", sink.Query{Filters: []sink.Filter{filterEq("name", "Pizza")}}, ""},
	{"keyword list holds", sink.Query{Filters: []sink.Filter{filterEq("tags", "vegan")}}, "ae"},
	{"integer list holds", sink.Query{Filters: []sink.Filter{filterEq("sizes", int64(8))}}, "a"},
	{"integer list range", sink.Query{Filters: []sink.Filter{filterCmp("sizes", "gte", int64(10))}}, "d"},
	{"float range", sink.Query{Filters: []sink.Filter{filterCmp("rating", "gte", 4.1), filterCmp("rating", "lt", 4.8)}}, "ac"},
	{"float gt", sink.Query{Filters: []sink.Filter{filterCmp("rating", "gt", 4.5)}}, "e"},
	{"float lte", sink.Query{Filters: []sink.Filter{filterCmp("rating", "lte", 2.0)}}, "d"},
	{"integer one of", sink.Query{Filters: []sink.Filter{filterEq("seats", int64(12), int64(100))}}, "bd"},
	{"integer lt", sink.Query{Filters: []sink.Filter{filterCmp("seats", "lt", int64(40))}}, "be"},
	{"integer gte", sink.Query{Filters: []sink.Filter{filterCmp("seats", "gte", int64(40))}}, "adf"},
	{"integer as a JSON number", sink.Query{Filters: []sink.Filter{filterEq("seats", json.Number("20"))}}, "e"},
	{"boolean true", sink.Query{Filters: []sink.Filter{filterEq("open", true)}}, "acdf"},
	{"boolean false", sink.Query{Filters: []sink.Filter{filterEq("open", false)}}, "be"},
	{"filters all apply", sink.Query{Filters: []sink.Filter{filterEq("city", "Berlin"), filterEq("open", true)}}, "ac"},

	{"date equals a day", sink.Query{Filters: []sink.Filter{filterEq("since", "2024-05-01")}}, "ace"},
	{"date after a day", sink.Query{Filters: []sink.Filter{filterCmp("since", "gt", "2024-05-01")}}, "b"},
	{"date from a day", sink.Query{Filters: []sink.Filter{filterCmp("since", "gte", "2024-05-01")}}, "abce"},
	{"date before a day", sink.Query{Filters: []sink.Filter{filterCmp("since", "lt", "2024-05-01")}}, "d"},
	{"date up to a day", sink.Query{Filters: []sink.Filter{filterCmp("since", "lte", "2024-05-01")}}, "acde"},
	{"date equals a second", sink.Query{Filters: []sink.Filter{filterEq("since", "2024-05-01T13:00:00Z")}}, "a"},
	{"date equals a millisecond", sink.Query{Filters: []sink.Filter{filterEq("since", "2024-05-01T23:59:59.999Z")}}, "e"},
	{"date in another zone", sink.Query{Filters: []sink.Filter{filterEq("since", "2024-05-01T15:00:00+02:00")}}, "a"},
	{"date after a second", sink.Query{Filters: []sink.Filter{filterCmp("since", "gt", "2024-05-01T13:00:00Z")}}, "be"},
	{"date before a second", sink.Query{Filters: []sink.Filter{filterCmp("since", "lt", "2024-05-01T13:00:00Z")}}, "cd"},
	{"date long ago", sink.Query{Filters: []sink.Filter{filterCmp("since", "gte", "1500-01-01")}}, "abcde"},
	{"date far ahead", sink.Query{Filters: []sink.Filter{filterCmp("since", "gt", "2999-01-01")}}, ""},

	{"within", sink.Query{Near: bleveCentre, Within: 4000}, "abc"},
	{"within, wider", sink.Query{Near: bleveCentre, Within: 7000}, "abcf"},
	{"within and a filter", sink.Query{Near: bleveCentre, Within: 7000, Filters: []sink.Filter{filterEq("open", true)}}, "acf"},
	{"near alone keeps all", sink.Query{Near: bleveCentre}, "abcdef"},

	{"integer ascending, missing last", sink.Query{Sort: sortBy("seats")}, "beafdc"},
	{"integer descending, missing last", sink.Query{Sort: sortBy("-seats")}, "dfaebc"},
	{"float ascending", sink.Query{Sort: sortBy("rating")}, "dbcaef"},
	{"float descending", sink.Query{Sort: sortBy("-rating")}, "eacbdf"},
	{"text by its whole value", sink.Query{Sort: sortBy("name")}, "fabecd"},
	{"keyword ascending, ties by id", sink.Query{Sort: sortBy("city")}, "acebdf"},
	{"keyword descending, ties by id", sink.Query{Sort: sortBy("-city")}, "dbacef"},
	{"date descending", sink.Query{Sort: sortBy("-since")}, "beacdf"},
	{"boolean", sink.Query{Sort: sortBy("open")}, "beacdf"},
	{"list ascending by its least", sink.Query{Sort: sortBy("sizes")}, "adbcef"},
	{"list descending by its most", sink.Query{Sort: sortBy("-sizes")}, "dabcef"},
	{"two keys", sink.Query{Sort: sortBy("city", "-seats")}, "aecbdf"},
	{"distance", sink.Query{Near: bleveCentre, Sort: sortBy(sink.SortDistance)}, "abcfed"},
	{"distance descending, missing first (infinitely far)", sink.Query{Near: bleveCentre, Sort: sortBy("-" + sink.SortDistance)}, "defcba"},
	{"distance within, filtered", sink.Query{Near: bleveCentre, Within: 7000, Sort: sortBy("-" + sink.SortDistance), Filters: []sink.Filter{filterEq("open", true)}}, "fca"},
	{"text sorted by a field", sink.Query{Text: "piz", Sort: sortBy("-rating")}, "abd"},
	{"relevance without text ties by id", sink.Query{Sort: sortBy("-" + sink.SortRelevance), Filters: []sink.Filter{filterEq("city", "Berlin")}}, "ace"},
}

func TestBleveSearch(t *testing.T) {
	t.Parallel()
	b := openBleveShops(t)
	for _, c := range bleveCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			q := c.q
			q.Limit = 100
			p, err := b.Search(testCtx(t), q)
			if err != nil {
				t.Fatalf("Search: %v", err)
			}
			if got := strings.Join(p.IDs, ""); got != c.want {
				t.Fatalf("got %q, want %q", got, c.want)
			}
			if (len(p.IDs) == 0) != (p.After == nil) {
				t.Fatalf("%d ids with After %v", len(p.IDs), p.After)
			}
		})
	}
}

// blevePage runs q from after, carrying After through JSON as a cursor does.
func blevePage(t *testing.T, b *bleveindex.Index, q sink.Query, after []any) sink.Page {
	t.Helper()
	if after != nil {
		raw, err := json.Marshal(after)
		if err != nil {
			t.Fatalf("After %v: %v", after, err)
		}
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if err := d.Decode(&q.After); err != nil {
			t.Fatalf("After %s: %v", raw, err)
		}
	}
	p, err := b.Search(testCtx(t), q)
	if err != nil {
		t.Fatalf("Search(After %v): %v", q.After, err)
	}
	return p
}

func TestBlevePaging(t *testing.T) {
	t.Parallel()
	b := openBleveShops(t)
	cases := bleveCases
	cases = append(cases, struct {
		name string
		q    sink.Query
		want string
	}{"relevance", sink.Query{Text: "pizz", Sort: sortBy("-" + sink.SortRelevance)}, ""})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			all := c.q
			all.Limit = 100
			want := blevePage(t, b, all, nil).IDs
			for _, limit := range []int{1, 2, 4} {
				q := c.q
				q.Limit = limit
				var got []string
				var after []any
				for n := 0; ; n++ {
					if n > len(want)+1 {
						t.Fatalf("limit %d: paging does not end: %v", limit, got)
					}
					p := blevePage(t, b, q, after)
					got = append(got, p.IDs...)
					if len(p.IDs) < limit {
						break
					}
					after = p.After
				}
				if !slices.Equal(got, want) {
					t.Fatalf("limit %d: paged %v, want %v", limit, got, want)
				}
			}
		})
	}
}

func TestBleveRelevance(t *testing.T) {
	t.Parallel()
	b := openBleveShops(t)
	// d is "pizza" in its short name and twice in about; a once in each.
	q := sink.Query{Text: "pizza", Limit: 10, Sort: sortBy("-" + sink.SortRelevance)}
	if p := blevePage(t, b, q, nil); !slices.Equal(p.IDs, []string{"d", "a"}) {
		t.Fatalf("most relevant first: got %v, want [d a]", p.IDs)
	}
	q.Sort = sortBy(sink.SortRelevance)
	if p := blevePage(t, b, q, nil); !slices.Equal(p.IDs, []string{"a", "d"}) {
		t.Fatalf("least relevant first: got %v, want [a d]", p.IDs)
	}
	// A filter narrows the matches without changing their order.
	q = sink.Query{Text: "piz", Limit: 10, Sort: sortBy("-" + sink.SortRelevance)}
	all := blevePage(t, b, q, nil).IDs
	q.Filters = []sink.Filter{filterEq("open", true)}
	if got, want := blevePage(t, b, q, nil).IDs, slices.DeleteFunc(slices.Clone(all), func(id string) bool { return id == "b" }); len(all) != 3 || !slices.Equal(got, want) {
		t.Fatalf("filtered: got %v, want %v without b", got, all)
	}
}

func TestBleveTombstonesNeverListed(t *testing.T) {
	t.Parallel()
	b := openBleveShops(t)
	for _, c := range bleveCases {
		q := c.q
		q.Limit = 100
		if p := blevePage(t, b, q, nil); slices.Contains(p.IDs, "g") {
			t.Fatalf("%s lists the deleted g: %v", c.name, p.IDs)
		}
	}
	if got, err := b.Get(testCtx(t), "g"); err != nil || !got.Deleted || got.Version != 2 {
		t.Fatalf("Get(g) = %+v, %v; want the tombstone at version 2", got, err)
	}
	// A stale write leaves it deleted; a newer one lists it again.
	write := func(v int64) {
		t.Helper()
		if err := b.Write(testCtx(t), []sink.Doc{{ID: "g", Version: v, Body: []byte(`{"name":"Pizza Ghost"}`)}}); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	write(1)
	if p := blevePage(t, b, sink.Query{Text: "ghost", Limit: 10}, nil); len(p.IDs) != 0 {
		t.Fatalf("a stale write resurrected g: %v", p.IDs)
	}
	write(3)
	if p := blevePage(t, b, sink.Query{Text: "ghost", Limit: 10}, nil); !slices.Equal(p.IDs, []string{"g"}) {
		t.Fatalf("re-created g: got %v", p.IDs)
	}
}

func TestBleveGeoList(t *testing.T) {
	t.Parallel()
	b, _ := openBleve(t, []projections.Field{{Name: "branches", Type: projections.GeoPoint, Array: true}})
	docs := []sink.Doc{
		// far first, then near: every point counts, not the first
		{ID: "two", Version: 1, Body: []byte(`{"branches":[{"lat":52.60,"lon":13.40},{"lat":52.521,"lon":13.40}]}`)},
		{ID: "mid", Version: 1, Body: []byte(`{"branches":[{"lat":52.55,"lon":13.40}]}`)},
		{ID: "one", Version: 1, Body: []byte(`{"branches":{"lat":52.53,"lon":13.40}}`)},
		{ID: "pair", Version: 1, Body: []byte(`{"branches":[13.40,52.54]}`)}, // [lon, lat]
		{ID: "none", Version: 1, Body: []byte(`{"branches":[]}`)},
	}
	if err := b.Write(testCtx(t), docs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	for _, c := range []struct {
		q    sink.Query
		want []string
	}{
		{sink.Query{Near: bleveCentre, Within: 1000}, []string{"two"}},
		{sink.Query{Near: bleveCentre, Within: 2500}, []string{"one", "pair", "two"}},
		{sink.Query{Near: bleveCentre, Sort: sortBy(sink.SortDistance)}, []string{"two", "one", "pair", "mid", "none"}},
		{sink.Query{Near: bleveCentre, Sort: sortBy("-" + sink.SortDistance)}, []string{"none", "two", "mid", "pair", "one"}},
	} {
		c.q.Limit = 10
		if got := blevePage(t, b, c.q, nil).IDs; !slices.Equal(got, c.want) {
			t.Errorf("%+v: got %v, want %v", c.q, got, c.want)
		}
	}
}

func TestBleveLongTextValues(t *testing.T) {
	t.Parallel()
	b, _ := openBleve(t, bleveShopFields)
	long := strings.Repeat("Long ", 52) // 260 characters: its keyword copy is left out, as ignore_above does
	docs := []sink.Doc{
		{ID: "long", Version: 1, Body: []byte(`{"name":"` + long + `"}`)},
		{ID: "short", Version: 1, Body: []byte(`{"name":"Zed"}`)},
	}
	if err := b.Write(testCtx(t), docs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	for _, c := range []struct {
		q    sink.Query
		want []string
	}{
		{sink.Query{Sort: sortBy("name")}, []string{"short", "long"}},
		{sink.Query{Sort: sortBy("-name")}, []string{"short", "long"}},
		{sink.Query{Filters: []sink.Filter{filterEq("name", long)}}, nil},
		{sink.Query{Text: "long lo"}, []string{"long"}},
	} {
		c.q.Limit = 10
		if got := blevePage(t, b, c.q, nil).IDs; !slices.Equal(got, c.want) && len(got)+len(c.want) > 0 {
			t.Errorf("%+v: got %v, want %v", c.q, got, c.want)
		}
	}
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
	err := b.Write(testCtx(t), batch)
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
		if _, err := b.Get(testCtx(t), id); err != nil {
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

func TestBleveBadQueries(t *testing.T) {
	t.Parallel()
	b := openBleveShops(t)
	p := blevePage(t, b, sink.Query{Limit: 2, Sort: sortBy("-rating")}, nil)
	sorted := func(after ...any) sink.Query { return sink.Query{Limit: 2, Sort: sortBy("-rating"), After: after} }
	for name, q := range map[string]sink.Query{
		"no limit":                  {},
		"unknown field":             {Limit: 1, Filters: []sink.Filter{filterEq("colour", "red")}},
		"not filterable":            {Limit: 1, Filters: []sink.Filter{filterEq("about", "dim sum")}},
		"geo filter":                {Limit: 1, Filters: []sink.Filter{filterEq("location", "52,13")}},
		"no value":                  {Limit: 1, Filters: []sink.Filter{filterEq("city")}},
		"range on a keyword":        {Limit: 1, Filters: []sink.Filter{filterCmp("city", "gt", "B")}},
		"unknown operator":          {Limit: 1, Filters: []sink.Filter{filterCmp("seats", "ne", int64(1))}},
		"wrong type":                {Limit: 1, Filters: []sink.Filter{filterEq("seats", "12")}},
		"not a date":                {Limit: 1, Filters: []sink.Filter{filterEq("since", "May 1st")}},
		"not sortable":              {Limit: 1, Sort: sortBy("about")},
		"distance without near":     {Limit: 1, Sort: sortBy(sink.SortDistance)},
		"within without near":       {Limit: 1, Within: 100},
		"near off Earth":            {Limit: 1, Near: &sink.LatLon{Lat: 91}},
		"After too short":           sorted(p.After[0]),
		"After too long":            sorted(append(slices.Clone(p.After), "x")...),
		"After not a string":        sorted(json.Number("4.5"), p.After[1]),
		"After not base64":          sorted("!!", p.After[1]),
		"After not a number":        sorted("eA", p.After[1]),
		"After of another sort":     {Limit: 2, Sort: sortBy("-" + sink.SortRelevance), Text: "pizza", After: p.After},
		"After id not UTF-8":        sorted(p.After[0], "_w"),
		"After of a distance, junk": {Limit: 2, Near: bleveCentre, Sort: sortBy(sink.SortDistance), After: []any{"eA", p.After[1]}},
	} {
		if _, err := b.Search(testCtx(t), q); !errors.Is(err, sink.ErrBadQuery) {
			t.Errorf("%s: Search = %v, want ErrBadQuery", name, err)
		}
	}
}

func TestBleveRespectsContext(t *testing.T) {
	t.Parallel()
	b := openBleveShops(t)
	ctx, cancel := context.WithCancel(testCtx(t))
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

func TestBlevePersists(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "shops")
	var logs bytes.Buffer
	o := bleveindex.Options{Name: "shops", Fields: bleveShopFields, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	b, err := bleveindex.Open(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	built := time.UnixMilli(1_700_000_000_123)
	if err := b.Write(testCtx(t), []sink.Doc{
		{ID: "a", Version: 7, Body: []byte(bleveShops["a"]), BuiltAt: built},
		{ID: "gone", Version: 9, Deleted: true},
	}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if b, err = bleveindex.Open(dir, o); err != nil {
		t.Fatalf("Open again: %v", err)
	}
	defer b.Close()
	got, err := b.Get(testCtx(t), "a")
	if err != nil || got.Version != 7 || !got.BuiltAt.Equal(built) || !bytes.Equal(got.Body, []byte(bleveShops["a"])) {
		t.Fatalf("Get(a) = %+v, %v", got, err)
	}
	if got, err := b.Get(testCtx(t), "gone"); err != nil || !got.Deleted || got.Version != 9 {
		t.Fatalf("Get(gone) = %+v, %v", got, err)
	}
	if p := blevePage(t, b, sink.Query{Text: "roma", Limit: 5}, nil); !slices.Equal(p.IDs, []string{"a"}) {
		t.Fatalf("search after reopening: %v", p.IDs)
	}
	if strings.Contains(logs.String(), "re-index") {
		t.Fatalf("reopened with the same fields, but: %s", logs.String())
	}
}

func TestBleveReindexesWhenFieldsChange(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "shops")
	before := []projections.Field{
		{Name: "name", Type: projections.Text, Search: true},
		{Name: "city", Type: projections.Keyword, Filter: true},
	}
	b, err := bleveindex.Open(dir, bleveindex.Options{Name: "shops", Fields: before})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	var docs []sink.Doc
	for id, body := range bleveShops {
		docs = append(docs, sink.Doc{ID: id, Version: 5, Body: []byte(body)})
	}
	docs = append(docs, sink.Doc{ID: "gone", Version: 5, Deleted: true})
	if err := b.Write(testCtx(t), docs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// seats becomes sortable, city an integer that no shop's city fits, and
	// name stops being searchable.
	after := []projections.Field{
		{Name: "name", Type: projections.Text, Filter: true},
		{Name: "city", Type: projections.Integer, Filter: true},
		{Name: "seats", Type: projections.Integer, Filter: true, Sort: true},
	}
	var logs bytes.Buffer
	b, err = bleveindex.Open(dir, bleveindex.Options{Name: "shops", Fields: after, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("Open with other fields: %v", err)
	}
	defer b.Close()
	if !strings.Contains(logs.String(), "re-indexed") || !strings.Contains(logs.String(), "docs=7") {
		t.Errorf("logs do not tell of the re-index: %s", logs.String())
	}
	for _, c := range []struct {
		q    sink.Query
		want string
	}{
		{sink.Query{Sort: sortBy("seats")}, "beafdc"},
		{sink.Query{Filters: []sink.Filter{filterEq("name", "Sushi Bar")}}, "e"},
		{sink.Query{Filters: []sink.Filter{filterCmp("city", "gte", int64(0))}}, ""},
	} {
		c.q.Limit = 10
		if got := strings.Join(blevePage(t, b, c.q, nil).IDs, ""); got != c.want {
			t.Errorf("%+v: got %q, want %q", c.q, got, c.want)
		}
	}
	if _, err := b.Search(testCtx(t), sink.Query{Text: "pizza", Limit: 10}); !errors.Is(err, sink.ErrBadQuery) {
		t.Errorf("text search with no searchable field: %v, want ErrBadQuery", err)
	}
	// The guard's versions came along.
	if err := b.Write(testCtx(t), []sink.Doc{{ID: "gone", Version: 4, Body: []byte(`{}`)}, {ID: "a", Version: 4, Body: []byte(`{}`)}}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if got, err := b.Get(testCtx(t), "gone"); err != nil || !got.Deleted || got.Version != 5 {
		t.Errorf("Get(gone) = %+v, %v; want the tombstone at 5", got, err)
	}
	if got, err := b.Get(testCtx(t), "a"); err != nil || got.Version != 5 || !bytes.Equal(got.Body, []byte(bleveShops["a"])) {
		t.Errorf("Get(a) = %+v, %v; want version 5 as written", got, err)
	}
	for _, leftover := range []string{dir + ".old", dir + ".reindex"} {
		if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s stayed behind: %v", leftover, err)
		}
	}
}

func TestBleveRecoversAnInterruptedSwap(t *testing.T) {
	t.Parallel()
	b, dir := openBleve(t, bleveShopFields)
	if err := b.Write(testCtx(t), []sink.Doc{{ID: "a", Version: 1, Body: []byte(bleveShops["a"])}}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Stopped after moving the old index away, with half a new one beside it.
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir+".reindex", 0o750); err != nil {
		t.Fatal(err)
	}
	b, err := bleveindex.Open(dir, bleveindex.Options{Name: "shops", Fields: bleveShopFields})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer b.Close()
	if p := blevePage(t, b, sink.Query{Text: "roma", Limit: 5}, nil); !slices.Equal(p.IDs, []string{"a"}) {
		t.Fatalf("after recovery: %v", p.IDs)
	}
	for _, leftover := range []string{dir + ".old", dir + ".reindex"} {
		if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s stayed behind: %v", leftover, err)
		}
	}
}

func TestBleveRefusesADirectoryOfSomethingElse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := bleveindex.Open(dir, bleveindex.Options{Name: "shops", Fields: bleveShopFields}); err == nil || !strings.Contains(err.Error(), "no bleve index") {
		t.Fatalf("Open = %v, want a refusal", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Fatalf("the directory's file: %v", err)
	}
}

func TestBleveOneProcessAtATime(t *testing.T) {
	t.Parallel()
	first, dir := openBleve(t, bleveShopFields)
	b, err := bleveindex.Open(dir, bleveindex.Options{Name: "shops", Fields: bleveShopFields})
	if err == nil {
		b.Close()
		t.Fatal("a second Open of the same directory succeeded")
	}
	if !strings.Contains(err.Error(), "another process") {
		t.Fatalf("Open = %v, want it to say another process holds the index", err)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	b, err = bleveindex.Open(dir, bleveindex.Options{Name: "shops", Fields: bleveShopFields})
	if err != nil {
		t.Fatalf("Open once the first closed: %v", err)
	}
	b.Close()
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
	if err := b.Write(testCtx(t), []sink.Doc{{ID: "x", Version: 1, Body: []byte(`{}`)}}); err == nil {
		t.Error("Write after Close succeeded")
	}
	if _, err := b.Get(testCtx(t), "a"); err == nil || errors.Is(err, sink.ErrNotFound) {
		t.Errorf("Get after Close = %v, want a failure", err)
	}
	if _, err := b.Search(testCtx(t), sink.Query{Limit: 1}); err == nil || errors.Is(err, sink.ErrBadQuery) {
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
		if err := idx.Write(testCtx(b), docs); err != nil {
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
			if err := idx.Write(testCtx(b), docs); err != nil {
				b.Fatal(err)
			}
			docs = docs[:0]
		}
	}
	q := sink.Query{Text: "pizza num", Filters: []sink.Filter{filterEq("open", true)}, Near: bleveCentre, Within: 50_000,
		Sort: sortBy("-seats"), Limit: 20}
	for b.Loop() {
		p, err := idx.Search(testCtx(b), q)
		if err != nil || len(p.IDs) == 0 {
			b.Fatal(p.IDs, err)
		}
		q.After = p.After
		if len(p.IDs) < q.Limit {
			q.After = nil // start again
		}
	}
}
