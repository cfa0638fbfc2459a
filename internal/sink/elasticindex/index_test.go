package elasticindex_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/tidwall/gjson"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/elasticindex"
	"github.com/readside/readside/internal/sink/sinktest"
	"github.com/readside/readside/internal/testenv"
)

var testSettings = map[string]any{"number_of_shards": 1, "number_of_replicas": 0}

// openElastic returns an ensured Elasticsearch sink behind an alias of its
// own, whose index is deleted when the test ends.
func openElastic(t testing.TB, mapping map[string]any) (*elasticindex.Index, *elasticsearch.Client, string) {
	t.Helper()
	ns := testenv.Namespace(t)
	c := testenv.Elastic(t, ns)
	alias := ns + "-docs"
	e := elasticindex.New(c, elasticindex.Options{Alias: alias, Mapping: mapping, Settings: testSettings})
	if err := e.Ensure(sinktest.Context(t)); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	return e, c, alias
}

// esGet is a raw GET of a path, for looking behind the sink.
func esGet(t testing.TB, c *elasticsearch.Client, path string) []byte {
	t.Helper()
	return esDo(t, c, http.MethodGet, path, "")
}

func TestElasticConformance(t *testing.T) {
	t.Parallel()
	mapping := map[string]any{"properties": map[string]any{
		"id": map[string]any{"type": "keyword"}, "version": map[string]any{"type": "long"},
		"note": map[string]any{"type": "text"},
	}}
	sinktest.Run(t, func(t *testing.T) sinktest.Store {
		e, _, _ := openElastic(t, mapping)
		return e
	})
}

// conformanceMapping is the mapping of the suites' documents: their id (a
// keyword in every projection's mapping), version and note.
var conformanceMapping = map[string]any{"properties": map[string]any{
	"id": map[string]any{"type": "keyword"}, "version": map[string]any{"type": "long"},
	"note": map[string]any{"type": "text"},
}}

func TestElasticScan(t *testing.T) {
	t.Parallel()
	sinktest.RunScan(t, func(t *testing.T) sinktest.ScanStore {
		e, _, _ := openElastic(t, conformanceMapping)
		return e
	})
}

func TestElasticReader(t *testing.T) {
	t.Parallel()
	sinktest.RunReader(t, func(t *testing.T) sinktest.ReaderStore {
		e, _, _ := openElastic(t, conformanceMapping)
		return e
	})
}

func TestElasticCounter(t *testing.T) {
	t.Parallel()
	sinktest.RunCounter(t, func(t *testing.T) sinktest.CounterStore {
		e, _, _ := openElastic(t, conformanceMapping)
		return e
	})
}

func TestElasticOptionsValidate(t *testing.T) {
	tests := []struct {
		o       elasticindex.Options
		wantErr string
	}{
		{elasticindex.Options{Alias: "shops"}, ""},
		{elasticindex.Options{Alias: "shops-2024_a.b"}, ""},
		{elasticindex.Options{}, "empty"},
		{elasticindex.Options{Alias: "Shops"}, "lower case"},
		{elasticindex.Options{Alias: "a b"}, "valid index name"},
		{elasticindex.Options{Alias: "a*"}, "valid index name"},
		{elasticindex.Options{Alias: "_a"}, "valid index name"},
		{elasticindex.Options{Alias: strings.Repeat("a", 253)}, "longer"},
		{elasticindex.Options{Alias: "a", Mapping: map[string]any{"x": func() {}}}, "mapping"},
	}
	for _, tt := range tests {
		err := tt.o.Validate()
		if (err != nil) != (tt.wantErr != "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%q: Validate() = %v, want %q", tt.o.Alias, err, tt.wantErr)
		}
	}
}

