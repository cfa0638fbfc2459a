package sinktest

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"math"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/projections"
)

// edgeDeadline is the deadline of each search at the edges: far beyond what
// an answer takes, and short enough that a search that ignores it shows.
const edgeDeadline = 2 * time.Second

// edgeGrace is how long after edgeDeadline a search may take to give up.
const edgeGrace = 3 * time.Second

// edgeDoc is a document of the edge cases: one value of one field of
// SearchDefinition, at or near the edge of what the field holds.
type edgeDoc struct {
	id    string
	field string // rating (float), serial (integer) or opened (date)
	raw   string // the value as JSON, as a domain service may write it: Go writes -0.0 as -0
	value any    // what the model compares: float64, int64 or time.Time
}

func edgeDocs() []edgeDoc {
	maxDown := math.Nextafter(math.MaxFloat64, 0)
	date := func(s string) time.Time {
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			panic(err)
		}
		return ts
	}
	var docs []edgeDoc
	for _, x := range []struct {
		id, raw string
		v       float64
	}{
		{"f-max", "1.7976931348623157e308", math.MaxFloat64},
		{"f-max-down", "1.7976931348623155e308", maxDown},
		{"f-min", "-1.7976931348623157e308", -math.MaxFloat64},
		{"f-min-up", "-1.7976931348623155e308", -maxDown},
		{"f-huge", "1e308", 1e308},
		{"f-one", "1.5", 1.5},
		{"f-normal", "2.2250738585072014e-308", 2.2250738585072014e-308}, // the smallest normal
		{"f-tiny", "5e-324", math.SmallestNonzeroFloat64},
		{"f-zero", "0", 0},
		{"f-neg-zero", "-0.0", math.Copysign(0, -1)},
		{"f-neg-zero-int", "-0", math.Copysign(0, -1)}, // Elasticsearch reads 0, bleve -0.0
		{"f-neg-tiny", "-5e-324", -math.SmallestNonzeroFloat64},
		{"f-neg-one", "-1.5", -1.5},
	} {
		docs = append(docs, edgeDoc{id: x.id, field: "rating", raw: x.raw, value: x.v})
	}
	for _, n := range []struct {
		id string
		v  int64
	}{
		{"i-max", math.MaxInt64}, {"i-max-down", math.MaxInt64 - 1}, {"i-zero", 0}, {"i-minus-one", -1},
		{"i-min-up", math.MinInt64 + 1}, {"i-min", math.MinInt64},
	} {
		docs = append(docs, edgeDoc{id: n.id, field: "serial", raw: fmt.Sprint(n.v), value: n.v})
	}
	for _, d := range []struct{ id, s string }{
		// bleve keeps dates as Unix nanoseconds in an int64: the first and
		// last milliseconds it holds, and dates near them.
		{"d-first", "1677-09-21T00:12:43.146Z"},
		{"d-early", "1677-10-01T00:00:00Z"},
		{"d-epoch-before", "1969-12-31T23:59:59.999Z"},
		{"d-epoch", "1970-01-01T00:00:00Z"},
		{"d-2059", "2059-01-19T23:56:07.500Z"},
		{"d-late", "2262-04-01T00:00:00Z"},
		{"d-last", "2262-04-11T23:47:16.854Z"},
	} {
		docs = append(docs, edgeDoc{id: d.id, field: "opened", raw: `"` + d.s + `"`, value: date(d.s)})
	}
	return docs
}

// edgeValues are filter values at the edges of each field's type, as the
// query API passes them: any finite float64, any int64, any date it reads.
func edgeValues() map[string][]any {
	maxDown := math.Nextafter(math.MaxFloat64, 0)
	max15 := math.Float64frombits(math.Float64bits(math.MaxFloat64) - 15)
	return map[string][]any{
		"rating": {math.MaxFloat64, maxDown, max15, -math.MaxFloat64, -maxDown, -max15,
			1e308, -1e308, 1.5, 2.2250738585072014e-308, 1e-308, math.SmallestNonzeroFloat64,
			0.0, math.Copysign(0, -1), -math.SmallestNonzeroFloat64, -1e-308, -1.5},
		"serial": {int64(math.MaxInt64), int64(math.MaxInt64 - 1), int64(1), int64(0), int64(-1),
			int64(math.MinInt64 + 1), int64(math.MinInt64)},
		"opened": {"0000-01-01", "0001-01-01", "1677-09-21", "1677-09-21T00:12:43Z", "1677-09-21T00:12:43.146Z",
			"1677-10-01", "1969-12-31T23:59:59.999Z", "1970-01-01T00:00:00Z", "2059-01-19T23:56:07Z",
			"2059-01-19", "2262-04-01", "2262-04-11", "2262-04-11T23:47:16Z", "2262-04-11T23:47:16.854Z",
			"2262-04-11T23:47:17Z", "9999-12-31", "9999-12-31T23:59:59.999Z"},
	}
}

// keeps is the model of a filter on one edge document: numbers compare as
// numbers (so -0 and 0 are one value, wherever either is written), dates
// with a bound's missing parts rounded (see sink.Query).
func (d edgeDoc) keeps(f sink.Filter) bool {
	if f.Field != d.field {
		return false
	}
	if f.Op == "" {
		for _, v := range f.Values {
			if d.compare(v) == 0 {
				return true
			}
		}
		return false
	}
	c := d.compare(f.Values[0])
	switch f.Op {
	case "gte":
		return c >= 0
	case "gt":
		return c > 0
	case "lte":
		return c <= 0
	default: // "lt"
		return c < 0
	}
}

