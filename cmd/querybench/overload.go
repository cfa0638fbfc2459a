package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/gjson"

	"github.com/readside/readside/internal/benchkit"
)

// overloadedProblem is the type of the problem the API answers when it sheds
// a request.
const overloadedProblem = "https://readside.dev/problems/overloaded"

// stream is one open-loop flow of requests: each sent at its time, rate a
// second, whether or not the earlier ones were answered.
type stream struct {
	name  string
	kinds []string // each request of one of these, at random
	rate  float64
	// max is the requests outstanding at most: when as many are unanswered,
	// the next is not sent (and counted as such) rather than let the
	// generator's connections grow without bound.
	max int
}

// outcome is how one request ended.
type outcome struct {
	code       int // 0 on a transport error
	retryAfter bool
	problem    string // the type of a problem+json answer
	err        error
	timeout    bool
}

// streamResult is what one stream saw during one phase.
type streamResult struct {
	name     string
	offered  float64 // a second
	seconds  float64 // from the first request sent until the last answered
	sent     int
	notSent  int // not sent: max requests were outstanding
	late     int // sent more than 5 ms after their time: the generator fell behind
	ok, shed []time.Duration
	// Of the shed answers (see shed): with a Retry-After header, and
	// problem+json of type overloadedProblem.
	retryAfter, problem int
	statuses            map[int]int
	transport, timeouts int
	firstErr            string
}

func (r *streamResult) record(o outcome, lat time.Duration, u string) {
	r.statuses[o.code]++
	switch {
	case o.code >= 200 && o.code < 300:
		r.ok = append(r.ok, lat)
		return
	case shed(o):
		r.shed = append(r.shed, lat)
		if o.retryAfter {
			r.retryAfter++
		}
		if o.problem == overloadedProblem {
			r.problem++
		}
		return
	case o.code == 0:
		r.transport++
		if o.timeout {
			r.timeouts++
		}
	}
	if r.firstErr == "" {
		r.firstErr = fmt.Sprintf("%s: %d %v", u, o.code, o.err)
	}
}

// shed reports whether an answer says "too busy, come back later": a 429,
// or a 503 with Retry-After. A 503 without is a failure, such as the
// baseline's when Elasticsearch rejects a search.
func shed(o outcome) bool {
	return o.code == http.StatusTooManyRequests || (o.code == http.StatusServiceUnavailable && o.retryAfter)
}

// errors is every request that was neither served nor shed.
func (r *streamResult) errors() int { return r.sent - len(r.ok) - len(r.shed) }

// phase is one load offered to one server.
type phase struct {
	name    string
	streams []*streamResult
	seconds float64
	server  float64 // CPU-seconds of the server
	self    float64 // CPU-seconds of querybench: the generator
	cpu     benchkit.CPUUse
}

// overloadResult is the overload scenario's.
type overloadResult struct {
	capacity result // the API under wrk with list and search, closed loop
	offered  float64
	phases   []phase
}

// overload measures the API's capacity for list and search, then offers
// -overload-factor times as much, open loop, with a steady stream of detail
// reads; and the detail reads alone, for comparison; and the same overload
// to the baseline, which sheds nothing.
func (b *bench) overload(ctx context.Context) (*overloadResult, error) {
	ov := &overloadResult{}
	if b.s.warmup > 0 {
		b.progress("overload: warming up the API with list and search for %s", b.s.warmup)
		if _, err := b.runWrk(ctx, b.api, "listsearch", b.s.warmup, b.s.capacityConns, b.s.seed); err != nil {
			return nil, err
		}
	}
	l, err := b.runWrk(ctx, b.api, "listsearch", b.s.duration, b.s.capacityConns, b.s.seed)
	if err != nil {
		return nil, fmt.Errorf("capacity: %w", err)
	}
	ov.capacity = result{row: "capacity", load: l}
	b.progress("overload: the API's capacity for list and search: %s", ov.capacity.summary())
	if ov.capacity.rate() < 1 {
		return nil, fmt.Errorf("the API served no list or search under wrk: %s", ov.capacity.summary())
	}
	ov.offered = b.s.factor * ov.capacity.rate()
	detail := stream{name: "detail", kinds: []string{"detail"}, rate: b.s.detailRate, max: 512}
	mix := stream{name: "list+search", kinds: []string{"list", "search"}, rate: ov.offered, max: 2048}
	phases := []struct {
		name    string
		p       *proc
		streams []stream
	}{
		{"API, detail only", b.api, []stream{detail}},
		{fmt.Sprintf("API, list+search at %.3g× capacity", b.s.factor), b.api, []stream{detail, mix}},
	}
	if b.s.overloadBaseline {
		phases = append(phases, struct {
			name    string
			p       *proc
			streams []stream
		}{fmt.Sprintf("baseline, list+search at %.3g× the API's capacity", b.s.factor), b.baseline, []stream{detail, mix}})
	}
	for i, ph := range phases {
		b.progress("overload: %s for %s", ph.name, b.s.overload)
		res, err := b.offer(ctx, ph.p, ph.streams, b.s.overload, b.s.seed*100+i)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ph.name, err)
		}
		res.name = ph.name
		for _, st := range res.streams {
			b.progress("  %s", st.summary())
		}
		ov.phases = append(ov.phases, res)
		if err := ph.p.alive(); err != nil {
			return nil, err
		}
		// Let the stores finish what the last phase queued.
		if err := sleep(ctx, 2*time.Second); err != nil {
			return nil, err
		}
	}
	return ov, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// offer sends the streams to p at once for d, and waits for every answer.
