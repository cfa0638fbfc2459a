package sinktest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
)

// SearchStore is a search index under test: the write guard, Search, and
// Refresh, which makes every write so far searchable (a no-op for engines
// that are searchable at once).
type SearchStore interface {
	Store
	sink.Searcher
	Refresh(ctx context.Context) error
}

// SearchDefinition is the projection the search suite indexes: one field of
// every kind the query API filters, sorts and searches on.
const SearchDefinition = `name: places
triggers: [{subject: places.*}]
sources: [{name: p, url: "http://api/places/{id}"}]
fields:
  - {name: name, from: p.name, type: text, search: true, filter: true, sort: true}
  - {name: about, from: p.about, type: text, search: true}
  - {name: cuisine, from: p.cuisine, type: keyword, filter: true, sort: true}
  - {name: tags, from: p.tags, type: keyword, array: true, filter: true}
  - {name: rating, from: p.rating, type: float, filter: true, sort: true}
  - {name: seats, from: p.seats, type: integer, filter: true, sort: true}
  - {name: serial, from: p.serial, type: integer, filter: true, sort: true}
  - {name: open, from: p.open, type: boolean, filter: true}
  - {name: opened, from: p.opened, type: date, filter: true, sort: true}
  - {name: location, from: p.location, type: geo_point}
redis: {key: "places:{id}"}
elasticsearch: {alias: places}
`

// place is one document of the suite, and the suite's model of it.
type place struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	About   string    `json:"about"`
	Cuisine string    `json:"cuisine"`
	Tags    []string  `json:"tags"`
	Rating  float64   `json:"rating"`
	Seats   *int64    `json:"seats"`  // nil: missing, sorted last
	Serial  int64     `json:"serial"` // beyond 2^53, where a float64 is not exact
	Open    bool      `json:"open"`
	Opened  string    `json:"opened"`
	Loc     *geoPoint `json:"location"` // nil: no location, infinitely far
	deleted bool      // a tombstone
}

type geoPoint struct {
	Lat float64 `json:"lat"`
	Lon float64 `json:"lon"`
}

var (
	nameParts = []string{"Pizza Roma", "Pizzeria Napoli", "The Golden Dragon", "Sushi Bar", "Curry House", "Burger Barn", "Taco Stand", "Pasta Place"}
	cuisines  = []string{"italian", "italian", "chinese", "japanese", "indian", "american", "mexican", "italian"}
	abouts    = []string{"wood fired oven", "family run since 1970", "dim sum on sundays", "fresh fish daily", "spicy and mild", "smash burgers", "street food", "homemade noodles"}
	allTags   = []string{"vegan", "terrace", "delivery", "late"}
)

// places are the suite's documents: 40 places around Berlin (52.52, 13.40),
// with every sort value distinct where the suite sorts on it, and no place
// near the edge of the distances it filters on.
func places() []*place {
	var out []*place
	for i := range 40 {
		k := i % len(nameParts)
		p := &place{
			ID:      fmt.Sprintf("p%02d", i),
			Name:    fmt.Sprintf("%s %c", nameParts[k], 'A'+rune(i/len(nameParts))),
			About:   abouts[(i*3)%len(abouts)],
			Cuisine: cuisines[k],
			Rating:  float64((i*7)%40)/10 + 1, // 1.0 .. 4.9, all distinct
			Open:    i%3 != 0,
			Serial:  1<<60 + int64((i*17)%40), // distinct, apart by less than a float64's precision there
			Opened:  fmt.Sprintf("20%02d-%02d-%02d", 10+i%15, 1+i%12, 1+i%28),
			// a spiral out of the centre: distances distinct, from ~0.3 to ~12 km
			Loc: &geoPoint{Lat: 52.52 + float64(i+1)*0.0027*math.Cos(float64(i)), Lon: 13.40 + float64(i+1)*0.0044*math.Sin(float64(i))},
		}
		if i%10 == 9 {
			p.Loc = nil
		}
		if i%5 != 4 {
			seats := int64(10 + (i*13)%97)
			p.Seats = &seats
		}
		for j, tag := range allTags {
			if (i>>j)&1 == 1 {
				p.Tags = append(p.Tags, tag)
			}
		}
		if p.Tags == nil {
			p.Tags = []string{}
		}
		out = append(out, p)
	}
	return out
}