func TestElasticEnsure(t *testing.T) {
	t.Parallel()
	mapping := map[string]any{"properties": map[string]any{"name": map[string]any{"type": "keyword"}}}
	before, _ := json.Marshal(mapping)
	ns := testenv.Namespace(t)
	c := testenv.Elastic(t, ns)
	alias := ns + "-shops"
	ctx := sinktest.Context(t)

	// Processes racing to Ensure all succeed and create one index.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			errs[i] = elasticindex.New(c, elasticindex.Options{Alias: alias, Mapping: mapping, Settings: testSettings}).Ensure(ctx)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("racing Ensure %d: %v", i, err)
		}
	}
	aliases := esGet(t, c, "/_alias/"+alias)
	if got := gjson.GetBytes(aliases, "@keys").String(); got != fmt.Sprintf(`["%s-v1"]`, alias) {
		t.Fatalf("alias %s points at %s, want [%s-v1]", alias, got, alias)
	}
	if !gjson.GetBytes(aliases, gjson.Escape(alias+"-v1")+".aliases."+gjson.Escape(alias)+".is_write_index").Bool() {
		t.Errorf("%s-v1 is not the write index of %s: %s", alias, alias, aliases)
	}
	m := esGet(t, c, "/"+alias+"-v1/_mapping")
	props := gjson.GetBytes(m, gjson.Escape(alias+"-v1")+".mappings.properties")
	if props.Get("readside_deleted.type").Str != "boolean" || props.Get("name.type").Str != "keyword" {
		t.Errorf("mapping properties = %s, want name and readside_deleted", props.Raw)
	}
	if after, _ := json.Marshal(mapping); string(after) != string(before) {
		t.Errorf("Ensure changed the caller's mapping: %s", after)
	}
	s := esGet(t, c, "/"+alias+"-v1/_settings")
	if r := gjson.GetBytes(s, gjson.Escape(alias+"-v1")+".settings.index.number_of_replicas").Str; r != "0" {
		t.Errorf("number_of_replicas = %q, want the settings given", r)
	}

	// Ensure again is a no-op, even with another mapping: it never changes an index.
	other := elasticindex.New(c, elasticindex.Options{Alias: alias, Mapping: map[string]any{
		"properties": map[string]any{"name": map[string]any{"type": "text"}}}})
	if err := other.Ensure(ctx); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	if got := gjson.GetBytes(esGet(t, c, "/"+alias+"-v1/_mapping"),
		gjson.Escape(alias+"-v1")+".mappings.properties.name.type").Str; got != "keyword" {
		t.Errorf("second Ensure changed the mapping: name is %q", got)
	}
}

// TestElasticMappingError: one document Elasticsearch cannot map is a
// permanent item error with the reason; the rest of the batch is written.
func TestElasticMappingError(t *testing.T) {
	t.Parallel()
	e, _, _ := openElastic(t, map[string]any{"properties": map[string]any{"count": map[string]any{"type": "integer"}}})
	ctx := sinktest.Context(t)
	docs := []sink.Doc{
		{ID: "ok-1", Version: 1, Body: []byte(`{"count":1}`)},
		{ID: "bad", Version: 1, Body: []byte(`{"count":"abc"}`)},
		{ID: "ok-2", Version: 1, Body: []byte(`{"count":2}`)},
		{ID: "ok-3", Version: 1, Deleted: true},
	}
	err := e.Write(ctx, docs)
	var be *sink.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("Write = %v (%T), want a *BatchError", err, err)
	}
	if len(be.Items) != 1 || be.Items[1] == nil {
		t.Fatalf("failed items = %v, want only item 1", be.Items)
	}
	ie := be.Items[1]
	t.Logf("item error: %v", ie)
	if !sink.IsPermanent(ie) || !sink.IsPermanent(err) {
		t.Errorf("item error %v is not permanent", ie)
	}
	if msg := ie.Error(); !strings.Contains(msg, "400") ||
		!(strings.Contains(msg, "document_parsing_exception") || strings.Contains(msg, "mapper_parsing_exception")) {
		t.Errorf("item error %q does not carry the status and the Elasticsearch error type", msg)
	}
	if strings.Contains(ie.Error(), `"abc"`) && strings.Contains(ie.Error(), `{"count"`) {
		t.Errorf("item error %q carries the document source", ie)
	}
	for _, i := range []int{0, 2, 3} {
		got, err := e.Get(ctx, docs[i].ID)
		if err != nil || got.Deleted != docs[i].Deleted || got.Version != 1 {
			t.Errorf("Get(%q) = %+v, %v", docs[i].ID, got, err)
		}
	}
	if _, err := e.Get(ctx, "bad"); !errors.Is(err, sink.ErrNotFound) {
		t.Errorf("Get(bad) = %v, want ErrNotFound", err)
	}
}

// TestElasticUnreachable: Elasticsearch down fails the whole call, transiently.
func TestElasticUnreachable(t *testing.T) {
	t.Parallel()
	c := testenv.ElasticAt(t, "http://127.0.0.1:1")
	e := elasticindex.New(c, elasticindex.Options{Alias: "unreachable"})
	ctx := sinktest.Context(t)
	err := e.Write(ctx, []sink.Doc{sinktest.JSONDoc("a", 1), sinktest.JSONDoc("b", 2)})
	var be *sink.BatchError
	if err == nil || errors.As(err, &be) || sink.IsPermanent(err) {
		t.Fatalf("Write with Elasticsearch down = %v (%T), want a plain transient error", err, err)
	}
	if err := e.Ensure(ctx); err == nil || sink.IsPermanent(err) {
		t.Errorf("Ensure with Elasticsearch down = %v", err)
	}
	if _, err := e.Get(ctx, "a"); err == nil || errors.Is(err, sink.ErrNotFound) {
		t.Errorf("Get with Elasticsearch down = %v, want an error other than ErrNotFound", err)
	}
	if err := e.Refresh(ctx); err == nil {
		t.Errorf("Refresh with Elasticsearch down succeeded")
	}
}

