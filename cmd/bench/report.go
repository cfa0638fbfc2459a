package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// result is one scenario row measured once.
type result struct {
	row     string // the table row; the rounds of one row are aggregated
	events  int
	ids     int // distinct ids; 0 when the row has none
	seconds float64
	fetches int64   // source fetches; -1 when the row has no source
	ref     string  // what the ratio compares with; empty when nothing
	refRate float64 // the events/s of ref, measured in the same round; 0 when none
	cpu     cpuUse
	notes   []string
}

func (r result) rate() float64 { return float64(r.events) / r.seconds }

// noise is the share of the machine other processes took while r was timed.
func (r result) noise() float64 {
	if !r.cpu.ok || r.seconds == 0 {
		return 0
	}
	return r.cpu.other / (float64(runtime.NumCPU()) * r.seconds)
}

// ratio is rate ÷ refRate, or 0 when there is no reference.
func (r result) ratio() float64 {
	if r.refRate == 0 {
		return 0
	}
	return r.rate() / r.refRate
}

// row is the rounds of one scenario row, in the order first seen.
type row struct {
	name   string
	rounds []result
}

func aggregate(all []result) []row {
	var rows []row
	for _, r := range all {
		i := slices.IndexFunc(rows, func(x row) bool { return x.name == r.row })
		if i < 0 {
			rows = append(rows, row{name: r.row})
			i = len(rows) - 1
		}
		rows[i].rounds = append(rows[i].rounds, r)
	}
	return rows
}

// median of xs (the mean of the middle two for an even count).
func median(xs []float64) float64 {
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

func medianOf(rs []result, f func(result) float64) float64 {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	return median(xs)
}

// writeReport writes the Markdown table: every figure is the median of the
// rounds, and the ratio the median of each round's ratio to the baseline of
// that same round.
func writeReport(w io.Writer, header []string, rows []row) error {
	var b strings.Builder
	for _, h := range header {
		fmt.Fprintf(&b, "%s  \n", h)
	}
	rounds := 0
	for _, r := range rows {
		rounds = max(rounds, len(r.rounds))
	}
	if rounds > 1 {
		fmt.Fprintf(&b, "Medians of %d rounds; events/s shows (min–max); each ratio is to the baseline of its own round.  \n", rounds)
	}
	b.WriteString("\n| scenario | events | ids | seconds | events/s | compared with | ratio | fetches/event | CPU s: bench / Redis / ES / other | others' share | steal |\n")
	b.WriteString("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|\n")
	var notes []string
	for _, r := range rows {
		rs := r.rounds
		first := rs[0]
		rates := make([]float64, len(rs))
		for i, x := range rs {
			rates[i] = x.rate()
		}
		rate := grouped(median(rates))
		if len(rs) > 1 {
			rate += fmt.Sprintf(" (%s–%s)", grouped(slices.Min(rates)), grouped(slices.Max(rates)))
		}
		ids, ratio, fpe, cpu, noise, steal := "–", "–", "–", "–", "–", "–"
		if first.ids > 0 {
			ids = grouped(float64(first.ids))
		}
		ref := first.ref
		if first.refRate > 0 {
			ref = fmt.Sprintf("%s = %s/s", ref, grouped(medianOf(rs, func(x result) float64 { return x.refRate })))
			ratio = fmt.Sprintf("%.2f", medianOf(rs, result.ratio))
		} else if ref == "" {
			ref = "–"
		} else {
			ref += " (not measured)"
		}
		if first.fetches >= 0 {
			fpe = fmt.Sprintf("%.3f", medianOf(rs, func(x result) float64 { return float64(x.fetches) / float64(x.events) }))
		}
		if first.cpu.ok {
			f := func(v func(cpuUse) float64) string {
				return fmt.Sprintf("%.1f", medianOf(rs, func(x result) float64 { return v(x.cpu) }))
			}
			redis, es := "?", "?"
			if first.cpu.perProc {
				redis, es = f(func(c cpuUse) float64 { return c.redis }), f(func(c cpuUse) float64 { return c.es })
			}
			cpu = strings.Join([]string{f(func(c cpuUse) float64 { return c.self }), redis, es,
				f(func(c cpuUse) float64 { return c.other })}, " / ")
			steal = fmt.Sprintf("%.0f%%", 100*medianOf(rs, func(x result) float64 { return x.cpu.steal }))
			noise = fmt.Sprintf("%.0f%%", 100*medianOf(rs, func(x result) float64 { return x.noise() }))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.2f | %s | %s | %s | %s | %s | %s | %s |\n",
			r.name, grouped(float64(first.events)), ids, medianOf(rs, func(x result) float64 { return x.seconds }),
			rate, ref, ratio, fpe, cpu, noise, steal)
		// The notes of the round with the median rate.
		mid := slices.IndexFunc(rs, func(x result) bool { return x.rate() == median(rates) })
		if mid < 0 {
			mid = 0
		}
		if n := rs[mid].notes; len(n) > 0 {
			notes = append(notes, fmt.Sprintf("- %s: %s", r.name, strings.Join(n, "; ")))
		}
	}
	b.WriteString("\nCPU s are CPU-seconds spent during the timed part, out of CPUs × seconds: by this process\n" +
		"(projector, embedded JetStream, fake source, load generator), by Redis, by Elasticsearch, and by\n" +
		"everything else on the machine (noise; Redis and Elasticsearch too when shown as ?). others' share\n" +
		"is that last figure as a share of the machine (CPUs × seconds); steal, the share the hypervisor took.\n")
	var other, avail float64
	for _, r := range rows {
		for _, x := range r.rounds {
			if x.cpu.ok {
				other += x.cpu.other
				avail += float64(runtime.NumCPU()) * x.seconds
			}
		}
	}
	if avail > 0 && other/avail > 0.25 {
		fmt.Fprintf(&b, "\n**Noisy run:** other processes took %.0f%% of the machine while scenarios were timed; "+
			"every figure is low and the ratios are only roughly comparable.\n", 100*other/avail)
	}
	if len(notes) > 0 {
		b.WriteString("\n" + strings.Join(notes, "\n") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// grouped formats n rounded to an integer with thousands separated by commas.
func grouped(n float64) string {
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
