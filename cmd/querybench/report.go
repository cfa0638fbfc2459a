package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// result is one row measured once.
type result struct {
	row      string
	requests int
	errors   int
	seconds  float64
	lat      []time.Duration // sorted
	ref      string          // the row the ratio compares with; "" for a baseline
	refRate  float64         // its rate in the same round
	cpu      cpuUse
	notes    []string
}

func (r result) rate() float64 {
	if r.seconds == 0 {
		return 0
	}
	return float64(r.requests) / r.seconds
}

func (r result) ratio() float64 {
	if r.refRate == 0 {
		return 0
	}
	return r.rate() / r.refRate
}

// percentile of the sorted latencies, in milliseconds (nearest rank).
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i].Microseconds()) / 1000
}

// perRequest is CPU-seconds per request in microseconds.
func (r result) perRequest(cpuSeconds float64) float64 {
	if r.requests == 0 {
		return 0
	}
	return cpuSeconds / float64(r.requests) * 1e6
}

// noise is the share of the machine other processes took while r was timed.
func (r result) noise() float64 {
	if !r.cpu.ok || r.seconds == 0 {
		return 0
	}
	return r.cpu.other / (float64(runtime.NumCPU()) * r.seconds)
}

func (r result) summary() string {
	s := fmt.Sprintf("%s req/s, p50 %.2f ms, p99 %.2f ms, %d errors", grouped(r.rate()),
		percentile(r.lat, 50), percentile(r.lat, 99), r.errors)
	if r.refRate > 0 {
		s += fmt.Sprintf(", %.2f of %s", r.ratio(), r.ref)
	}
	return s
}

// row is the rounds of one table row, in the order first seen.
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

// writeReport writes the Markdown table. With several rounds every figure is
// the median of the rounds (req/s also shows the range), errors are summed,
// and the ratio is the median of each round's ratio to its own baseline.
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
		fmt.Fprintf(&b, "Medians of %d rounds; req/s shows (min–max); each ratio is to the baseline of its own round.  \n", rounds)
	}
	b.WriteString("\n| scenario | requests | seconds | req/s | p50 ms | p99 ms | errors | ratio to baseline | CPU µs/req: this process / Redis / ES | others' share | steal |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var notes []string
	for _, r := range rows {
		rs := r.rounds
		rates := make([]float64, len(rs))
		errs := 0
		for i, x := range rs {
			rates[i] = x.rate()
			errs += x.errors
		}
		rate := grouped(median(rates))
		if len(rs) > 1 {
			rate += fmt.Sprintf(" (%s–%s)", grouped(slices.Min(rates)), grouped(slices.Max(rates)))
		}
		ratio, cpu, noise, steal := "–", "–", "–", "–"
		if rs[0].ref != "" {
			ratio = fmt.Sprintf("%.2f (of %s)", medianOf(rs, result.ratio), rs[0].ref)
		}
		if rs[0].cpu.ok {
			per := func(v func(cpuUse) float64) string {
				return fmt.Sprintf("%.0f", medianOf(rs, func(x result) float64 { return x.perRequest(v(x.cpu)) }))
			}
			redis, es := "?", "?"
			if rs[0].cpu.perProc {
				redis, es = per(func(c cpuUse) float64 { return c.redis }), per(func(c cpuUse) float64 { return c.es })
			}
			cpu = strings.Join([]string{per(func(c cpuUse) float64 { return c.self }), redis, es}, " / ")
			noise = fmt.Sprintf("%.0f%%", 100*medianOf(rs, result.noise))
			steal = fmt.Sprintf("%.0f%%", 100*medianOf(rs, func(x result) float64 { return x.cpu.steal }))
		}
		fmt.Fprintf(&b, "| %s | %s | %.1f | %s | %.2f | %.2f | %d | %s | %s | %s | %s |\n",
			r.name, grouped(medianOf(rs, func(x result) float64 { return float64(x.requests) })),
			medianOf(rs, func(x result) float64 { return x.seconds }), rate,
			medianOf(rs, func(x result) float64 { return percentile(x.lat, 50) }),
			medianOf(rs, func(x result) float64 { return percentile(x.lat, 99) }),
			errs, ratio, cpu, noise, steal)
		for _, x := range rs {
			if len(x.notes) > 0 {
				notes = append(notes, fmt.Sprintf("- %s: %s", r.name, strings.Join(x.notes, "; ")))
				break
			}
		}
	}
	b.WriteString("\nratio: req/s ÷ the baseline's req/s in the same round. CPU µs/req: CPU time per request of this\n" +
		"process (load generator + server), of Redis and of Elasticsearch. others' share: CPU taken by every\n" +
		"other process, as a share of the machine; steal: the share the hypervisor took.\n")
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
		fmt.Fprintf(&b, "\n**Noisy run:** other processes took %.0f%% of the machine while rows were timed; "+
			"absolute figures are low and the ratios only roughly comparable.\n", 100*other/avail)
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
