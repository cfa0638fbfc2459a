package projections

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// ErrBadSource marks a source answer the definition cannot be built from
// (not JSON, no version where the definition names one). Like a bad event, it
// is dead-lettered rather than retried.
var ErrBadSource = errors.New("bad source answer")

// SourceURL returns the URL of source i for the document id.
func (d *Definition) SourceURL(i int, id string) (string, error) {
	return d.sources[i].url.Expand(func(name string) (string, bool) {
		if name == "id" {
			return id, true
		}
		return "", false
	})
}

// SourceTimeout returns the per-request timeout of source i (0: the client's default).
func (d *Definition) SourceTimeout(i int) time.Duration { return d.sources[i].Timeout }

// Versioned reports whether documents carry the source's version; when not,
// the triggering event's stream sequence is their version.
func (d *Definition) Versioned() bool { return d.Version != "" }

// VersionOf reads the version from the source answers: an integer >= 0, or an
// RFC 3339 timestamp (as Unix nanoseconds).
func (d *Definition) VersionOf(answers map[string][]byte) (int64, error) {
	v := lookup(answers, d.Version)
	switch v.Type {
	case gjson.Number:
		n, err := strconv.ParseInt(v.Raw, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%w: version %s at %q is not an integer >= 0", ErrBadSource, v.Raw, d.Version)
		}
		return n, nil
	case gjson.String:
		if n, err := strconv.ParseInt(v.Str, 10, 64); err == nil && n >= 0 {
			return n, nil
		}
		ts, err := time.Parse(time.RFC3339Nano, v.Str)
		if err != nil || ts.Before(time.Unix(0, 0)) {
			return 0, fmt.Errorf("%w: version %q at %q is neither an integer nor an RFC 3339 time", ErrBadSource, v.Str, d.Version)
		}
		return ts.UnixNano(), nil
	}
	return 0, fmt.Errorf("%w: the answer has no version at %q", ErrBadSource, d.Version)
}

// lookup resolves "<source>.<path>" in the source answers.
func lookup(answers map[string][]byte, from string) gjson.Result {
	src, path, hasPath := strings.Cut(from, ".")
	body, ok := answers[src]
	if !ok {
		return gjson.Result{}
	}
	if !hasPath {
		return gjson.ParseBytes(body)
	}
	return gjson.GetBytes(body, path)
}

// Build flattens the source answers into the document for id: a JSON object
// with "id" and every field, ready to store and to send. A value that does
// not fit its field's type counts as missing: the default, or null, is used.
// partial names the optional sources that failed; when there are any, the
// document lists them in PartialField. Build fails only when a source answer
// is not valid JSON.
func (d *Definition) Build(id string, answers map[string][]byte, partial ...string) ([]byte, error) {
	for name, body := range answers {
		if !gjson.ValidBytes(body) {
			return nil, fmt.Errorf("%w: source %s did not answer JSON", ErrBadSource, name)
		}
	}
	buf := make([]byte, 0, 256)
	buf = append(buf, `{"id":`...)
	buf = strconv.AppendQuote(buf, id)
	for _, f := range d.Fields {
		buf = append(buf, ',')
		buf = strconv.AppendQuote(buf, f.Name)
		buf = append(buf, ':')
		buf = f.appendValue(buf, lookup(answers, f.From))
	}
	if len(partial) > 0 {
		buf = append(buf, `,"`+PartialField+`":`...)
		buf = appendJSON(buf, partial)
	}
	return append(buf, '}'), nil
}

func (f *Field) appendValue(buf []byte, v gjson.Result) []byte {
	if f.Array {
		if !v.IsArray() {
			if v.Exists() && v.Type != gjson.Null {
				v = gjson.Parse("[" + v.Raw + "]")
			} else {
				return f.appendDefault(buf)
			}
		}
		buf = append(buf, '[')
		n := 0
		for _, e := range v.Array() {
			if out, ok := f.Type.appendScalar(buf[:len(buf):len(buf)], e, n > 0); ok {
				buf = out
				n++
			}
		}
		return append(buf, ']')
	}
	if out, ok := f.Type.appendScalar(buf, v, false); ok {
		return out
	}
	return f.appendDefault(buf)
}

