package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/readside/readside/internal/benchkit"
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
	cpu     benchkit.CPUUse
	notes   []string
	// serversRate is the events/s of the same row on the servers in the same
	// round, for a row on the embedded stores; 0 otherwise.
	serversRate float64
}

func (r result) name() string { return r.row }

func (r result) rate() float64 { return float64(r.events) / r.seconds }

// ratio is rate ÷ refRate, or 0 when there is no reference.
func (r result) ratio() float64 {
	if r.refRate == 0 {
		return 0
	}
	return r.rate() / r.refRate
}

// vsServers is rate ÷ serversRate, or 0 when the row has no servers row.
func (r result) vsServers() float64 {
	if r.serversRate == 0 {
		return 0
	}
	return r.rate() / r.serversRate
}

// columns are the report's. vsServersColumn comes after "ratio" when some
// row has a servers row to compare with.
var (
	columns = []benchkit.Column{
		{Name: "scenario", Text: true}, {Name: "events"}, {Name: "ids"}, {Name: "seconds"}, {Name: "events/s"},
		{Name: "compared with", Text: true}, {Name: "ratio"}, {Name: "fetches/event"},
		{Name: "CPU s: bench / Redis / ES / other"}, {Name: "others' share"}, {Name: "steal"},
	}
	vsServersColumn = benchkit.Column{Name: "embedded / servers"}
)

// writeReport writes the Markdown table of the results, a row per scenario
// row: every figure is the median of the rounds, and the ratio the median of
// each round's ratio to the baseline of that same round; likewise an
// embedded row's ratio to its servers row.
func writeReport(w io.Writer, header []string, all []result) error {
	rows := benchkit.Aggregate(all, result.name)
	legend := "CPU s are CPU-seconds spent during the timed part, out of CPUs × seconds: by this process\n" +
		"(projector, embedded JetStream, fake source, load generator), by Redis, by Elasticsearch, and by\n" +
		"everything else on the machine (noise; Redis and Elasticsearch too when shown as ?). others' share\n" +
		"is that last figure as a share of the machine (CPUs × seconds); steal, the share the hypervisor took."
	cols := columns
	vsAt := -1 // the index of vsServersColumn; -1: not shown
	if slices.ContainsFunc(all, func(r result) bool { return r.serversRate > 0 }) {
		vsAt = slices.IndexFunc(columns, func(c benchkit.Column) bool { return c.Name == "ratio" }) + 1
		cols = slices.Insert(slices.Clone(columns), vsAt, vsServersColumn)
		legend += "\nembedded / servers is an embedded row's events/s over those of the same row on the servers,\n" +
			"measured just before it in the same round (the embedded stores' CPU is in this process's)."
	}
	t := &benchkit.Table{
		Header: header, Rounds: benchkit.Rounds(rows), Rate: "events/s", Columns: cols, Legend: legend,
	}
	var noise benchkit.Noise
	for _, r := range rows {
		rs := r.Rounds
		first := rs[0]
		rates := make([]float64, len(rs))
		for i, x := range rs {
			rates[i] = x.rate()
			noise.Add(x.cpu, x.seconds)
		}
		ids, ratio, fpe, cpu, others, steal := "–", "–", "–", "–", "–", "–"
		if first.ids > 0 {
			ids = benchkit.Grouped(float64(first.ids))
		}
		ref := first.ref
		if first.refRate > 0 {
			ref = fmt.Sprintf("%s = %s/s", ref, benchkit.Grouped(benchkit.MedianOf(rs, func(x result) float64 { return x.refRate })))
			ratio = fmt.Sprintf("%.2f", benchkit.MedianOf(rs, result.ratio))
		} else if ref == "" {
			ref = "–"
		} else {
			ref += " (not measured)"
		}
		if first.fetches >= 0 {
			fpe = fmt.Sprintf("%.3f", benchkit.MedianOf(rs, func(x result) float64 { return float64(x.fetches) / float64(x.events) }))
		}
		if first.cpu.OK {
			cpu = cpuSeconds(rs)
			steal = fmt.Sprintf("%.0f%%", 100*benchkit.MedianOf(rs, func(x result) float64 { return x.cpu.Steal }))
			others = fmt.Sprintf("%.0f%%", 100*benchkit.MedianOf(rs, func(x result) float64 { return x.cpu.OthersShare(x.seconds) }))
		}
		cells := []string{r.Name, benchkit.Grouped(float64(first.events)), ids,
			fmt.Sprintf("%.2f", benchkit.MedianOf(rs, func(x result) float64 { return x.seconds })),
			benchkit.Spread(rates), ref, ratio, fpe, cpu, others, steal}
		if vsAt >= 0 {
			vs := "–"
			if first.serversRate > 0 {
				vs = fmt.Sprintf("%.2f", benchkit.MedianOf(rs, result.vsServers))
			}
			cells = slices.Insert(cells, vsAt, vs)
		}
		t.AddRow(cells...)
		// The notes of the round with the median rate.
		mid := slices.IndexFunc(rs, func(x result) bool { return x.rate() == benchkit.Median(rates) })
		if mid < 0 {
			mid = 0
		}
		t.AddNotes(r.Name, rs[mid].notes)
	}
	if noise.Noisy() {
		t.Warnings = append(t.Warnings, fmt.Sprintf("**Noisy run:** other processes took %.0f%% of the machine while scenarios were timed; "+
			"every figure is low and the ratios are only roughly comparable.", 100*noise.Share()))
	}
	_, err := t.WriteTo(w)
	return err
}

// cpuSeconds is the CPU column of the rounds rs: the median CPU-seconds of
// this process, Redis, Elasticsearch (? when not told apart) and the rest.
func cpuSeconds(rs []result) string {
	f := func(v func(benchkit.CPUUse) float64) string {
		return fmt.Sprintf("%.1f", benchkit.MedianOf(rs, func(x result) float64 { return v(x.cpu) }))
	}
	redis, es := "?", "?"
	if rs[0].cpu.PerProc {
		redis, es = f(func(c benchkit.CPUUse) float64 { return c.Redis }), f(func(c benchkit.CPUUse) float64 { return c.Elastic })
	}
	return strings.Join([]string{f(func(c benchkit.CPUUse) float64 { return c.Self }), redis, es,
		f(func(c benchkit.CPUUse) float64 { return c.Other })}, " / ")
}