func (p *place) doc(v int64) sink.Doc {
	if p.deleted {
		return sink.Doc{ID: p.ID, Version: v, Deleted: true}
	}
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return sink.Doc{ID: p.ID, Version: v, Body: b}
}

// matches is the model of Query.Text (see testenv.TextMatches).
func (p *place) matches(text string) bool { return testenv.TextMatches(text, p.Name, p.About) }

// distance from the centre in metres, as both engines compute it (the
// suite keeps places away from the edges); a place without a location is
// infinitely far.
func (p *place) distance() float64 {
	if p.Loc == nil {
		return math.Inf(1)
	}
	return testenv.Distance(centre.Lat, centre.Lon, p.Loc.Lat, p.Loc.Lon)
}

var centre = geoPoint{Lat: 52.52, Lon: 13.40}

// searchCase is one query and the model's answer.
type searchCase struct {
	name string
	q    sink.Query
	keep func(p *place) bool
	// order sorts the kept places; nil: by id.
	order func(a, b *place) int
	// unordered: compare as sets (relevance scores differ between engines).
	unordered bool
}

func byID(a, b *place) int { return strings.Compare(a.ID, b.ID) }

// then orders by c, then by id.
func then(c func(a, b *place) int) func(a, b *place) int {
	return func(a, b *place) int {
		if r := c(a, b); r != 0 {
			return r
		}
		return byID(a, b)
	}
}

// seatsOrder sorts by seats, missing last in either direction.
func seatsOrder(desc bool) func(a, b *place) int {
	return func(a, b *place) int {
		switch {
		case a.Seats == nil && b.Seats == nil:
			return 0
		case a.Seats == nil:
			return 1
		case b.Seats == nil:
			return -1
		case desc:
			return cmp.Compare(*b.Seats, *a.Seats)
		}
		return cmp.Compare(*a.Seats, *b.Seats)
	}
}

