package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/readside/readside/internal/fixture"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/elasticindex"
	"github.com/readside/readside/internal/sink/redisstore"
	"github.com/readside/readside/projections"
)

// dataset is what was written, and what the scenarios draw their requests from.
type dataset struct {
	n        int
	ids      []string
	cities   []string // values of the list filter
	prefixes []string // search terms: prefixes of the words of shop names
	meanSize int      // bytes of a document body
}

// Vocabularies of the fake shops: names of three words, a city, and 20 to 65
// tags, which make a document about 1 KB.
var (
	adjectives = strings.Fields("golden little royal urban rustic happy blue green old new grand hidden " +
		"sunny silver lucky wild quiet busy corner midnight crispy humble honest simple famous")
	cuisines = strings.Fields("pizza sushi burger pasta taco curry ramen kebab bagel noodle dumpling falafel " +
		"waffle crepe poke burrito gelato espresso bakery bistro brasserie tapas grill steak vegan")
	nouns = strings.Fields("kitchen house corner place bar shack garden express station factory lab " +
		"club table room spot stand cafe deli market hall")
	cities = strings.Fields("Berlin Hamburg Munich Cologne Frankfurt Stuttgart Leipzig Dresden Bremen Hanover " +
		"Seoul Busan Incheon Daegu Lisbon Porto Braga Coimbra Austin Dallas Houston Denver Boston Chicago Seattle " +
		"Portland Madrid Seville Valencia Bilbao Paris Lyon Lille Nantes Vienna Graz Zurich Basel Geneva Milan " +
		"Turin Naples Rome Bologna Oslo Bergen Malmo Gothenburg Stockholm Uppsala Helsinki Tampere Tallinn Riga " +
		"Vilnius Warsaw Krakow Gdansk Prague Brno")
	tagKinds = map[string][]string{
		"cuisine": cuisines,
		"feature": strings.Fields("outdoor-seating wheelchair-accessible late-night delivery takeaway reservations " +
			"wifi dog-friendly kid-friendly live-music parking terrace rooftop quiet-zone group-friendly breakfast " +
			"brunch lunch-menu happy-hour sports-screens power-outlets"),
		"diet":    strings.Fields("vegan vegetarian gluten-free halal kosher lactose-free organic low-carb paleo nut-free"),
		"payment": strings.Fields("cash card contactless mobile-pay invoice meal-vouchers"),
		"price":   strings.Fields("budget moderate upscale fine-dining"),
		"award":   strings.Fields("michelin-bib local-favourite best-of-2024 best-of-2025 critics-choice readers-choice"),
		"area":    strings.Fields("old-town harbour university station-district riverside market-square business-park suburbs"),
	}
	tagKindNames = []string{"cuisine", "feature", "diet", "payment", "price", "award", "area"}
)

// fakeShop is the fake source answer the shop definition reads
// (fixture.ShopDefinition), with varied names, cities and tags.
func fakeShop(r *rand.Rand, id string) fixture.Shop {
	pick := func(xs []string) string { return xs[r.IntN(len(xs))] }
	title := func(s string) string { return strings.ToUpper(s[:1]) + s[1:] }
	s := fixture.Shop{
		ID:      id,
		Name:    title(pick(adjectives)) + " " + title(pick(cuisines)) + " " + title(pick(nouns)),
		Version: 1 + r.Int64N(20),
		City:    pick(cities),
		Rating:  float64(10+r.IntN(41)) / 10,
		Open:    r.IntN(3) > 0,
		Loc:     [2]float64{-120 + 150*r.Float64(), 30 + 30*r.Float64()},
	}
	seen := map[string]bool{}
	for n := 20 + r.IntN(46); len(s.Tags) < n; {
		kind := pick(tagKindNames)
		t := kind + ":" + pick(tagKinds[kind])
		if seen[t] {
			// Small vocabularies run out: number the repeats, as
			// "menu-item:17" tags of a real catalogue would be.
			t = fmt.Sprintf("%s-%d", t, len(s.Tags))
		}
		seen[t] = true
		s.Tags = append(s.Tags, t)
	}
	return s
}

// load builds the documents with the projection's definition and writes
// them to Redis and Elasticsearch as the projector does (with the sinks),
// then refreshes the index so that every document is searchable.
func (b *bench) load(ctx context.Context) error {
	// No source is ever asked: every document is in Redis. Should the API
	// fall back anyway, it finds nothing here and answers an error.
	def, err := projections.Parse("shops.yaml", []byte(fixture.ShopDefinition(b.ns, "http://127.0.0.1:9", true)), projections.Options{})
	if err != nil {
		return err
	}
	b.def = def
	r := rand.New(rand.NewPCG(1, 2))
	d := dataset{n: b.s.docs, cities: cities}
	words := map[string]bool{}
	for _, list := range [][]string{adjectives, cuisines, nouns} {
		for _, w := range list {
			if len(w) >= 3 && !words[w] {
				words[w] = true
				// A 3- to 5-letter prefix, as a user types it.
				d.prefixes = append(d.prefixes, w[:min(len(w), 3+len(d.prefixes)%3)])
			}
		}
	}
	docs := make([]sink.Doc, b.s.docs)
	built := time.Now()
	total := 0
	for i := range docs {
		id := fmt.Sprintf("s%06d", i+1)
		s := fakeShop(r, id)
		answer, err := json.Marshal(s)
		if err != nil {
			return err
		}
		body, err := def.Build(id, map[string][]byte{"shop": answer})
		if err != nil {
			return err
		}
		docs[i] = sink.Doc{ID: id, Version: s.Version, Body: body, BuiltAt: built}
		d.ids = append(d.ids, id)
		total += len(body)
	}
	d.meanSize = total / len(docs)
	b.data = d

	rd := redisstore.New(b.stores.Redis, redisstore.Options{KeyPattern: def.Redis.Key})
	el := elasticindex.New(b.stores.Elastic, elasticindex.Options{Alias: def.Elasticsearch.Alias, Mapping: def.Mapping()})
	if err := el.Ensure(ctx); err != nil {
		return err
	}
	const batch = 1000
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		for i := 0; i < len(docs); i += batch {
			if err := rd.Write(gctx, docs[i:min(i+batch, len(docs))]); err != nil {
				return fmt.Errorf("redis: %w", err)
			}
		}
		return nil
	})
	g.Go(func() error {
		for i := 0; i < len(docs); i += batch {
			if err := el.Write(gctx, docs[i:min(i+batch, len(docs))]); err != nil {
				return fmt.Errorf("elasticsearch: %w", err)
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}
	return el.Refresh(ctx)
}
