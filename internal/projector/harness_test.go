package projector_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/readside/readside/internal/backend"
	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/elasticindex"
	"github.com/readside/readside/internal/sink/redisstore"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
)

// harness is one projection wired to a fresh embedded JetStream, the test
// Redis and Elasticsearch (or the embedded stores), and a fake shop API.
type harness struct {
	t       *testing.T
	ns      string
	def     *projections.Definition
	api     *testenv.ShopAPI
	nc      *nats.Conn
	js      jetstream.JetStream
	streams *stream.Setup
	redis   *redisstore.Store
	elastic *elasticindex.Index
	// stores are where startDefault projects; docs and index read them
	// back (redis and elastic, or the embedded ones).
	stores *backend.Stores
	docs   sink.DocStore
	index  sink.Index
}

// backends names the stores a test runs on.
var backends = []string{"redis+elasticsearch", "embedded"}

func newHarness(t *testing.T, versioned bool) *harness {
	t.Helper()
	return newHarnessOn(t, versioned, backends[0])
}

// newHarnessOn is newHarness on the stores named (one of backends).
func newHarnessOn(t *testing.T, versioned bool, stores string) *harness {
	t.Helper()
	ns := testenv.Namespace(t)
	api := testenv.NewShopAPI()
	t.Cleanup(api.Close)
	def, err := projections.Parse("test.yaml", []byte(testenv.ShopDefinition(ns, api.URL, versioned)), projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	nc, js := testenv.StartJetStream(t).Connect(t)
	ctx := context.Background()
	streams, err := stream.Ensure(ctx, js, stream.Config{}, def.AllSubjects())
	if err != nil {
		t.Fatal(err)
	}
	es := testenv.Elastic(t, ns)
	rdb := testenv.Redis(t)
	testenv.CleanRedis(t, rdb, ns)
	h := &harness{
		t: t, ns: ns, def: def, api: api, nc: nc, js: js, streams: streams,
		redis:   redisstore.New(rdb, redisstore.Options{KeyPattern: def.Redis.Key}),
		elastic: elasticindex.New(es, elasticindex.Options{Alias: def.Elasticsearch.Alias, Mapping: def.Mapping()}),
		stores:  &backend.Stores{Redis: rdb, Elastic: es},
	}
	h.docs, h.index = h.redis, h.elastic
	if stores == "embedded" {
		h.stores = &backend.Stores{Embedded: backend.NewEmbedded(t.TempDir(), nil)}
		t.Cleanup(func() { h.stores.Close() }) // after the projectors stop (cleanups run last first)
		st, err := h.stores.For(ctx, def)
		if err != nil {
			t.Fatal(err)
		}
		h.docs, h.index = st.Docs, st.Index
	}
	return h
}

// options are small, fast settings for tests.
func testOptions() projector.Options {
	return projector.Options{Batch: 64, Workers: 3, FetchConcurrency: 16, RetryInitial: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond, ShutdownGrace: 5 * time.Second}
}

// start runs a projector until the test ends (or stop is called) on the
// given clients, which may point through a fault proxy.
func (h *harness) start(rdb redis.UniversalClient, es *elasticsearch.Client) (stop func()) {
	h.t.Helper()
	return h.startOn(&backend.Stores{Redis: rdb, Elastic: es})
}

// startOn runs a projector until the test ends (or stop is called) on stores.
func (h *harness) startOn(stores projector.StoreOpener) (stop func()) {
	h.t.Helper()
	env := projector.Env{
		JetStream: h.js, Streams: h.streams, Stores: stores, Log: testenv.Logger(h.t, "projector"), SourceRetryBudget: 300 * time.Millisecond,
	}
	p, err := projector.ForDefinition(context.Background(), h.def, env, testOptions())
	if err != nil {
		h.t.Fatal(err)
	}
	return testenv.Start(h.t, "projector", p.Run)
}

// startDefault runs a projector on the harness's stores.
func (h *harness) startDefault() func() {
	return h.startOn(h.stores)
}

// changed publishes "shop <id> changed" with the id in the subject.
func (h *harness) changed(id string) {
	h.t.Helper()
	if _, err := h.js.Publish(context.Background(), h.ns+".shop.changed."+id, nil); err != nil {
		h.t.Fatal(err)
	}
}

// changedBody publishes "shop <id> changed" with the id in the body.
func (h *harness) changedBody(body string) {
	h.t.Helper()
	if _, err := h.js.Publish(context.Background(), h.ns+".shop.events", []byte(body)); err != nil {
		h.t.Fatal(err)
	}
}

// want is the document the projection builds from the API's current state.
func (h *harness) want(id string) []byte {
	h.t.Helper()
	doc, err := h.def.Build(id, map[string][]byte{"shop": h.api.Body(id)})
	if err != nil {
		h.t.Fatal(err)
	}
	return doc
}

// converged reports, for every id, whether both stores hold the API's current
// state (or a tombstone when the API has none), and describes the first miss.
func (h *harness) converged(ids []string) (bool, string) {
	ctx := context.Background()
	for _, id := range ids {
		shop, exists := h.api.Get(id)
		for _, st := range []struct {
			name string
			s    interface {
				Get(context.Context, string) (sink.Stored, error)
			}
		}{{"docs", h.docs}, {"index", h.index}} {
			got, err := st.s.Get(ctx, id)
			switch {
			case err != nil && !errors.Is(err, sink.ErrNotFound):
				return false, fmt.Sprintf("%s %s: %v", st.name, id, err)
			case !exists:
				if err != nil || !got.Deleted {
					return false, fmt.Sprintf("%s %s: want a tombstone, have %+v (err %v)", st.name, id, got, err)
				}
			case err != nil:
				return false, fmt.Sprintf("%s %s: missing", st.name, id)
			case got.Deleted:
				return false, fmt.Sprintf("%s %s: tombstone, want version %d", st.name, id, shop.Version)
			default:
				if !jsonEqual(got.Body, h.want(id)) {
					return false, fmt.Sprintf("%s %s: have %s, want %s", st.name, id, got.Body, h.want(id))
				}
			}
		}
	}
	return true, ""
}

// waitConverged fails the test when the ids have not converged within d.
func (h *harness) waitConverged(ids []string, d time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, why := h.converged(ids)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("not converged after %s: %s", d, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// deadLetters returns the dead-letter entries stored so far.
func (h *harness) deadLetters() []jetstream.Msg {
	h.t.Helper()
	return testenv.DeadLetters(h.t, h.js, h.streams.Config().DeadLetter)
}

// noDeadLetters is nil when nothing was dead-lettered, else an error showing the first entry.
func (h *harness) noDeadLetters() error {
	h.t.Helper()
	return testenv.NoDeadLetters(h.t, h.js, h.streams.Config().DeadLetter)
}

// pendingEvents is how many events the projection's consumer has not acked.
func (h *harness) pendingEvents() (pending uint64, unacked int) {
	h.t.Helper()
	return testenv.ConsumerState(h.t, h.js, h.streams.Config().Events, stream.ConsumerName(h.def.Name))
}

// waitDrained waits until the consumer has no pending or unacked events.
func (h *harness) waitDrained(d time.Duration) {
	h.t.Helper()
	testenv.WaitDrained(h.t, h.js, h.streams.Config().Events, stream.ConsumerName(h.def.Name), d)
}

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(1000 + i)
	}
	return out
}

func jsonEqual(a, b []byte) bool {
	return bytes.Equal(bytes.TrimSpace(a), bytes.TrimSpace(b))
}
