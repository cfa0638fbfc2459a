package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/tidwall/gjson"

	"github.com/readside/readside/examples/shopdisplay/sampleapi"
	"github.com/readside/readside/internal/assemble"
	"github.com/readside/readside/internal/backend"
	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/elasticindex"
	"github.com/readside/readside/internal/sink/redisstore"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
	"github.com/readside/readside/replay"
)

func TestCheckpointsRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	cps := replay.NewCheckpoints(dir)
	key := `dlq shops READSIDE_DLQ reason="status 400" purge=false`
	if cp, err := cps.Load(key); cp != nil || err != nil {
		t.Fatalf("Load before any Save = %v, %v; want nil, nil", cp, err)
	}
	cp := &replay.Checkpoint{
		Key: key, RunID: "abc123", Started: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
		Position: replay.Position{Seq: 41, EndSeq: 90, From: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)},
		Counts:   replay.Counts{Reissued: 12, Invalid: 1},
	}
	if err := cps.Save(cp); err != nil {
		t.Fatal(err)
	}
	got, err := cps.Load(key)
	if err != nil {
		t.Fatal(err)
	}
	if got.Saved.IsZero() || !reflect.DeepEqual(got.Position, cp.Position) || got.Counts != cp.Counts || got.RunID != "abc123" {
		t.Errorf("Load = %+v, want %+v", got, cp)
	}
	if other, _ := cps.Load(key + " "); other != nil {
		t.Error("another key loads the same checkpoint")
	}
	if !strings.HasPrefix(filepath.Base(cps.Path(key)), "replay-dlq-") {
		t.Errorf("Path = %s, want a name that says the command", cps.Path(key))
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the state directory holds %d files, want 1 (no temporary file left)", len(entries))
	}
	if err := os.WriteFile(cps.Path(key), []byte("{torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := cps.Load(key); err == nil || !strings.Contains(err.Error(), "--restart") {
		t.Errorf("Load of a damaged checkpoint: %v, want an error that says --restart", err)
	}
	if err := cps.Remove(key); err != nil {
		t.Fatal(err)
	}
	if err := cps.Remove(key); err != nil {
		t.Errorf("Remove of a missing checkpoint: %v", err)
	}
}

func TestDefaultStateDir(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/var/state")
	if d, err := replay.DefaultStateDir(); err != nil || d != "/var/state/readside" {
		t.Errorf("with XDG_STATE_HOME: %q, %v", d, err)
	}
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", "/home/op")
	if d, err := replay.DefaultStateDir(); err != nil || d != "/home/op/.local/state/readside" {
		t.Errorf("with HOME: %q, %v", d, err)
	}
}

// rig is one projection wired to a fresh embedded JetStream, the test Redis
// and Elasticsearch, and a source API faked with httptest, under its own
// namespace; with a projector running it when started. It stands for a
// deployment an operator runs replay against.
type rig struct {
	t       testing.TB
	ns      string
	def     *projections.Definition
	js      jetstream.JetStream
	streams *stream.Setup
	rdb     *redis.Client
	es      *elasticsearch.Client
	redis   *redisstore.Store
	elastic *elasticindex.Index
	env     *replay.Env
	log     *slog.Logger
	api     *testenv.ShopAPI // the fake shop API of a shop rig
	// want returns the document each id should have now; nil for a tombstone.
	want func(ids []string) map[string][]byte
}

// newSampleRig runs the shop display example (examples/shopdisplay: four
// joined sources, a list endpoint, owner lookups) on the sample API with
// shops 1..n.
func newSampleRig(t testing.TB, n int) (*rig, *sampleapi.API) {
	t.Helper()
	ns := testenv.Namespace(t)
	api := sampleapi.New(sampleapi.Options{Shops: n, Seed: 7})
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	data, err := os.ReadFile("../examples/shopdisplay/shopdisplay.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, r := range [][2]string{
		{"\nname: shopdisplay\n", "\nname: " + ns + "\n"},
		{`key: "shopdisplay:{id}"`, `key: "` + ns + `:{id}"`},
		{"alias: shopdisplay\n", "alias: " + ns + "\n"},
	} {
		if strings.Count(text, r[0]) != 1 {
			t.Fatalf("shopdisplay.yaml: %q does not appear once", r[0])
		}
		text = strings.Replace(text, r[0], r[1], 1)
	}
	def, err := projections.Parse("shopdisplay.yaml", []byte(text), projections.Options{
		Lookup: func(name string) (string, bool) { return srv.URL, name == "SHOPDISPLAY_API" },
	})
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, ns, def)
	asm := assemble.New(def, assemble.Clients(def, nil, time.Second), assemble.Options{})
	r.want = func(ids []string) map[string][]byte {
		out := map[string][]byte{}
		for _, res := range asm.Assemble(context.Background(), ids) {
			if res.Err != nil {
				t.Fatalf("building the expected document of %s: %v", res.ID, res.Err)
			}
			out[res.ID] = res.Doc // nil when deleted
		}
		return out
	}
	return r, api
}

