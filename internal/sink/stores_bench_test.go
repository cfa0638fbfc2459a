package sink_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/bleveindex"
	"github.com/readside/readside/internal/sink/boltstore"
	"github.com/readside/readside/internal/sink/elasticindex"
	"github.com/readside/readside/internal/sink/redisstore"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
)

// The benchmarks of this file compare each server store with its embedded
// counterpart on the same documents: Redis with bbolt (BenchmarkDocStores),
// Elasticsearch with bleve (BenchmarkSearch). The documents are 20,000 shops
// of testenv.ShopDefinition, built with Definition.Build from the fake shop
// API's answers (about 200 bytes each). The servers are the test services
// (`make testenv`); a benchmark that needs a missing one fails, saying how to
// start it. BENCHMARKS.md ("Embedded backends") has their figures:
//
//	go test -run '^$' -bench '^Benchmark(DocStores|Search)$' -benchtime 2s ./internal/sink/
//
// Every read benchmark indexes the 20,000 documents into a store of its own
// first, untimed; every write benchmark starts from an empty store.

// benchShops is how many documents the read benchmarks read from.
const benchShops = 20_000

func BenchmarkDocStores(b *testing.B) {
	def, docs := shopBenchDocs(b)
	stores := []struct {
		name string
		open func(b *testing.B) sink.DocStore
	}{
		{"redis", func(b *testing.B) sink.DocStore {
			c := testenv.Redis(b)
			ns := testenv.Namespace(b)
			testenv.CleanRedis(b, c, ns)
			return redisstore.New(c, redisstore.Options{KeyPattern: ns + ":shop:{id}"})
		}},
		{"bolt", func(b *testing.B) sink.DocStore {
			db, err := boltstore.Open(filepath.Join(b.TempDir(), "docs.db"), boltstore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			return db.Docs(def.Name, 0)
		}},
	}
	for _, s := range stores {
		b.Run(s.name, func(b *testing.B) {
			b.Run("write256", func(b *testing.B) { benchWrite(b, s.open(b), docs) })
			b.Run("getmany25", func(b *testing.B) {
				store := s.open(b)
				load(b, store, docs)
				r := rand.New(rand.NewPCG(1, 2))
				ids := make([]string, 25)
				for b.Loop() {
					for i := range ids {
						ids[i] = docs[r.IntN(len(docs))].ID
					}
					got, err := store.GetMany(b.Context(), ids)
					if err != nil {
						b.Fatal(err)
					}
					for i, g := range got {
						if g == nil {
							b.Fatalf("GetMany: %s missing", ids[i])
						}
					}
				}
			})
		})
	}
}

// searchIndex is an index with a way to make its writes searchable.
type searchIndex interface {
	sink.Index
	Refresh(ctx context.Context) error
}

func BenchmarkSearch(b *testing.B) {
	def, docs := shopBenchDocs(b)
	indices := []struct {
		name string
		open func(b *testing.B) searchIndex
	}{
		{"elastic", func(b *testing.B) searchIndex {
			ns := testenv.Namespace(b)
			e := elasticindex.New(testenv.Elastic(b, ns), elasticindex.Options{
				Alias: ns + "-shops", Mapping: def.Mapping(), Fields: def.Fields,
				Settings: map[string]any{"number_of_shards": 1, "number_of_replicas": 0},
			})
			if err := e.Ensure(b.Context()); err != nil {
				b.Fatal(err)
			}
			return e
		}},
		{"bleve", func(b *testing.B) searchIndex {
			idx, err := bleveindex.Open(filepath.Join(b.TempDir(), "search", def.Name), bleveindex.Options{Name: def.Name, Fields: def.Fields})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { idx.Close() })
			return idx
		}},
	}
	// The pages the query API asks for: a filtered list sorted by a field,
	// a search as you type sorted by relevance, the nearest within a
	// kilometre. Each benchmark cycles through its queries.
	cities := []string{"Berlin", "Seoul", "Lisbon", "Austin"}
	var lists, searches, nears []sink.Query
	for _, c := range cities {
		lists = append(lists, sink.Query{Filters: []sink.Filter{{Field: "city", Values: []any{c}}},
			Sort: []sink.SortKey{{Field: "rating", Desc: true}}, Limit: 25})
	}
	for _, t := range []string{"pizz", "tratt", "ram", "bäck", "taq", "bistr", "kreuz", "mitt", "gang", "alfa", "south con", "prenz"} {
		searches = append(searches, sink.Query{Text: t, Sort: []sink.SortKey{{Field: sink.SortRelevance, Desc: true}}, Limit: 25})
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 64 {
		// Where the shops are: around Berlin, ±0.1° each way.
		at := &sink.LatLon{Lat: 52.5 + (r.Float64()-0.5)/5, Lon: 13.4 + (r.Float64()-0.5)/5}
		nears = append(nears, sink.Query{Near: at, Within: 1000, Sort: []sink.SortKey{{Field: sink.SortDistance}}, Limit: 25})
	}
	for _, x := range indices {
		b.Run(x.name, func(b *testing.B) {
			b.Run("write256", func(b *testing.B) { benchWrite(b, x.open(b), docs) })
			for _, read := range []struct {
				name    string
				queries []sink.Query
			}{{"list25", lists}, {"search25", searches}, {"near25", nears}} {
				b.Run(read.name, func(b *testing.B) {
					idx := x.open(b)
					load(b, idx, docs)
					if err := idx.Refresh(b.Context()); err != nil {
						b.Fatal(err)
					}
					n := 0
					for b.Loop() {
						q := read.queries[n%len(read.queries)]
						n++
						p, err := idx.Search(b.Context(), q)
						if err != nil {
							b.Fatal(err)
						}
						if len(p.IDs) == 0 {
							b.Fatalf("%+v found nothing", q)
						}
					}
				})
			}
		})
	}
}

// writer is a store's write.
type writer interface {
	Write(ctx context.Context, docs []sink.Doc) error
}

// benchWrite writes batches of 256 docs to w, the projector's default Batch:
// the next 256 every time, all of them a newer version than the last batch,
// so every document is written (inserted on the first pass over docs,
// replaced after).
func benchWrite(b *testing.B, w writer, docs []sink.Doc) {
	const size = 256
	batch := make([]sink.Doc, size)
	windows := len(docs) / size
	v := int64(0)
	for b.Loop() {
		start := int(v) % windows * size
		v++
		for i, d := range docs[start : start+size] {
			d.Version = v
			batch[i] = d
		}
		if err := w.Write(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(v*size)/b.Elapsed().Seconds(), "docs/s")
}

// load writes docs to w in batches of 1,000, untimed.
func load(b *testing.B, w writer, docs []sink.Doc) {
	b.Helper()
	for i := 0; i < len(docs); i += 1000 {
		if err := w.Write(b.Context(), docs[i:min(i+1000, len(docs))]); err != nil {
			b.Fatalf("loading: %v", err)
		}
	}
}

// shopBenchDocs are benchShops documents of the shop definition, built from
// what the fake shop API answers for shops with plausible names ("Pizzeria
// Kreuzberg s00042"), around Berlin.
func shopBenchDocs(b *testing.B) (*projections.Definition, []sink.Doc) {
	b.Helper()
	api := testenv.NewShopAPI()
	defer api.Close()
	def, err := projections.Parse("shops.yaml", []byte(testenv.ShopDefinition("benchshops", api.URL, true)), projections.Options{})
	if err != nil {
		b.Fatal(err)
	}
	kinds := []string{"Pizzeria", "Trattoria", "Ramen Bar", "Bäckerei", "Taqueria", "Bistro"}
	areas := []string{"Kreuzberg", "Mitte", "Gangnam", "Alfama", "South Congress", "Prenzlauer Berg"}
	docs := make([]sink.Doc, benchShops)
	for i := range docs {
		id := fmt.Sprintf("s%05d", i)
		shop := api.Put(id, kinds[i%len(kinds)]+" "+areas[(i/7)%len(areas)]+" "+id)
		body, err := def.Build(id, map[string][]byte{"shop": api.Body(id)})
		if err != nil {
			b.Fatal(err)
		}
		docs[i] = sink.Doc{ID: id, Version: shop.Version, Body: body}
	}
	return def, docs
}
