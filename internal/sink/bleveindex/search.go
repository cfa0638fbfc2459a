package bleveindex

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/numeric"
	"github.com/blevesearch/bleve/v2/search"
	"github.com/blevesearch/bleve/v2/search/query"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/projections"
)

// Search answers one page of q (see sink.Query for the semantics), searching
// in parallel with writes. Elasticsearch's behaviour is kept where bleve
// differs: text is analysed without stop words; a text field's filters and
// sorts use its whole value; a date bound rounds its missing parts as
// Elasticsearch does; distances are Elasticsearch's (haversine on a sphere of
// the Earth's mean radius) for both Within and the distance sort, over every
// point of a document; a list sorts by its smallest value ascending, its
// largest descending.
//
// sink.Page.After holds the last hit's sort values, base64-encoded (bleve's
// are bytes); a query with a malformed After, or one the index cannot answer
// (an unknown field, a filter or sort the field does not allow, a value of
// the wrong type, Near missing for Within or the distance sort), wraps
// sink.ErrBadQuery. Any other error is the index failing, or ctx done: a
// search gives up soon after ctx is done, since bleve checks ctx as it
// collects hits, and what it does before, building the searchers, takes work
// bounded by the index, not by the filters' values (see trieRange).
func (b *Index) Search(ctx context.Context, q sink.Query) (sink.Page, error) {
	if err := ctx.Err(); err != nil {
		return sink.Page{}, err
	}
	done, err := b.open()
	if err != nil {
		return sink.Page{}, err
	}
	defer done()
	req, err := b.request(q)
	if err != nil {
		return sink.Page{}, fmt.Errorf("sink: bleve %s: %w", b.name, err)
	}
	if req == nil {
		return sink.Page{IDs: []string{}}, nil
	}
	idx, release := b.current()
	defer release()
	res, err := idx.SearchInContext(ctx, req)
	if err != nil {
		return sink.Page{}, fmt.Errorf("sink: bleve %s: search: %w", b.name, err)
	}
	p := sink.Page{IDs: make([]string, 0, len(res.Hits))}
	for _, h := range res.Hits {
		p.IDs = append(p.IDs, h.ID)
	}
	if n := len(res.Hits); n > 0 {
		p.After = encodeAfter(req.Sort, res.Hits[n-1])
	}
	return p, nil
}

// badQuery is a sink.ErrBadQuery with why.
func badQuery(format string, args ...any) error {
	return fmt.Errorf("%w: %s", sink.ErrBadQuery, fmt.Sprintf(format, args...))
}

// request is the bleve request of q; nil when q.Text has no word, which
// matches nothing (as in Elasticsearch).
func (b *Index) request(q sink.Query) (*bleve.SearchRequest, error) {
	if q.Limit <= 0 {
		return nil, badQuery("limit %d: must be positive", q.Limit)
	}
	if q.Near != nil && (b.schema.geo == "" || math.Abs(q.Near.Lat) > 90 || math.Abs(q.Near.Lon) > 180) {
		if b.schema.geo == "" {
			return nil, badQuery("near: the projection has no geo_point field")
		}
		return nil, badQuery("near %g,%g: not a point on Earth", q.Near.Lat, q.Near.Lon)
	}
	filters := []query.Query{live()}
	for _, f := range q.Filters {
		fq, err := b.filter(f)
		if err != nil {
			return nil, err
		}
		filters = append(filters, fq)
	}
	switch {
	case q.Within < 0 || math.IsNaN(q.Within) || math.IsInf(q.Within, 0):
		return nil, badQuery("within %g: not a distance", q.Within)
	case q.Within > 0 && q.Near == nil:
		return nil, badQuery("within needs near")
	case q.Within > 0:
		filters = append(filters, &withinQuery{field: b.schema.geo, at: *q.Near, metres: q.Within, array: b.schema.geoArray})
	}
	order, scored, err := b.sortOrder(q)
	if err != nil {
		return nil, err
	}
	var after []string
	if q.After != nil {
		if after, err = decodeAfter(order, q.After); err != nil {
			return nil, err
		}
	}
	// Filters never score, as in Elasticsearch's filter context: with text,
	// they narrow its matches; without, they are the query when nothing is
	// scored, and filter a constant score otherwise.
	var bq query.Query = query.NewConjunctionQuery(filters)
	switch {
	case q.Text != "":
		if len(b.schema.searchable) == 0 {
			return nil, badQuery("text: the projection has no searchable field")
		}
		words := b.words(q.Text)
		if len(words) == 0 {
			return nil, nil
		}
		must := query.NewBooleanQuery([]query.Query{textQuery(words, b.schema.searchable)}, nil, nil)
		must.AddFilter(bq)
		bq = must
	case scored:
		all := query.NewBooleanQuery(nil, nil, nil)
		all.AddFilter(bq)
		bq = all
	}
	req := bleve.NewSearchRequestOptions(bq, q.Limit, 0, false)
	req.SortByCustom(order)
	req.SearchAfter = after
	if !scored {
		req.Score = bleve.ScoreNone
	}
	return req, nil
}

