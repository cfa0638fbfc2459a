package projections_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/readside/readside/projections"
)

const typed = `name: typed
triggers: [{subject: t.*}]
sources: [{name: s, url: "http://api/t/{id}"}]
version: s.meta.updated
fields:
  - {name: k, from: s.k, type: keyword}
  - {name: n, from: s.n, type: integer}
  - {name: f, from: s.f, type: float}
  - {name: b, from: s.b, type: boolean}
  - {name: d, from: s.d, type: date}
  - {name: g, from: s.g, type: geo_point}
  - {name: g2, from: s.g2, type: geo_point}
  - {name: tags, from: s.tags, type: keyword, array: true, filter: true}
  - {name: o, from: s.o, type: object}
  - {name: missing, from: s.nope, type: integer, default: 7}
  - {name: wrong, from: s.k, type: integer}
  - {name: city, from: s.addr.city, type: text, search: true, sort: true}
redis: {key: "t:{id}"}
elasticsearch: {alias: typed}
`

func TestBuild(t *testing.T) {
	d, err := projections.Parse("typed.yaml", []byte(typed), apiEnv)
	if err != nil {
		t.Fatal(err)
	}
	src := `{"k": "twelve", "n": "34", "f": 1.5, "b": "true", "d": "2026-11-21T10:00:00Z",
	"g": {"lat": 52.5, "lon": 13.4}, "g2": "37.5,127.0", "tags": ["a", 1, null], "o": {"x": [1]},
	"addr": {"city": "Seoul"}, "meta": {"updated": "2026-11-21T10:00:00.5Z"}}`
	doc, err := d.Build(`q"1`, map[string][]byte{"s": []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(doc, &got); err != nil {
		t.Fatalf("not JSON: %s", doc)
	}
	want := map[string]any{
		"id": `q"1`, "k": "twelve", "n": 34.0, "f": 1.5, "b": true, "d": "2026-11-21T10:00:00Z",
		"g": map[string]any{"lat": 52.5, "lon": 13.4}, "g2": map[string]any{"lat": 37.5, "lon": 127.0},
		"tags": []any{"a", "1"}, "o": map[string]any{"x": []any{1.0}}, "missing": 7.0, "wrong": nil, "city": "Seoul",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Build =\n%s\nwant\n%v", doc, want)
	}
	v, err := d.VersionOf(map[string][]byte{"s": []byte(src)})
	if err != nil || v != 1795255200500000000 {
		t.Errorf("VersionOf = %d, %v", v, err)
	}
	if _, err := d.VersionOf(map[string][]byte{"s": []byte(`{}`)}); err == nil {
		t.Error("VersionOf without a version: no error")
	}
	if _, err := d.Build("1", map[string][]byte{"s": []byte(`{nope`)}); err == nil {
		t.Error("Build of invalid JSON: no error")
	}
}

func TestMapping(t *testing.T) {
	d, err := projections.Parse("typed.yaml", []byte(typed), apiEnv)
	if err != nil {
		t.Fatal(err)
	}
	m := d.Mapping()
	props := m["properties"].(map[string]any)
	check := map[string]string{
		"id": `{"type":"keyword"}`, "n": `{"doc_values":false,"index":false,"type":"long"}`,
		"tags": `{"type":"keyword"}`, "o": `{"enabled":false,"type":"object"}`, "g": `{"type":"geo_point"}`,
		"city": `{"analyzer":"standard","fields":{"raw":{"ignore_above":256,"type":"keyword"}},"type":"text"}`,
	}
	for f, want := range check {
		b, _ := json.Marshal(props[f])
		if string(b) != want {
			t.Errorf("mapping of %s = %s, want %s", f, b, want)
		}
	}
	if m["dynamic"] != false {
		t.Errorf("dynamic = %v", m["dynamic"])
	}
}

// A definition turns a source answer into the flat document the stores keep.
func ExampleDefinition_Build() {
	def, err := projections.Parse("shops.yaml", []byte(`name: shops
triggers: [{subject: "shop.changed.*"}]
sources: [{name: shop, url: "http://shops.internal/shops/{id}"}]
fields:
  - {name: name, from: shop.name, type: text, search: true}
  - {name: city, from: shop.address.city, type: keyword, filter: true}
  - {name: rating, from: shop.stats.rating, type: float, sort: true}
redis: {key: "shop:{id}"}
elasticsearch: {alias: shops}
`), projections.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	url, _ := def.SourceURL(0, "42")
	doc, _ := def.Build("42", map[string][]byte{
		"shop": []byte(`{"name": "Pizza Nord", "address": {"city": "Berlin"}, "stats": {"rating": 4.5}, "secret": "x"}`),
	})
	fmt.Println(url)
	fmt.Println(string(doc))
	// Output:
	// http://shops.internal/shops/42
	// {"id":"42","name":"Pizza Nord","city":"Berlin","rating":4.5}
}
