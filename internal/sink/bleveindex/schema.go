package bleveindex

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/analysis/analyzer/custom"
	"github.com/blevesearch/bleve/v2/analysis/analyzer/keyword"
	"github.com/blevesearch/bleve/v2/analysis/token/length"
	"github.com/blevesearch/bleve/v2/analysis/token/lowercase"
	"github.com/blevesearch/bleve/v2/analysis/tokenizer/single"
	"github.com/blevesearch/bleve/v2/analysis/tokenizer/unicode"
	"github.com/blevesearch/bleve/v2/mapping"
	index "github.com/blevesearch/bleve_index_api"

	"github.com/readside/readside/projections"
)

// Names in the bleve index. Projection fields cannot start with
// "readside_", and no field name holds a dot, so none of these can clash
// with a field or with a text field's keyword copy ("<field>.raw").
const (
	// bleveValue is the stored (not indexed) field holding what Get returns,
	// in the layout of sink.DecodeValue.
	bleveValue = "readside_value"
	// bleveLive is an indexed boolean that only live documents have: every
	// search keeps to it, so tombstones are never listed.
	bleveLive = "readside_live"
	// bleveText analyses text fields like Elasticsearch's standard analyzer:
	// Unicode word boundaries (UAX #29), lower-cased, no stop words (bleve's
	// own "standard" analyzer drops English stop words).
	bleveText = "readside_standard"
	// bleveRaw is a text field's keyword copy for filters and sorts: the
	// whole value, left out beyond rawMaxChars like Elasticsearch's
	// ignore_above.
	bleveRaw         = "readside_raw"
	bleveIgnoreAbove = "readside_ignore_above"
	rawMaxChars      = 256
	rawSuffix        = ".raw"
	// bleveIntPrefix names an integer field's exact copy: bleve's numbers
	// are float64, exact only up to 2^53, so filters and sorts on an integer
	// use "readside_int_<field>", a keyword holding the int64 in a form
	// whose byte order is the numbers' order (see intTerm).
	bleveIntPrefix = "readside_int_"
	// bleveLayout is the version of how this file maps fields to the index.
	// Changing the mapping code must change it, so that every index built
	// the old way is re-indexed.
	bleveLayout = 2
)

// exactInt reports whether f has an exact integer copy.
func exactInt(f projections.Field) bool {
	return f.Type == projections.Integer && (f.Filter || f.Sort)
}

// intTerm encodes n so that the terms sort as the numbers do: the sign bit
// flipped makes the order of uint64 that of int64, and fixed-width hex keeps
// it in byte order.
func intTerm(n int64) string {
	return fmt.Sprintf("%016x", uint64(n)^(1<<63))
}

// intOf reads an integer exactly, from a JSON number (a decimal is
// truncated, as Elasticsearch does in a long field), or from a filter's
// value.
func intOf(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int:
		return int64(x), true
	case float64:
		if x == math.Trunc(x) && x >= math.MinInt64 && x < math.MaxInt64 {
			return int64(x), true
		}
		return 0, false
	}
	n, ok := numberOf(v)
	if !ok {
		return 0, false
	}
	if i, err := strconv.ParseInt(n, 10, 64); err == nil {
		return i, true
	}
	if x, err := strconv.ParseFloat(n, 64); err == nil && x >= math.MinInt64 && x < math.MaxInt64 {
		return int64(math.Trunc(x)), true
	}
	return 0, false
}

// bleveSchema is what the sink knows of a projection's fields: how to index
// them and how to query them.
type bleveSchema struct {
	fields     map[string]projections.Field
	indexed    []projections.Field // fields the index holds, in order
	searchable []string            // text fields sink.Query.Text looks in
	geo        string              // the geo_point field Near applies to ("": none)
	geoArray   bool                // it may hold several points
}

func newBleveSchema(fields []projections.Field) *bleveSchema {
	s := &bleveSchema{fields: make(map[string]projections.Field, len(fields))}
	for _, f := range fields {
		s.fields[f.Name] = f
		if indexedField(f) {
			s.indexed = append(s.indexed, f)
		}
		if f.Search && f.Type == projections.Text {
			s.searchable = append(s.searchable, f.Name)
		}
		if f.Type == projections.GeoPoint && s.geo == "" {
			s.geo, s.geoArray = f.Name, f.Array
		}
	}
	return s
}

