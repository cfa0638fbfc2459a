package bleveindex

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/readside/readside/projections"
)

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