func (f *Field) appendDefault(buf []byte) []byte {
	if f.Default == nil {
		return append(buf, "null"...)
	}
	return appendJSON(buf, f.Default)
}

// appendScalar appends v as type t, with a leading comma when comma is set,
// and reports false (appending nothing) when v does not fit t.
func (t FieldType) appendScalar(buf []byte, v gjson.Result, comma bool) ([]byte, bool) {
	if !v.Exists() || v.Type == gjson.Null {
		return buf, false
	}
	if comma {
		buf = append(buf, ',')
	}
	switch t {
	case Keyword, Text:
		switch v.Type {
		case gjson.String:
			return strconv.AppendQuote(buf, v.Str), true
		case gjson.Number, gjson.True, gjson.False:
			return strconv.AppendQuote(buf, v.Raw), true
		}
	case Integer:
		if v.Type == gjson.Number || v.Type == gjson.String {
			if n, err := strconv.ParseInt(strings.TrimSpace(v.String()), 10, 64); err == nil {
				return strconv.AppendInt(buf, n, 10), true
			}
			if x, err := strconv.ParseFloat(v.String(), 64); err == nil && x == math.Trunc(x) && math.Abs(x) < 1<<53 {
				return strconv.AppendInt(buf, int64(x), 10), true
			}
		}
	case Float:
		if v.Type == gjson.Number || v.Type == gjson.String {
			if x, err := strconv.ParseFloat(strings.TrimSpace(v.String()), 64); err == nil && !math.IsInf(x, 0) && !math.IsNaN(x) {
				return strconv.AppendFloat(buf, x, 'g', -1, 64), true
			}
		}
	case Boolean:
		switch {
		case v.Type == gjson.True, v.Type == gjson.String && v.Str == "true":
			return append(buf, "true"...), true
		case v.Type == gjson.False, v.Type == gjson.String && v.Str == "false":
			return append(buf, "false"...), true
		}
	case Date:
		switch v.Type {
		case gjson.String:
			if _, err := time.Parse(time.RFC3339Nano, v.Str); err == nil {
				return strconv.AppendQuote(buf, v.Str), true
			}
			if _, err := time.Parse(time.DateOnly, v.Str); err == nil {
				return strconv.AppendQuote(buf, v.Str), true
			}
		case gjson.Number:
			if n, err := strconv.ParseInt(v.Raw, 10, 64); err == nil {
				return strconv.AppendInt(buf, n, 10), true
			}
		}
	case GeoPoint:
		if lat, lon, ok := geoPoint(v); ok {
			buf = append(buf, `{"lat":`...)
			buf = strconv.AppendFloat(buf, lat, 'g', -1, 64)
			buf = append(buf, `,"lon":`...)
			buf = strconv.AppendFloat(buf, lon, 'g', -1, 64)
			return append(buf, '}'), true
		}
	case Object:
		return append(buf, v.Raw...), true
	}
	if comma {
		buf = buf[:len(buf)-1]
	}
	return buf, false
}

// geoPoint reads {"lat","lon"}, {"latitude","longitude"}, "lat,lon" or [lon,lat].
func geoPoint(v gjson.Result) (lat, lon float64, ok bool) {
	switch {
	case v.IsObject():
		la, lo := v.Get("lat"), v.Get("lon")
		if !la.Exists() {
			la, lo = v.Get("latitude"), v.Get("longitude")
		}
		if la.Type != gjson.Number || lo.Type != gjson.Number {
			return 0, 0, false
		}
		lat, lon = la.Float(), lo.Float()
	case v.IsArray():
		a := v.Array()
		if len(a) != 2 || a[0].Type != gjson.Number || a[1].Type != gjson.Number {
			return 0, 0, false
		}
		lon, lat = a[0].Float(), a[1].Float()
	case v.Type == gjson.String:
		las, los, found := strings.Cut(v.Str, ",")
		var err1, err2 error
		lat, err1 = strconv.ParseFloat(strings.TrimSpace(las), 64)
		lon, err2 = strconv.ParseFloat(strings.TrimSpace(los), 64)
		if !found || err1 != nil || err2 != nil {
			return 0, 0, false
		}
	default:
		return 0, 0, false
	}
	return lat, lon, lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180
}