func (b *bench) offer(ctx context.Context, p *proc, streams []stream, d time.Duration, seed int) (phase, error) {
	ph := phase{streams: make([]*streamResult, len(streams))}
	sample := benchkit.SampleCPU(b.stores.PIDs)
	server := benchkit.ProcessCPU(p.pid())
	began := time.Now()
	var wg sync.WaitGroup
	for i, st := range streams {
		res := &streamResult{name: st.name, offered: st.rate, statuses: map[int]int{}}
		ph.streams[i] = res
		wg.Go(func() { b.send(ctx, p, st, d, uint64(seed*10+i), res) })
	}
	wg.Wait()
	ph.seconds = time.Since(began).Seconds()
	ph.server = (benchkit.ProcessCPU(p.pid()) - server).Seconds()
	ph.cpu = sample.Since()
	ph.self = ph.cpu.Self
	for _, res := range ph.streams {
		slices.Sort(res.ok)
		slices.Sort(res.shed)
	}
	return ph, ctx.Err()
}

// send is the open-loop generator of one stream: request i is due at
// start + i/rate, and is sent then (or as soon as the generator can, if it
// fell behind) whether or not the earlier ones were answered. Its latency
// runs from when it was due, so that a generator or client falling behind
// adds to the latency instead of hiding it.
func (b *bench) send(ctx context.Context, p *proc, st stream, d time.Duration, seed uint64, res *streamResult) {
	c := client(st.max, 10*time.Second)
	defer c.CloseIdleConnections()
	r := rand.New(rand.NewPCG(seed, 7))
	base := p.url + "/v1/" + b.ns
	interval := time.Duration(float64(time.Second) / st.rate)
	var (
		mu          sync.Mutex
		outstanding atomic.Int64
		wg          sync.WaitGroup
	)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	start := time.Now()
	for i := 0; ; i++ {
		due := start.Add(time.Duration(i) * interval)
		if due.Sub(start) >= d {
			break
		}
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
			case <-timer.C:
			}
		}
		if ctx.Err() != nil {
			break
		}
		if outstanding.Load() >= int64(st.max) {
			res.notSent++
			continue
		}
		if time.Since(due) > 5*time.Millisecond {
			res.late++
		}
		u := base + kinds[st.kinds[r.IntN(len(st.kinds))]](r, &b.data)
		res.sent++
		outstanding.Add(1)
		wg.Go(func() {
			defer outstanding.Add(-1)
			o := fetch(ctx, c, u)
			lat := time.Since(due)
			mu.Lock()
			res.record(o, lat, u)
			mu.Unlock()
		})
	}
	wg.Wait()
	res.seconds = time.Since(start).Seconds()
}

// fetch sends one GET and reads the answer.
func fetch(ctx context.Context, c *http.Client, u string) outcome {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return outcome{err: err}
	}
	res, err := c.Do(req)
	if err != nil {
		t, ok := err.(interface{ Timeout() bool })
		return outcome{err: err, timeout: ok && t.Timeout()}
	}
	defer res.Body.Close()
	o := outcome{code: res.StatusCode, retryAfter: res.Header.Get("Retry-After") != ""}
	if res.StatusCode >= 200 && res.StatusCode < 300 {
		if _, err := io.Copy(io.Discard, res.Body); err != nil {
			return outcome{err: err}
		}
		return o
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if err != nil {
		return outcome{err: err}
	}
	io.Copy(io.Discard, res.Body)
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/problem+json") {
		o.problem = gjson.GetBytes(body, "type").Str
	}
	o.err = fmt.Errorf("%.200s", strings.TrimSpace(string(body)))
	return o
}

// percentile of the sorted latencies, in milliseconds (nearest rank).
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return ms(sorted[i])
}

func (r *streamResult) perSecond(n int) float64 {
	if r.seconds == 0 {
		return 0
	}
	return float64(n) / r.seconds
}

func (r *streamResult) summary() string {
	return fmt.Sprintf("%s: offered %s/s, sent %d (%d not sent); served %s/s (p50 %.2f ms, p99 %.2f ms); shed %s/s (p50 %.2f ms, p99 %.2f ms); %d errors",
		r.name, benchkit.Grouped(r.offered), r.sent, r.notSent, benchkit.Grouped(r.perSecond(len(r.ok))), percentile(r.ok, 50), percentile(r.ok, 99),
		benchkit.Grouped(r.perSecond(len(r.shed))), percentile(r.shed, 50), percentile(r.shed, 99), r.errors())
}