func searchCases() []searchCase {
	all := func(p *place) bool { return true }
	near := &sink.LatLon{Lat: centre.Lat, Lon: centre.Lon}
	return []searchCase{
		{name: "everything by id", q: sink.Query{}, keep: all},
		{name: "keyword equals one of", q: sink.Query{Filters: []sink.Filter{{Field: "cuisine", Values: []any{"chinese", "indian"}}}},
			keep: func(p *place) bool { return p.Cuisine == "chinese" || p.Cuisine == "indian" }},
		{name: "text field filter compares the whole value", q: sink.Query{Filters: []sink.Filter{{Field: "name", Values: []any{"Pizza Roma A"}}}},
			keep: func(p *place) bool { return p.Name == "Pizza Roma A" }},
		{name: "array holds a value", q: sink.Query{Filters: []sink.Filter{{Field: "tags", Values: []any{"vegan"}}}},
			keep: func(p *place) bool { return slices.Contains(p.Tags, "vegan") }},
		{name: "filters all apply", q: sink.Query{Filters: []sink.Filter{
			{Field: "tags", Values: []any{"terrace"}}, {Field: "cuisine", Values: []any{"italian"}}, {Field: "open", Values: []any{true}}}},
			keep: func(p *place) bool { return slices.Contains(p.Tags, "terrace") && p.Cuisine == "italian" && p.Open }},
		{name: "boolean false", q: sink.Query{Filters: []sink.Filter{{Field: "open", Values: []any{false}}}},
			keep: func(p *place) bool { return !p.Open }},
		{name: "float range", q: sink.Query{Filters: []sink.Filter{{Field: "rating", Op: "gte", Values: []any{3.5}}, {Field: "rating", Op: "lt", Values: []any{4.5}}}},
			keep: func(p *place) bool { return p.Rating >= 3.5 && p.Rating < 4.5 }},
		{name: "integer range", q: sink.Query{Filters: []sink.Filter{{Field: "seats", Op: "gt", Values: []any{int64(60)}}}},
			keep: func(p *place) bool { return p.Seats != nil && *p.Seats > 60 }},
		{name: "integer equals", q: sink.Query{Filters: []sink.Filter{{Field: "seats", Values: []any{int64(23), int64(49)}}}},
			keep: func(p *place) bool { return p.Seats != nil && (*p.Seats == 23 || *p.Seats == 49) }},
		{name: "integer beyond 2^53: range", q: sink.Query{Filters: []sink.Filter{{Field: "serial", Op: "gte", Values: []any{int64(1<<60 + 20)}}, {Field: "serial", Op: "lt", Values: []any{int64(1<<60 + 30)}}}},
			keep: func(p *place) bool { return p.Serial >= 1<<60+20 && p.Serial < 1<<60+30 }},
		{name: "integer beyond 2^53: equals", q: sink.Query{Filters: []sink.Filter{{Field: "serial", Values: []any{int64(1<<60 + 7)}}}},
			keep: func(p *place) bool { return p.Serial == 1<<60+7 }},
		{name: "integer beyond 2^53: sort descending", q: sink.Query{Sort: []sink.SortKey{{Field: "serial", Desc: true}}}, keep: all,
			order: then(func(a, b *place) int { return cmp.Compare(b.Serial, a.Serial) })},
		{name: "date range", q: sink.Query{Filters: []sink.Filter{{Field: "opened", Op: "gte", Values: []any{"2015-01-01"}}, {Field: "opened", Op: "lte", Values: []any{"2020-06-30T00:00:00Z"}}}},
			keep: func(p *place) bool { return p.Opened >= "2015-01-01" && p.Opened <= "2020-06-30" }},
		{name: "date equals", q: sink.Query{Filters: []sink.Filter{{Field: "opened", Values: []any{"2013-04-04"}}}},
			keep: func(p *place) bool { return p.Opened == "2013-04-04" }},
		{name: "sort by float descending", q: sink.Query{Sort: []sink.SortKey{{Field: "rating", Desc: true}}}, keep: all,
			order: then(func(a, b *place) int { return cmp.Compare(b.Rating, a.Rating) })},
		{name: "sort by integer, missing last", q: sink.Query{Sort: []sink.SortKey{{Field: "seats"}}}, keep: all, order: then(seatsOrder(false))},
		{name: "sort by integer descending, missing last", q: sink.Query{Sort: []sink.SortKey{{Field: "seats", Desc: true}}}, keep: all, order: then(seatsOrder(true))},
		{name: "sort by text field's whole value", q: sink.Query{Sort: []sink.SortKey{{Field: "name"}}}, keep: all,
			order: then(func(a, b *place) int { return strings.Compare(a.Name, b.Name) })},
		{name: "sort by keyword then date descending", q: sink.Query{Sort: []sink.SortKey{{Field: "cuisine"}, {Field: "opened", Desc: true}}}, keep: all,
			order: then(func(a, b *place) int {
				return cmp.Or(strings.Compare(a.Cuisine, b.Cuisine), strings.Compare(b.Opened, a.Opened))
			})},
		{name: "text: a whole word", q: sink.Query{Text: "roma"}, keep: func(p *place) bool { return p.matches("roma") }},
		{name: "text: the last word is a prefix", q: sink.Query{Text: "piz"}, keep: func(p *place) bool { return p.matches("piz") }},
		{name: "text: every word must match", q: sink.Query{Text: "pizzeria na"}, keep: func(p *place) bool { return p.matches("pizzeria na") }},
		{name: "text: case does not matter", q: sink.Query{Text: "SUSHI"}, keep: func(p *place) bool { return p.matches("sushi") }},
		{name: "text: no stop words dropped", q: sink.Query{Text: "the gold"}, keep: func(p *place) bool { return p.matches("the gold") }},
		{name: "text: every searchable field", q: sink.Query{Text: "fresh fi"}, keep: func(p *place) bool { return p.matches("fresh fi") }},
		{name: "text: nothing matches", q: sink.Query{Text: "zebra"}, keep: func(p *place) bool { return false }},
		{name: "text sorted by relevance, with a filter", q: sink.Query{Text: "pizz", Sort: []sink.SortKey{{Field: sink.SortRelevance, Desc: true}},
			Filters: []sink.Filter{{Field: "open", Values: []any{true}}}},
			keep: func(p *place) bool { return p.matches("pizz") && p.Open }, unordered: true},
		{name: "within a distance", q: sink.Query{Near: near, Within: 5000}, keep: func(p *place) bool { return p.distance() <= 5000 }},
		{name: "sort by distance, no location last", q: sink.Query{Near: near, Sort: []sink.SortKey{{Field: sink.SortDistance}}}, keep: all,
			order: then(func(a, b *place) int { return cmp.Compare(a.distance(), b.distance()) })},
		{name: "farthest first, no location first (infinitely far)", q: sink.Query{Near: near, Sort: []sink.SortKey{{Field: sink.SortDistance, Desc: true}}}, keep: all,
			order: then(func(a, b *place) int { return cmp.Compare(b.distance(), a.distance()) })},
		{name: "within a distance, farthest first, filtered", q: sink.Query{Near: near, Within: 8000, Sort: []sink.SortKey{{Field: sink.SortDistance, Desc: true}},
			Filters: []sink.Filter{{Field: "cuisine", Values: []any{"italian"}}}},
			keep:  func(p *place) bool { return p.distance() <= 8000 && p.Cuisine == "italian" },
			order: then(func(a, b *place) int { return cmp.Compare(b.distance(), a.distance()) })},
	}
}