// live keeps documents, leaving tombstones out.
func live() query.Query {
	q := query.NewBoolFieldQuery(true)
	q.SetField(bleveLive)
	return q
}

// words are the terms of text, analysed as the text fields are.
func (b *Index) words(text string) []string {
	tokens := b.text.Analyze([]byte(text))
	words := make([]string, 0, len(tokens))
	for _, t := range tokens {
		words = append(words, string(t.Term))
	}
	return words
}

// textQuery is Elasticsearch's bool_prefix multi_match with operator "and":
// in some field, every word but the last as a term, and the last as a
// prefix.
func textQuery(words []string, fields []string) query.Query {
	alts := make([]query.Query, 0, len(fields))
	for _, f := range fields {
		all := make([]query.Query, 0, len(words))
		for i, w := range words {
			if i == len(words)-1 {
				p := query.NewPrefixQuery(w)
				p.SetField(f)
				all = append(all, p)
			} else {
				t := query.NewTermQuery(w)
				t.SetField(f)
				all = append(all, t)
			}
		}
		if len(all) == 1 {
			alts = append(alts, all[0])
		} else {
			alts = append(alts, query.NewConjunctionQuery(all))
		}
	}
	if len(alts) == 1 {
		return alts[0]
	}
	return query.NewDisjunctionQuery(alts)
}

// ranged reports whether a field of type t takes range filters.
func ranged(t projections.FieldType) bool {
	return t == projections.Integer || t == projections.Float || t == projections.Date
}

// filter is the query of one Filter: the field equals one of the values,
// or compares with the first.
func (b *Index) filter(f sink.Filter) (query.Query, error) {
	fd, ok := b.schema.fields[f.Field]
	switch {
	case !ok:
		return nil, badQuery("filter on %q: no such field", f.Field)
	case !fd.Filter || fd.Type == projections.Object || fd.Type == projections.GeoPoint:
		return nil, badQuery("filter on %q: the field is not filterable", f.Field)
	case len(f.Values) == 0:
		return nil, badQuery("filter on %q: no value", f.Field)
	}
	switch f.Op {
	case "":
	case "gte", "gt", "lte", "lt":
		if !ranged(fd.Type) {
			return nil, badQuery("filter %s.%s: ranges apply to integer, float and date fields", f.Field, f.Op)
		}
	default:
		return nil, badQuery("filter %s.%s: unknown operator", f.Field, f.Op)
	}
	field := f.Field
	if fd.Type == projections.Text {
		field += rawSuffix
	}
	values := f.Values
	if f.Op != "" {
		values = values[:1]
	}
	alts := make([]query.Query, 0, len(values))
	for _, v := range values {
		var fq query.Query
		switch fd.Type {
		case projections.Keyword, projections.Text:
			s, ok := v.(string)
			if !ok {
				return nil, badQuery("filter on %q: %v is not a string", f.Field, v)
			}
			t := query.NewTermQuery(s)
			t.SetField(field)
			fq = t
		case projections.Boolean:
			x, ok := v.(bool)
			if !ok {
				return nil, badQuery("filter on %q: %v is not true or false", f.Field, v)
			}
			t := query.NewBoolFieldQuery(x)
			t.SetField(field)
			fq = t
		case projections.Integer:
			_, text := v.(string) // a document may hold "12"; a filter holds numbers
			n, ok := intOf(v)
			if !ok || text {
				return nil, badQuery("filter on %q: %v is not an integer", f.Field, v)
			}
			fq = intRange(bleveIntPrefix+f.Field, f.Op, n)
		case projections.Float:
			x, ok := sink.FilterNumber(v)
			if !ok {
				return nil, badQuery("filter on %q: %v is not a number", f.Field, v)
			}
			fq = numberRange(field, f.Op, x)
		case projections.Date:
			s, ok := v.(string)
			if !ok {
				return nil, badQuery("filter on %q: %v is not a date", f.Field, v)
			}
			first, last, err := dateSpan(s)
			if err != nil {
				return nil, badQuery("filter on %q: %v", f.Field, err)
			}
			fq = dateRange(field, f.Op, first, last)
		}
		alts = append(alts, fq)
	}
	if len(alts) == 1 {
		return alts[0], nil
	}
	return query.NewDisjunctionQuery(alts), nil
}

