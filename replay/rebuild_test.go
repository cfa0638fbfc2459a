package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/elasticindex"
	"github.com/readside/readside/internal/sink/redisstore"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
	"github.com/readside/readside/replay"
)

// rbRig is a deployment of testenv's shop projection under a namespace of
// its own: a rig (embedded JetStream, the test Redis and Elasticsearch) on
// the fake shop API behind a server that adds a list endpoint
// (GET /shops?cursor=), and projectors started on demand. The rebuild and
// verify tests run replay against it.
type rbRig struct {
	*rig
	url string // of the API with the list endpoint

	mu    sync.Mutex
	known map[string]bool // the shops the API has, for its list endpoint
}

func newRBRig(t *testing.T) *rbRig {
	t.Helper()
	// A bare rig first: r.def needs its t and ns, and the URL, to give newRig the definition.
	r := &rbRig{rig: &rig{t: t, ns: testenv.Namespace(t)}, known: map[string]bool{}}
	api := testenv.NewShopAPI()
	t.Cleanup(api.Close)
	mux := http.NewServeMux()
	mux.Handle("GET /shops/{id}", api.Config.Handler)
	mux.HandleFunc("GET /shops", r.list)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	r.url = srv.URL
	r.rig = newRig(t, r.ns, r.def(false, false, ""))
	r.api = api
	return r
}

