package query_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/readside/readside/internal/assemble"
	"github.com/readside/readside/internal/backend"
	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/query"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/elasticindex"
	"github.com/readside/readside/internal/sink/redisstore"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
)

// world is a projection filled by a real projector from a fake shop API,
// served by the query API.
type world struct {
	t     *testing.T
	ns    string
	def   *projections.Definition
	api   *testenv.ShopAPI
	js    jetstream.JetStream
	redis *redis.Client
	es    *elasticsearch.Client
	// stores are what the projector writes: Redis and es, or embedded.
	stores *backend.Stores
	// events is the events stream the projector consumes.
	events string
	// abandoned leaves embedded stores open at the end: a test sets it when
	// a search may still run (one that outlived its request's deadline),
	// which closing would wait for, forever if it never ends.
	abandoned bool
}

// embedded runs a world's stores embedded (bbolt and bleve) instead of on
// Redis and Elasticsearch.
type embedded bool

func logger() *slog.Logger {
	if os.Getenv("READSIDE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newWorld projects n shops (ids 1..n) and waits until they are searchable.
func newWorld(t *testing.T, n int) *world {
	t.Helper()
	return newWorldWith(t, n, func(ns, apiURL string) string { return testenv.ShopDefinition(ns, apiURL, true) })
}

// newWorldWith is newWorld with another definition of the shops: definition
// returns its YAML for the namespace and the fake shop API's URL; it is named
// ns, triggered by "<ns>.shop.changed.<id>".
func newWorldWith(t *testing.T, n int, definition func(ns, apiURL string) string) *world {
	t.Helper()
	return newWorldOn(t, n, definition, false)
}

// newWorldOn is newWorldWith on embedded stores, when asked.
func newWorldOn(t *testing.T, n int, definition func(ns, apiURL string) string, emb embedded) *world {
	t.Helper()
	ns := testenv.Namespace(t)
	api := testenv.NewShopAPI()
	t.Cleanup(api.Close)
	def, err := projections.Parse("shops.yaml", []byte(definition(ns, api.URL)), projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, js := testenv.StartJetStream(t).Connect(t)
	ctx := context.Background()
	streams, err := stream.Ensure(ctx, js, stream.Config{}, def.AllSubjects())
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, ns: ns, def: def, api: api, js: js, redis: testenv.Redis(t), es: testenv.Elastic(t, ns)}
	w.stores = &backend.Stores{Redis: w.redis, Elastic: w.es}
	if emb {
		w.stores = &backend.Stores{Embedded: backend.NewEmbedded(t.TempDir(), nil)}
		t.Cleanup(func() { // after the projector stops (cleanups run last first)
			if w.abandoned {
				t.Log("the embedded stores are left open: a search may still run")
				return
			}
			w.stores.Close()
		})
	}
	t.Cleanup(func() {
		iter := w.redis.Scan(ctx, 0, ns+":*", 1000).Iterator()
		for iter.Next(ctx) {
			w.redis.Del(ctx, iter.Val())
		}
	})
	pctx, cancel := context.WithCancel(ctx)
	p, err := projector.ForDefinition(pctx, def, projector.Env{JetStream: js, Streams: streams, Stores: w.stores, Log: logger()},
		projector.Options{Batch: 100})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { p.Run(pctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	for i := 1; i <= n; i++ {
		id := itoa(i)
		api.Put(id, shopName(i))
		if _, err := js.Publish(ctx, ns+".shop.changed."+id, nil); err != nil {
			t.Fatal(err)
		}
	}
	w.events = streams.Config().Events
	w.awaitDrained()
	return w
}

// awaitDrained waits until the projector has handled every event published so
// far, then refreshes the index so that lists see the writes.
func (w *world) awaitDrained() {
	w.t.Helper()
	ctx := context.Background()
	testenv.WaitDrained(w.t, w.js, w.events, stream.ConsumerName(w.def.Name), 60*time.Second)
	if w.stores.Elastic == nil {
		return // the embedded index is searchable at once
	}
	el := elasticindex.New(w.es, elasticindex.Options{Alias: w.def.Elasticsearch.Alias})
	if err := el.Refresh(ctx); err != nil {
		w.t.Fatal(err)
	}
}

// serveStores starts the query API over the world's own stores, as
// cmd/queryapi builds it.
func (w *world) serveStores(o query.Options) *httptest.Server {
	w.t.Helper()
	views, err := query.Views(context.Background(), []*projections.Definition{w.def}, w.stores, 200*time.Millisecond)
	if err != nil {
		w.t.Fatal(err)
	}
	srv := httptest.NewServer(query.New(views, w.js, logger(), nil, o))
	w.t.Cleanup(srv.Close)
	return srv
}

// docs is the world's doc store.
func (w *world) docs() sink.DocStore {
	w.t.Helper()
	st, err := w.stores.For(context.Background(), w.def)
	if err != nil {
		w.t.Fatal(err)
	}
	return st.Docs
}

var names = []string{"Pizza Nord", "Sushi Place", "Burger Barn", "Pasta Punto", "Taco Town"}

func shopName(i int) string { return names[i%len(names)] + " " + itoa(i) }

func itoa(i int) string {
	return string(rune('0'+i/100%10)) + string(rune('0'+i/10%10)) + string(rune('0'+i%10))
}

// serve starts the query API over the world on the given clients (which may
// go through a fault proxy).
func (w *world) serve(rdb redis.UniversalClient, es *elasticsearch.Client, o query.Options) *httptest.Server {
	w.t.Helper()
	views := []query.View{{
		Def: w.def, Docs: redisstore.New(rdb, redisstore.Options{KeyPattern: w.def.Redis.Key}), Search: elasticIndex(es, w.def),
		Sources: assemble.Clients(w.def, nil, 200*time.Millisecond),
	}}
	srv := httptest.NewServer(query.New(views, w.js, logger(), nil, o))
	w.t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}
