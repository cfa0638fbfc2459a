package query_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/readside/readside/internal/assemble"
	"github.com/readside/readside/internal/query"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/elasticindex"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
)

// richDefinition is the shops with a field of every type the API treats
// differently: text that is searched, sorted and filtered; keywords; numbers
// and dates with ranges, some of them missing in some shops; an array; a
// point; an object; a field with a default.
func richDefinition(ns, apiURL string) string {
	return fmt.Sprintf(`name: %[1]s
triggers:
  - subject: %[1]s.shop.changed.*
sources:
  - name: shop
    url: %[2]s/shops/{id}
    timeout: 2s
version: shop.version
fields:
  - {name: name, from: shop.name, type: text, search: true, sort: true, filter: true}
  - {name: version, from: shop.version, type: integer}
  - {name: city, from: shop.city, type: keyword, filter: true, sort: true}
  - {name: rating, from: shop.rating, type: float, filter: true, sort: true}
  - {name: open, from: shop.open, type: boolean, filter: true}
  - {name: tags, from: shop.tags, type: keyword, array: true, filter: true}
  - {name: location, from: shop.location, type: geo_point}
  - {name: seats, from: shop.seats, type: integer, filter: true, sort: true}
  - {name: opened, from: shop.opened, type: date, filter: true, sort: true}
  - {name: price, from: shop.price, type: float, filter: true, sort: true}
  - {name: cuisine, from: shop.cuisine, type: text, search: true}
  - {name: hours, from: shop.hours, type: object}
  - {name: rank, from: shop.rank, type: integer, sort: true, default: 0}
  - {name: serial, from: shop.serial, type: integer, sort: true, filter: true}
redis:
  key: "%[1]s:shop:{id}"
elasticsearch:
  alias: %[1]s-shops
`, ns, apiURL)
}

func richDef(t testing.TB, ns, apiURL string) *projections.Definition {
	t.Helper()
	def, err := projections.Parse("rich.yaml", []byte(richDefinition(ns, apiURL)), projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return def
}

// downDocs is a Redis that always fails.
type downDocs struct{}

func (downDocs) GetMany(ctx context.Context, ids []string) ([]*sink.Stored, error) {
	return nil, errors.New("redis is down")
}

// downSource is a source API that always fails.
type downSource struct{}

func (downSource) Get(ctx context.Context, url string) ([]byte, error) {
	return nil, errors.New("the source is down")
}

// closedElastic is a client of an Elasticsearch that refuses connections.
func closedElastic(t testing.TB) *elasticsearch.Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return testenv.ElasticAt(t, "http://"+addr)
}

// closedSearch is def's Elasticsearch search index on an address nobody listens on.
func closedSearch(t testing.TB, def *projections.Definition) sink.Searcher {
	return elasticIndex(closedElastic(t), def)
}

// elasticIndex is def's search index on es, as the query API uses it.
func elasticIndex(es *elasticsearch.Client, def *projections.Definition) *elasticindex.Index {
	return elasticindex.New(es, elasticindex.Options{Alias: def.Elasticsearch.Alias, Mapping: def.Mapping(), Fields: def.Fields})
}

// shopsAPI is the query API over a world of rich shops, with what the tests
// expect of it computed from the fake shop API's data.
type shopsAPI struct {
	w    *world
	c    *contract
	base string // .../v1/<projection>
}

func newShopsAPI(t *testing.T, n int, emb embedded) *shopsAPI {
	w := newWorldOn(t, n, richDefinition, emb)
	srv := w.serveStores(query.Options{})
	return &shopsAPI{w: w, c: newContract(t, srv.Config.Handler), base: srv.URL + "/v1/" + w.ns}
}

// shops returns the shops the fake API holds, by id.
func (a *shopsAPI) shops(n int) []testenv.Shop {
	var out []testenv.Shop
	for i := 1; i <= n; i++ {
		if s, ok := a.w.api.Get(itoa(i)); ok {
			out = append(out, s)
		}
	}
	return out
}

// page is one answer of the collection endpoint.
type page struct {
	Items   []json.RawMessage `json:"items"`
	Missing []string          `json:"missing"`
	Next    *string           `json:"next"`
}

func (p page) ids(t testing.TB) []string {
	ids := make([]string, 0, len(p.Items))
	for _, it := range p.Items {
		var d struct{ ID string }
		if err := json.Unmarshal(it, &d); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.ID)
	}
	return ids
}

// list gets one page of query, which must succeed.
func (a *shopsAPI) list(t testing.TB, query string) page {
	t.Helper()
	res, body := a.c.get(t, a.base+"?"+query)
	if res.StatusCode != 200 {
		t.Fatalf("?%s: %d %s", query, res.StatusCode, body)
	}
	var p page
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("?%s: %v", query, err)
	}
	if len(p.Missing) > 0 {
		t.Errorf("?%s: missing %v", query, p.Missing)
	}
	return p
}