// describeOverload is the overload report's header.
func (b *bench) describeOverload(ov *overloadResult) []string {
	c := ov.capacity
	capacity := fmt.Sprintf("Capacity of the API for list and search (half each, at random): %s 2xx/s under wrk `-t%d -c%d` for %s "+
		"(p50 %.2f ms, p99 %.2f ms, %d non-2xx)", benchkit.Grouped(c.rate()), min(b.s.threads, b.s.capacityConns), b.s.capacityConns, b.s.duration, ms(c.w.p50), ms(c.w.p99), c.w.non2xx)
	return append(benchkit.Machine(b.idle), b.stores.Describe(), b.setup(), capacity,
		fmt.Sprintf("`%s`: then, open loop from this process for %s per phase: list+search offered at %.3g× that, %s req/s, "+
			"and detail at %s req/s; each request sent at its time whether or not the earlier were answered, its latency counted from that time",
			b.command(), b.s.overload, b.s.factor, benchkit.Grouped(ov.offered), benchkit.Grouped(b.s.detailRate)))
}

var overloadColumns = []benchkit.Column{
	{Name: "phase", Text: true}, {Name: "requests", Text: true}, {Name: "offered req/s"}, {Name: "sent"},
	{Name: "served req/s"}, {Name: "served p50 ms"}, {Name: "served p99 ms"},
	{Name: "shed req/s"}, {Name: "shed p50 ms"}, {Name: "shed p99 ms"}, {Name: "errors"}, {Name: "not sent"},
	{Name: "CPU: server / generator"}, {Name: "others' share"},
}

// writeOverload writes the overload scenario's table: a row per stream of
// each phase.
func writeOverload(w io.Writer, header []string, ov *overloadResult) error {
	t := &benchkit.Table{
		Header: header, Columns: overloadColumns,
		Legend: "served: 2xx answers; shed: 429, or 503 with Retry-After; errors: any other answer, or none (transport errors and the\n" +
			"generator's 10 s timeout), with their share of the requests sent; not sent: requests due while as many as the\n" +
			"generator allows (512 detail, 2048 list+search) were unanswered. Rates are over the time from the first request\n" +
			"sent to the last answered, which a server that queues makes longer. Latency runs from each request's due time.\n" +
			"CPU: cores' worth (CPU-seconds a second) of the server measured and of querybench, the generator; others' share:\n" +
			"CPU that every process but these, Redis and Elasticsearch took, as a share of the machine.",
	}
	for _, ph := range ov.phases {
		for i, s := range ph.streams {
			cpu, others := "", ""
			if i == 0 {
				cpu = fmt.Sprintf("%.2f / %.2f", ph.server/ph.seconds, ph.self/ph.seconds)
				if ph.cpu.OK {
					others = fmt.Sprintf("%.0f%%", 100*max(0, ph.cpu.Other-ph.server)/(float64(runtime.NumCPU())*ph.seconds))
				}
			}
			errs := "0"
			if n := s.errors(); n > 0 {
				errs = fmt.Sprintf("%d (%.1f%%)", n, 100*float64(n)/float64(max(1, s.sent)))
			}
			t.AddRow(ph.name, s.name, benchkit.Grouped(s.offered), benchkit.Grouped(float64(s.sent)),
				benchkit.Grouped(s.perSecond(len(s.ok))), fmt.Sprintf("%.2f", percentile(s.ok, 50)), fmt.Sprintf("%.2f", percentile(s.ok, 99)),
				benchkit.Grouped(s.perSecond(len(s.shed))), fmt.Sprintf("%.2f", percentile(s.shed, 50)), fmt.Sprintf("%.2f", percentile(s.shed, 99)),
				errs, benchkit.Grouped(float64(s.notSent)), cpu, others)
			t.AddNotes(ph.name+", "+s.name, s.notes())
		}
	}
	_, err := t.WriteTo(w)
	return err
}

// notes are what the table does not say of a stream: the statuses other
// than 200, what the shed answers carried, the first error, a generator
// that fell behind.
func (r *streamResult) notes() []string {
	var n []string
	codes := make([]int, 0, len(r.statuses))
	for code := range r.statuses {
		codes = append(codes, code)
	}
	slices.Sort(codes)
	var st []string
	for _, code := range codes {
		if code != http.StatusOK {
			name := fmt.Sprint(code)
			if code == 0 {
				name = "no answer"
			}
			st = append(st, fmt.Sprintf("%s × %d", name, r.statuses[code]))
		}
	}
	if len(st) > 0 {
		n = append(n, "answers other than 200: "+strings.Join(st, ", "))
	}
	if len(r.shed) > 0 {
		n = append(n, fmt.Sprintf("of the %d shed, %d with Retry-After and %d problem+json of type %s", len(r.shed), r.retryAfter, r.problem, overloadedProblem))
	}
	if r.timeouts > 0 {
		n = append(n, fmt.Sprintf("%d timed out after 10 s", r.timeouts))
	}
	if r.firstErr != "" {
		n = append(n, "first error: "+r.firstErr)
	}
	if r.late > 0 {
		n = append(n, fmt.Sprintf("%d sent more than 5 ms late (the generator fell behind)", r.late))
	}
	return n
}