// expect is the model's answer to c over ps.
func (c searchCase) expect(ps []*place) []string {
	var kept []*place
	for _, p := range ps {
		if !p.deleted && c.keep(p) {
			kept = append(kept, p)
		}
	}
	order := c.order
	if order == nil {
		order = byID
	}
	slices.SortStableFunc(kept, order)
	ids := make([]string, len(kept))
	for i, p := range kept {
		ids[i] = p.ID
	}
	return ids
}

// RunSearch runs the search suite: the list and search behaviour the query
// API relies on, the same on every engine. open returns a new, empty index
// for def that is cleaned up when its test ends.
func RunSearch(t *testing.T, open func(t *testing.T, def *projections.Definition) SearchStore) {
	def, err := projections.Parse("places.yaml", []byte(SearchDefinition), projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ps := places()
	s := open(t, def)
	docs := make([]sink.Doc, len(ps))
	for i, p := range ps {
		docs[i] = p.doc(10)
	}
	write(t, s, docs...)
	refresh(t, s)

	// The radius cases are only fair when no place is near their edge.
	for _, p := range ps {
		for _, r := range []float64{5000, 8000} {
			if d := p.distance(); math.Abs(d-r) < 50 {
				t.Fatalf("suite data: %s is %.0f m from the centre, too near the %g m edge", p.ID, d, r)
			}
		}
	}

	for _, c := range searchCases() {
		t.Run(c.name, func(t *testing.T) {
			want := c.expect(ps)
			q := c.q
			q.Limit = 100
			got := search(t, s, q).IDs
			if c.unordered {
				slices.Sort(got)
				slices.Sort(want)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("got  %v\nwant %v", got, want)
			}
			// Paging by After through a JSON round trip, as a cursor
			// carries it, gives the same ids, each once.
			if !c.unordered {
				if paged := pageAll(t, s, c.q, 7); !slices.Equal(paged, want) {
					t.Fatalf("paged by 7: got %v\nwant %v", paged, want)
				}
			}
		})
	}

	t.Run("limit", func(t *testing.T) {
		if got := search(t, s, sink.Query{Limit: 3}).IDs; !slices.Equal(got, []string{"p00", "p01", "p02"}) {
			t.Fatalf("got %v, want p00 p01 p02", got)
		}
	})
	t.Run("empty page has no After", func(t *testing.T) {
		p := search(t, s, sink.Query{Text: "zebra", Limit: 5})
		if len(p.IDs) != 0 || p.After != nil {
			t.Fatalf("got %+v, want no ids and no After", p)
		}
	})

	t.Run("filters at the edges of each type", func(t *testing.T) { runSearchEdges(t, open, def) })

	// Changes: these subtests run in order on the same index.
	t.Run("an update moves a document between filters", func(t *testing.T) {
		p := ps[2] // chinese
		p.Cuisine = "korean"
		write(t, s, p.doc(11))
		refresh(t, s)
		if got := search(t, s, sink.Query{Limit: 100, Filters: []sink.Filter{{Field: "cuisine", Values: []any{"korean"}}}}).IDs; !slices.Equal(got, []string{p.ID}) {
			t.Fatalf("korean: got %v, want [%s]", got, p.ID)
		}
		if got := search(t, s, sink.Query{Limit: 100, Filters: []sink.Filter{{Field: "cuisine", Values: []any{"chinese"}}}}).IDs; slices.Contains(got, p.ID) {
			t.Fatalf("chinese still lists %s: %v", p.ID, got)
		}
	})
	t.Run("a stale write does not change results", func(t *testing.T) {
		stale := *ps[2]
		stale.Cuisine = "chinese"
		write(t, s, stale.doc(5))
		refresh(t, s)
		if got := search(t, s, sink.Query{Limit: 100, Filters: []sink.Filter{{Field: "cuisine", Values: []any{"korean"}}}}).IDs; !slices.Equal(got, []string{ps[2].ID}) {
			t.Fatalf("korean after a stale write: got %v, want [%s]", got, ps[2].ID)
		}
	})
	t.Run("tombstones are never listed", func(t *testing.T) {
		for _, i := range []int{0, 7, 8} {
			ps[i].deleted = true
			write(t, s, ps[i].doc(12))
		}
		refresh(t, s)
		for _, c := range searchCases() {
			q := c.q
			q.Limit = 100
			got := search(t, s, q).IDs
			for _, i := range []int{0, 7, 8} {
				if slices.Contains(got, ps[i].ID) {
					t.Fatalf("%s lists deleted %s: %v", c.name, ps[i].ID, got)
				}
			}
			if want := c.expect(ps); !c.unordered && !slices.Equal(got, want) {
				t.Fatalf("%s: got %v\nwant %v", c.name, got, want)
			}
		}
	})
	t.Run("a re-created document is listed again", func(t *testing.T) {
		ps[7].deleted = false
		write(t, s, ps[7].doc(13))
		refresh(t, s)
		want := searchCases()[0].expect(ps)
		if got := search(t, s, sink.Query{Limit: 100}).IDs; !slices.Equal(got, want) {
			t.Fatalf("got %v\nwant %v", got, want)
		}
	})
}

// pageAll pages through q by limit, carrying After through JSON.
func pageAll(t *testing.T, s SearchStore, q sink.Query, limit int) []string {
	t.Helper()
	var ids []string
	q.Limit = limit
	for range 100 {
		p := search(t, s, q)
		ids = append(ids, p.IDs...)
		if len(p.IDs) < limit {
			return ids
		}
		raw, err := json.Marshal(p.After)
		if err != nil {
			t.Fatalf("After %v does not marshal: %v", p.After, err)
		}
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		q.After = nil
		if err := d.Decode(&q.After); err != nil {
			t.Fatalf("After %s does not unmarshal: %v", raw, err)
		}
	}
	t.Fatal("paging did not end after 100 pages")
	return nil
}

func search(t *testing.T, s SearchStore, q sink.Query) sink.Page {
	t.Helper()
	p, err := s.Search(ctx(t), q)
	if err != nil {
		t.Fatalf("Search(%+v): %v", q, err)
	}
	return p
}

func refresh(t *testing.T, s SearchStore) {
	t.Helper()
	if err := s.Refresh(ctx(t)); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
}