// listAll pages through query with cursors, limit documents a page, and
// returns the ids in order, failing on a page larger than limit or an id
// served twice.
func (a *shopsAPI) listAll(t testing.TB, query string, limit int) []string {
	t.Helper()
	var all []string
	seen := map[string]bool{}
	q := query + "&limit=" + strconv.Itoa(limit)
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatalf("?%s: more than 1000 pages", query)
		}
		p := a.list(t, q)
		ids := p.ids(t)
		if len(ids) > limit {
			t.Fatalf("?%s: %d items, limit %d", q, len(ids), limit)
		}
		for _, id := range ids {
			if seen[id] {
				t.Fatalf("?%s by %d: %s served twice, on page %d", query, limit, id, pages+1)
			}
			seen[id] = true
		}
		all = append(all, ids...)
		if p.Next == nil {
			return all
		}
		if len(ids) == 0 {
			t.Fatalf("?%s: an empty page with a next cursor", q)
		}
		q = query + "&limit=" + strconv.Itoa(limit) + "&cursor=" + url.QueryEscape(*p.Next)
	}
}

// Expected orders and sets, from the fake API's data.

func idsOf(shops []testenv.Shop) []string {
	out := make([]string, len(shops))
	for i, s := range shops {
		out[i] = s.ID
	}
	return out
}

func filtered(shops []testenv.Shop, keep func(testenv.Shop) bool) []testenv.Shop {
	var out []testenv.Shop
	for _, s := range shops {
		if keep(s) {
			out = append(out, s)
		}
	}
	return out
}

// openedAt reads a shop's opening date as the stores do.
func openedAt(s testenv.Shop) time.Time {
	switch v := s.Opened.(type) {
	case string:
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			return t
		}
		t, _ := time.Parse(time.DateOnly, v)
		return t
	case int64:
		return time.UnixMilli(v).UTC()
	}
	panic(fmt.Sprintf("opened %T", s.Opened))
}

// sortValue is a shop's value of a sort key; ok is false when it has none.
func sortValue(s testenv.Shop, field string) (v any, ok bool) {
	switch field {
	case "name":
		return s.Name, true
	case "city":
		return s.City, true
	case "rating":
		return s.Rating, true
	case "seats":
		if s.Seats == nil {
			return nil, false
		}
		return float64(*s.Seats), true
	case "opened":
		return float64(openedAt(s).UnixMilli()), true
	case "price":
		if s.Price == nil {
			return nil, false
		}
		return *s.Price, true
	case "rank":
		return 0.0, true
	case "serial":
		return s.Serial, true
	}
	panic("no sort key " + field)
}

