package source

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A source model: the latency and outcome of every request of a round in
// which n requests were in flight at once.
type model func(round, n int) (time.Duration, outcome)

func constant(d time.Duration, o outcome) model {
	return func(int, int) (time.Duration, outcome) { return d, o }
}

// queueing is a source that answers in d up to capacity requests at once and
// queues the rest: its latency grows with the requests beyond capacity.
func queueing(d time.Duration, capacity int) model {
	return func(_, n int) (time.Duration, outcome) {
		if n <= capacity {
			return d, outcomeOK
		}
		return time.Duration(float64(d) * float64(n) / float64(capacity)), outcomeOK
	}
}

// after is before for the first rounds, then then.
func after(rounds int, before, then model) model {
	return func(r, n int) (time.Duration, outcome) {
		if r < rounds {
			return before(r, n)
		}
		return then(r, n)
	}
}

// drive runs rounds against l with a fake source and no clock: each round
// takes as many permits as the limiter grants (up to demand; finding it full
// counts as a request waiting) and then answers them all as m says. It returns
// the limit after every round, and fails the test when a limit or an
// in-flight count leaves [Min, Max].
func drive(t *testing.T, l *Limiter, o LimiterOptions, rounds, demand int, m model) []int {
	t.Helper()
	var limits []int
	for r := range rounds {
		var ps []*permit
		for len(ps) < demand {
			p, ok := l.tryAcquire()
			if !ok {
				break
			}
			ps = append(ps, p)
		}
		if n := l.Inflight(); n > o.Max {
			t.Fatalf("round %d: %d in flight, over the ceiling %d", r, n, o.Max)
		}
		for _, p := range ps {
			d, out := m(r, len(ps))
			l.release(p, d, out)
		}
		lim := l.Limit()
		if lim > o.Max || lim < o.Min {
			t.Fatalf("round %d: limit %d outside [%d, %d]", r, lim, o.Min, o.Max)
		}
		limits = append(limits, lim)
	}
	if n := l.Inflight(); n != 0 {
		t.Fatalf("%d in flight after every permit was released", n)
	}
	return limits
}

