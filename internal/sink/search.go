package sink

import (
	"context"
	"errors"
	"math"
)

// Query is one page of a list or a search, in the terms of a projection
// definition's fields, for any search engine (Elasticsearch, the embedded
// bleve index). The query API validates every part before it builds one:
// a field named here exists and allows what is asked of it.
//
// Every engine answers with the same semantics:
//   - tombstones are never listed;
//   - Text: every word must be found in one searchable field, the last word
//     as a prefix ("piz" finds "Pizza"); words are split and lower-cased
//     like Elasticsearch's standard analyzer does;
//   - Filters all apply (AND); the values of one filter are alternatives (OR);
//     numbers compare as numbers, so -0 and 0 are one value wherever either
//     is written; every finite float64, int64 and date is a valid bound;
//   - Near with Within keeps documents whose geo_point field is at most
//     Within metres away;
//   - Sort keys apply in order, documents without a value last, then the id
//     ascending, so paging by After is stable. SortDistance counts a
//     document without a point as infinitely far (as Elasticsearch does):
//     last nearest first, first farthest first.
type Query struct {
	Text    string
	Filters []Filter
	Near    *LatLon
	Within  float64 // metres; 0 keeps every distance
	Sort    []SortKey
	Limit   int // > 0
	// After is the Page.After of the previous page: the next page starts
	// after that hit. Engines keep it JSON-safe, so it can travel in a cursor
	// (decoded with json.Decoder.UseNumber).
	After []any
}

// Filter keeps documents whose Field matches. Op "" means the field equals
// one of Values; "gte", "gt", "lte" and "lt" compare with Values[0] (numbers
// and dates). Values hold the field's type: int64 (integer), float64
// (float), bool (boolean), string (keyword, text — the whole value —, and
// date, as RFC 3339 or 2006-01-02).
type Filter struct {
	Field  string
	Op     string
	Values []any
}

// FilterNumber reads one of a Filter's Values as a number: an int64, an int,
// a float64 or a json.Number (anything with a Float64 method). It reports
// false for any other value, and for a NaN or an infinity, which no engine
// can compare with.
func FilterNumber(v any) (float64, bool) {
	var x float64
	switch n := v.(type) {
	case int64:
		x = float64(n)
	case int:
		x = float64(n)
	case float64:
		x = n
	case interface{ Float64() (float64, error) }: // json.Number
		f, err := n.Float64()
		if err != nil {
			return 0, false
		}
		x = f
	default:
		return 0, false
	}
	return x, !math.IsNaN(x) && !math.IsInf(x, 0)
}

// LatLon is a point on Earth in degrees.
type LatLon struct{ Lat, Lon float64 }

// SortKey orders by a sortable field, or by SortDistance (from Query.Near)
// or SortRelevance (how well Query.Text matches).
type SortKey struct {
	Field string
	Desc  bool
}

// Sort keys that are not fields.
const (
	SortDistance  = "distance"
	SortRelevance = "_score"
)

// Page is one page of ids in order, and where the next one starts (nil when
// the page was empty).
type Page struct {
	IDs   []string
	After []any
}

// Searcher lists and searches a projection's documents.
type Searcher interface {
	Search(ctx context.Context, q Query) (Page, error)
}

// ContextBound is a Searcher whose Search returns once its context ends,
// whatever the query says (Elasticsearch: its HTTP client gives up the
// request). A caller that must answer by a deadline calls it as it is; of
// any other Searcher it must expect a search that outlives its context
// (bleve builds its searchers without looking at it: work bounded by the
// index, which can be long on a large one), and wait for it on another
// goroutine.
type ContextBound interface {
	Searcher
	// SearchEndsWithContext only marks the promise.
	SearchEndsWithContext()
}

// ErrBadQuery marks a query the engine refused as invalid (a 400, not an
// outage): the caller's request is wrong, retrying cannot help.
var ErrBadQuery = errors.New("the search engine refused the query")
