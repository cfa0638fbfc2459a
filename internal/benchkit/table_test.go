package benchkit

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestMedianLeavesItsInputAlone(t *testing.T) {
	in := []float64{3, 1, 2}
	Median(in)
	if !slices.Equal(in, []float64{3, 1, 2}) {
		t.Errorf("Median sorted its input: %v", in)
	}
}

func TestGrouped(t *testing.T) {
	for in, want := range map[float64]string{
		0: "0", 999: "999", 1000: "1,000", 12345.6: "12,346", 1234567: "1,234,567", 1234567.4: "1,234,567",
		-4000: "-4,000", -4321: "-4,321",
	} {
		if got := Grouped(in); got != want {
			t.Errorf("Grouped(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestSpread(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want string
	}{
		{[]float64{1500}, "1,500"},
		{[]float64{2000, 500, 1000}, "1,000 (500–2,000)"},
	} {
		if got := Spread(tc.in); got != tc.want {
			t.Errorf("Spread(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestAggregateKeepsTheOrderFirstSeen(t *testing.T) {
	type m struct {
		row   string
		round int
	}
	all := []m{{"b", 1}, {"a", 1}, {"b", 2}, {"a", 2}, {"c", 1}}
	rows := Aggregate(all, func(x m) string { return x.row })
	var got []string
	for _, r := range rows {
		got = append(got, fmt.Sprint(r.Name, " ", r.Rounds))
	}
	want := []string{"b [{b 1} {b 2}]", "a [{a 1} {a 2}]", "c [{c 1}]"}
	if !slices.Equal(got, want) {
		t.Errorf("Aggregate = %v, want %v", got, want)
	}
	if n := Rounds(rows); n != 2 {
		t.Errorf("Rounds = %d, want 2", n)
	}
}

func TestTable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rounds int
		want   string
	}{
		{"one round", 1, "h1  \nh2  \n\n" +
			"| row | n |\n|---|---:|\n| a | 1 |\n| b | 2 |\n\nlegend\n\nwarning\n\n- b: x; y\n"},
		{"medians", 3, "h1  \nh2  \n" +
			"Medians of 3 rounds; op/s shows (min–max); each ratio is to the baseline of its own round.  \n\n" +
			"| row | n |\n|---|---:|\n| a | 1 |\n| b | 2 |\n\nlegend\n\nwarning\n\n- b: x; y\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := &Table{
				Header: []string{"h1", "h2"}, Rounds: tc.rounds, Rate: "op/s",
				Columns: []Column{{Name: "row", Text: true}, {Name: "n"}},
				Legend:  "legend", Warnings: []string{"warning"},
			}
			tb.AddRow("a", "1")
			tb.AddNotes("a", nil)
			tb.AddRow("b", "2")
			tb.AddNotes("b", []string{"x", "y"})
			var b strings.Builder
			n, err := tb.WriteTo(&b)
			if err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want {
				t.Errorf("got\n%q\nwant\n%q", b.String(), tc.want)
			}
			if int(n) != b.Len() {
				t.Errorf("WriteTo says %d bytes, wrote %d", n, b.Len())
			}
		})
	}
}

// A table of one round, so without the header lines: Markdown line breaks
// end those with two spaces, which an example's output cannot show.
func ExampleTable() {
	type result struct {
		row     string
		rate    float64
		refRate float64 // of the baseline in the same round
	}
	all := []result{{"baseline", 2000, 0}, {"api", 900, 2000}}
	rows := Aggregate(all, func(r result) string { return r.row })
	t := &Table{
		Rounds: Rounds(rows), Rate: "req/s",
		Columns: []Column{{Name: "scenario", Text: true}, {Name: "req/s"}, {Name: "ratio"}},
		Legend:  "ratio: req/s ÷ the baseline's req/s in the same round.",
	}
	for _, r := range rows {
		rates := make([]float64, len(r.Rounds))
		for i, x := range r.Rounds {
			rates[i] = x.rate
		}
		ratio := "–"
		if r.Rounds[0].refRate > 0 {
			ratio = fmt.Sprintf("%.2f", MedianOf(r.Rounds, func(x result) float64 { return x.rate / x.refRate }))
		}
		t.AddRow(r.Name, Spread(rates), ratio)
	}
	t.AddNotes("api", []string{"3 answers 503"})
	t.WriteTo(os.Stdout)
	// Output:
	// | scenario | req/s | ratio |
	// |---|---:|---:|
	// | baseline | 2,000 | – |
	// | api | 900 | 0.45 |
	//
	// ratio: req/s ÷ the baseline's req/s in the same round.
	//
	// - api: 3 answers 503
}