// indexedField reports whether the index holds f, as Elasticsearch's
// mapping does (projections.Definition.Mapping): a field that is searched,
// filtered or sorted, and a geo_point always.
func indexedField(f projections.Field) bool {
	switch f.Type {
	case projections.Object:
		return false
	case projections.GeoPoint:
		return true
	}
	return f.Search || f.Filter || f.Sort
}

// bleveMapping is the index mapping of fields. Only the fields listed are
// indexed (no dynamic mapping); nothing is stored but bleveValue, which the
// sink adds to each document itself.
func bleveMapping(fields []projections.Field) (*mapping.IndexMappingImpl, error) {
	im := bleve.NewIndexMapping()
	im.ScoringModel = index.BM25Scoring // as Elasticsearch scores
	im.IndexDynamic, im.StoreDynamic, im.DocValuesDynamic = false, false, false
	im.DefaultAnalyzer = bleveText
	if err := im.AddCustomAnalyzer(bleveText, map[string]any{
		"type": custom.Name, "tokenizer": unicode.Name, "token_filters": []any{lowercase.Name},
	}); err != nil {
		return nil, err
	}
	if err := im.AddCustomTokenFilter(bleveIgnoreAbove, map[string]any{
		"type": length.Name, "max": float64(rawMaxChars),
	}); err != nil {
		return nil, err
	}
	if err := im.AddCustomAnalyzer(bleveRaw, map[string]any{
		"type": custom.Name, "tokenizer": single.Name, "token_filters": []any{bleveIgnoreAbove},
	}); err != nil {
		return nil, err
	}
	dm := bleve.NewDocumentStaticMapping()
	dm.AddSubDocumentMapping("_all", bleve.NewDocumentDisabledMapping())
	for _, f := range fields {
		if !indexedField(f) {
			continue
		}
		sub := bleve.NewDocumentStaticMapping() // a geo point's lat and lon are not fields
		for _, fm := range fieldMappings(f) {
			sub.AddFieldMapping(fm)
		}
		dm.AddSubDocumentMapping(f.Name, sub)
		if exactInt(f) {
			fm := bleve.NewKeywordFieldMapping()
			fm.Store, fm.IncludeInAll, fm.IncludeTermVectors, fm.DocValues = false, false, false, f.Sort
			fm.Analyzer = keyword.Name
			dm.AddFieldMappingsAt(bleveIntPrefix+f.Name, fm)
		}
	}
	im.DefaultMapping = dm
	if err := im.Validate(); err != nil {
		return nil, err
	}
	return im, nil
}

// fieldMappings are the bleve fields of f: a text field is analysed when
// searched, and has its keyword copy "<name>.raw" when filtered or sorted.
// Doc values (what sorts read) are kept for sorted fields and geo points.
func fieldMappings(f projections.Field) []*mapping.FieldMapping {
	plain := func(fm *mapping.FieldMapping) *mapping.FieldMapping {
		fm.Store, fm.IncludeInAll, fm.IncludeTermVectors = false, false, false
		fm.Index, fm.DocValues = true, f.Sort
		return fm
	}
	switch f.Type {
	case projections.Text:
		var fms []*mapping.FieldMapping
		if f.Search {
			fm := plain(bleve.NewTextFieldMapping())
			fm.Analyzer, fm.DocValues = bleveText, false
			fms = append(fms, fm)
		}
		if f.Filter || f.Sort {
			fm := plain(bleve.NewTextFieldMapping())
			fm.Name, fm.Analyzer = f.Name+rawSuffix, bleveRaw
			fms = append(fms, fm)
		}
		return fms
	case projections.Keyword:
		fm := plain(bleve.NewKeywordFieldMapping())
		fm.Analyzer = keyword.Name
		return []*mapping.FieldMapping{fm}
	case projections.Integer, projections.Float:
		return []*mapping.FieldMapping{plain(bleve.NewNumericFieldMapping())}
	case projections.Boolean:
		return []*mapping.FieldMapping{plain(bleve.NewBooleanFieldMapping())}
	case projections.Date:
		return []*mapping.FieldMapping{plain(bleve.NewDateTimeFieldMapping())}
	case projections.GeoPoint:
		fm := plain(bleve.NewGeoPointFieldMapping())
		fm.DocValues = true // distance sorts and the exact distance filter read them
		return []*mapping.FieldMapping{fm}
	}
	return nil
}