// list is the list endpoint: pages of 25 ids, the cursor is the offset.
func (r *rbRig) list(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	ids := make([]string, 0, len(r.known))
	for id := range r.known {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	slices.Sort(ids)
	from, _ := strconv.Atoi(req.URL.Query().Get("cursor"))
	to := min(from+25, len(ids))
	page := map[string]any{"items": []any{}}
	var items []any
	for _, id := range ids[min(from, len(ids)):to] {
		items = append(items, map[string]string{"id": id})
	}
	if items != nil {
		page["items"] = items
	}
	if to < len(ids) {
		page["next"] = strconv.Itoa(to)
	}
	json.NewEncoder(w).Encode(page)
}

// def is the shop definition, with the shop's version as the document
// version when versioned, with the list endpoint when listed, and with
// replace[0] → replace[1] applied to its text.
func (r *rbRig) def(versioned, listed bool, from string, to ...string) *projections.Definition {
	r.t.Helper()
	text := testenv.ShopDefinition(r.ns, r.url, versioned)
	if listed {
		text = strings.Replace(text, "    timeout: 2s\n", "    timeout: 2s\n    list:\n      url: "+r.url+"/shops?cursor={cursor}\n      ids: items.#.id\n      next: next\n", 1)
	}
	if from != "" {
		if !strings.Contains(text, from) {
			r.t.Fatalf("the shop definition lacks %q", from)
		}
		text = strings.Replace(text, from, to[0], 1)
	}
	def, err := projections.Parse("shops.yaml", []byte(text), projections.Options{})
	if err != nil {
		r.t.Fatal(err)
	}
	return def
}

// rbOptions are the small, fast settings of the rebuild tests' projectors.
var rbOptions = projector.Options{
	Batch: 64, Workers: 3, FetchConcurrency: 16,
	RetryInitial: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond,
	ShutdownGrace: 5 * time.Second,
}

// start runs a projector of def until stop is called or the test ends.
func (r *rbRig) start(def *projections.Definition) (stop func()) {
	r.t.Helper()
	return r.run(def, rbOptions)
}

// put changes shop id in the API and publishes its event.
func (r *rbRig) put(id, name string) {
	r.api.Put(id, name)
	r.mu.Lock()
	r.known[id] = true
	r.mu.Unlock()
	r.changed(id)
}

// remove deletes shop id in the API and publishes its event.
func (r *rbRig) remove(id string) {
	r.api.Delete(id)
	r.mu.Lock()
	delete(r.known, id)
	r.mu.Unlock()
	r.changed(id)
}

func (r *rbRig) changed(id string) {
	if _, err := r.js.Publish(context.Background(), r.ns+".shop.changed."+id, nil); err != nil {
		r.t.Error(err)
	}
}

// converged reports whether Redis and the index behind the alias hold the
// API's current state of every id (a tombstone for a deleted shop), and
// describes the first difference.
func (r *rbRig) converged(def *projections.Definition, ids []string) (bool, string) {
	ctx := context.Background()
	stores := []struct {
		name string
		s    interface {
			Get(context.Context, string) (sink.Stored, error)
		}
	}{
		{"redis", redisstore.New(r.rdb, redisstore.Options{KeyPattern: def.Redis.Key})},
		{"elasticsearch", elasticindex.New(r.es, elasticindex.Options{Alias: def.Elasticsearch.Alias})},
	}
	for _, id := range ids {
		_, exists := r.api.Get(id)
		var want []byte
		if exists {
			var err error
			if want, err = def.Build(id, map[string][]byte{"shop": r.api.Body(id)}); err != nil {
				r.t.Fatal(err)
			}
		}
		for _, st := range stores {
			got, err := st.s.Get(ctx, id)
			switch {
			case err != nil && !errors.Is(err, sink.ErrNotFound):
				return false, fmt.Sprintf("%s %s: %v", st.name, id, err)
			case !exists && (err != nil || !got.Deleted):
				return false, fmt.Sprintf("%s %s: want a tombstone, have %s (%v)", st.name, id, got.Body, err)
			case exists && err != nil:
				return false, fmt.Sprintf("%s %s: missing", st.name, id)
			case exists && !bytes.Equal(got.Body, want):
				return false, fmt.Sprintf("%s %s: have %s, want %s", st.name, id, got.Body, want)
			}
		}
	}
	return true, ""
}

func (r *rbRig) waitConverged(def *projections.Definition, ids []string, d time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, why := r.converged(def, ids)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("not converged after %s: %s", d, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitReplayDrained waits until the replay consumer has nothing pending.
func (r *rbRig) waitReplayDrained(def *projections.Definition, d time.Duration) {
	r.t.Helper()
	testenv.WaitDrained(r.t, r.js, r.streams.StreamOf(stream.ReplayConsumerName(def.Name)), stream.ReplayConsumerName(def.Name), d)
}

// esJSON sends a request to Elasticsearch and returns the answer; an error
// status fails the test unless it is allowed.
func (r *rbRig) esJSON(method, path, body string, allow ...int) (int, gjson.Result) {
	r.t.Helper()
	req, err := http.NewRequest(method, path, strings.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := r.es.Perform(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	if res.StatusCode >= 300 && !slices.Contains(allow, res.StatusCode) {
		r.t.Fatalf("%s %s: %s %s", method, path, res.Status, b)
	}
	return res.StatusCode, gjson.ParseBytes(b)
}

// aliasIndices lists the indices alias points at.
func (r *rbRig) aliasIndices(alias string) []string {
	r.t.Helper()
	status, v := r.esJSON("GET", "/_alias/"+alias, "", 404)
	if status == 404 {
		return nil
	}
	var out []string
	v.ForEach(func(k, _ gjson.Result) bool { out = append(out, k.Str); return true })
	slices.Sort(out)
	return out
}

func (r *rbRig) indexExists(index string) bool {
	status, _ := r.esJSON("HEAD", "/"+index, "", 404)
	return status == 200
}

// liveCount counts the documents that are not tombstones in index.
func (r *rbRig) liveCount(index string) int64 {
	r.t.Helper()
	r.esJSON("POST", "/"+index+"/_refresh", "")
	_, v := r.esJSON("POST", "/"+index+"/_count", `{"query":{"bool":{"must_not":{"term":{"readside_deleted":true}}}}}`)
	return v.Get("count").Int()
}

func (r *rbRig) liveShops() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return int64(len(r.known))
}

func rbIDs(from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(from + i)
	}
	return out
}

// TestRebuildWhileLive rebuilds the index while a stream of live changes
// runs the whole time: the alias ends on the new index, which has every
// change made during the rebuild (written to both indices by the
// projector), as many live documents as the source has shops, and no
// rebuild alias; the old index is kept.
func TestRebuildWhileLive(t *testing.T) {
	t.Parallel()
	r := newRBRig(t)
	def := r.def(false, false, "")
	alias := def.Elasticsearch.Alias
	ids := rbIDs(1000, 150)
	for _, id := range ids {
		r.put(id, "shop "+id)
	}
	r.start(def)
	r.waitConverged(def, ids, 30*time.Second)
	// Deleted before the rebuild: in no Redis scan, only the old index's
	// tombstones say so; the new index must keep them too.
	for _, id := range ids[:3] {
		r.remove(id)
	}
	r.waitConverged(def, ids, 30*time.Second)

	// Live changes during the whole rebuild: renames, new shops, deletions.
	ctx, stopChanges := context.WithCancel(context.Background())
	var changer sync.WaitGroup
	var changes int
	all := slices.Clone(ids)
	changer.Go(func() {
		next := 2000
		for n := 0; ctx.Err() == nil; n++ {
			switch {
			case n%23 == 22:
				id := strconv.Itoa(next)
				next++
				all = append(all, id)
				r.put(id, "new shop "+id)
			case n%37 == 36:
				r.remove(all[3+rand.IntN(len(all)-3)])
			default:
				// Never ids[:3]: re-created, they would no longer be the
				// tombstones the rebuild must carry over.
				id := all[3+rand.IntN(len(all)-3)]
				r.put(id, fmt.Sprintf("shop %s renamed %d", id, n))
			}
			changes++
			time.Sleep(3 * time.Millisecond)
		}
	})
	var out testenv.Buffer
	// Shops created and deleted during the count land in both indices, but
	// each index refreshes on its own: the counts at the swap may differ by
	// the changes of a moment, which the tolerance is for. Exact counts are
	// checked once everything has converged.
	res, err := r.env.Rebuild(context.Background(), def, replay.RebuildOptions{Rate: -1, Tolerance: 0.02, Out: &out})
	stopChanges() // nothing changes after the swap: what the new index has, it got during the rebuild
	changer.Wait()
	t.Logf("rebuild output:\n%s", out.String())
	if err != nil {
		t.Fatalf("Rebuild: %v", err)
	}
	t.Logf("%d changes during the rebuild; %d ids and %d tombstones re-issued", changes, res.Reissued, res.Tombstones)
	if res.Tombstones < 3 {
		t.Errorf("%d tombstones re-issued, want at least the 3 deleted before the rebuild", res.Tombstones)
	}
	if changes < 100 {
		t.Errorf("only %d changes during the rebuild: the test proves little", changes)
	}
	if !res.Swapped || res.New != alias+"-v2" || !slices.Equal(res.Old, []string{alias + "-v1"}) || res.Resumed || res.DeletedOld {
		t.Errorf("result %+v, want swapped from %s-v1 to %s-v2, the old one kept", res, alias, alias)
	}
	for _, step := range []string{"created " + alias + "-v2", "waiting 4s", "re-issued", "waiting for the replay consumer", "live documents:", "swapped: alias " + alias + " → " + alias + "-v2", "kept " + alias + "-v1"} {
		if !strings.Contains(out.String(), step) {
			t.Errorf("the output lacks the step %q", step)
		}
	}
	if got := r.aliasIndices(alias); !slices.Equal(got, []string{alias + "-v2"}) {
		t.Errorf("alias %s → %v, want [%s-v2]", alias, got, alias)
	}
	if _, v := r.esJSON("GET", "/_alias/"+alias, ""); !v.Get(gjson.Escape(alias+"-v2") + ".aliases." + gjson.Escape(alias) + ".is_write_index").Bool() {
		t.Errorf("%s-v2 is not the write index of %s: %s", alias, alias, v.Raw)
	}
	if got := r.aliasIndices(alias + elasticindex.RebuildSuffix); got != nil {
		t.Errorf("the rebuild alias is still on %v", got)
	}
	if !r.indexExists(alias + "-v1") {
		t.Errorf("the old index was deleted without --delete-old")
	}
	// Every id, through the alias (the new index) and in Redis, is the API's
	// final state; the events of the last changes may still be in flight.
	r.waitConverged(def, all, 30*time.Second)
	if got, want := r.liveCount(alias+"-v2"), r.liveShops(); got != want {
		t.Errorf("%s-v2 has %d live documents, the API %d shops", alias, got, want)
	}
}

// TestRebuildRollsOutMappingChange: a field's type changes (integer →
// float), which the projectors refuse on the live index. The rebuild runs
// with the new definition while a projector of the old one keeps running;
// after the swap the new index has the new mapping, the old one is deleted,
// and a projector of the new definition starts and projects.
func TestRebuildRollsOutMappingChange(t *testing.T) {
	t.Parallel()
	r := newRBRig(t)
	const field = "{name: version, from: shop.version, type: integer}"
	oldDef := r.def(true, true, "")
	newDef := r.def(true, true, field, "{name: version, from: shop.version, type: float}")
	alias := oldDef.Elasticsearch.Alias
	ids := rbIDs(1, 40)
	for _, id := range ids {
		r.put(id, "shop "+id)
	}
	stopOld := r.start(oldDef)
	r.waitConverged(oldDef, ids, 30*time.Second)

	var conflict *elasticindex.MappingConflictError
	if _, err := r.projector(newDef, rbOptions); !errors.As(err, &conflict) {
		t.Fatalf("a projector of the new definition before the rebuild: %v, want a mapping conflict", err)
	}
	var out testenv.Buffer
	res, err := r.env.Rebuild(context.Background(), newDef, replay.RebuildOptions{Rate: -1, DeleteOld: true, Out: &out})
	t.Logf("rebuild output:\n%s", out.String())
	if err != nil {
		t.Fatalf("Rebuild: %v", err)
	}
	if !res.Swapped || !res.DeletedOld || res.Reissued != int64(len(ids)) || res.NewCount != int64(len(ids)) {
		t.Errorf("result %+v, want %d ids re-issued and counted, swapped, old deleted", res, len(ids))
	}
	if !strings.Contains(out.String(), "ids from the list endpoint") {
		t.Errorf("the ids did not come from the list endpoint")
	}
	_, m := r.esJSON("GET", "/"+alias+"-v2/_mapping", "")
	if typ := m.Get(gjson.Escape(alias+"-v2") + ".mappings.properties.version.type").Str; typ != "double" {
		t.Errorf("version in the new index is %q, want double", typ)
	}
	if r.indexExists(alias + "-v1") {
		t.Errorf("the old index is still there with --delete-old")
	}
	if got := r.aliasIndices(alias); !slices.Equal(got, []string{alias + "-v2"}) {
		t.Errorf("alias %s → %v", alias, got)
	}

	// The deployment of the new definition.
	stopOld()
	r.start(newDef)
	r.put("7", "shop 7 after the roll-out")
	r.put("41", "a new shop")
	r.waitConverged(newDef, append(ids, "41"), 30*time.Second)
}

// TestRebuildShortStopsAndContinues: a rebuild whose new index has too few
// documents does not swap and leaves the new index and the rebuild alias; a
// dry run creates nothing; running again continues with the same index. The
// new index's number follows the highest existing one, even without an alias.
func TestRebuildShortStopsAndContinues(t *testing.T) {
	t.Parallel()
	r := newRBRig(t)
	def := r.def(false, false, "") // no list endpoint: the ids come from Redis
	alias := def.Elasticsearch.Alias
	ids := rbIDs(1, 30)
	for _, id := range ids {
		r.put(id, "shop "+id)
	}
	r.start(def)
	r.waitConverged(def, ids, 30*time.Second)
	// Documents only the old index has (Redis and the source do not know
	// them): no rebuild brings them over.
	var ghosts []sink.Doc
	for i := range 5 {
		ghosts = append(ghosts, sink.Doc{ID: fmt.Sprintf("ghost-%d", i), Version: 1, Body: []byte(`{"id":"ghost"}`)})
	}
	if err := elasticindex.New(r.es, elasticindex.Options{Alias: alias}).Write(context.Background(), ghosts); err != nil {
		t.Fatal(err)
	}
	r.esJSON("PUT", "/"+alias+"-v6", `{"settings":{"number_of_shards":1,"number_of_replicas":0}}`) // a rebuild given up on

	var out testenv.Buffer
	res, err := r.env.Rebuild(context.Background(), def, replay.RebuildOptions{DryRun: true, Out: &out})
	if err != nil || res.Reissued != int64(len(ids)) || res.New != alias+"-v7" || res.Swapped {
		t.Fatalf("dry run: %+v, %v; want %d ids counted for %s-v7", res, err, len(ids), alias)
	}
	if r.indexExists(alias+"-v7") || r.aliasIndices(alias+elasticindex.RebuildSuffix) != nil {
		t.Fatalf("the dry run created the new index or the rebuild alias:\n%s", out.String())
	}

	out = testenv.Buffer{}
	res, err = r.env.Rebuild(context.Background(), def, replay.RebuildOptions{Rate: -1, Out: &out})
	t.Logf("first run:\n%s", out.String())
	if !errors.Is(err, replay.ErrRebuildShort) {
		t.Fatalf("Rebuild = %v, want ErrRebuildShort", err)
	}
	if res.Swapped || res.NewCount != int64(len(ids)) || res.OldCount != int64(len(ids)+len(ghosts)) {
		t.Errorf("result %+v, want counts %d and %d, not swapped", res, len(ids), len(ids)+len(ghosts))
	}
	if !strings.Contains(out.String(), "not swapping") {
		t.Errorf("the output does not say why it stops")
	}
	if got := r.aliasIndices(alias); !slices.Equal(got, []string{alias + "-v1"}) {
		t.Errorf("alias %s → %v after a short rebuild", alias, got)
	}
	if got := r.aliasIndices(alias + elasticindex.RebuildSuffix); !slices.Equal(got, []string{alias + "-v7"}) {
		t.Errorf("rebuild alias → %v, want [%s-v7] kept for inspection", got, alias)
	}

	// A run with another mapping does not continue into this index.
	other := r.def(false, false, "{name: version, from: shop.version, type: integer}", "{name: version, from: shop.version, type: float}")
	if _, err := r.env.Rebuild(context.Background(), other, replay.RebuildOptions{Rate: -1}); err == nil || !strings.Contains(err.Error(), "conflicts with the definition") {
		t.Errorf("Rebuild with another mapping into the index left = %v, want a refusal", err)
	}

	r.put("3", "changed between the runs")
	out = testenv.Buffer{}
	res, err = r.env.Rebuild(context.Background(), def, replay.RebuildOptions{Rate: -1, Tolerance: 0.2, Out: &out})
	t.Logf("second run:\n%s", out.String())
	if err != nil {
		t.Fatalf("second Rebuild: %v", err)
	}
	if !res.Resumed || res.New != alias+"-v7" || !res.Swapped {
		t.Errorf("second run %+v, want it to continue with %s-v7 and swap", res, alias)
	}
	if !strings.Contains(out.String(), "continuing the rebuild into "+alias+"-v7") {
		t.Errorf("the output does not say it continues")
	}
	r.waitConverged(def, ids, 30*time.Second)
	if got := r.liveCount(alias); got != int64(len(ids)) {
		t.Errorf("%d live documents behind the alias, want %d", got, len(ids))
	}
}
