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
	body := e.searchBody(q)
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
	p := sink.Page{IDs: make([]string, 0, min(q.Limit, 100))}
	var last gjson.Result
	gjson.GetBytes(resp, "hits.hits").ForEach(func(_, h gjson.Result) bool {
		p.IDs = append(p.IDs, h.Get("_id").Str)
		last = h
		return true
	})
	if len(p.IDs) > 0 {
		// Only the last hit's sort values are the next page's start.
		p.After = decodeSortValues(last.Get("sort").Raw)
	}
	return p, nil
}

// SearchEndsWithContext marks that Search returns once its context ends
// (sink.ContextBound): the request, its retries and the reading of the answer
// all go through net/http with that context.
func (e *Index) SearchEndsWithContext() {}

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

// searchFields is what Search needs to know of the definition's fields,
// worked out once (New), not for every search.
type searchFields struct {
	byName     map[string]*projections.Field
	keywords   map[string]string // a text field's keyword copy, by the field's name
	searchable []byte            // the fields a text search matches, as a JSON array
	geo        string            // the first geo_point field
}

func newSearchFields(fields []projections.Field) searchFields {
	sf := searchFields{byName: map[string]*projections.Field{}, keywords: map[string]string{}}
	var searchable []string
	for i := range fields {
		f := &fields[i]
		sf.byName[f.Name] = f
		if f.Type == projections.Text {
			sf.keywords[f.Name] = f.Name + ".raw"
		}
		if f.Search {
			searchable = append(searchable, f.Name)
		}
		if f.Type == projections.GeoPoint && sf.geo == "" {
			sf.geo = f.Name
		}
	}
	sf.searchable = appendJSON(nil, searchable)
	return sf
}

// keyword is the field a filter or sort on name uses: a text field's
// keyword copy.
func (sf searchFields) keyword(name string) string {
	if k, ok := sf.keywords[name]; ok {
		return k
	}
	return name
}

// searchBody builds the Elasticsearch query: tombstones out, the user's text
// as a match value (never query syntax), filters, geo, sort with the id as
// the last tie-breaker, so search_after pages are stable.
//
// It writes the JSON itself, names and texts with appendJSONString, every
// other value the query carries through encoding/json: built as nested maps and marshalled (which sorts every
// map's keys), the body cost about 7 % of the query API's CPU on search
// (a CPU profile under wrk, cmd/querybench).
func (e *Index) searchBody(q sink.Query) []byte {
	sf := e.fields
	b := make([]byte, 0, 512)
	b = append(b, `{"query":{"bool":{"filter":[`...)
	for i, f := range q.Filters {
		if i > 0 {
			b = append(b, ',')
		}
		values := f.Values
		if fd := sf.byName[f.Field]; fd != nil && fd.Type == projections.Float {
			values = bothZeros(f.Op, values)
		}
		if f.Op == "" {
			b = append(b, `{"terms":{`...)
			b = appendJSON(append(appendJSONString(b, sf.keyword(f.Field)), ':'), values)
			b = append(b, `}}`...)
		} else {
			b = append(b, `{"range":{`...)
			b = appendJSONString(b, sf.keyword(f.Field))
			b = appendJSONString(append(b, ":{"...), f.Op)
			b = appendJSON(append(b, ':'), values[0])
			b = append(b, `}}}`...)
		}
	}
	if q.Near != nil && q.Within > 0 {
		if len(q.Filters) > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"geo_distance":{"distance":`...)
		b = append(strconv.AppendFloat(append(b, '"'), q.Within, 'f', -1, 64), `m"`...)
		b = appendLatLon(appendJSONString(append(b, ','), sf.geo), q.Near)
		b = append(b, `}}`...)
	}
	b = append(b, `],"must_not":[{"term":{"`+DeletedField+`":true}}]`...)
	if q.Text != "" {
		b = appendJSONString(append(b, `,"must":[{"multi_match":{"query":`...), q.Text)
		b = append(append(b, `,"type":"bool_prefix","fields":`...), sf.searchable...)
		b = append(b, `,"operator":"and"}}]`...)
	}
	b = strconv.AppendInt(append(b, `}},"size":`...), int64(q.Limit), 10)
	b = append(b, `,"sort":[`...)
	for _, k := range q.Sort {
		order := `"asc"`
		if k.Desc {
			order = `"desc"`
		}
		switch k.Field {
		case sink.SortDistance:
			b = appendLatLon(appendJSONString(append(b, `{"_geo_distance":{`...), sf.geo), q.Near)
			b = append(append(append(b, `,"order":`...), order...), `,"unit":"m"}},`...)
		case sink.SortRelevance:
			b = append(append(append(b, `{"_score":`...), order...), `},`...)
		default:
			b = appendJSONString(append(b, '{'), sf.keyword(k.Field))
			b = append(append(append(b, `:{"order":`...), order...), `,"missing":"_last"}},`...)
		}
	}
	b = append(b, `{"id":"asc"}],"_source":false,"track_total_hits":false`...)
	if q.After != nil {
		b = appendJSON(append(b, `,"search_after":`...), q.After)
	}
	return append(b, '}')
}

// appendJSON appends v as JSON: a value of a filter or a sort value, which
// Marshal cannot fail on.
func appendJSON(b []byte, v any) []byte {
	j, _ := json.Marshal(v)
	return append(b, j...)
}

// appendLatLon appends ":{"lat":…,"lon":…}", the value of a geo field.
func appendLatLon(b []byte, p *sink.LatLon) []byte {
	b = strconv.AppendFloat(append(b, `:{"lat":`...), p.Lat, 'f', -1, 64)
	b = strconv.AppendFloat(append(b, `,"lon":`...), p.Lon, 'f', -1, 64)
	return append(b, '}')
}

// bothZeros makes a zero among the values of a filter on a float field stand
// for both zeros, which every engine counts as one value (see bleveindex's numberRange):
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