// sorted orders shops as the API does for sort (e.g. "-rating,name"): values
// missing last in either direction, then the id.
func sorted(shops []testenv.Shop, sort string) []testenv.Shop {
	out := slices.Clone(shops)
	keys := strings.Split(sort, ",")
	slices.SortStableFunc(out, func(a, b testenv.Shop) int {
		for _, k := range keys {
			if k == "" {
				continue
			}
			field, desc := strings.TrimPrefix(k, "-"), strings.HasPrefix(k, "-")
			va, oka := sortValue(a, field)
			vb, okb := sortValue(b, field)
			switch {
			case !oka && !okb:
				continue
			case !oka:
				return 1
			case !okb:
				return -1
			}
			var c int
			switch x := va.(type) {
			case string:
				c = strings.Compare(x, vb.(string))
			case float64:
				c = cmpFloat(x, vb.(float64))
			case int64:
				c = cmp.Compare(x, vb.(int64))
			}
			if desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// matches reports whether q matches s's searchable fields (see
// testenv.TextMatches).
func matches(s testenv.Shop, q string) bool { return testenv.TextMatches(q, s.Name, s.Cuisine) }

func shopDistance(s testenv.Shop, lat, lon float64) float64 {
	return testenv.Distance(s.Loc[1], s.Loc[0], lat, lon)
}

const nShops = 90

// The query API's behaviour is the same on Redis and Elasticsearch and on
// the embedded stores.
func TestEndpoints(t *testing.T) {
	t.Run("redis+elasticsearch", func(t *testing.T) { testEndpoints(t, false) })
	t.Run("embedded", func(t *testing.T) { testEndpoints(t, true) })
}

func testEndpoints(t *testing.T, emb embedded) {
	a := newShopsAPI(t, nShops, emb)
	shops := a.shops(nShops)
	byID := map[string]testenv.Shop{}
	for _, s := range shops {
		byID[s.ID] = s
	}
	// Sanity of the fake data: the filters below must tell shops apart.
	if n := len(filtered(shops, func(s testenv.Shop) bool { return s.Seats == nil })); n == 0 || n == len(shops) {
		t.Fatalf("%d of %d shops without seats: the fake data does not vary", n, len(shops))
	}

	t.Run("detail", func(t *testing.T) {
		docs := a.w.docs()
		for _, id := range []string{"001", "017", "042", itoa(nShops)} {
			res, body := a.c.get(t, a.base+"/"+id)
			if res.StatusCode != 200 {
				t.Fatalf("%s: %d %s", id, res.StatusCode, body)
			}
			stored, err := docs.GetMany(context.Background(), []string{id})
			if err != nil || stored[0] == nil {
				t.Fatalf("%s: not stored: %v", id, err)
			}
			if !bytes.Equal(body, stored[0].Body) {
				t.Errorf("%s: body\n%s\nstored\n%s", id, body, stored[0].Body)
			}
			want, err := a.w.def.Build(id, map[string][]byte{"shop": a.w.api.Body(id)})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, want) {
				t.Errorf("%s: body\n%s\nwant the projection of the source's state\n%s", id, body, want)
			}
			if got, want := res.Header.Get("ETag"), `"v`+strconv.FormatInt(stored[0].Version, 10)+`"`; got != want {
				t.Errorf("%s: ETag %s, want %s", id, got, want)
			}
			builtAt, err := time.Parse(time.RFC3339Nano, res.Header.Get("X-Readside-Built-At"))
			if res.Header.Get("X-Readside-Source") != "store" || err != nil || time.Since(builtAt) > time.Minute {
				t.Errorf("%s: source %q built at %q", id, res.Header.Get("X-Readside-Source"), res.Header.Get("X-Readside-Built-At"))
			}
		}
		res, body := a.c.get(t, a.base+"/999")
		if res.StatusCode != 404 || res.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("unknown id: %d %s", res.StatusCode, body)
		}
	})

	t.Run("if-none-match", func(t *testing.T) {
		res, _ := a.c.get(t, a.base+"/005")
		etag := res.Header.Get("ETag")
		for _, tc := range []struct {
			inm  string
			want int
		}{
			{etag, 304}, {"W/" + etag, 304}, {`"other", ` + etag, 304}, {"*", 304},
			{`"v999"`, 200}, {`W/"v999"`, 200},
		} {
			res, body := a.c.get(t, a.base+"/005", "If-None-Match", tc.inm)
			if res.StatusCode != tc.want {
				t.Errorf("If-None-Match %s: %d, want %d", tc.inm, res.StatusCode, tc.want)
			}
			if res.StatusCode == 304 && (len(body) != 0 || res.Header.Get("ETag") != etag) {
				t.Errorf("304 with body %q and ETag %q", body, res.Header.Get("ETag"))
			}
		}
	})

	t.Run("multi-get", func(t *testing.T) {
		for _, tc := range []struct {
			ids, items, missing string
		}{
			{"003,001,999,002", "003,001,002", "999"},
			{"010,010,004", "010,004", ""},
			{"998,999", "", "998,999"},
			{"007", "007", ""},
		} {
			res, body := a.c.get(t, a.base+"?ids="+tc.ids)
			if res.StatusCode != 200 {
				t.Fatalf("ids=%s: %d %s", tc.ids, res.StatusCode, body)
			}
			var p page
			json.Unmarshal(body, &p)
			if got := strings.Join(p.ids(t), ","); got != tc.items {
				t.Errorf("ids=%s: items %s, want %s", tc.ids, got, tc.items)
			}
			if got := strings.Join(p.Missing, ","); got != tc.missing {
				t.Errorf("ids=%s: missing %s, want %s", tc.ids, got, tc.missing)
			}
			if bytes.Contains(body, []byte(`"next"`)) {
				t.Errorf("ids=%s: a multi-get has no next: %s", tc.ids, body)
			}
			for _, it := range p.Items {
				var d struct{ ID string }
				json.Unmarshal(it, &d)
				want, _ := a.w.def.Build(d.ID, map[string][]byte{"shop": a.w.api.Body(d.ID)})
				if !bytes.Equal(it, want) {
					t.Errorf("ids=%s: item %s\n%s, want\n%s", tc.ids, d.ID, it, want)
				}
			}
		}
		// Every id at once, in a shuffled order.
		var ids []string
		for i := nShops; i >= 1; i -= 7 {
			ids = append(ids, itoa(i))
		}
		p := a.list(t, "ids="+strings.Join(ids, ","))
		if got := p.ids(t); !slices.Equal(got, ids) {
			t.Errorf("order not kept: %v, want %v", got, ids)
		}
	})

	t.Run("filters", func(t *testing.T) {
		day := func(s string) time.Time { d, _ := time.Parse(time.DateOnly, s); return d }
		// d is the day of a shop that opened during it, not at midnight.
		var d string
		for _, s := range shops {
			if at := openedAt(s); at.Hour()+at.Minute() > 0 {
				d = at.Format(time.DateOnly)
				break
			}
		}
		if d == "" {
			t.Fatal("no shop opened after midnight: the fake data does not vary")
		}
		for _, tc := range []struct {
			query string
			keep  func(testenv.Shop) bool
		}{
			{"city=Berlin", func(s testenv.Shop) bool { return s.City == "Berlin" }},
			{"city=Berlin,Seoul", func(s testenv.Shop) bool { return s.City == "Berlin" || s.City == "Seoul" }},
			{"city=Atlantis", func(s testenv.Shop) bool { return false }},
			{"open=true", func(s testenv.Shop) bool { return s.Open }},
			{"open=false", func(s testenv.Shop) bool { return !s.Open }},
			{"open=true,false", func(s testenv.Shop) bool { return true }},
			{"tags=vegan", func(s testenv.Shop) bool { return slices.Contains(s.Tags, "vegan") }},
			{"tags=Sushi,late", func(s testenv.Shop) bool { return slices.Contains(s.Tags, "Sushi") || slices.Contains(s.Tags, "late") }},
			{"tags=sushi", func(s testenv.Shop) bool { return false }}, // keywords are exact
			{"name=" + url.QueryEscape("Pizza Nord 005"), func(s testenv.Shop) bool { return s.Name == "Pizza Nord 005" }},
			{"serial.gte=" + strconv.FormatInt(1<<60+500, 10), func(s testenv.Shop) bool { return s.Serial >= 1<<60+500 }},
			{"rating.gte=2.5", func(s testenv.Shop) bool { return s.Rating >= 2.5 }},
			{"rating.gt=2.5", func(s testenv.Shop) bool { return s.Rating > 2.5 }},
			{"rating.lt=1", func(s testenv.Shop) bool { return s.Rating < 1 }},
			{"rating.lte=1", func(s testenv.Shop) bool { return s.Rating <= 1 }},
			{"rating=0,5", func(s testenv.Shop) bool { return s.Rating == 0 || s.Rating == 5 }},
			{"seats.gt=50&seats.lte=100", func(s testenv.Shop) bool { return s.Seats != nil && *s.Seats > 50 && *s.Seats <= 100 }},
			{"seats=" + seatsOf(shops, 3), func(s testenv.Shop) bool {
				return s.Seats != nil && slices.Contains(strings.Split(seatsOf(shops, 3), ","), strconv.Itoa(*s.Seats))
			}},
			{"price.lte=20", func(s testenv.Shop) bool { return s.Price != nil && *s.Price <= 20 }},
			{"opened.gte=2020-01-01", func(s testenv.Shop) bool { return !openedAt(s).Before(day("2020-01-01")) }},
			{"opened.lt=2018-06-01T12:00:00Z", func(s testenv.Shop) bool { return openedAt(s).Before(time.Date(2018, 6, 1, 12, 0, 0, 0, time.UTC)) }},
			// A date alone stands for its whole day: gte and lt from its start, gt and lte to its end.
			{"opened.lte=" + d, func(s testenv.Shop) bool { return openedAt(s).Before(day(d).AddDate(0, 0, 1)) }},
			{"opened.gt=" + d, func(s testenv.Shop) bool { return !openedAt(s).Before(day(d).AddDate(0, 0, 1)) }},
			{"opened.gte=" + d, func(s testenv.Shop) bool { return !openedAt(s).Before(day(d)) }},
			{"opened.lt=" + d, func(s testenv.Shop) bool { return openedAt(s).Before(day(d)) }},
			{"city=Berlin&open=true&rating.gte=2", func(s testenv.Shop) bool { return s.City == "Berlin" && s.Open && s.Rating >= 2 }},
		} {
			want := idsOf(filtered(shops, tc.keep))
			got := a.listAll(t, tc.query, 100)
			if !slices.Equal(got, want) {
				t.Errorf("?%s:\n got %v\nwant %v", tc.query, got, want)
			}
		}
	})

	t.Run("sort", func(t *testing.T) {
		for _, sort := range []string{
			"name", "-name", "city", "-city", "rating", "-rating", "seats", "-seats", "opened", "-opened",
			"price", "-price", "rank", "serial", "-serial", "city,-rating", "-price,name",
		} {
			want := idsOf(sorted(shops, sort))
			p := a.list(t, "sort="+sort+"&limit=100")
			if got := p.ids(t); !slices.Equal(got, want) {
				t.Errorf("sort=%s:\n got %v\nwant %v", sort, got, want)
			}
		}
		p := a.list(t, "city=Lisbon&sort=-rating&limit=100")
		want := idsOf(sorted(filtered(shops, func(s testenv.Shop) bool { return s.City == "Lisbon" }), "-rating"))
		if got := p.ids(t); !slices.Equal(got, want) {
			t.Errorf("city=Lisbon&sort=-rating:\n got %v\nwant %v", got, want)
		}
	})

	t.Run("paging", func(t *testing.T) {
		for _, tc := range []struct {
			query string
			limit int
		}{
			{"", 7}, {"", 1}, {"", nShops}, {"", 100},
			{"sort=name", 8}, {"sort=-rating", 7}, {"sort=rating,-name", 13},
			// Shops without seats, price come last; a cursor must cross from values to none.
			{"sort=seats", 7}, {"sort=-seats", 11}, {"sort=price", 9}, {"sort=-price", 6}, {"sort=opened", 10}, {"sort=-opened", 10},
			{"open=true&sort=-price", 4},
			// Integers beyond float64's precision: the cursor must keep them exact.
			{"sort=serial", 7}, {"sort=-serial", 5},
		} {
			want := idsOf(shops)
			switch {
			case strings.HasPrefix(tc.query, "sort="):
				want = idsOf(sorted(shops, strings.TrimPrefix(tc.query, "sort=")))
			case tc.query == "open=true&sort=-price":
				want = idsOf(sorted(filtered(shops, func(s testenv.Shop) bool { return s.Open }), "-price"))
			}
			got := a.listAll(t, tc.query, tc.limit)
			if !slices.Equal(got, want) {
				t.Errorf("paging ?%s by %d:\n got %v\nwant %v", tc.query, tc.limit, got, want)
			}
		}
		// The limit may change between pages; the rest of the query may not.
		first := a.list(t, "sort=name&limit=5")
		rest := a.list(t, "sort=name&limit=100&cursor="+url.QueryEscape(*first.Next))
		if got, want := append(first.ids(t), rest.ids(t)...), idsOf(sorted(shops, "name")); !slices.Equal(got, want) {
			t.Errorf("changing the limit:\n got %v\nwant %v", got, want)
		}
	})

	t.Run("search", func(t *testing.T) {
		for _, q := range []string{"piz", "pizza", "Pizza nor", "PIZZA NORD", "sushi", "ramen", "korean bar", "vegan bowls", "00", "pizza 01", "burger 0", "xyzzy", "nord pizza"} {
			want := idsOf(filtered(shops, func(s testenv.Shop) bool { return matches(s, q) }))
			got := a.listAll(t, "q="+url.QueryEscape(q), 7)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("q=%s:\n got %v\nwant %v", q, got, want)
			}
			// Sorted by name instead of relevance: the same documents, ordered.
			want = idsOf(sorted(filtered(shops, func(s testenv.Shop) bool { return matches(s, q) }), "name"))
			if got := a.listAll(t, "q="+url.QueryEscape(q)+"&sort=name", 5); !slices.Equal(got, want) {
				t.Errorf("q=%s&sort=name:\n got %v\nwant %v", q, got, want)
			}
		}
		// Relevance: a shop matching in two fields ranks above one matching in one.
		p := a.list(t, "q=pizza&sort=relevance&limit=100")
		if ids := p.ids(t); len(ids) == 0 {
			t.Error("q=pizza found nothing")
		}
		// With filters.
		want := idsOf(filtered(shops, func(s testenv.Shop) bool { return matches(s, "pizza") && s.City == "Seoul" }))
		got := a.listAll(t, "q=pizza&city=Seoul", 100)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("q=pizza&city=Seoul:\n got %v\nwant %v", got, want)
		}
	})

	t.Run("geo", func(t *testing.T) {
		const lat, lon = 52.51, 13.39
		near := fmt.Sprintf("near=%v,%v", lat, lon)
		const tolerance = 2.0 // meters: Elasticsearch stores points quantized
		for _, within := range []float64{2500, 4000, 8000} {
			q := fmt.Sprintf("%s&within=%vkm", near, within/1000)
			got := a.listAll(t, q, 9)
			var last float64
			for i, id := range got {
				d := shopDistance(byID[id], lat, lon)
				if d > within+tolerance {
					t.Errorf("?%s: %s is %.0f m away", q, id, d)
				}
				if i > 0 && d < last-tolerance {
					t.Errorf("?%s: %s (%.1f m) after one at %.1f m", q, id, d, last)
				}
				last = d
			}
			for _, s := range shops {
				if d := shopDistance(s, lat, lon); d < within-tolerance && !slices.Contains(got, s.ID) {
					t.Errorf("?%s: %s at %.0f m is missing", q, s.ID, d)
				}
			}
			if len(got) == 0 || len(got) == len(shops) {
				t.Errorf("?%s: %d of %d shops: choose another radius", q, len(got), len(shops))
			}
		}
		// Every shop, farthest first, then by rating within a radius.
		got := a.listAll(t, near+"&sort=-distance", 10)
		if len(got) != len(shops) {
			t.Errorf("sort=-distance: %d of %d shops", len(got), len(shops))
		}
		for i := 1; i < len(got); i++ {
			if shopDistance(byID[got[i]], lat, lon) > shopDistance(byID[got[i-1]], lat, lon)+tolerance {
				t.Errorf("sort=-distance: %s after %s", got[i], got[i-1])
			}
		}
		q := near + "&within=5km&sort=-rating"
		want := idsOf(sorted(filtered(shops, func(s testenv.Shop) bool { return shopDistance(s, lat, lon) <= 5000 }), "-rating"))
		if got := a.listAll(t, q, 6); !slices.Equal(got, want) {
			t.Errorf("?%s:\n got %v\nwant %v", q, got, want)
		}
	})

	// Last: these change the data.
	t.Run("tombstones", func(t *testing.T) {
		gone := []string{"007", "012", "033"}
		for _, id := range gone {
			a.w.api.Delete(id)
			if _, err := a.w.js.Publish(context.Background(), a.w.ns+".shop.changed."+id, nil); err != nil {
				t.Fatal(err)
			}
		}
		a.w.awaitDrained()
		live := a.shops(nShops)
		for _, id := range gone {
			res, body := a.c.get(t, a.base+"/"+id)
			if res.StatusCode != 404 {
				t.Errorf("deleted %s: %d %s", id, res.StatusCode, body)
			}
		}
		res, body := a.c.get(t, a.base+"?ids=006,007,008,033")
		var p page
		if err := json.Unmarshal(body, &p); err != nil || res.StatusCode != 200 {
			t.Fatalf("multi-get with deleted: %d %s", res.StatusCode, body)
		}
		if got := strings.Join(p.ids(t), ","); got != "006,008" {
			t.Errorf("multi-get with deleted: items %s", got)
		}
		if got := strings.Join(p.Missing, ","); got != "007,033" {
			t.Errorf("multi-get with deleted: missing %s", got)
		}
		for _, q := range []string{"", "sort=-rating", "q=" + url.QueryEscape(byID["012"].Name), "city=" + byID["033"].City, "sort=distance&near=52.5,13.4", "tags=Taco"} {
			got := a.listAll(t, q, 10)
			for _, id := range gone {
				if slices.Contains(got, id) {
					t.Errorf("?%s lists deleted %s", q, id)
				}
			}
			if q == "" && !slices.Equal(got, idsOf(live)) {
				t.Errorf("after deletions:\n got %v\nwant %v", got, idsOf(live))
			}
		}
	})

	t.Run("from-source", func(t *testing.T) {
		// A shop the API has but the stores do not yet: built from the source.
		id := "500"
		a.w.api.Put(id, "Fresh Pizza 500")
		res, body := a.c.get(t, a.base+"/"+id)
		if res.StatusCode != 200 || res.Header.Get("X-Readside-Source") != "source" {
			t.Fatalf("%s: %d %s %s", id, res.StatusCode, res.Header.Get("X-Readside-Source"), body)
		}
		want, _ := a.w.def.Build(id, map[string][]byte{"shop": a.w.api.Body(id)})
		if !bytes.Equal(body, want) {
			t.Errorf("built %s\n%s, want\n%s", id, body, want)
		}
		res, body = a.c.get(t, a.base+"?ids=001,"+id)
		if res.StatusCode != 200 {
			t.Fatalf("%d %s", res.StatusCode, body)
		}
		if s := res.Header.Get("X-Readside-Source"); s != "mixed" && s != "store" { // the projector may have healed it already
			t.Errorf("multi-get of a stored and a built document: X-Readside-Source %s", s)
		}
	})
}

