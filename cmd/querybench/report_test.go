package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct{ p, want float64 }{{50, 50}, {99, 99}, {100, 100}, {0, 1}} {
		if got := percentile(lat, c.p); got != c.want {
			t.Errorf("percentile(%v) = %v ms, want %v", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile of nothing = %v, want 0", got)
	}
}

// wrk 4.1.0's report with --latency, as it prints it.
const (
	wrkClean = `Running 5s test @ http://127.0.0.1:40113/v1/qbench1a2b3c
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.10ms    5.63ms  80.23ms   91.01%
    Req/Sec     9.16k     1.94k   14.11k    75.71%
  Latency Distribution
     50%  891.00us
     75%    4.18ms
     90%    9.98ms
     99%   26.08ms
  91473 requests in 5.01s, 95.07MB read
Requests/sec:  18258.07
Transfer/sec:     18.98MB
`
	wrkTroubled = `Running 5s test @ http://127.0.0.1:40114/v1/qbench1a2b3c
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   150.40ms  300.63ms    2.00s    91.01%
    Req/Sec   200.16      94.00   411.00     85.71%
  Latency Distribution
     50%   60.50ms
     75%  120.18ms
     90%  400.98ms
     99%    1.50s
  2001 requests in 5.10s, 20.07MB read
  Socket errors: connect 0, read 3, write 0, timeout 12
  Non-2xx or 3xx responses: 501
Requests/sec:    392.35
Transfer/sec:      3.94MB
`
)

func TestParseWrk(t *testing.T) {
	for _, c := range []struct {
		name, out string
		want      wrkResult
	}{
		{"clean", wrkClean, wrkResult{requests: 91473, seconds: 5.01, perSec: 18258.07,
			p50: 891 * time.Microsecond, p75: 4180 * time.Microsecond, p90: 9980 * time.Microsecond, p99: 26080 * time.Microsecond}},
		{"troubled", wrkTroubled, wrkResult{requests: 2001, seconds: 5.1, perSec: 392.35, non2xx: 501,
			socket: socketErrors{read: 3, timeout: 12},
			p50:    60500 * time.Microsecond, p75: 120180 * time.Microsecond, p90: 400980 * time.Microsecond, p99: 1500 * time.Millisecond}},
	} {
		got, err := parseWrk(c.out)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		// Durations are parsed from decimals: allow a nanosecond.
		near := func(a, b time.Duration) bool { return a-b <= 1 && b-a <= 1 }
		if got.requests != c.want.requests || got.seconds != c.want.seconds || got.perSec != c.want.perSec ||
			got.non2xx != c.want.non2xx || got.socket != c.want.socket ||
			!near(got.p50, c.want.p50) || !near(got.p75, c.want.p75) || !near(got.p90, c.want.p90) || !near(got.p99, c.want.p99) {
			t.Errorf("%s: parseWrk = %+v, want %+v", c.name, got, c.want)
		}
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"); err == nil {
		t.Error("no error for output without a report")
	}
	noLatency := strings.Replace(wrkClean, "     99%   26.08ms\n", "", 1)
	if _, err := parseWrk(noLatency); err == nil {
		t.Error("no error for a latency distribution without p99")
	}
}

func TestHasFlag(t *testing.T) {
	usage := "Flags:\n  -max-ids int\n    \tmost ids\n  -search-max-inflight int\n    \tceiling\n  -no-reproject\n"
	for _, c := range []struct {
		name string
		want bool
	}{{"max-ids", true}, {"search-max-inflight", true}, {"max-inflight", false}, {"no-reproject", true}, {"reproject", false}} {
		if got := hasFlag(usage, c.name); got != c.want {
			t.Errorf("hasFlag(%q) = %v, want %v", c.name, got, c.want)
		}
	}
}

// The report compares each API row with the baseline of its own round and
// says whether the medians meet the bar.
func TestWriteReport(t *testing.T) {
	run := func(row, ref string, round, ok int, p99 time.Duration, refRate float64, refP99 time.Duration) result {
		return result{row: row, ref: ref, round: round, refRate: refRate, refP99: refP99,
			load: load{w: wrkResult{requests: ok, seconds: 1, p50: p99 / 4, p99: p99}}}
	}
	all := []result{
		run("detail baseline", "", 1, 1000, 10*time.Millisecond, 0, 0),
		run("detail", "detail baseline", 1, 950, 12*time.Millisecond, 1000, 10*time.Millisecond),
		run("list baseline", "", 1, 100, 100*time.Millisecond, 0, 0),
		run("list", "list baseline", 1, 80, 200*time.Millisecond, 100, 100*time.Millisecond),
		run("detail baseline", "", 2, 2000, 10*time.Millisecond, 0, 0),
		run("detail", "detail baseline", 2, 1900, 11*time.Millisecond, 2000, 10*time.Millisecond),
		run("list baseline", "", 2, 100, 100*time.Millisecond, 0, 0),
		run("list", "list baseline", 2, 90, 150*time.Millisecond, 100, 100*time.Millisecond),
	}
	var out bytes.Buffer
	if err := writeReport(&out, []string{"header"}, all); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"| detail baseline | 1,500 (1,000–2,000) | 2.50 | 10.00 (10.00–10.00) | 0 | 0 | – | – | – |",
		"| detail | 1,425 (950–1,900) | 2.88 | 11.50 (11.00–12.00) | 0 | 0 | 0.95 (0.95–0.95) | 1.15 (1.10–1.20) | yes |",
		"| list | 85 (80–90) | 43.75 | 175.00 (150.00–200.00) | 0 | 0 | 0.85 (0.80–0.90) | 1.75 (1.50–2.00) | **no**: 0.850 < 0.9, p99 1.750 > 1.5 |",
		"Medians of 2 rounds",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the report lacks %q:\n%s", want, got)
		}
	}
}

// A shed answer says to come back later; the baseline's 503 on a failed
// search is an error.
func TestRecordTellsShedFromFailed(t *testing.T) {
	r := &streamResult{statuses: map[int]int{}}
	for _, o := range []outcome{
		{code: 200},
		{code: 503, retryAfter: true, problem: overloadedProblem},
		{code: 429},
		{code: 503},
		{code: 0, timeout: true},
	} {
		r.sent++
		r.record(o, time.Millisecond, "/x")
	}
	if len(r.ok) != 1 || len(r.shed) != 2 || r.errors() != 2 || r.timeouts != 1 || r.retryAfter != 1 || r.problem != 1 {
		t.Errorf("ok %d, shed %d, errors %d, timeouts %d, retryAfter %d, problem %d; want 1, 2, 2, 1, 1, 1",
			len(r.ok), len(r.shed), r.errors(), r.timeouts, r.retryAfter, r.problem)
	}
}