// compare is -1, 0 or +1 as d's value is below, within or above v.
func (d edgeDoc) compare(v any) int {
	switch x := d.value.(type) {
	case float64:
		return cmp.Compare(x, v.(float64)) // -0 and 0 compare equal, as the engines do
	case int64:
		return cmp.Compare(x, v.(int64))
	}
	first, last := dateBound(v.(string))
	switch ts := d.value.(time.Time); {
	case ts.Before(first):
		return -1
	case ts.After(last):
		return 1
	}
	return 0
}

// dateBound is the model of a date filter value: the first and last
// millisecond it names.
func dateBound(s string) (first, last time.Time) {
	if day, err := time.Parse(time.DateOnly, s); err == nil {
		return day, day.Add(24*time.Hour - time.Millisecond)
	}
	ts, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	if !strings.Contains(s, ".") {
		return ts, ts.Add(time.Second - time.Millisecond)
	}
	ts = ts.Truncate(time.Millisecond)
	return ts, ts
}

// runSearchEdges checks range filters and equality at the edges of each
// field's type, in an index of their own: each search answers the model's
// ids before its deadline, and leaves no goroutine running. These are the
// values where engines went wrong: bleve's own numeric range searcher spent
// hours, deaf to the context, on lte -MaxFloat64 and on the second
// 2059-01-19T23:56:07Z, and missed the dates within 2^52 ns of either end
// of its int64 nanoseconds; Elasticsearch reads a JSON -0 as 0, but tells
// -0.0 from 0.
func runSearchEdges(t *testing.T, open func(t *testing.T, def *projections.Definition) SearchStore, def *projections.Definition) {
	docs := edgeDocs()
	s := open(t, def)
	written := make([]sink.Doc, len(docs))
	for i, d := range docs {
		written[i] = sink.Doc{ID: d.id, Version: 1, Body: fmt.Appendf(nil, `{"id":%q,%q:%s}`, d.id, d.field, d.raw)}
	}
	write(t, s, written...)
	refresh(t, s)

	var filters []sink.Filter
	for _, field := range []string{"rating", "serial", "opened"} {
		for _, v := range edgeValues()[field] {
			for _, op := range []string{"", "gte", "gt", "lte", "lt"} {
				filters = append(filters, sink.Filter{Field: field, Op: op, Values: []any{v}})
			}
		}
	}
	filters = append(filters,
		sink.Filter{Field: "rating", Values: []any{-math.MaxFloat64, math.MaxFloat64}},
		sink.Filter{Field: "rating", Values: []any{math.Copysign(0, -1), math.SmallestNonzeroFloat64}},
		sink.Filter{Field: "serial", Values: []any{int64(math.MinInt64), int64(math.MaxInt64)}},
		sink.Filter{Field: "opened", Values: []any{"1677-09-21", "2262-04-11"}},
	)

	// The searches run under a label of their own, so that what they leave
	// running can be told from the goroutines of tests running in parallel.
	// A first search outside it lets a client open its connections.
	search(t, s, sink.Query{Limit: 1})
	label := "edges " + t.Name()
	for _, f := range filters {
		q := sink.Query{Filters: []sink.Filter{f}, Limit: 100}
		var want []string
		for _, d := range docs {
			if d.keeps(f) {
				want = append(want, d.id)
			}
		}
		slices.Sort(want)
		got, err := searchBefore(t, s, q, label)
		if err != nil {
			t.Fatalf("%s.%s %v: %v", f.Field, f.Op, f.Values, err)
		}
		if !slices.Equal(got.IDs, want) {
			t.Errorf("%s.%s %v: got %v\nwant %v", f.Field, f.Op, f.Values, got.IDs, want)
		}
	}
	var left []string
	for end := time.Now().Add(edgeGrace); ; {
		if left = labelled(label); len(left) == 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("the searches left goroutines running (how many @ where):\n%s", strings.Join(left, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// searchBefore searches with a ctx of edgeDeadline, from a goroutine with
// the pprof label sinktest=label, and fails the test when the search has
// not returned edgeGrace after the deadline. Such a search is left running:
// an index that waits for its searches on close keeps the test from ending,
// until go test's -timeout.
func searchBefore(t *testing.T, s SearchStore, q sink.Query, label string) (sink.Page, error) {
	t.Helper()
	type answer struct {
		p   sink.Page
		err error
	}
	done := make(chan answer, 1)
	ctx, cancel := context.WithTimeout(t.Context(), edgeDeadline)
	defer cancel()
	pprof.Do(ctx, pprof.Labels("sinktest", label), func(ctx context.Context) {
		go func() {
			p, err := s.Search(ctx, q)
			done <- answer{p, err}
		}()
	})
	select {
	case a := <-done:
		return a.p, a.err
	case <-time.After(edgeDeadline + edgeGrace):
		t.Fatalf("%+v: no answer %v after its deadline of %v; the search still runs", q.Filters, edgeGrace, edgeDeadline)
		return sink.Page{}, nil
	}
}

// labelled returns the stacks of the goroutines with the pprof label
// sinktest=label, each with how many goroutines share it, but for an HTTP
// client's connections waiting in its pool: they are the client's, kept for
// the next request, not a search's work.
func labelled(label string) []string {
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
		return []string{err.Error()}
	}
	mark := fmt.Sprintf("# labels: {%q:%q}", "sinktest", label)
	var out []string
	// debug=1 writes one group of goroutines per stack, a blank line apart.
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 1<<20)
	var group []string
	flush := func() {
		g := strings.Join(group, "\n")
		group = group[:0]
		if strings.Contains(g, mark) && !strings.Contains(g, "net/http.(*persistConn)") {
			out = append(out, g)
		}
	}
	for sc.Scan() {
		switch line := sc.Text(); {
		case line == "":
			flush()
		case !strings.HasPrefix(line, "goroutine profile:"):
			group = append(group, line)
		}
	}
	flush()
	return out
}