// seatsOf returns n distinct seat counts of shops, comma-separated.
func seatsOf(shops []testenv.Shop, n int) string {
	var out []string
	for _, s := range shops {
		if s.Seats != nil && !slices.Contains(out, strconv.Itoa(*s.Seats)) && len(out) < n {
			out = append(out, strconv.Itoa(*s.Seats))
		}
	}
	return strings.Join(out, ",")
}

// TestBadParameters: every bad request is a 400 problem naming the parameter;
// where the OpenAPI document can say so, it rejects the request too.
func TestBadParameters(t *testing.T) {
	a := newShopsAPI(t, 12, false)
	cursorOf := func(query string) string {
		p := a.list(t, query+"&limit=2")
		if p.Next == nil {
			t.Fatalf("?%s has no second page", query)
		}
		return *p.Next
	}
	cursor := cursorOf("sort=name")
	tampered := []byte(cursor)
	if tampered[3] == 'A' {
		tampered[3] = 'B'
	} else {
		tampered[3] = 'A'
	}
	berlin := cursorOf("open=true,false")
	manyIDs := make([]string, 101)
	for i := range manyIDs {
		manyIDs[i] = strconv.Itoa(i + 1)
	}
	manyCities := strings.Repeat("X,", 50) + "X"

	for _, tc := range []struct {
		name, path, query string
		param             string // the parameter the problem names
		spec              bool   // the OpenAPI document rejects the request too
	}{
		{"unknown parameter", "", "bogus=1", "bogus", true},
		{"filter on a field that is not filterable", "", "version=1", "version", true},
		{"filter on a searchable field", "", "cuisine=x", "cuisine", true},
		{"filter on the id", "", "id=001", "id", true},
		{"bad range operator", "", "rating.between=1", "rating.between", true},
		{"empty range operator", "", "city.=Berlin", "city.", true},
		{"range on a keyword", "", "city.gte=A", "city.gte", true},
		{"range on a boolean", "", "open.lt=true", "open.lt", true},
		{"bad integer", "", "seats=abc", "seats", true},
		{"fractional integer", "", "seats.gte=1.5", "seats.gte", true},
		{"bad float", "", "rating.gte=high", "rating.gte", true},
		// libopenapi-validator reads numbers with strconv.ParseFloat (Inf,
		// NaN) and booleans with strconv.ParseBool (1); the document does
		// not take them (TestOpenAPIFuzz's documentRules).
		{"infinite float", "", "rating.gte=Inf", "rating.gte", false},
		{"NaN", "", "price=NaN", "price", false},
		{"bad boolean", "", "open=yes", "open", true},
		{"boolean as 1", "", "open=1", "open", false},
		{"bad date", "", "opened.gte=yesterday", "opened.gte", true},
		{"impossible date", "", "opened.gte=2020-02-30", "opened.gte", true},
		{"time zone offset Elasticsearch refuses", "", "opened.gte=2020-01-01T10:00:00%2B23:59", "opened.gte", true},
		{"more fractional digits than Elasticsearch reads", "", "opened.lt=2020-01-01T10:00:00.1234567891Z", "opened.lt", true},
		{"empty filter value", "", "city=", "city", false},
		{"too many filter values", "", "city=" + manyCities, "city", true},
		{"limit 0", "", "limit=0", "limit", true},
		{"limit 101", "", "limit=101", "limit", true},
		{"limit abc", "", "limit=abc", "limit", true},
		{"limit -1", "", "limit=-1", "limit", true},
		{"empty q", "", "q=", "q", true},
		{"blank q", "", "q=%20%20", "q", true},
		{"q too long", "", "q=" + strings.Repeat("a", 201), "q", true},
		{"sort on a field that is not sortable", "", "sort=open", "sort", true},
		{"sort on an unknown field", "", "sort=bogus", "sort", true},
		{"sort on an empty key", "", "sort=name,", "sort", true},
		{"four sort keys", "", "sort=name,city,rating,price", "sort", true},
		{"sort=distance without near", "", "sort=distance", "sort", true},
		{"sort=relevance without q", "", "sort=relevance", "sort", true},
		{"within without near", "", "within=3km", "within", true},
		{"near out of range", "", "near=91,13.4", "near", true},
		{"near longitude out of range", "", "near=52.5,181", "near", true},
		{"near not a point", "", "near=berlin", "near", true},
		{"within too far", "", "near=52.5,13.4&within=600km", "within", true},
		{"within in miles", "", "near=52.5,13.4&within=3mi", "within", true},
		{"too many ids", "", "ids=" + strings.Join(manyIDs, ","), "ids", true},
		// The document says so (items: Id), but libopenapi-validator checks only the type of array items.
		{"an empty id in ids", "", "ids=001,,002", "ids", false},
		{"an id with whitespace in ids", "", "ids=001,a%20b", "ids", false},
		{"ids with q", "", "ids=001&q=pizza", "q", true},
		{"ids with limit", "", "ids=001&limit=5", "limit", true},
		{"tampered cursor", "", "sort=name&cursor=" + url.QueryEscape(string(tampered)), "cursor", false},
		{"cursor of another sort", "", "sort=-name&cursor=" + url.QueryEscape(cursor), "cursor", false},
		{"cursor of other filters", "", "open=true&cursor=" + url.QueryEscape(berlin), "cursor", false},
		{"garbage cursor", "", "cursor=abc", "cursor", true},
		{"parameter given twice", "", "limit=5&limit=6", "limit", false},
		{"filter given twice", "", "city=Berlin&city=Seoul", "city", false},
		{"id with whitespace", "/a%20b", "", "id", true},
		{"id with a wildcard", "/a*b", "", "id", true},
		{"id too long", "/" + strings.Repeat("x", 257), "", "id", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := a.base + tc.path
			if tc.query != "" {
				u += "?" + tc.query
			}
			res, body, reqProblems := a.c.call(t, u)
			if res.StatusCode != 400 {
				t.Fatalf("%d, want 400: %s", res.StatusCode, body)
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %s", ct)
			}
			var p query.Problem
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatal(err)
			}
			if p.Type != query.ProblemBadParameter || p.Status != 400 || len(p.Errors) == 0 {
				t.Errorf("problem %+v", p)
			}
			if !slices.ContainsFunc(p.Errors, func(i query.ParameterIssue) bool { return i.Parameter == tc.param }) {
				t.Errorf("the problem does not name %s: %s", tc.param, body)
			}
			if tc.spec && len(reqProblems) == 0 {
				t.Errorf("/openapi.json does not reject the request")
			}
		})
	}
}