// bleveSignature identifies how fields are indexed: the index keeps it, and
// an index built for another signature is re-indexed. It leaves out what
// does not change the index (the order of fields, sources, defaults).
func bleveSignature(fields []projections.Field) []byte {
	type sig struct {
		Name, Type           string
		Search, Filter, Sort bool
	}
	var sigs []sig
	for _, f := range fields {
		if indexedField(f) {
			sigs = append(sigs, sig{f.Name, string(f.Type), f.Search, f.Filter, f.Sort})
		}
	}
	slices.SortFunc(sigs, func(a, b sig) int { return strings.Compare(a.Name, b.Name) })
	b, _ := json.Marshal(struct {
		Layout int   `json:"layout"`
		Fields []sig `json:"fields"`
	}{bleveLayout, sigs}) // plain strings and bools always marshal
	return b
}

// data turns a document body into what bleve indexes: each indexed field's
// value in the Go form its mapping takes (string, float64, bool, time.Time,
// a {"lat","lon"} map), a list as []any. Like Elasticsearch, it coerces a
// number's or boolean's text into a keyword, a numeric string into a number,
// and refuses a value that does not fit its field. When lenient (a
// re-index of documents accepted under other field types), it leaves such a
// value out instead, and reports how many it left out.
func (s *bleveSchema) data(body []byte, lenient bool) (map[string]any, int, error) {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var doc map[string]any
	if err := d.Decode(&doc); err != nil || doc == nil {
		if err == nil {
			err = errors.New("null")
		}
		return nil, 0, fmt.Errorf("body is not a JSON object: %w", err)
	}
	out := make(map[string]any, len(s.indexed))
	dropped := 0
	for _, f := range s.indexed {
		v, err := fieldValue(f, doc[f.Name])
		if err != nil {
			if !lenient {
				return nil, 0, fmt.Errorf("field %q: %w", f.Name, err)
			}
			dropped++
			continue
		}
		if v == nil {
			continue
		}
		out[f.Name] = v
		if exactInt(f) {
			out[bleveIntPrefix+f.Name] = intTerms(doc[f.Name])
		}
	}
	return out, dropped, nil
}

