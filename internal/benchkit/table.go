package benchkit

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Row is the rounds of one table row: the same measurement repeated, whose
// figures the table shows as medians.
type Row[M any] struct {
	Name   string
	Rounds []M
}

// Aggregate groups measurements by the row each names: rows in the order
// first seen, the rounds of each in the order given.
func Aggregate[M any](all []M, row func(M) string) []Row[M] {
	var rows []Row[M]
	for _, m := range all {
		name := row(m)
		i := slices.IndexFunc(rows, func(r Row[M]) bool { return r.Name == name })
		if i < 0 {
			rows = append(rows, Row[M]{Name: name})
			i = len(rows) - 1
		}
		rows[i].Rounds = append(rows[i].Rounds, m)
	}
	return rows
}

// Rounds is the most rounds any row has.
func Rounds[M any](rows []Row[M]) int {
	n := 0
	for _, r := range rows {
		n = max(n, len(r.Rounds))
	}
	return n
}

// Median of xs (the mean of the middle two for an even count); 0 for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// MedianOf is the median of f over the rounds ms.
func MedianOf[M any](ms []M, f func(M) float64) float64 {
	xs := make([]float64, len(ms))
	for i, m := range ms {
		xs[i] = f(m)
	}
	return Median(xs)
}

// Spread formats rates as their median, followed by their range when there
// are several: "1,000 (500–2,000)".
func Spread(rates []float64) string {
	s := Grouped(Median(rates))
	if len(rates) > 1 {
		s += fmt.Sprintf(" (%s–%s)", Grouped(slices.Min(rates)), Grouped(slices.Max(rates)))
	}
	return s
}

// Grouped formats n rounded to an integer with thousands separated by commas.
func Grouped(n float64) string {
	s := strconv.FormatFloat(n, 'f', 0, 64)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Column is a column of a Table.
type Column struct {
	Name string
	Text bool // aligned left; figures are aligned right
}

// Table is a benchmark's report in Markdown: the lines that say when, where
// and how it was measured, a table of one row per scenario, a legend, the
// warnings about the run, and the notes of the rows. Set its fields, add rows
// and notes, then write it with WriteTo.
type Table struct {
	Header   []string // lines above the table, kept apart by Markdown line breaks
	Rounds   int      // rounds of the rows; with more than one, a line says every figure is a median
	Rate     string   // the unit of the rate column, such as "req/s", which shows (min–max) of the rounds
	Columns  []Column // the first names the row
	Legend   string   // below the table: what its columns mean
	Warnings []string // paragraphs after the legend, such as that the run was noisy

	rows  [][]string
	notes []string
}

// AddRow adds a row of the table, a cell per column.
func (t *Table) AddRow(cells ...string) { t.rows = append(t.rows, cells) }

// AddNotes adds a note of row below the table, when there is something to
// say: the notes, separated by semicolons.
func (t *Table) AddNotes(row string, notes []string) {
	if len(notes) > 0 {
		t.notes = append(t.notes, fmt.Sprintf("- %s: %s", row, strings.Join(notes, "; ")))
	}
}

// WriteTo writes the report to w.
func (t *Table) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	for _, h := range t.Header {
		fmt.Fprintf(&b, "%s  \n", h)
	}
	if t.Rounds > 1 {
		fmt.Fprintf(&b, "Medians of %d rounds; %s shows (min–max); each ratio is to the baseline of its own round.  \n", t.Rounds, t.Rate)
	}
	b.WriteString("\n|")
	for _, c := range t.Columns {
		b.WriteString(" " + c.Name + " |")
	}
	b.WriteString("\n|")
	for _, c := range t.Columns {
		if c.Text {
			b.WriteString("---|")
		} else {
			b.WriteString("---:|")
		}
	}
	b.WriteString("\n")
	for _, r := range t.rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	b.WriteString("\n" + t.Legend + "\n")
	for _, w := range t.Warnings {
		b.WriteString("\n" + w + "\n")
	}
	if len(t.notes) > 0 {
		b.WriteString("\n" + strings.Join(t.notes, "\n") + "\n")
	}
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}