// newShopRig runs testenv's shop definition (one source, no list endpoint,
// ids in the subject "<ns>.shop.changed.<id>" or the body of "<ns>.shop.events")
// on a fake shop API.
func newShopRig(t testing.TB) (*rig, *testenv.ShopAPI) {
	t.Helper()
	ns := testenv.Namespace(t)
	api := testenv.NewShopAPI()
	t.Cleanup(api.Close)
	def, err := projections.Parse("shops.yaml", []byte(testenv.ShopDefinition(ns, api.URL, false)), projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, ns, def)
	r.api = api
	r.want = func(ids []string) map[string][]byte {
		out := map[string][]byte{}
		for _, id := range ids {
			if _, ok := api.Get(id); !ok {
				out[id] = nil
				continue
			}
			doc, err := def.Build(id, map[string][]byte{"shop": api.Body(id)})
			if err != nil {
				t.Fatal(err)
			}
			out[id] = doc
		}
		return out
	}
	return r, api
}

func newRig(t testing.TB, ns string, def *projections.Definition) *rig {
	t.Helper()
	_, js := testenv.StartJetStream(t).Connect(t)
	streams, err := stream.Ensure(context.Background(), js, stream.Config{}, def.AllSubjects())
	if err != nil {
		t.Fatal(err)
	}
	rdb := testenv.Redis(t)
	testenv.CleanRedis(t, rdb, ns)
	es := testenv.Elastic(t, ns)
	return &rig{
		t: t, ns: ns, def: def, js: js, streams: streams, rdb: rdb, es: es,
		redis:   redisstore.New(rdb, redisstore.Options{KeyPattern: def.Redis.Key}),
		elastic: elasticindex.New(es, elasticindex.Options{Alias: def.Elasticsearch.Alias, Mapping: def.Mapping()}),
		env:     &replay.Env{JetStream: js, Stores: replay.OpenStores((&backend.Stores{Redis: rdb, Elastic: es}).Read)},
		log:     testenv.Logger(t, "projector"),
	}
}

// start runs a projector of the definition until the test ends, with small,
// fast settings.
func (r *rig) start() {
	r.t.Helper()
	r.startWith(projector.Options{
		Batch: 64, Workers: 3, FetchConcurrency: 16,
		RetryInitial: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond,
		PartialRetry:  200 * time.Millisecond,
		ShutdownGrace: 5 * time.Second,
	})
}

// startWith runs a projector with o until the test ends.
func (r *rig) startWith(o projector.Options) {
	r.t.Helper()
	r.run(r.def, o)
}

// projector prepares a projector of def with o, as a deployment starts one.
func (r *rig) projector(def *projections.Definition, o projector.Options) (*projector.Projection, error) {
	env := projector.Env{
		JetStream: r.js, Streams: r.streams, Stores: &backend.Stores{Redis: r.rdb, Elastic: r.es}, Log: r.log,
		SourceRetryBudget: 300 * time.Millisecond,
	}
	return projector.ForDefinition(context.Background(), def, env, o)
}

// run runs a projector of def with o until stop is called or the test ends.
func (r *rig) run(def *projections.Definition, o projector.Options) (stop func()) {
	r.t.Helper()
	p, err := r.projector(def, o)
	if err != nil {
		r.t.Fatal(err)
	}
	return testenv.Start(r.t, "projector", p.Run)
}

// publish publishes zero-payload events and waits for JetStream to store them.
func (r *rig) publish(subjects ...string) {
	r.t.Helper()
	for _, s := range subjects {
		if _, err := r.js.Publish(context.Background(), s, nil); err != nil {
			r.t.Fatalf("publishing %s: %v", s, err)
		}
	}
}

