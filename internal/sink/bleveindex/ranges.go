package bleveindex

import (
	"context"
	"math"
	"time"

	"github.com/blevesearch/bleve/v2/mapping"
	"github.com/blevesearch/bleve/v2/numeric"
	"github.com/blevesearch/bleve/v2/search"
	"github.com/blevesearch/bleve/v2/search/query"
	"github.com/blevesearch/bleve/v2/search/searcher"
	index "github.com/blevesearch/bleve_index_api"
)

// numberRange compares a numeric field with x: equality for op "". Both
// zeros are one value, as numbers compare: bleve orders -0 just before +0,
// and Elasticsearch reads a document's -0 as 0 but its -0.0 as -0.0, so
// only a filter that counts them as one keeps the engines alike (see
// bothZeros).
func numberRange(field, op string, x float64) query.Query {
	low, high := numeric.Float64ToInt64(x), numeric.Float64ToInt64(x)
	if x == 0 {
		low, high = numeric.Float64ToInt64(math.Copysign(0, -1)), numeric.Float64ToInt64(0)
	}
	// x is finite, so high+1 and low-1 stay within int64; the open ends
	// hold only infinities and NaNs besides, which are never indexed.
	switch op {
	case "":
		return &trieRange{field: field, min: low, max: high}
	case "gte":
		return &trieRange{field: field, min: low, max: math.MaxInt64}
	case "gt":
		return &trieRange{field: field, min: high + 1, max: math.MaxInt64}
	case "lte":
		return &trieRange{field: field, min: math.MinInt64, max: high}
	default: // "lt"
		return &trieRange{field: field, min: math.MinInt64, max: low - 1}
	}
}

// intRange compares an integer field's exact copy (see intTerm) with n:
// equality for op "".
func intRange(field, op string, n int64) query.Query {
	if op == "" {
		t := query.NewTermQuery(intTerm(n))
		t.SetField(field)
		return t
	}
	yes, no := true, false
	var q *query.TermRangeQuery
	switch op {
	case "gte":
		q = query.NewTermRangeInclusiveQuery(intTerm(n), "", &yes, nil)
	case "gt":
		q = query.NewTermRangeInclusiveQuery(intTerm(n), "", &no, nil)
	case "lte":
		q = query.NewTermRangeInclusiveQuery("", intTerm(n), nil, &yes)
	default: // "lt"
		q = query.NewTermRangeInclusiveQuery("", intTerm(n), nil, &no)
	}
	q.SetField(field)
	return q
}

// dateRange compares a date field with the span first..last of a filter's
// value (see dateSpan): within it for op "".
func dateRange(field, op string, first, last time.Time) query.Query {
	var from, to *time.Time
	fromIn, toIn := true, true
	switch op {
	case "":
		from, to = &first, &last
	case "gte":
		from = &first
	case "gt":
		from, fromIn = &last, false
	case "lte":
		to = &last
	default: // "lt"
		to, toIn = &first, false
	}
	// Bounds beyond the dates bleve indexes (docDate leaves those out) are
	// open, or match nothing. Open means every int64 of nanoseconds: the
	// dates bleve indexes span them all. An exclusive bound on the last
	// nanosecond matches nothing, and does not wrap.
	r := &trieRange{field: field, min: math.MinInt64, max: math.MaxInt64}
	if from != nil {
		if from.After(bleveMaxTime) || (!fromIn && from.Equal(bleveMaxTime)) {
			return query.NewMatchNoneQuery()
		}
		if !from.Before(bleveMinTime) {
			r.min = from.UnixNano()
			if !fromIn {
				r.min++
			}
		}
	}
	if to != nil {
		if to.Before(bleveMinTime) || (!toIn && to.Equal(bleveMinTime)) {
			return query.NewMatchNoneQuery()
		}
		if !to.After(bleveMaxTime) {
			r.max = to.UnixNano()
			if !toIn {
				r.max--
			}
		}
	}
	return r
}

