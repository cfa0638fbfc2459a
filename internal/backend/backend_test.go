package backend_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/readside/readside/internal/backend"
	"github.com/readside/readside/internal/config"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
)

func definition(t *testing.T, ns string) *projections.Definition {
	t.Helper()
	d, err := projections.Parse(ns+".yaml", []byte(testenv.ShopDefinition(ns, "http://127.0.0.1:1", true)), projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func embedded(dir string) config.Backends {
	return config.Backends{NATSURL: config.Embedded, RedisAddrs: []string{config.Embedded}, ElasticURLs: []string{config.Embedded}, DataDir: dir}
}

// Everything embedded: JetStream, the doc store and the search index work,
// under the data directory, and keep their data across a restart.
func TestEmbeddedKeepsData(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	def := definition(t, "emb")
	doc := sink.Doc{ID: "7", Version: 3, Body: []byte(`{"id":"7","name":"Seven"}`), BuiltAt: time.UnixMilli(1_700_000_000_000)}

	c, err := backend.Open(ctx, embedded(dir), "test", testenv.Logger(t, "backend"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(c.NATS)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EV", Subjects: []string{"ev.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "ev.1", nil); err != nil {
		t.Fatal(err)
	}
	st, err := c.Stores.For(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	if st.DocsName != "embedded-docs" || st.IndexName != "embedded-search" || st.Refs == nil {
		t.Fatalf("stores %q %q refs %v", st.DocsName, st.IndexName, st.Refs)
	}
	again, err := c.Stores.For(ctx, def)
	if err != nil || again.Index != st.Index {
		t.Fatalf("a second For opened another index (%v): the process must share one", err)
	}
	if err := st.Docs.Write(ctx, []sink.Doc{doc}); err != nil {
		t.Fatal(err)
	}
	if err := st.Index.Write(ctx, []sink.Doc{doc}); err != nil {
		t.Fatal(err)
	}
	if r := c.Stores.Ready(ctx); r["embedded"] != "up" || len(r) != 1 {
		t.Fatalf("Ready = %v", r)
	}

	// Another process's stores on the same directory fail at once, clearly.
	other := backend.NewEmbedded(dir, nil)
	if _, err := (&backend.Stores{Embedded: other}).For(ctx, def); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("a second user of the data directory: %v, want an error naming another process", err)
	}
	other.Close()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	c, err = backend.Open(ctx, embedded(dir), "test", testenv.Logger(t, "backend"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	js, _ = jetstream.New(c.NATS)
	s, err := js.Stream(ctx, "EV")
	if err != nil || s.CachedInfo().State.Msgs != 1 {
		t.Fatalf("the stream after a restart: %v", err)
	}
	st, err = c.Stores.For(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]interface {
		Get(context.Context, string) (sink.Stored, error)
	}{"docs": st.Docs, "index": st.Index} {
		got, err := s.Get(ctx, "7")
		if err != nil || got.Version != 3 || string(got.Body) != string(doc.Body) {
			t.Fatalf("%s after a restart: %+v %v", name, got, err)
		}
	}
	p, err := st.Index.Search(ctx, sink.Query{Text: "sev", Limit: 5})
	if err != nil || len(p.IDs) != 1 || p.IDs[0] != "7" {
		t.Fatalf("search after a restart: %+v %v", p, err)
	}
}

// Mixed: Redis for documents, the embedded index for search; and the query
// API's views read without preparing Elasticsearch.
func TestMixedBackends(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ns := testenv.Namespace(t)
	rdb := testenv.Redis(t)
	s := &backend.Stores{Redis: rdb, Embedded: backend.NewEmbedded(t.TempDir(), nil)}
	defer s.Embedded.Close()
	def := definition(t, ns)
	st, err := s.For(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	if st.DocsName != "redis" || st.IndexName != "embedded-search" {
		t.Fatalf("stores %q %q", st.DocsName, st.IndexName)
	}
	if r := s.Ready(ctx); r["redis"] != "up" || r["embedded"] != "up" {
		t.Fatalf("Ready = %v", r)
	}
	es := &backend.Stores{Elastic: testenv.Elastic(t, ns)}
	if r := es.Ready(ctx); r["elasticsearch"] != "up" {
		t.Fatalf("Ready = %v", r)
	}
	read, err := s.Read(ctx, def)
	if err != nil || read.Index != st.Index || read.DocsName != "redis" {
		t.Fatalf("Read = %+v, %v", read, err)
	}
	if n := len(s.Sources(def, time.Second)); n != len(def.Sources) {
		t.Fatalf("Sources: %d clients for %d sources", n, len(def.Sources))
	}
	if s.SearchProbe() != nil || es.SearchProbe() == nil {
		t.Fatal("SearchProbe: want one on Elasticsearch only")
	}
	if _, err := (&backend.Stores{}).For(ctx, def); err == nil || !strings.Contains(err.Error(), "no doc store") {
		t.Fatalf("no stores configured: %v", err)
	}
}

// An embedded NATS whose address is taken fails at once, saying which flag
// to change.
func TestEmbeddedNATSAddressTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := embedded(t.TempDir())
	cfg.NATSListen = ln.Addr().String()
	start := time.Now()
	_, err = backend.Open(t.Context(), cfg, "test", nil)
	if err == nil || !strings.Contains(err.Error(), "-nats-listen") || time.Since(start) > 5*time.Second {
		t.Fatalf("Open on a taken address: %v after %s, want a quick error naming -nats-listen", err, time.Since(start))
	}
}
