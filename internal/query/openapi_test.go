package query_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"

	"github.com/readside/readside/internal/assemble"
	"github.com/readside/readside/internal/query"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/projections"
)

// contract holds a server's /openapi.json and checks requests and answers
// against it with libopenapi-validator (OpenAPI 3.1, JSON Schema 2020-12).
type contract struct {
	spec []byte
	doc  map[string]any // spec, decoded
	mu   sync.Mutex     // the validator's caches are not meant for concurrent tests
	v    validator.Validator
}

// newContract reads /openapi.json from h, checks that it is a valid OpenAPI
// 3.1 document, and builds a validator of it.
func newContract(t testing.TB, h http.Handler) *contract {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/openapi.json", nil))
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("GET /openapi.json: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	c := &contract{spec: rec.Body.Bytes()}
	if err := json.Unmarshal(c.spec, &c.doc); err != nil {
		t.Fatalf("/openapi.json is not JSON: %v", err)
	}
	doc, err := libopenapi.NewDocument(c.spec)
	if err != nil {
		t.Fatalf("/openapi.json: %v", err)
	}
	if doc.GetVersion() != "3.1.0" {
		t.Fatalf("/openapi.json is OpenAPI %q, want 3.1.0", doc.GetVersion())
	}
	// Formats are assertions: a date filter is a real day (format date).
	v, errs := validator.NewValidator(doc, config.WithFormatAssertions())
	if len(errs) > 0 {
		t.Fatalf("/openapi.json: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, e := range verrs {
			t.Errorf("/openapi.json is not a valid OpenAPI 3.1 document: %s", e.Error())
		}
		t.FailNow()
	}
	c.v = v
	return c
}

// check validates the answer to req against the document, failing t when it
// does not fit. It validates req too: a request answered with success (2xx,
// 304) must fit the document. It returns the request's problems, so that a
// test of a bad request can tell whether the document rejects it as well.
func (c *contract) check(t testing.TB, req *http.Request, res *http.Response, body []byte) (requestProblems []string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	res.Body = io.NopCloser(bytes.NewReader(body))
	if ok, errs := c.v.ValidateHttpResponse(req, res); !ok {
		for _, e := range errs {
			t.Errorf("GET %s → %d does not fit /openapi.json: %s\nbody: %.600s", req.URL.RequestURI(), res.StatusCode, e.Error(), body)
		}
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	if ok, errs := c.v.ValidateHttpRequest(req); !ok {
		for _, e := range errs {
			requestProblems = append(requestProblems, e.Error())
		}
	}
	if res.StatusCode < 400 && len(requestProblems) > 0 {
		t.Errorf("GET %s succeeded (%d), but the request does not fit /openapi.json: %s", req.URL.RequestURI(), res.StatusCode, strings.Join(requestProblems, "; "))
	}
	return requestProblems
}

// get is GET url checked against the contract; header holds name, value pairs.
func (c *contract) get(t testing.TB, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	res, body, _ := c.call(t, url, header...)
	return res, body
}

// call is get, also returning the request's problems with the document.
func (c *contract) call(t testing.TB, url string, header ...string) (*http.Response, []byte, []string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, body, c.check(t, req, res, body)
}

// serveRecorded runs req through h and checks the answer against the contract.
func (c *contract) serveRecorded(t testing.TB, h http.Handler, req *http.Request) (*http.Response, []byte, []string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	body := rec.Body.Bytes()
	return res, body, c.check(t, req, res, body)
}

// at returns the part of the decoded document at the path of keys.
func (c *contract) at(path ...string) any {
	var cur any = c.doc
	for _, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

// parameters returns the parameters of GET path, by name.
func (c *contract) parameters(path string) map[string]map[string]any {
	out := map[string]map[string]any{}
	ps, _ := c.at("paths", path, "get", "parameters").([]any)
	for _, p := range ps {
		m := p.(map[string]any)
		out[m["name"].(string)] = m
	}
	return out
}

// specServer is a Server over def alone: its backends are never asked (for
// the document) or fail at once.
func specServer(t testing.TB, def *projections.Definition, o query.Options) *query.Server {
	t.Helper()
	return query.New([]query.View{{Def: def, Docs: downDocs{}, Search: closedSearch(t, def), Sources: []assemble.Fetcher{downSource{}}}}, nil, logger(), nil, o)
}

func TestOpenAPIDocument(t *testing.T) {
	def := richDef(t, "shops", "http://127.0.0.1:1")
	s := specServer(t, def, query.Options{MaxLimit: 50, MaxIDs: 30, MaxQuery: 120})
	c := newContract(t, s)

	// Generated once: every answer is the same bytes.
	again := httptest.NewRecorder()
	s.ServeHTTP(again, httptest.NewRequest("GET", "/openapi.json", nil))
	if !bytes.Equal(again.Body.Bytes(), c.spec) {
		t.Error("/openapi.json changes between requests")
	}
	if got := c.at("info", "title"); got != "Readside query API" {
		t.Errorf("info.title = %v", got)
	}
	for _, p := range []string{"/v1/shops/{id}", "/v1/shops", "/healthz", "/readyz", "/openapi.json"} {
		if c.at("paths", p, "get") == nil {
			t.Errorf("no GET %s", p)
		}
	}

	detail := c.parameters("/v1/shops/{id}")
	if id := detail["id"]; id == nil || id["in"] != "path" || id["required"] != true {
		t.Errorf("detail id parameter: %v", id)
	}
	id := c.at("components", "schemas", "Id").(map[string]any)
	if id["minLength"] != 1.0 || id["maxLength"] != float64(projections.MaxIDLen) || id["pattern"] == nil || id["not"] == nil {
		t.Errorf("Id schema is not precise: %v", id)
	}

	list := c.parameters("/v1/shops")
	want := map[string]string{ // parameter → its schema's type
		"ids": "array", "q": "string", "sort": "string", "limit": "integer", "cursor": "string", "near": "string", "within": "string",
		"name": "array", "city": "array", "rating": "array", "open": "array", "tags": "array", "seats": "array", "opened": "array", "price": "array",
		"rating.gte": "number", "rating.gt": "number", "rating.lte": "number", "rating.lt": "number",
		"seats.gte": "integer", "seats.lt": "integer", "opened.gte": "string", "opened.lt": "string", "price.lte": "number",
	}
	for name, typ := range want {
		p := list[name]
		if p == nil {
			t.Errorf("list has no parameter %s", name)
			continue
		}
		if got := p["schema"].(map[string]any)["type"]; got != typ {
			t.Errorf("parameter %s has type %v, want %s", name, got, typ)
		}
	}
	for _, name := range []string{"version", "location", "cuisine", "hours", "rank", "city.gte", "name.lt", "open.gt", "tags.lte"} {
		if list[name] != nil {
			t.Errorf("list documents parameter %s, which the API refuses", name)
		}
	}
	schemaOf := func(p string) map[string]any { return list[p]["schema"].(map[string]any) }
	if s := schemaOf("limit"); s["minimum"] != 1.0 || s["maximum"] != 50.0 {
		t.Errorf("limit: %v, want 1..50 (MaxLimit)", s)
	}
	if s := schemaOf("ids"); s["maxItems"] != 30.0 || list["ids"]["explode"] != false {
		t.Errorf("ids: %v, want at most 30 (MaxIDs), comma-separated", list["ids"])
	}
	if s := schemaOf("q"); s["maxLength"] != 120.0 {
		t.Errorf("q: %v, want maxLength 120 (MaxQuery)", s)
	}
	// The rules between parameters: an exploded form object over the query
	// that names every parameter and takes ids alone.
	rules := list["parameter-rules"]
	if rules == nil || rules["style"] != "form" || rules["explode"] != true {
		t.Fatalf("parameter-rules: %v", rules)
	}
	names, _ := schemaOf("parameter-rules")["propertyNames"].(map[string]any)["enum"].([]any)
	if len(names) != len(list)-1 {
		t.Errorf("parameter-rules names %d parameters, the operation has %d others", len(names), len(list)-1)
	}
	if ids, _ := schemaOf("parameter-rules")["dependentSchemas"].(map[string]any)["ids"].(map[string]any); ids["maxProperties"] != 1.0 {
		t.Errorf("parameter-rules does not take ids alone: %v", schemaOf("parameter-rules"))
	}
	sortPattern := schemaOf("sort")["pattern"].(string)
	for _, key := range []string{"name", "city", "rating", "seats", "opened", "price", "rank", "distance", "relevance"} {
		if !strings.Contains(sortPattern, key) {
			t.Errorf("sort pattern %s lacks %s", sortPattern, key)
		}
	}

	// The document schema: every field, typed; nullable unless it has a default.
	docSchema := c.at("components", "schemas", "shops.Document").(map[string]any)
	props := docSchema["properties"].(map[string]any)
	for field, typ := range map[string]any{
		"id": "string", "name": []any{"string", "null"}, "version": []any{"integer", "null"}, "rating": []any{"number", "null"},
		"open": []any{"boolean", "null"}, "tags": []any{"array", "null"}, "location": []any{"object", "null"},
		"opened": []any{"string", "integer", "null"}, "readside_partial": "array",
	} {
		got, _ := json.Marshal(props[field].(map[string]any)["type"])
		want, _ := json.Marshal(typ)
		if !bytes.Equal(got, want) {
			t.Errorf("field %s has type %s, want %s", field, got, want)
		}
	}
	if _, ok := props["rank"].(map[string]any)["anyOf"]; !ok {
		t.Errorf("rank has a default: it is the integer or the default, %v", props["rank"])
	}
	if docSchema["additionalProperties"] != false {
		t.Error("documents are flat and closed: additionalProperties should be false")
	}

	for _, code := range []string{"200", "304", "400", "404", "503", "504"} {
		if c.at("paths", "/v1/shops/{id}", "get", "responses", code) == nil {
			t.Errorf("detail documents no %s", code)
		}
	}
	for _, code := range []string{"200", "400", "503", "504"} {
		if c.at("paths", "/v1/shops", "get", "responses", code) == nil {
			t.Errorf("list documents no %s", code)
		}
	}
	for _, h := range []string{"ETag", "X-Readside-Source", "X-Readside-Built-At"} {
		if c.at("paths", "/v1/shops/{id}", "get", "responses", "200", "headers", h) == nil {
			t.Errorf("detail 200 documents no header %s", h)
		}
	}
	if c.at("paths", "/v1/shops", "get", "responses", "200", "headers", "X-Readside-Degraded") == nil {
		t.Error("list 200 documents no X-Readside-Degraded")
	}
	if c.at("components", "responses", "Unavailable", "headers", "Retry-After") == nil {
		t.Error("503 documents no Retry-After")
	}
	if c.at("components", "responses", "BadRequest", "content", "application/problem+json") == nil {
		t.Error("400 is not application/problem+json")
	}
}

// TestOpenAPIDefinitions generates the document for definitions of every
// shape and checks that each is a valid OpenAPI 3.1 document.
func TestOpenAPIDefinitions(t *testing.T) {
	for _, tc := range []struct{ name, fields string }{
		{"minimal", `  - {name: title, from: s.title, type: keyword}`},
		{"no-search-no-geo", `  - {name: n, from: s.n, type: integer, filter: true, sort: true}
  - {name: d, from: s.d, type: date, filter: true}`},
		{"every-type", `  - {name: k, from: s.k, type: keyword, filter: true, sort: true, default: "none"}
  - {name: t, from: s.t, type: text, search: true, filter: true}
  - {name: i, from: s.i, type: integer, array: true, filter: true}
  - {name: f, from: s.f, type: float, default: 1.5}
  - {name: b, from: s.b, type: boolean, default: false, filter: true}
  - {name: d, from: s.d, type: date, array: true}
  - {name: g, from: s.g, type: geo_point, array: true}
  - {name: g2, from: s.g2, type: geo_point, filter: true, sort: true}
  - {name: o, from: s.o, type: object}
  - {name: oa, from: s.oa, type: object, array: true, default: []}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			def, err := projections.Parse(tc.name+".yaml", []byte(fmt.Sprintf(`name: %s
triggers: [{subject: x.changed.*}]
sources: [{name: s, url: "http://127.0.0.1:1/x/{id}"}]
fields:
%s
redis: {key: "x:{id}"}
elasticsearch: {alias: x}
`, tc.name, tc.fields)), projections.Options{})
			if err != nil {
				t.Fatal(err)
			}
			s := specServer(t, def, query.Options{})
			c := newContract(t, s)
			if c.at("paths", "/v1/"+tc.name, "get") == nil {
				t.Errorf("no list path for %s", tc.name)
			}
			if tc.name != "every-type" {
				return
			}
			// A point marked filter and sort is neither: the document does not
			// offer it, and the API refuses it (Elasticsearch would fail the query).
			params := c.parameters("/v1/every-type")
			if params["g2"] != nil || strings.Contains(params["sort"]["schema"].(map[string]any)["pattern"].(string), "g2") {
				t.Error("the document offers to filter or sort on a geo_point")
			}
			for _, q := range []string{"g2=1", "sort=g2"} {
				res, body, _ := c.serveRecorded(t, s, httptest.NewRequest("GET", "/v1/every-type?"+q, nil))
				if res.StatusCode != 400 {
					t.Errorf("?%s: %d %s", q, res.StatusCode, body)
				}
			}
		})
	}
}

// storedDocs is a Redis holding the given documents.
type storedDocs map[string][]byte

func (d storedDocs) GetMany(ctx context.Context, ids []string) ([]*sink.Stored, error) {
	out := make([]*sink.Stored, len(ids))
	for i, id := range ids {
		if b, ok := d[id]; ok {
			out[i] = &sink.Stored{Body: b, Version: 1, BuiltAt: time.Now()}
		}
	}
	return out, nil
}

// TestOpenAPIDocumentSchema: documents the projection code builds, from
// sources answering well, badly or not at all, fit the document schema.
func TestOpenAPIDocumentSchema(t *testing.T) {
	def, err := projections.Parse("every.yaml", []byte(`name: every
triggers: [{subject: x.changed.*}]
sources: [{name: s, url: "http://127.0.0.1:1/x/{id}"}, {name: extra, url: "http://127.0.0.1:1/e/{id}", optional: true}]
fields:
  - {name: k, from: s.k, type: keyword, filter: true, sort: true, default: "none"}
  - {name: t, from: s.t, type: text, search: true, filter: true}
  - {name: i, from: s.i, type: integer, array: true, filter: true}
  - {name: n, from: s.n, type: integer, sort: true}
  - {name: f, from: s.f, type: float, default: 1.5}
  - {name: b, from: s.b, type: boolean, default: "unknown"}
  - {name: d, from: s.d, type: date, filter: true, sort: true}
  - {name: ds, from: s.ds, type: date, array: true}
  - {name: g, from: s.g, type: geo_point}
  - {name: gs, from: s.gs, type: geo_point, array: true}
  - {name: o, from: s.o, type: object}
  - {name: oa, from: s.oa, type: object, array: true, default: []}
  - {name: e, from: extra.e, type: keyword}
redis: {key: "x:{id}"}
elasticsearch: {alias: x}
`), projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	answers := map[string]string{
		"full": `{"k": "a", "t": "Some text", "i": [1, "2", 3.0], "n": 7, "f": 2.5, "b": true, "d": "2026-11-21T10:00:00.5+01:00",
			"ds": ["2026-11-21", 1763719200000, "not a date"], "g": {"lat": 52.5, "lon": 13.4}, "gs": ["37.5,127.0", [13.4, 52.5], {"latitude": 1, "longitude": 2}],
			"o": {"x": [1, {"y": null}]}, "oa": [1, "two", {"three": 3}, null]}`,
		"empty": `{}`,
		"wrong": `{"k": {"a": 1}, "t": [1], "i": "x", "n": 1.5, "f": "NaN", "b": "yes", "d": "yesterday", "ds": 5, "g": {"lat": 100, "lon": 0}, "gs": "nowhere", "o": null, "oa": {"a": 1}}`,
		"nulls": `{"k": null, "t": null, "i": null, "n": null, "f": null, "b": null, "d": null, "ds": null, "g": null, "gs": null, "o": null, "oa": null}`,
		"epoch": `{"d": 1763719200000, "n": "42", "f": "3.25", "b": "false", "i": 9007199254740993}`,
	}
	docs := storedDocs{}
	for id, a := range answers {
		b, err := def.Build(id, map[string][]byte{"s": []byte(a), "extra": []byte(`{"e": "x"}`)})
		if err != nil {
			t.Fatal(err)
		}
		docs[id] = b
	}
	partial, _ := def.Build("partial", map[string][]byte{"s": []byte(answers["full"])}, "extra")
	docs["partial"] = partial

	s := query.New([]query.View{{Def: def, Docs: docs, Search: closedSearch(t, def), Sources: []assemble.Fetcher{downSource{}, downSource{}}}}, nil, logger(), nil, query.Options{})
	c := newContract(t, s)
	var ids []string
	for id := range docs {
		ids = append(ids, id)
		res, body, _ := c.serveRecorded(t, s, httptest.NewRequest("GET", "/v1/every/"+id, nil))
		if res.StatusCode != 200 || !bytes.Equal(body, docs[id]) {
			t.Errorf("%s: %d %s", id, res.StatusCode, body)
		}
	}
	res, body, _ := c.serveRecorded(t, s, httptest.NewRequest("GET", "/v1/every?ids="+strings.Join(ids, ",")+",gone", nil))
	if res.StatusCode != 200 || !bytes.Contains(body, []byte(`"missing":["gone"]`)) {
		t.Errorf("multi-get: %d %s", res.StatusCode, body)
	}

	// A document that breaks its schema is caught: the check is not vacuous.
	docs["bad"] = []byte(`{"id":"bad","k":5}`)
	ft := &fakeT{}
	c.serveRecorded(ft, s, httptest.NewRequest("GET", "/v1/every/bad", nil))
	if !ft.failed {
		t.Error("a document without most fields, with a number for a keyword, fits the schema")
	}
}

// fakeT records failures instead of failing the test.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper()               {}
func (f *fakeT) Errorf(string, ...any) { f.failed = true }
func (f *fakeT) Fatalf(string, ...any) { f.failed = true }
func (f *fakeT) Fatal(...any)          { f.failed = true }