// The limit follows the source: it rises while latency holds and callers
// wait, settles near a queueing source's capacity, falls when the latency
// rises or attempts fail, and stays between the floor and the ceiling.
func TestLimiterAdapts(t *testing.T) {
	const fast, slow = 5 * time.Millisecond, 100 * time.Millisecond
	opts := LimiterOptions{Initial: 32, Min: 1, Max: 256}
	tests := []struct {
		name   string
		o      LimiterOptions
		demand int // requests the callers would send at once
		rounds int
		m      model
		check  func(t *testing.T, limits []int)
	}{
		{
			name: "healthy source: rises to the ceiling", o: opts, demand: 1000, rounds: 40,
			m: constant(fast, outcomeOK),
			check: func(t *testing.T, limits []int) {
				if got := limits[len(limits)-1]; got != 256 {
					t.Errorf("limit %d, want the ceiling 256", got)
				}
			},
		},
		{
			name: "404 and 400 are normal answers", o: opts, demand: 1000, rounds: 40,
			m: func(r, _ int) (time.Duration, outcome) {
				return fast, []outcome{outcomeNotFound, outcomeBad}[r%2]
			},
			check: func(t *testing.T, limits []int) {
				if got := limits[len(limits)-1]; got != 256 {
					t.Errorf("limit %d, want the ceiling 256", got)
				}
			},
		},
		{
			name: "callers need less than the limit: holds", o: opts, demand: 10, rounds: 40,
			m: constant(fast, outcomeOK),
			check: func(t *testing.T, limits []int) {
				if got := limits[len(limits)-1]; got != 32 {
					t.Errorf("limit %d, want the initial 32: nothing waited", got)
				}
			},
		},
		{
			name: "queueing source: settles near its capacity", o: LimiterOptions{Max: 1000}, demand: 2000, rounds: 200,
			m: queueing(20*time.Millisecond, 64),
			check: func(t *testing.T, limits []int) {
				for _, l := range limits[100:] {
					if l < 32 || l > 128 {
						t.Fatalf("limit %d after 100 rounds, want it between 32 and 128 for a capacity of 64: %v", l, limits)
					}
				}
			},
		},
		{
			name: "latency steps from 5 ms to 100 ms: falls to the floor, then learns the new pace", o: opts, demand: 1000, rounds: 150,
			m: after(30, constant(fast, outcomeOK), constant(slow, outcomeOK)),
			check: func(t *testing.T, limits []int) {
				before := limits[29]
				if limits[31] >= before {
					t.Errorf("limit %d two rounds after the step, want below %d", limits[31], before)
				}
				floor := -1
				for i, l := range limits[30:] {
					if l == 1 {
						floor = 30 + i
						break
					}
				}
				if floor < 0 {
					t.Fatalf("the limit never reached the floor after the step: %v", limits)
				}
				if last := limits[len(limits)-1]; last < 32 {
					t.Errorf("limit %d at the end, want it growing again once 100 ms is the baseline: %v", last, limits)
				}
			},
		},
		{
			name: "the source fails: falls to the floor and stays", o: opts, demand: 1000, rounds: 60,
			m: after(30, constant(fast, outcomeOK), constant(fast, outcomeUnavailable)),
			check: func(t *testing.T, limits []int) {
				for i, l := range limits[40:] {
					if l != 1 {
						t.Fatalf("round %d: limit %d, want the floor 1 ten rounds into the failure: %v", 40+i, l, limits)
					}
				}
			},
		},
		{
			name: "a floor above 1", o: LimiterOptions{Initial: 32, Min: 4, Max: 64}, demand: 1000, rounds: 20,
			m: constant(fast, outcomeUnavailable),
			check: func(t *testing.T, limits []int) {
				if got := limits[len(limits)-1]; got != 4 {
					t.Errorf("limit %d, want the floor 4", got)
				}
			},
		},
		{
			name: "cancelled requests: no effect", o: opts, demand: 1000, rounds: 20,
			m: constant(slow, outcomeCanceled),
			check: func(t *testing.T, limits []int) {
				if got := limits[len(limits)-1]; got != 32 {
					t.Errorf("limit %d, want the initial 32", got)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLimiter(tt.o)
			o := tt.o
			if o.Min == 0 {
				o.Min = DefaultLimitMin
			}
			tt.check(t, drive(t, l, o, tt.rounds, tt.demand, tt.m))
		})
	}
}

func TestNewLimiterDefaults(t *testing.T) {
	for _, tt := range []struct {
		o                     LimiterOptions
		limit, ceiling, floor int
	}{
		{LimiterOptions{}, DefaultLimitInitial, DefaultLimitMax, DefaultLimitMin},
		{LimiterOptions{Max: 8}, 8, 8, 1},                       // the start is kept under the ceiling
		{LimiterOptions{Initial: 2, Min: 5, Max: 10}, 5, 10, 5}, // and over the floor
		{LimiterOptions{Min: 50, Max: 10}, 10, 10, 10},          // the floor under the ceiling
	} {
		l := NewLimiter(tt.o)
		if l.Limit() != tt.limit || l.Max() != tt.ceiling {
			t.Errorf("NewLimiter(%+v): limit %d, max %d; want %d, %d", tt.o, l.Limit(), l.Max(), tt.limit, tt.ceiling)
		}
		for range 20 {
			p, _ := l.tryAcquire()
			l.release(p, time.Millisecond, outcomeUnavailable)
		}
		if l.Limit() != tt.floor {
			t.Errorf("NewLimiter(%+v): limit %d after failures, want the floor %d", tt.o, l.Limit(), tt.floor)
		}
	}
}

// A request waits for a permit, first come first served, until its ctx
// ends; a permit given up is handed on.
func TestLimiterWaits(t *testing.T) {
	l := NewLimiter(LimiterOptions{Initial: 1, Max: 1})
	ctx := context.Background()
	first, err := l.acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}

	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := l.acquire(cctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire on a full limiter with a short ctx: %v, want context.DeadlineExceeded", err)
	}

	order := make(chan int, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			p, err := l.acquire(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			order <- i
			p.done(outcomeOK)
		})
		for l.waiting() != i+1 { // queue them in order
			time.Sleep(time.Millisecond)
		}
	}
	if n := l.Inflight(); n != 1 {
		t.Errorf("%d in flight, want 1", n)
	}
	first.done(outcomeOK)
	wg.Wait()
	if a, b := <-order, <-order; a != 0 || b != 1 {
		t.Errorf("permits granted in order %d, %d; want 0, 1", a, b)
	}
	if n := l.Inflight(); n != 0 {
		t.Errorf("%d in flight at the end, want 0", n)
	}
}

func (l *Limiter) waiting() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.waiters.Len()
}

// fakeSource is a source API whose latency and status a test sets, counting
// the requests it serves at once: from their arrival until just before the
// answer is sent, so that a request sent on a permit the answer freed is
// never counted together with it.
type fakeSource struct {
	*httptest.Server
	latency      atomic.Int64 // nanoseconds
	status       atomic.Int32 // 0: 200
	active, peak atomic.Int64
}

func newFakeSource(t *testing.T, latency time.Duration) *fakeSource {
	s := &fakeSource{}
	s.latency.Store(int64(latency))
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.active.Add(1)
		for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
		}
		select {
		case <-time.After(time.Duration(s.latency.Load())):
			s.active.Add(-1)
		case <-r.Context().Done():
			s.active.Add(-1)
			return
		}
		if code := s.status.Load(); code != 0 {
			http.Error(w, "failing on purpose", int(code))
			return
		}
		w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(s.Close)
	return s
}

