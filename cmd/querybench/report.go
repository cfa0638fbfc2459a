package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/readside/readside/internal/benchkit"
)

// The bar: the API's rate at least rateBar of the baseline's, its
// p99 at most p99Bar of the baseline's.
const (
	rateBar = 0.9
	p99Bar  = 1.5
)

// result is one row measured once: one wrk run.
type result struct {
	row     string
	ref     string // the baseline row the ratios compare with; "" for a baseline
	round   int
	load                  // what wrk and the CPU counters said
	refRate float64       // the ref's rate in the same round
	refP99  time.Duration // the ref's p99 in the same round
}

func (r result) name() string { return r.row }

// rate is 2xx answers a second: shed or failed answers are not served.
func (r result) rate() float64 {
	if r.w.seconds == 0 {
		return 0
	}
	return float64(r.w.ok()) / r.w.seconds
}

func (r result) ratio() float64 {
	if r.refRate == 0 {
		return 0
	}
	return r.rate() / r.refRate
}

func (r result) p99Ratio() float64 {
	if r.refP99 == 0 {
		return 0
	}
	return float64(r.w.p99) / float64(r.refP99)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (r result) summary() string {
	s := fmt.Sprintf("%s req/s, p50 %.2f ms, p99 %.2f ms", benchkit.Grouped(r.rate()), ms(r.w.p50), ms(r.w.p99))
	if r.w.non2xx > 0 || r.w.socket.total() > 0 {
		s += fmt.Sprintf(", %d non-2xx, socket errors %s", r.w.non2xx, r.w.socket)
	}
	if r.ref != "" {
		s += fmt.Sprintf("; ×%.2f rate, ×%.2f p99", r.ratio(), r.p99Ratio())
	}
	return s
}

// perRequest is CPU-seconds per 2xx answer, in microseconds.
func (r result) perRequest(cpuSeconds float64) float64 {
	if r.w.ok() == 0 {
		return 0
	}
	return cpuSeconds / float64(r.w.ok()) * 1e6
}

var columns = []benchkit.Column{
	{Name: "scenario", Text: true}, {Name: "req/s"}, {Name: "p50 ms"}, {Name: "p99 ms"}, {Name: "non-2xx"}, {Name: "socket errors"},
	{Name: "req/s ÷ baseline"}, {Name: "p99 ÷ baseline"}, {Name: fmt.Sprintf("≥ %.1f× and p99 ≤ %.1f×", rateBar, p99Bar), Text: true},
	{Name: "CPU µs/req: server / wrk / Redis / ES"}, {Name: "others' share"}, {Name: "steal"},
}

// spread formats xs (one per round) as their median and, with several, their
// range: "1.20 (0.90–1.50)".
func spread(xs []float64, format string) string {
	s := fmt.Sprintf(format, benchkit.Median(xs))
	if len(xs) > 1 {
		s += fmt.Sprintf(" ("+format+"–"+format+")", slices.Min(xs), slices.Max(xs))
	}
	return s
}

func of(rs []result, f func(result) float64) []float64 {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	return xs
}

// writeReport writes the Markdown table of the endpoint scenarios, a row per
// server and endpoint: the median of the rounds and their range; errors
// summed; each ratio the median of every round's ratio to the baseline
// measured next to it.
func writeReport(w io.Writer, header []string, all []result) error {
	rows := benchkit.Aggregate(all, result.name)
	t := &benchkit.Table{
		Header: header, Rounds: benchkit.Rounds(rows), Rate: "req/s", Columns: columns,
		Legend: "req/s: 2xx answers a second, as wrk counted them (non-2xx answers are not served). p50, p99: wrk's latency\n" +
			"distribution, of every answer. p99 and the ratios show (min–max) of the rounds too; a ratio is the API's figure\n" +
			"÷ the baseline's in the same round. CPU µs/req: CPU time per 2xx answer of the server measured, of wrk, of Redis\n" +
			"and of Elasticsearch. others' share: CPU that every other process took, as a share of the machine; steal: the\n" +
			"share the hypervisor took.",
	}
	var noise benchkit.Noise
	for _, r := range rows {
		rs := r.Rounds
		non2xx, sock := 0, socketErrors{}
		for _, x := range rs {
			non2xx += x.w.non2xx
			sock.connect += x.w.socket.connect
			sock.read += x.w.socket.read
			sock.write += x.w.socket.write
			sock.timeout += x.w.socket.timeout
			if x.cpu.ok {
				noise.Add(benchkit.CPUUse{Other: x.cpu.others, OK: true}, x.w.seconds)
			}
		}
		ratio, p99Ratio, met, cpu, others, steal := "–", "–", "–", "–", "–", "–"
		if rs[0].ref != "" {
			rr, pr := benchkit.Median(of(rs, result.ratio)), benchkit.Median(of(rs, result.p99Ratio))
			ratio, p99Ratio = spread(of(rs, result.ratio), "%.2f"), spread(of(rs, result.p99Ratio), "%.2f")
			// Judged on the unrounded medians: say which, when it fails.
			var why []string
			if rr < rateBar {
				why = append(why, fmt.Sprintf("%.3f < %.1f", rr, rateBar))
			}
			if pr > p99Bar {
				why = append(why, fmt.Sprintf("p99 %.3f > %.1f", pr, p99Bar))
			}
			met = "yes"
			if len(why) > 0 {
				met = "**no**: " + strings.Join(why, ", ")
			}
		}
		if rs[0].cpu.ok {
			cpu = cpuPerRequest(rs)
			others = fmt.Sprintf("%.0f%%", 100*benchkit.MedianOf(rs, func(x result) float64 {
				return x.cpu.others / (float64(runtime.NumCPU()) * x.w.seconds)
			}))
			steal = fmt.Sprintf("%.0f%%", 100*benchkit.MedianOf(rs, func(x result) float64 { return x.cpu.steal }))
		}
		sockets := "0"
		if sock.total() > 0 {
			sockets = sock.String()
		}
		t.AddRow(r.Name, benchkit.Spread(of(rs, result.rate)),
			fmt.Sprintf("%.2f", benchkit.Median(of(rs, func(x result) float64 { return ms(x.w.p50) }))),
			spread(of(rs, func(x result) float64 { return ms(x.w.p99) }), "%.2f"),
			strconv.Itoa(non2xx), sockets, ratio, p99Ratio, met, cpu, others, steal)
		if non2xx > 0 {
			// wrk's latency distribution does not tell statuses apart.
			t.AddNotes(r.Name, []string{fmt.Sprintf("its latencies include those of its %d non-2xx answers, which wrk does not tell apart", non2xx)})
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
// 2xx answer of the server, wrk, Redis and Elasticsearch (? when Redis and
// Elasticsearch are not told apart).
func cpuPerRequest(rs []result) string {
	per := func(v func(runCPU) float64) string {
		return fmt.Sprintf("%.0f", benchkit.MedianOf(rs, func(x result) float64 { return x.perRequest(v(x.cpu)) }))
	}
	redis, es := "?", "?"
	if rs[0].cpu.perProc {
		redis, es = per(func(c runCPU) float64 { return c.redis }), per(func(c runCPU) float64 { return c.es })
	}
	return strings.Join([]string{per(func(c runCPU) float64 { return c.server }), per(func(c runCPU) float64 { return c.wrk }), redis, es}, " / ")
}