// check reports the first id whose document is not what want says, in
// Redis or Elasticsearch (nil: all are).
func (r *rig) check(ids []string) error {
	ctx := context.Background()
	want := r.want(ids)
	got, err := r.redis.GetMany(ctx, ids)
	if err != nil {
		return err
	}
	for i, id := range ids {
		if err := same("redis", id, got[i], want[id]); err != nil {
			return err
		}
	}
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(start+500, len(ids))]
		docs, err := r.mget(chunk)
		if err != nil {
			return err
		}
		for _, id := range chunk {
			if err := same("elasticsearch", id, docs[id], want[id]); err != nil {
				return err
			}
		}
	}
	return nil
}

// same compares a stored document with the expected one (nil: a tombstone).
func same(store, id string, got *sink.Stored, want []byte) error {
	switch {
	case got == nil:
		return fmt.Errorf("%s %s: nothing stored", store, id)
	case want == nil && !got.Deleted:
		return fmt.Errorf("%s %s: want a tombstone, have %s", store, id, got.Body)
	case want == nil:
		return nil
	case got.Deleted:
		return fmt.Errorf("%s %s: a tombstone, want %s", store, id, want)
	}
	var g, w any
	if json.Unmarshal(got.Body, &g) != nil || json.Unmarshal(want, &w) != nil || !reflect.DeepEqual(g, w) {
		return fmt.Errorf("%s %s: have %s, want %s", store, id, got.Body, want)
	}
	return nil
}

// mget reads ids from Elasticsearch in real time, in one request.
func (r *rig) mget(ids []string) (map[string]*sink.Stored, error) {
	body, _ := json.Marshal(map[string]any{"ids": ids})
	res, err := r.es.Mget(bytes.NewReader(body), r.es.Mget.WithIndex(r.def.Elasticsearch.Alias))
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(res.Body)
	if res.IsError() {
		return nil, fmt.Errorf("elasticsearch mget: %s", buf.String())
	}
	out := map[string]*sink.Stored{}
	for _, d := range gjson.GetBytes(buf.Bytes(), "docs").Array() {
		if !d.Get("found").Bool() {
			continue
		}
		s := &sink.Stored{Version: d.Get("_version").Int(), Deleted: d.Get("_source." + elasticindex.DeletedField).Bool()}
		if !s.Deleted {
			s.Body = []byte(d.Get("_source").Raw)
		}
		out[d.Get("_id").Str] = s
	}
	return out, nil
}

// waitConverged fails the test when the ids have not converged within d.
func (r *rig) waitConverged(ids []string, d time.Duration, what string) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := r.check(ids)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: not converged after %s: %v", what, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lastSeq is the own stream's last sequence now: where re-issued events go.
func (r *rig) lastSeq() uint64 {
	r.t.Helper()
	s, err := r.js.Stream(context.Background(), "READSIDE_OWN")
	if err != nil {
		r.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	return info.State.LastSeq
}

// replayed returns the ids of the re-issue events stored on the
// projection's replay subject after sequence after, in order, repeats included.
func (r *rig) replayed(after uint64) []string {
	r.t.Helper()
	return r.messages(r.def.ReplaySubject(), after, func(m jetstream.Msg) string { return gjson.GetBytes(m.Data(), "id").Str })
}

// messages reads what the stream holds on subject after sequence after.
func (r *rig) messages(subject string, after uint64, read func(jetstream.Msg) string) []string {
	r.t.Helper()
	ctx := context.Background()
	stream := "READSIDE_EVENTS"
	switch {
	case strings.HasPrefix(subject, "readside.dlq."):
		stream = "READSIDE_DLQ"
	case strings.HasPrefix(subject, "readside."):
		stream = "READSIDE_OWN"
	}
	c, err := r.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: after + 1,
	})
	if err != nil {
		r.t.Fatal(err)
	}
	it, err := c.Messages()
	if err != nil {
		r.t.Fatal(err)
	}
	defer it.Stop()
	var out []string
	for {
		m, err := it.Next(jetstream.NextMaxWait(500 * time.Millisecond))
		if err == nats.ErrTimeout || err == context.DeadlineExceeded {
			return out
		}
		if err != nil {
			r.t.Fatal(err)
		}
		out = append(out, read(m))
	}
}

// deadLetters is how many entries the dead-letter stream holds.
func (r *rig) deadLetters() uint64 {
	r.t.Helper()
	s, err := r.js.Stream(context.Background(), "READSIDE_DLQ")
	if err != nil {
		r.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	return info.State.Msgs
}

// idSpan is the ids from..to, as strings.
func idSpan(from, to int) []string {
	out := make([]string, 0, to-from+1)
	for i := from; i <= to; i++ {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

// withPrefix prefixes every id with prefix.
func withPrefix(prefix string, ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = prefix + id
	}
	return out
}

func rigCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}