// FuzzListParams throws query strings at the collection endpoint of a server
// whose backends are down: parsing runs first, so every answer is a 400
// problem, or (a valid request) 503/504 or a multi-get with everything
// missing. Never another 5xx, never a panic, and every answer fits the
// OpenAPI document.
func FuzzListParams(f *testing.F) {
	for _, seed := range []string{
		"", "limit=5", "limit=0", "limit=abc", "q=pizza", "q=", "q=%00", "q=%ff%fe", "sort=-rating,name", "sort=distance",
		"near=52.5,13.4&within=3km", "near=91,0", "near=1e2,0", "near=NaN,NaN", "near=0x1p-2,0", "within=0.0001km&near=0,0",
		"city=Berlin,Seoul", "city.=x", "rating.gte=Inf", "rating.gte=-Inf", "rating.gte=1e400", "price=NaN", "seats=9223372036854775808",
		"opened.gte=2020-01-01", "opened.lt=2020-01-01T10:00:00%2B25:00", "opened.gte=0000-01-01", "ids=1,2,3", "ids=", "ids=a&ids=b",
		"ids=1&q=x", "cursor=abc.def", "cursor=.", "cursor=" + strings.Repeat("a", 5000), "limit=5&limit=5", "%zz=1", "a=%zz", ";;&&==",
		"tags=" + strings.Repeat("x,", 60), "sort=", "sort=-", "sort=--name", "sort=relevance&q=a", "q=" + strings.Repeat("é", 201),
		"name.raw=x", "hours=1", "location=1,2", "open=TRUE", "seats.gte=+5", "version.gte=1", "serial.lt=1152921504606846977",
		"opened.gte=2020-01-01T10:00:00%2B23:59", "opened.lt=2020-01-01T10:00:00.1234567891Z",
	} {
		f.Add(seed)
	}
	def := richDef(f, "shops", "http://127.0.0.1:1")
	s := query.New([]query.View{{Def: def, Docs: downDocs{}, Search: closedSearch(f, def), Sources: []assemble.Fetcher{downSource{}}}},
		nil, logger(), nil, query.Options{RequestTimeout: 300 * time.Millisecond})
	c := newContract(f, s)
	f.Fuzz(func(t *testing.T, raw string) {
		req := httptest.NewRequest("GET", "/v1/shops", nil)
		req.URL.RawQuery = raw
		res, body, _ := c.serveRecorded(t, s, req)
		switch res.StatusCode {
		case 200:
			if !req.URL.Query().Has("ids") {
				t.Errorf("?%s: 200 from a server without Elasticsearch: %s", raw, body)
			}
		case 400:
			var p query.Problem
			if res.Header.Get("Content-Type") != "application/problem+json" || json.Unmarshal(body, &p) != nil || len(p.Errors) == 0 {
				t.Fatalf("?%s: 400 that is not a problem with errors: %s", raw, body)
			}
			given := map[string]bool{}
			for name := range req.URL.Query() {
				given[jsonString(name)] = true // as JSON carries it: invalid UTF-8 replaced
			}
			for _, issue := range p.Errors {
				if !given[issue.Parameter] {
					t.Errorf("?%s: the problem names %q, which the request does not have: %s", raw, issue.Parameter, body)
				}
			}
		case 503, 504:
			if res.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("?%s: %d is not a problem: %s", raw, res.StatusCode, body)
			}
		default:
			t.Errorf("?%s: %d %s", raw, res.StatusCode, body)
		}
	})
}

// jsonString is s after a round trip through JSON.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	json.Unmarshal(b, &s)
	return s
}
