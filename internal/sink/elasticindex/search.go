package elasticindex

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/projections"
)

// Search asks Elasticsearch for one page of ids through the alias, with
// _source off: the documents themselves are read from the doc store. It needs
// Options.Fields. A query Elasticsearch refuses (a 400) wraps
// sink.ErrBadQuery.
func (e *Index) Search(ctx context.Context, q sink.Query) (sink.Page, error) {
	if e.err != nil {
		return sink.Page{}, e.err
	}
	body, err := json.Marshal(e.searchBody(q))
	if err != nil {
		return sink.Page{}, err
	}
	s := e.c.Search
	res, err := s(s.WithContext(ctx), s.WithIndex(e.o.Alias), s.WithBody(bytes.NewReader(body)),
		s.WithFilterPath("hits.hits._id", "hits.hits.sort", "error.reason", "error.root_cause.reason"))
	if err != nil {
		return sink.Page{}, fmt.Errorf("sink: elasticsearch search: %w", err)
	}
	resp, err := readBody(res)
	if err != nil {
		return sink.Page{}, fmt.Errorf("sink: elasticsearch search: %w", err)
	}
	switch {
	case res.StatusCode == http.StatusBadRequest:
		reason := gjson.GetBytes(resp, "error.root_cause.0.reason").Str // "all shards failed" says less
		if reason == "" {
			reason = gjson.GetBytes(resp, "error.reason").Str
		}
		return sink.Page{}, fmt.Errorf("%w: %s", sink.ErrBadQuery, reason)
	case res.IsError():
		return sink.Page{}, fmt.Errorf("sink: elasticsearch search: %s", res.Status())
	}
	hits := gjson.GetBytes(resp, "hits.hits").Array()
	p := sink.Page{IDs: make([]string, 0, len(hits))}
	for _, h := range hits {
		p.IDs = append(p.IDs, h.Get("_id").Str)
	}
	if n := len(hits); n > 0 {
		// Only the last hit's sort values are the next page's start.
		p.After = decodeSortValues(hits[n-1].Get("sort").Raw)
	}
	return p, nil
}

// decodeSortValues reads a hit's sort values for search_after, keeping numbers
// as Elasticsearch wrote them: a long beyond 2^53, or the Long.MAX_VALUE that
// stands for a missing value, does not survive a float64, and a rounded
// search_after skips or repeats documents.
func decodeSortValues(raw string) []any {
	var after []any
	d := json.NewDecoder(strings.NewReader(raw))
	d.UseNumber()
	if d.Decode(&after) != nil {
		return nil
	}
	return after
}

// searchBody builds the Elasticsearch query: tombstones out, the user's text
// as a match value (never query syntax), filters, geo, sort with the id as
// the last tie-breaker, so search_after pages are stable.
func (e *Index) searchBody(q sink.Query) map[string]any {
	fields := map[string]*projections.Field{}
	var searchable []string
	geo := ""
	for i := range e.o.Fields {
		f := &e.o.Fields[i]
		fields[f.Name] = f
		if f.Search {
			searchable = append(searchable, f.Name)
		}
		if f.Type == projections.GeoPoint && geo == "" {
			geo = f.Name
		}
	}
	// keyword is the field a filter or sort on f uses: a text field's
	// keyword copy.
	keyword := func(name string) string {
		if f := fields[name]; f != nil && f.Type == projections.Text {
			return name + ".raw"
		}
		return name
	}
	filter := make([]any, 0, len(q.Filters)+1)
	for _, f := range q.Filters {
		values := f.Values
		if fd := fields[f.Field]; fd != nil && fd.Type == projections.Float {
			values = bothZeros(f.Op, values)
		}
		if f.Op == "" {
			filter = append(filter, map[string]any{"terms": map[string]any{keyword(f.Field): values}})
		} else {
			filter = append(filter, map[string]any{"range": map[string]any{keyword(f.Field): map[string]any{f.Op: values[0]}}})
		}
	}
	if q.Near != nil && q.Within > 0 {
		filter = append(filter, map[string]any{"geo_distance": map[string]any{
			"distance": strconv.FormatFloat(q.Within, 'f', -1, 64) + "m",
			geo:        map[string]any{"lat": q.Near.Lat, "lon": q.Near.Lon},
		}})
	}
	boolQ := map[string]any{
		"filter":   filter,
		"must_not": []any{map[string]any{"term": map[string]any{DeletedField: true}}},
	}
	if q.Text != "" {
		boolQ["must"] = []any{map[string]any{"multi_match": map[string]any{
			"query": q.Text, "type": "bool_prefix", "fields": searchable, "operator": "and",
		}}}
	}
	sort := make([]any, 0, len(q.Sort)+1)
	for _, k := range q.Sort {
		order := "asc"
		if k.Desc {
			order = "desc"
		}
		switch k.Field {
		case sink.SortDistance:
			sort = append(sort, map[string]any{"_geo_distance": map[string]any{
				geo: map[string]any{"lat": q.Near.Lat, "lon": q.Near.Lon}, "order": order, "unit": "m",
			}})
		case sink.SortRelevance:
			sort = append(sort, map[string]any{"_score": order})
		default:
			sort = append(sort, map[string]any{keyword(k.Field): map[string]any{"order": order, "missing": "_last"}})
		}
	}
	sort = append(sort, map[string]any{"id": "asc"})
	body := map[string]any{
		"query": map[string]any{"bool": boolQ}, "size": q.Limit, "sort": sort,
		"_source": false, "track_total_hits": false,
	}
	if q.After != nil {
		body["search_after"] = q.After
	}
	return body
}

// bothZeros makes a zero among the values of a filter on a float field stand
// for both zeros, which every engine counts as one value (see numberRange):
// a double field tells -0.0 from 0.0, which it orders before, while a JSON
// -0 (how Go writes -0.0) reads as 0. Equality keeps either zero, gte and
// lt count from -0.0, gt and lte from 0.0.
func bothZeros(op string, values []any) []any {
	out := make([]any, 0, len(values)+1)
	for _, v := range values {
		if x, ok := sink.FilterNumber(v); !ok || x != 0 {
			out = append(out, v)
			continue
		}
		switch op {
		case "":
			out = append(out, json.Number("-0.0"), json.Number("0.0"))
		case "gte", "lt":
			out = append(out, json.Number("-0.0"))
		default: // "gt", "lte"
			out = append(out, json.Number("0.0"))
		}
	}
	return out
}