// TestElasticMissingAlias: writing before Ensure must not let Elasticsearch
// auto-create an index named like the alias; the items fail transiently.
func TestElasticMissingAlias(t *testing.T) {
	t.Parallel()
	ns := testenv.Namespace(t)
	c := testenv.Elastic(t, ns)
	e := elasticindex.New(c, elasticindex.Options{Alias: ns + "-missing"})
	ctx := sinktest.Context(t)
	err := e.Write(ctx, []sink.Doc{sinktest.JSONDoc("a", 1), sinktest.JSONDoc("b", 1)})
	var be *sink.BatchError
	if !errors.As(err, &be) || len(be.Items) != 2 || sink.IsPermanent(be.Items[0]) || sink.IsPermanent(be.Items[1]) {
		t.Fatalf("Write without the alias = %v, want both items failed transiently", err)
	}
	res, err := c.Indices.Exists([]string{ns + "-missing"}, c.Indices.Exists.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 {
		t.Errorf("an index named like the alias exists (%s): Write auto-created it", res.Status())
	}
	if _, err := e.Get(ctx, "a"); err == nil || errors.Is(err, sink.ErrNotFound) {
		t.Errorf("Get without the alias = %v, want an error other than ErrNotFound", err)
	}
}

// TestElasticTombstoneIsDocument: a tombstone is a document readers filter out.
func TestElasticTombstoneIsDocument(t *testing.T) {
	t.Parallel()
	e, c, alias := openElastic(t, map[string]any{"properties": map[string]any{"name": map[string]any{"type": "keyword"}}})
	ctx := sinktest.Context(t)
	if err := e.Write(ctx, []sink.Doc{
		{ID: "live", Version: 1, Body: []byte(`{"name":"live"}`)},
		{ID: "gone", Version: 2, Deleted: true},
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	src := esGet(t, c, "/"+alias+"/_doc/gone")
	if got := gjson.GetBytes(src, "_source").Raw; got != `{"readside_deleted":true}` {
		t.Errorf("tombstone source = %s", got)
	}
	if v := gjson.GetBytes(src, "_version").Int(); v != 2 {
		t.Errorf("tombstone _version = %d, want 2", v)
	}
	res, err := c.Search(c.Search.WithContext(ctx), c.Search.WithIndex(alias), c.Search.WithBody(strings.NewReader(
		`{"query":{"bool":{"must_not":{"term":{"readside_deleted":true}}}}}`)))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.IsError() {
		t.Fatalf("search: %s %s %v", res.Status(), b, err)
	}
	if ids := gjson.GetBytes(b, "hits.hits.#._id").Raw; ids != `["live"]` {
		t.Errorf("search without tombstones = %s, want [live]", ids)
	}
}

// TestElasticBodyLineBreaks: a pretty-printed body cannot break the bulk
// framing: it is compacted; an invalid one is a permanent item error.
func TestElasticBodyLineBreaks(t *testing.T) {
	t.Parallel()
	e, _, _ := openElastic(t, nil)
	ctx := sinktest.Context(t)
	pretty := "{\n  \"name\": \"a\\nb\",\r\n  \"n\": 1\n}"
	inject := "{\"name\": \"x\"\n{\"index\":{\"_id\":\"injected\"}}\n{\"name\":\"y\"}"
	err := e.Write(ctx, []sink.Doc{
		{ID: "pretty", Version: 1, Body: []byte(pretty)},
		{ID: "inject", Version: 1, Body: []byte(inject)},
	})
	var be *sink.BatchError
	if !errors.As(err, &be) || len(be.Items) != 1 || !sink.IsPermanent(be.Items[1]) {
		t.Fatalf("Write = %v, want item 1 permanent", err)
	}
	got, err := e.Get(ctx, "pretty")
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(got.Body, &v); err != nil || !reflect.DeepEqual(v, map[string]any{"name": "a\nb", "n": 1.0}) {
		t.Errorf("Get(pretty) body = %s (%v)", got.Body, err)
	}
	if _, err := e.Get(ctx, "injected"); !errors.Is(err, sink.ErrNotFound) {
		t.Errorf("Get(injected) = %v, want ErrNotFound", err)
	}
}

// BenchmarkElasticWrite writes batches of 100 documents of about 1 KB, each a
// newer version than the last, in one _bulk request per batch.
func BenchmarkElasticWrite(b *testing.B) {
	e, _, _ := openElastic(b, map[string]any{"properties": map[string]any{
		"id": map[string]any{"type": "keyword"}, "name": map[string]any{"type": "text"},
		"city": map[string]any{"type": "keyword"}, "rating": map[string]any{"type": "float"},
	}})
	sinktest.BenchWrite(b, e.Write)
}