// fieldValue converts the JSON value v of f; nil when there is nothing to
// index.
func fieldValue(f projections.Field, v any) (any, error) {
	list, isList := v.([]any)
	if f.Type == projections.GeoPoint && isList && len(list) == 2 {
		if _, ok := list[0].(json.Number); ok { // one point as [lon, lat]
			isList = false
		}
	}
	if !isList {
		return scalarValue(f.Type, v)
	}
	out := make([]any, 0, len(list))
	for _, e := range list {
		x, err := scalarValue(f.Type, e)
		if err != nil {
			return nil, err
		}
		if x != nil {
			out = append(out, x)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// scalarValue converts one JSON value (decoded with UseNumber) to type t.
func scalarValue(t projections.FieldType, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch t {
	case projections.Keyword, projections.Text:
		switch x := v.(type) {
		case string:
			return x, nil
		case json.Number:
			return x.String(), nil
		case bool:
			return strconv.FormatBool(x), nil
		}
	case projections.Integer:
		if n, ok := numberOf(v); ok {
			if i, err := strconv.ParseInt(n, 10, 64); err == nil {
				return float64(i), nil
			}
			// Elasticsearch truncates a decimal in a long field.
			if x, err := strconv.ParseFloat(n, 64); err == nil && x >= math.MinInt64 && x < math.MaxInt64 {
				return math.Trunc(x), nil
			}
		}
	case projections.Float:
		if n, ok := numberOf(v); ok {
			if x, err := strconv.ParseFloat(n, 64); err == nil && !math.IsInf(x, 0) && !math.IsNaN(x) {
				return x, nil
			}
		}
	case projections.Boolean:
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			if x == "true" || x == "false" {
				return x == "true", nil
			}
		}
	case projections.Date:
		ts, err := docDate(v)
		if err != nil {
			return nil, err
		}
		if ts.Before(bleveMinTime) || ts.After(bleveMaxTime) {
			return nil, nil // bleve keeps nanoseconds in an int64: the value is left out of the index
		}
		return ts, nil
	case projections.GeoPoint:
		if lat, lon, ok := geoOf(v); ok {
			return map[string]any{"lat": lat, "lon": lon}, nil
		}
	default:
		return nil, nil
	}
	return nil, fmt.Errorf("%s is not a %s", shortJSON(v), t)
}

// intTerms is the exact copy of an integer field's JSON value (a number or
// a list of them), as intTerm encodes them; fieldValue has checked it.
func intTerms(v any) any {
	if list, ok := v.([]any); ok {
		out := make([]any, 0, len(list))
		for _, e := range list {
			if n, ok := intOf(e); ok {
				out = append(out, intTerm(n))
			}
		}
		return out
	}
	n, _ := intOf(v)
	return intTerm(n)
}

// numberOf returns the text of a JSON number, or of a string holding one.
func numberOf(v any) (string, bool) {
	switch x := v.(type) {
	case json.Number:
		return x.String(), true
	case string:
		return strings.TrimSpace(x), true
	}
	return "", false
}

// geoOf reads a point as Elasticsearch takes it: {"lat","lon"}, "lat,lon"
// or [lon, lat].
func geoOf(v any) (lat, lon float64, ok bool) {
	num := func(x any) (float64, bool) {
		n, isNum := x.(json.Number)
		if !isNum {
			return 0, false
		}
		f, err := n.Float64()
		return f, err == nil
	}
	var ok1, ok2 bool
	switch x := v.(type) {
	case map[string]any:
		lat, ok1 = num(x["lat"])
		lon, ok2 = num(x["lon"])
	case []any:
		if len(x) == 2 {
			lon, ok1 = num(x[0])
			lat, ok2 = num(x[1])
		}
	case string:
		a, b, found := strings.Cut(x, ",")
		var err1, err2 error
		lat, err1 = strconv.ParseFloat(strings.TrimSpace(a), 64)
		lon, err2 = strconv.ParseFloat(strings.TrimSpace(b), 64)
		ok1, ok2 = found && err1 == nil, err2 == nil
	}
	return lat, lon, ok1 && ok2 && lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180
}

// The dates bleve can index: it keeps Unix nanoseconds in an int64.
var (
	bleveMinTime = time.Unix(0, math.MinInt64).UTC()
	bleveMaxTime = time.Unix(0, math.MaxInt64).UTC()
)

// docDateLayouts are the forms of Elasticsearch's strict_date_optional_time
// a document's date takes; a time without a zone is UTC.
var docDateLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04",
	"2006-01-02T15",
	time.DateOnly,
	"2006-01",
	"2006",
}

// docDate reads a document's date as Elasticsearch's default date format
// (strict_date_optional_time||epoch_millis) does, to the millisecond it
// keeps.
func docDate(v any) (time.Time, error) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = x.String()
	case string:
		s = x
	default:
		return time.Time{}, fmt.Errorf("%s is not a date", shortJSON(v))
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil && len(s) > 4 { // "2026" is a year
		return time.UnixMilli(ms).UTC(), nil
	}
	for _, layout := range docDateLayouts {
		if ts, err := time.Parse(layout, s); err == nil {
			return ts.UTC().Truncate(time.Millisecond), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a date", s)
}

// dateSpan reads a date filter value (RFC 3339 or 2006-01-02) as the first
// and last millisecond it names, as Elasticsearch reads a bound: the parts
// it leaves out are rounded down for the first and up for the last, so
// "2026-11-21" spans the whole day and "2026-11-21T10:00:00Z" the whole
// second. Equality keeps a value within the span; gte the first, gt after
// the last, lte up to the last, lt before the first.
func dateSpan(s string) (first, last time.Time, err error) {
	if ts, err := time.Parse(time.DateOnly, s); err == nil {
		return ts, ts.Add(24*time.Hour - time.Millisecond), nil
	}
	ts, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("%q is not a date such as 2026-11-21 or 2026-11-21T10:00:00Z", s)
	}
	ts = ts.UTC()
	if _, clock, _ := strings.Cut(s, "T"); !strings.Contains(clock, ".") {
		return ts, ts.Add(time.Second - time.Millisecond), nil
	}
	ts = ts.Truncate(time.Millisecond)
	return ts, ts, nil
}

// shortJSON shows v in an error message.
func shortJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	const show = 64
	if len(b) > show {
		return string(b[:show]) + "..."
	}
	return string(b)
}
