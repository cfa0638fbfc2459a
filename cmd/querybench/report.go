package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/readside/readside/internal/benchkit"
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
	cpu      benchkit.CPUUse
	notes    []string
}

func (r result) name() string { return r.row }

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

func (r result) summary() string {
	s := fmt.Sprintf("%s req/s, p50 %.2f ms, p99 %.2f ms, %d errors", benchkit.Grouped(r.rate()),
		percentile(r.lat, 50), percentile(r.lat, 99), r.errors)
	if r.refRate > 0 {
		s += fmt.Sprintf(", %.2f of %s", r.ratio(), r.ref)
	}
	return s
}

// columns are the report's.
var columns = []benchkit.Column{
	{Name: "scenario", Text: true}, {Name: "requests"}, {Name: "seconds"}, {Name: "req/s"}, {Name: "p50 ms"}, {Name: "p99 ms"},
	{Name: "errors"}, {Name: "ratio to baseline"}, {Name: "CPU µs/req: this process / Redis / ES"}, {Name: "others' share"}, {Name: "steal"},
}

// writeReport writes the Markdown table of the results, a row per table row.
// With several rounds every figure is the median of the rounds (req/s also
// shows the range), errors are summed, and the ratio is the median of each
// round's ratio to its own baseline.
func writeReport(w io.Writer, header []string, all []result) error {
	rows := benchkit.Aggregate(all, result.name)
	t := &benchkit.Table{
		Header: header, Rounds: benchkit.Rounds(rows), Rate: "req/s", Columns: columns,
		Legend: "ratio: req/s ÷ the baseline's req/s in the same round. CPU µs/req: CPU time per request of this\n" +
			"process (load generator + server), of Redis and of Elasticsearch. others' share: CPU taken by every\n" +
			"other process, as a share of the machine; steal: the share the hypervisor took.",
	}
	var noise benchkit.Noise
	for _, r := range rows {
		rs := r.Rounds
		rates := make([]float64, len(rs))
		errs := 0
		for i, x := range rs {
			rates[i] = x.rate()
			errs += x.errors
			noise.Add(x.cpu, x.seconds)
		}
		ratio, cpu, others, steal := "–", "–", "–", "–"
		if rs[0].ref != "" {
			ratio = fmt.Sprintf("%.2f (of %s)", benchkit.MedianOf(rs, result.ratio), rs[0].ref)
		}
		if rs[0].cpu.OK {
			cpu = cpuPerRequest(rs)
			others = fmt.Sprintf("%.0f%%", 100*benchkit.MedianOf(rs, func(x result) float64 { return x.cpu.OthersShare(x.seconds) }))
			steal = fmt.Sprintf("%.0f%%", 100*benchkit.MedianOf(rs, func(x result) float64 { return x.cpu.Steal }))
		}
		t.AddRow(r.Name, benchkit.Grouped(benchkit.MedianOf(rs, func(x result) float64 { return float64(x.requests) })),
			fmt.Sprintf("%.1f", benchkit.MedianOf(rs, func(x result) float64 { return x.seconds })), benchkit.Spread(rates),
			fmt.Sprintf("%.2f", benchkit.MedianOf(rs, func(x result) float64 { return percentile(x.lat, 50) })),
			fmt.Sprintf("%.2f", benchkit.MedianOf(rs, func(x result) float64 { return percentile(x.lat, 99) })),
			strconv.Itoa(errs), ratio, cpu, others, steal)
		// The notes of the first round that has any.
		for _, x := range rs {
			if len(x.notes) > 0 {
				t.AddNotes(r.Name, x.notes)
				break
			}
		}
	}
	if noise.Noisy() {
		t.Warnings = append(t.Warnings, fmt.Sprintf("**Noisy run:** other processes took %.0f%% of the machine while rows were timed; "+
			"absolute figures are low and the ratios only roughly comparable.", 100*noise.Share()))
	}
	_, err := t.WriteTo(w)
	return err
}

// cpuPerRequest is the CPU column of the rounds rs: the median CPU time per
// request of this process, Redis and Elasticsearch (? when not told apart).
func cpuPerRequest(rs []result) string {
	per := func(v func(benchkit.CPUUse) float64) string {
		return fmt.Sprintf("%.0f", benchkit.MedianOf(rs, func(x result) float64 { return x.perRequest(v(x.cpu)) }))
	}
	redis, es := "?", "?"
	if rs[0].cpu.PerProc {
		redis, es = per(func(c benchkit.CPUUse) float64 { return c.Redis }), per(func(c benchkit.CPUUse) float64 { return c.Elastic })
	}
	return strings.Join([]string{per(func(c benchkit.CPUUse) float64 { return c.Self }), redis, es}, " / ")
}