// settle waits until the source serves no request: the ones a phase
// cancelled at its end are still being served for a moment.
func (s *fakeSource) settle(t *testing.T) {
	t.Helper()
	for i := 0; s.active.Load() != 0; i++ {
		if i == 10000 {
			t.Fatalf("the source still serves %d requests", s.active.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

// load sends requests from callers goroutines at once until done reports
// true (then the requests still waiting give up), or max requests were sent;
// it reports whether done became true. After every request it checks that
// the limit is within the ceiling.
func load(t *testing.T, c *Client, l *Limiter, url string, callers, max int, done func() bool) bool {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var sent atomic.Int64
	var met atomic.Bool
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for sent.Add(1) <= int64(max) && ctx.Err() == nil {
				c.Get(ctx, url) // failures are the point of some tests
				if lim := l.Limit(); lim > l.Max() {
					t.Errorf("limit %d over the ceiling %d", lim, l.Max())
				}
				if done() {
					met.Store(true)
					stop()
				}
			}
		})
	}
	wg.Wait()
	return met.Load()
}

// A Client with a Limiter, against a real HTTP source: the limit rises under
// load while the source is fast, never passes the ceiling, falls when the
// source slows down, and falls to the floor when it fails, so that it sees
// fewer requests at once. No assertion is about time: every phase runs until
// the limit does what it should, or fails after a number of requests.
func TestClientLimiter(t *testing.T) {
	const callers = 96
	type phase struct {
		latency time.Duration
		status  int
		max     int // requests: the phase fails when done is not true by then
		// done reports whether the phase got where it should, from the limit
		// now and when the phase began; nil: the phase sends max requests.
		done func(l, start int) bool
	}
	grown := func(to int) func(l, _ int) bool { return func(l, _ int) bool { return l >= to } }
	tests := []struct {
		name   string
		o      LimiterOptions
		phases []phase
		check  func(t *testing.T, s *fakeSource, l *Limiter, peaks []int64)
	}{
		{
			name:   "a healthy fast source: the limit rises above its start",
			o:      LimiterOptions{Initial: 8, Max: 64},
			phases: []phase{{latency: 5 * time.Millisecond, max: 20000, done: grown(32)}},
		},
		{
			name: "the limit never exceeds the ceiling",
			o:    LimiterOptions{Initial: 8, Max: 24},
			phases: []phase{
				{latency: 2 * time.Millisecond, max: 20000, done: grown(24)},
				{latency: 2 * time.Millisecond, max: 2000},
			},
			check: func(t *testing.T, s *fakeSource, l *Limiter, peaks []int64) {
				for i, p := range peaks {
					if p > 24 {
						t.Errorf("phase %d: the source saw %d requests at once, over the ceiling 24", i, p)
					}
				}
			},
		},
		{
			name: "the latency steps from 5 ms to 100 ms: the limit falls",
			o:    LimiterOptions{Initial: 16, Max: 64},
			phases: []phase{
				{latency: 5 * time.Millisecond, max: 20000, done: grown(48)},
				{latency: 100 * time.Millisecond, max: 3000, done: func(l, start int) bool { return l <= start/4 }},
			},
		},
		{
			name: "the source answers 503: the limit falls to the floor, the source sees fewer requests at once",
			o:    LimiterOptions{Initial: 16, Max: 64},
			phases: []phase{
				{latency: 5 * time.Millisecond, max: 20000, done: grown(48)},
				{latency: 5 * time.Millisecond, status: http.StatusServiceUnavailable, max: 3000, done: func(l, _ int) bool { return l == 1 }},
				{latency: 5 * time.Millisecond, status: http.StatusServiceUnavailable, max: 200},
			},
			check: func(t *testing.T, s *fakeSource, l *Limiter, peaks []int64) {
				if peaks[2] > 1 || peaks[2] >= peaks[0] {
					t.Errorf("the failing source saw %d requests at once (healthy: %d), want 1", peaks[2], peaks[0])
				}
				if l.Limit() != 1 {
					t.Errorf("limit %d while the source fails, want the floor 1", l.Limit())
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeSource(t, 0)
			l := NewLimiter(tt.o)
			c := New(Options{Limiter: l, MaxElapsed: 20 * time.Millisecond, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond})
			var peaks []int64
			for i, ph := range tt.phases {
				s.latency.Store(int64(ph.latency))
				s.status.Store(int32(ph.status))
				s.settle(t)
				s.peak.Store(0)
				start := l.Limit()
				done := func() bool { return false }
				if ph.done != nil {
					done = func() bool { return ph.done(l.Limit(), start) }
				}
				met := load(t, c, l, s.URL+"/x", callers, ph.max, done)
				peaks = append(peaks, s.peak.Load())
				t.Logf("phase %d (%v, status %d): limit %d → %d, peak at the source %d", i, ph.latency, ph.status, start, l.Limit(), s.peak.Load())
				if ph.done != nil && !met {
					t.Fatalf("phase %d: the limit did not get there within %d requests (it is %d)", i, ph.max, l.Limit())
				}
			}
			if n := l.Inflight(); n != 0 {
				t.Errorf("%d in flight after the load, want 0", n)
			}
			if tt.check != nil {
				tt.check(t, s, l, peaks)
			}
		})
	}
}

// tryAcquire takes a permit when one is free, without waiting: how the
// simulations drive the limiter without goroutines.
func (l *Limiter) tryAcquire() (*permit, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.waiters.Len() > 0 || l.inflight >= int(l.limit) {
		l.waited = true
		return nil, false
	}
	return l.grantLocked(), true
}
