package elasticindex_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/tidwall/gjson"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/elasticindex"
	"github.com/readside/readside/internal/sink/sinktest"
	"github.com/readside/readside/internal/testenv"
)

// esDo sends a request with a JSON body and fails the test on an error status.
func esDo(t testing.TB, c *elasticsearch.Client, method, path, body string) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(sinktest.Context(t), method, path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := c.Perform(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode >= 300 {
		t.Fatalf("%s %s: %s %s", method, path, res.Status, b)
	}
	return b
}

// rebuildIndex creates index with mapping and puts the rebuild alias of
// alias on it, as replay rebuild does.
func rebuildIndex(t testing.TB, c *elasticsearch.Client, alias, index, properties string) {
	t.Helper()
	esDo(t, c, "PUT", "/"+index, `{"settings":{"number_of_shards":1,"number_of_replicas":0},
		"mappings":{"properties":`+properties+`},
		"aliases":{"`+alias+elasticindex.RebuildSuffix+`":{"is_write_index":true}}}`)
}

// docIn is what index holds for id: its _version and _source, or found false.
func docIn(t testing.TB, c *elasticsearch.Client, index, id string) gjson.Result {
	t.Helper()
	return gjson.ParseBytes(esDo(t, c, "POST", "/"+index+"/_mget?realtime=true", `{"ids":["`+id+`"]}`)).Get("docs.0")
}

// TestElasticDualWrite: while "<alias>-rebuild" exists, Write puts every
// document and tombstone in both indices under the same guard; a failure of
// the rebuild copy is transient; the rebuild alias vanishing (the swap) is no
// failure at all.
func TestElasticDualWrite(t *testing.T) {
	t.Parallel()
	e, c, alias := openElastic(t, map[string]any{"properties": map[string]any{
		"name": map[string]any{"type": "keyword"}, "count": map[string]any{"type": "keyword"}}})
	ctx := sinktest.Context(t)
	// Written before the rebuild: only in the old index.
	if err := e.Write(ctx, []sink.Doc{{ID: "before", Version: 1, Body: []byte(`{"name":"before"}`)}}); err != nil {
		t.Fatal(err)
	}
	newIndex := alias + "-v2"
	rebuildIndex(t, c, alias, newIndex, `{"name":{"type":"keyword"},"count":{"type":"integer"},"readside_deleted":{"type":"boolean"}}`)
	time.Sleep(elasticindex.RebuildDiscovery) // the sink asked a moment ago: let its answer age

	docs := []sink.Doc{
		{ID: "a", Version: 3, Body: []byte(`{"name":"a"}`)},
		{ID: "b", Version: 5, Body: []byte("{\n\"name\": \"b\"\n}")}, // compacted, in both
		{ID: "gone", Version: 7, Deleted: true},
		{ID: "", Version: 1, Body: []byte(`{}`)}, // invalid: not sent at all
	}
	err := e.Write(ctx, docs)
	var be *sink.BatchError
	if !errors.As(err, &be) || len(be.Items) != 1 || be.Items[3] == nil {
		t.Fatalf("Write = %v, want only the invalid item 3 failed", err)
	}
	for _, index := range []string{alias + "-v1", newIndex} {
		for _, d := range docs[:3] {
			got := docIn(t, c, index, d.ID)
			if !got.Get("found").Bool() || got.Get("_version").Int() != d.Version {
				t.Errorf("%s/%s = %s, want version %d", index, d.ID, got.Raw, d.Version)
				continue
			}
			switch src := got.Get("_source").Raw; {
			case d.Deleted && src != `{"readside_deleted":true}`:
				t.Errorf("%s/%s: source %s, want a tombstone", index, d.ID, src)
			case !d.Deleted && gjson.Get(src, "name").Str != d.ID:
				t.Errorf("%s/%s: source %s", index, d.ID, src)
			}
		}
	}
	if docIn(t, c, newIndex, "before").Get("found").Bool() {
		t.Errorf("a document written before the rebuild alias existed is in the new index")
	}

	// The guard holds in both: an older version is dropped from each.
	if err := e.Write(ctx, []sink.Doc{{ID: "a", Version: 2, Body: []byte(`{"name":"stale"}`)}}); err != nil {
		t.Fatalf("stale Write: %v", err)
	}
	for _, index := range []string{alias + "-v1", newIndex} {
		if got := docIn(t, c, index, "a"); got.Get("_source.name").Str != "a" || got.Get("_version").Int() != 3 {
			t.Errorf("%s/a after a stale write = %s", index, got.Raw)
		}
	}

	// A document only the new mapping rejects: written to the alias, left
	// out of the new index, and no failure: its events are not held back (the
	// rebuild's count check refuses the swap instead).
	err = e.Write(ctx, []sink.Doc{
		{ID: "ok", Version: 1, Body: []byte(`{"count":"7"}`)},
		{ID: "odd", Version: 1, Body: []byte(`{"count":"many"}`)},
	})
	if err != nil {
		t.Fatalf("Write of a doc the new index rejects = %v, want nil", err)
	}
	if !docIn(t, c, alias+"-v1", "odd").Get("found").Bool() {
		t.Errorf("the document the new index rejects is not in the old one")
	}
	if docIn(t, c, newIndex, "odd").Get("found").Bool() || !docIn(t, c, newIndex, "ok").Get("found").Bool() {
		t.Errorf("the new index should hold ok and not odd")
	}

	// The swap: the alias moves to the new index and the rebuild alias goes,
	// in one step. The sink still believes in the rebuild alias; its write to
	// it finds nothing, which is fine: the alias itself reaches the new index.
	esDo(t, c, "POST", "/_aliases", `{"actions":[
		{"remove":{"index":"`+alias+`-v1","alias":"`+alias+`"}},
		{"add":{"index":"`+newIndex+`","alias":"`+alias+`","is_write_index":true}},
		{"remove":{"index":"`+newIndex+`","alias":"`+alias+elasticindex.RebuildSuffix+`"}}]}`)
	if err := e.Write(ctx, []sink.Doc{{ID: "after", Version: 1, Body: []byte(`{"name":"after"}`)}}); err != nil {
		t.Fatalf("Write right after the swap: %v", err)
	}
	if !docIn(t, c, newIndex, "after").Get("found").Bool() || docIn(t, c, alias+"-v1", "after").Get("found").Bool() {
		t.Errorf("after the swap, a write went elsewhere than the new index only")
	}
	if err := e.Write(ctx, []sink.Doc{{ID: "later", Version: 1, Body: []byte(`{"name":"later"}`)}}); err != nil {
		t.Fatalf("second Write after the swap: %v", err)
	}
}

// TestCheckMappingIgnoresRebuild: CheckMapping looks at the index behind the
// alias only. While a rebuild fills a new index with a changed mapping, a
// projector of the running definition still starts; after the swap, one of
// the new definition starts too, and adds nothing to the old index.
func TestCheckMappingIgnoresRebuild(t *testing.T) {
	t.Parallel()
	ns := testenv.Namespace(t)
	c := testenv.Elastic(t, ns)
	ctx := sinktest.Context(t)
	alias := ns + "-m"
	oldDef := mappingDef(t, alias, `  - {name: rating, from: s.rating, type: integer, sort: true}`)
	newDef := mappingDef(t, alias, `  - {name: rating, from: s.rating, type: float, sort: true}`)
	running := elasticindex.New(c, elasticindex.Options{Alias: alias, Mapping: oldDef.Mapping()})
	if err := running.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	rebuildIndex(t, c, alias, alias+"-v2", `{"id":{"type":"keyword"},"readside_partial":{"type":"keyword"},"rating":{"type":"double"},"readside_deleted":{"type":"boolean"}}`)
	if added, err := running.CheckMapping(ctx); err != nil || len(added) > 0 {
		t.Fatalf("running definition during the rebuild: added %v, err %v", added, err)
	}
	next := elasticindex.New(c, elasticindex.Options{Alias: alias, Mapping: newDef.Mapping()})
	var conflict *elasticindex.MappingConflictError
	if _, err := next.CheckMapping(ctx); !errors.As(err, &conflict) || conflict.Fields[0].Index != alias+"-v1" {
		t.Fatalf("new definition before the swap: err %v, want a conflict in %s-v1", err, alias)
	}
	esDo(t, c, "POST", "/_aliases", `{"actions":[
		{"remove":{"index":"`+alias+`-v1","alias":"`+alias+`"}},
		{"add":{"index":"`+alias+`-v2","alias":"`+alias+`","is_write_index":true}},
		{"remove":{"index":"`+alias+`-v2","alias":"`+alias+elasticindex.RebuildSuffix+`"}}]}`)
	if added, err := next.CheckMapping(ctx); err != nil || len(added) > 0 {
		t.Fatalf("new definition after the swap (old index kept): added %v, err %v", added, err)
	}
}