// trieRange keeps documents with a value of a numeric or date field in
// min..max (inclusive), both in bleve's int64 order of numbers
// (numeric.Float64ToInt64) or dates (Unix nanoseconds).
//
// It stands in for bleve's NumericRangeQuery, whose searcher can take
// hours: it covers the range with blocks of the trie bleve indexes (a value
// shifted right by 0, 4, ..., 60 bits) as it should, but lists the terms
// of a block by adding one to the last byte of a term, with carry. A term
// holds 7 bits a byte, so between two neighbouring values whose 7-bit
// digits roll over (0x7f 0x7f ... to 0x00 0x00 ...), it steps through
// every byte string in between, 2^(8k) of them for k bytes rolling over:
// about 3.6e16 dictionary lookups for lte -MaxFloat64 (the open lower end,
// -Inf, and -MaxFloat64 are neighbours across such a roll-over), and as
// many as 2e9 for the span of a second such as 2059-01-19T23:56:07Z. It
// checks no context meanwhile, and leaves the search's goroutine busy
// after the caller gives up.
//
// trieRange lists the same blocks value by value instead, so one range is
// at most 16 levels of 30 terms, each looked up once in the dictionary:
// bounded work for any bounds.
type trieRange struct {
	field    string
	min, max int64
}

// trieStep is the precision step bleve indexes numbers and dates with
// (document.DefaultPrecisionStep, document.DefaultDateTimePrecisionStep).
const trieStep = 4

func (q *trieRange) Searcher(ctx context.Context, r index.IndexReader, m mapping.IndexMapping, o search.SearcherOptions) (search.Searcher, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	keep := func([]byte) bool { return true } // a term searcher finds nothing for a term not indexed
	if rc, ok := r.(index.IndexReaderContains); ok {
		dict, err := rc.FieldDictContains(q.field)
		if err != nil {
			return nil, err
		}
		if d, ok := dict.(index.FieldDict); ok {
			defer d.Close()
		}
		keep = func(term []byte) bool {
			found, err := dict.Contains(term)
			return err == nil && found
		}
	}
	var terms [][]byte
	trieBlocks(q.min, q.max, func(v int64, shift uint) {
		if t := numeric.MustNewPrefixCodedInt64(v, shift); keep(t) {
			terms = append(terms, t)
		}
	})
	// Even without terms, a multi-term searcher rather than a match-none one,
	// as bleve's numeric range searcher does.
	return searcher.NewMultiTermSearcherBytes(ctx, r, terms, q.field, 1, o, true)
}

// trieBlocks calls block for each block of the trie that covers min..max
// (inclusive) exactly, finest first: a block is the values v..v+2^shift-1,
// v a multiple of 2^shift, and is indexed as one term. It works on values
// with their sign bit flipped, where the order of int64s is the order of
// uint64s, as bleve's terms do.
func trieBlocks(min, max int64, block func(v int64, shift uint)) {
	if min > max {
		return
	}
	const sign = 1 << 63
	lo, hi := uint64(min)^sign, uint64(max)^sign // lo..hi in units of 2^shift
	const mask = 1<<trieStep - 1
	emit := func(from, to uint64, shift uint) {
		for u := from; ; u++ {
			block(int64(u<<shift^sign), shift)
			if u == to {
				return
			}
		}
	}
	for shift := uint(0); ; shift += trieStep {
		loBlock, hiBlock := lo>>trieStep, hi>>trieStep // in units of 2^(shift+trieStep)
		if loBlock == hiBlock || shift+trieStep >= 64 {
			emit(lo, hi, shift)
			return
		}
		// The values that do not fill a block of the next level: at most
		// 15 at either end; hiBlock > loBlock >= 0, so neither wraps.
		if lo&mask != 0 {
			emit(lo, lo|mask, shift)
			loBlock++
		}
		if hi&mask != mask {
			emit(hi&^mask, hi, shift)
			hiBlock--
		}
		if loBlock > hiBlock {
			return
		}
		lo, hi = loBlock, hiBlock
	}
}
