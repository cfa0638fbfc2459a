package elasticindex

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/projections"
)

// bodyFields are a definition's fields with every kind Search treats apart:
// a searched text field (filtered and sorted on its keyword copy), a float,
// an integer and a geo point.
var bodyFields = []projections.Field{
	{Name: "name", Type: projections.Text, Search: true},
	{Name: "city", Type: projections.Keyword},
	{Name: "price", Type: projections.Float},
	{Name: "rating", Type: projections.Integer},
	{Name: "location", Type: projections.GeoPoint},
}

// TestSearchBody pins the query Search sends, written as JSON by hand, to
// what it is meant to say (compared as parsed JSON, so key order does not
// count), with values that need escaping.
func TestSearchBody(t *testing.T) {
	e := New(nil, Options{Alias: "shops", Fields: bodyFields})
	tests := []struct {
		name string
		q    sink.Query
		want string
	}{
		{"plain list", sink.Query{Limit: 25},
			`{"query":{"bool":{"filter":[],"must_not":[{"term":{"readside_deleted":true}}]}},"size":25,
			  "sort":[{"id":"asc"}],"_source":false,"track_total_hits":false}`},
		{"every part", sink.Query{
			Text: "gol\"den <&> \u2028 \x01",
			Filters: []sink.Filter{
				{Field: "city", Values: []any{"Berlin", `Kö"ln`}},
				{Field: "name", Values: []any{"Golden"}},
				{Field: "price", Op: "gte", Values: []any{0.0}},
				{Field: "price", Values: []any{json.Number("0"), 1.5}},
				{Field: "rating", Op: "lt", Values: []any{int64(4)}},
			},
			Near: &sink.LatLon{Lat: 52.52, Lon: -13.405}, Within: 1500.5,
			Sort:  []sink.SortKey{{Field: sink.SortDistance}, {Field: sink.SortRelevance, Desc: true}, {Field: "name"}, {Field: "rating", Desc: true}},
			Limit: 10,
			After: []any{json.Number("123.5"), 4.2, "s0\"01", json.Number("9223372036854775807")},
		}, `{"query":{"bool":{
			  "filter":[
			    {"terms":{"city":["Berlin","Kö\"ln"]}},
			    {"terms":{"name.raw":["Golden"]}},
			    {"range":{"price":{"gte":-0.0}}},
			    {"terms":{"price":[-0.0,0.0,1.5]}},
			    {"range":{"rating":{"lt":4}}},
			    {"geo_distance":{"distance":"1500.5m","location":{"lat":52.52,"lon":-13.405}}}],
			  "must_not":[{"term":{"readside_deleted":true}}],
			  "must":[{"multi_match":{"query":"gol\"den <&> \u2028 \u0001","type":"bool_prefix","fields":["name"],"operator":"and"}}]}},
			"size":10,
			"sort":[
			  {"_geo_distance":{"location":{"lat":52.52,"lon":-13.405},"order":"asc","unit":"m"}},
			  {"_score":"desc"},
			  {"name.raw":{"order":"asc","missing":"_last"}},
			  {"rating":{"order":"desc","missing":"_last"}},
			  {"id":"asc"}],
			"_source":false,"track_total_hits":false,
			"search_after":[123.5,4.2,"s0\"01",9223372036854775807]}`},
		{"geo alone", sink.Query{Near: &sink.LatLon{Lat: 1e-7, Lon: 0}, Within: 10, Limit: 1},
			`{"query":{"bool":{"filter":[{"geo_distance":{"distance":"10m","location":{"lat":0.0000001,"lon":0}}}],
			  "must_not":[{"term":{"readside_deleted":true}}]}},"size":1,
			  "sort":[{"id":"asc"}],"_source":false,"track_total_hits":false}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := e.searchBody(tt.q)
			got, err := decodeNumbers(string(body))
			if err != nil {
				t.Fatalf("the body is not JSON: %v\n%s", err, body)
			}
			want, err := decodeNumbers(tt.want)
			if err != nil {
				t.Fatalf("want: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("body:\n%s\nwant:\n%s", body, tt.want)
			}
		})
	}
}

// decodeNumbers parses JSON keeping numbers as written.
func decodeNumbers(s string) (any, error) {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}