// sortOrder is q's sort, then the id ascending; scored reports whether it
// needs scores.
func (b *Index) sortOrder(q sink.Query) (order search.SortOrder, scored bool, err error) {
	order = make(search.SortOrder, 0, len(q.Sort)+1)
	for _, k := range q.Sort {
		switch k.Field {
		case sink.SortDistance:
			if q.Near == nil {
				return nil, false, badQuery("sort by distance needs near")
			}
			order = append(order, &geoSort{field: b.schema.geo, at: *q.Near, desc: k.Desc})
		case sink.SortRelevance:
			order = append(order, &search.SortScore{Desc: k.Desc})
			scored = true
		default:
			f, ok := b.schema.fields[k.Field]
			if !ok || !f.Sort || f.Type == projections.Object || f.Type == projections.GeoPoint {
				return nil, false, badQuery("sort by %q: not a sortable field", k.Field)
			}
			sf := &search.SortField{Field: k.Field, Desc: k.Desc, Missing: search.SortFieldMissingLast,
				Type: search.SortFieldAsString, Mode: search.SortFieldMin}
			if k.Desc {
				sf.Mode = search.SortFieldMax
			}
			switch f.Type {
			case projections.Text:
				sf.Field += rawSuffix
			case projections.Integer:
				sf.Field = bleveIntPrefix + k.Field // exact, in byte order
			case projections.Float, projections.Date:
				// Auto keeps the full-precision term of a number, and
				// leaves SearchAfter's values as they are (AsNumber would
				// parse them as decimals).
				sf.Type = search.SortFieldAuto
			}
			order = append(order, sf)
		}
	}
	return append(order, &search.SortDocID{}), scored, nil
}

// encodeAfter is the sink.Page.After of hit: its sort values as SearchAfter
// takes them (a score as a decimal), base64-encoded so that the bytes of
// bleve's numbers survive JSON.
func encodeAfter(order search.SortOrder, hit *search.DocumentMatch) []any {
	after := make([]any, len(order))
	for i, s := range order {
		v := hit.Sort[i]
		if _, ok := s.(*search.SortScore); ok {
			v = strconv.FormatFloat(hit.Score, 'g', -1, 64)
		}
		after[i] = base64.RawURLEncoding.EncodeToString([]byte(v))
	}
	return after
}

// decodeAfter reads a sink.Page.After of a query with this order back into
// SearchAfter values, checking that each can be one.
func decodeAfter(order search.SortOrder, after []any) ([]string, error) {
	if len(after) != len(order) {
		return nil, badQuery("malformed After: %d values for %d sort keys", len(after), len(order))
	}
	out := make([]string, len(after))
	for i, a := range after {
		s, ok := a.(string)
		if !ok {
			return nil, badQuery("malformed After: value %d is not a string", i)
		}
		raw, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			return nil, badQuery("malformed After: value %d: %v", i, err)
		}
		v := string(raw)
		switch o := order[i].(type) {
		case *search.SortScore:
			x, err := strconv.ParseFloat(v, 64)
			ok = err == nil && !math.IsNaN(x)
		case *geoSort:
			ok = prefixCoded(v)
		case *search.SortField:
			if o.Type == search.SortFieldAuto {
				ok = prefixCoded(v) || v == search.HighTerm || v == search.LowTerm
			} else {
				ok = utf8.ValidString(v)
			}
		default:
			ok = utf8.ValidString(v)
		}
		if !ok {
			return nil, badQuery("malformed After: value %d does not fit its sort key", i)
		}
		out[i] = v
	}
	return out, nil
}

// prefixCoded reports whether v is a full-precision bleve number.
func prefixCoded(v string) bool {
	valid, shift := numeric.ValidPrefixCodedTerm(v)
	return valid && shift == 0
}
