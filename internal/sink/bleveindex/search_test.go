package bleveindex_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/bleveindex"
	"github.com/readside/readside/internal/sink/sinktest"
	"github.com/readside/readside/projections"
)

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
			p, err := b.Search(sinktest.Context(t), q)
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
	p, err := b.Search(sinktest.Context(t), q)
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
	if got, err := b.Get(sinktest.Context(t), "g"); err != nil || !got.Deleted || got.Version != 2 {
		t.Fatalf("Get(g) = %+v, %v; want the tombstone at version 2", got, err)
	}
	// A stale write leaves it deleted; a newer one lists it again.
	write := func(v int64) {
		t.Helper()
		if err := b.Write(sinktest.Context(t), []sink.Doc{{ID: "g", Version: v, Body: []byte(`{"name":"Pizza Ghost"}`)}}); err != nil {
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
	if err := b.Write(sinktest.Context(t), docs); err != nil {
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
	if err := b.Write(sinktest.Context(t), docs); err != nil {
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
		if _, err := b.Search(sinktest.Context(t), q); !errors.Is(err, sink.ErrBadQuery) {
			t.Errorf("%s: Search = %v, want ErrBadQuery", name, err)
		}
	}
}
