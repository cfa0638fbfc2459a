package elasticindex_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/readside/readside/internal/sink/elasticindex"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
)

func mappingDef(t *testing.T, alias, fields string) *projections.Definition {
	t.Helper()
	d, err := projections.Parse("m.yaml", []byte(`name: m
triggers: [{subject: m.*}]
sources: [{name: s, url: "http://api/m/{id}"}]
fields:
`+fields+`
redis: {key: "m:{id}"}
elasticsearch: {alias: `+alias+`}
`), projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The mapping generated from a definition round-trips through a live index;
// new fields are added; changed fields are refused with their names.
func TestCheckMapping(t *testing.T) {
	ns := testenv.Namespace(t)
	es := testenv.Elastic(t, ns)
	ctx := context.Background()
	base := `  - {name: name, from: s.name, type: text, search: true, sort: true}
  - {name: city, from: s.city, type: keyword, filter: true}
  - {name: rating, from: s.rating, type: float, sort: true}
  - {name: when, from: s.when, type: date}
  - {name: loc, from: s.loc, type: geo_point}
  - {name: hours, from: s.hours, type: object}
  - {name: open, from: s.open, type: boolean}
  - {name: tags, from: s.tags, type: keyword, array: true, filter: true}`
	open := func(fields string) *elasticindex.Index {
		d := mappingDef(t, ns+"-m", fields)
		return elasticindex.New(es, elasticindex.Options{Alias: d.Elasticsearch.Alias, Mapping: d.Mapping()})
	}
	first := open(base)
	if err := first.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if added, err := first.CheckMapping(ctx); err != nil || len(added) != 0 {
		t.Fatalf("same definition: added %v, err %v", added, err)
	}
	grown := open(base + "\n  - {name: phone, from: s.phone, type: keyword}")
	if added, err := grown.CheckMapping(ctx); err != nil || strings.Join(added, ",") != "phone" {
		t.Fatalf("new field: added %v, err %v", added, err)
	}
	if added, err := grown.CheckMapping(ctx); err != nil || len(added) != 0 {
		t.Fatalf("after adding: added %v, err %v", added, err)
	}
	changed := open(strings.Replace(strings.Replace(base, "type: float", "type: integer", 1), "type: keyword, filter: true}", "type: text, search: true}", 1))
	_, err := changed.CheckMapping(ctx)
	var conflict *elasticindex.MappingConflictError
	if !errors.As(err, &conflict) {
		t.Fatalf("changed types: err %v, want a MappingConflictError", err)
	}
	var fields []string
	for _, f := range conflict.Fields {
		fields = append(fields, f.Field)
	}
	if strings.Join(fields, ",") != "city,rating" {
		t.Errorf("conflicting fields %v, want city,rating", fields)
	}
	for _, want := range []string{`field "rating" in index ` + ns + `-m-v1: the index has {"type":"double"}, the definition wants`, "rebuild the index"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
