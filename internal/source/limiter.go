package source

import (
	"container/list"
	"context"
	"math"
	"slices"
	"sync"
	"time"
)

// LimiterOptions configure a Limiter. Zero (or negative) values take the
// defaults in brackets; Initial is kept between Min and Max, and Min at most Max.
type LimiterOptions struct {
	Initial int // the limit before the source has answered anything [32]
	Min     int // the floor: the limit never falls below it [1]
	Max     int // the ceiling: the limit never rises above it [512]
}

// Defaults of LimiterOptions.
const (
	DefaultLimitInitial = 32
	DefaultLimitMin     = 1
	DefaultLimitMax     = 512
)

// The limiter's tuning. A window is a sample of latencies of attempts that
// all started under the current limit; at its end the limit moves.
const (
	// tolerance is how much slower than its baseline the source may answer
	// before the limiter reads it as queueing: Netflix concurrency-limits'
	// Gradient2 uses 1.5 too.
	tolerance = 1.5
	// slack is added to the tolerated latency, so that a fast source's
	// scheduling jitter (a millisecond on a busy machine is several times a
	// loopback answer) is not read as overload.
	slack = time.Millisecond
	// growth is how much the limit rises after a window in which latency
	// held and requests had to wait, once out of slow start (which doubles
	// it): a window is about one round trip.
	growth = 0.25
	// failureCut multiplies the limit when an attempt fails as a source under
	// strain does (timeout, connection error, 408, 429, 5xx): once per
	// generation of requests, as TCP halves its window once per round trip.
	failureCut = 0.5
	// window sizes: half the limit, within these bounds.
	minWindow = 10
	maxWindow = 250
)

// Limiter bounds the requests in flight to one source, and adapts the bound
// to how the source answers, after Netflix's concurrency-limits (gradient
// and AIMD): the limit rises while requests wait for a permit and the
// source's latency holds near its baseline, falls when the latency rises
// above it, and halves when an attempt fails the way an overloaded source
// fails (a timeout, a connection error, 408, 429 or
// 5xx). A 404 or another 4xx is a normal answer: its latency counts like a
// success's. The limit stays within LimiterOptions.Min and Max.
//
// The limiter judges by samples, not by time: it has no clock and no
// goroutine, and an idle source keeps its limit until it is used again.
// Decisions only use the attempts that started under the current limit, so
// the answers to a burst sent under an old, higher limit do not cut the
// limit twice.
//
// Permits are granted first come, first served; a waiting request gives up
// when its ctx ends. A Limiter is safe for concurrent use; share one per
// source among all the clients and callers that use the source.
//
// Why not github.com/failsafe-go/failsafe-go's adaptivelimiter (v0.9.8):
// it adapts to latency alone (a failed execution is either recorded as a
// latency, so a source answering 503 fast would look healthy, or dropped
// without effect, and the limit cannot be set from outside); its limit
// rises by 1 or 2 per sampling period of at least a second and 50 samples
// after a warm-up of ten periods, so going from 32 to 256 takes minutes, not
// a burst's first second; and it reads the wall clock, so tests would have
// to sleep through its periods.
type Limiter struct {
	min, max float64

	mu       sync.Mutex
	limit    float64
	inflight int
	waiters  list.List       // of *waiter, in arrival order
	epoch    uint64          // bumped by every change of the limit
	samples  []time.Duration // latencies of answers to attempts started in this epoch
	waited   bool            // in this epoch a request found every permit taken
	baseline time.Duration   // the source's latency when not queueing, estimated; 0: none yet
	// slowStart doubles the limit at every rise: from the start, and from
	// the floor, until the first cut, as TCP's slow start does.
	slowStart bool
}

type waiter struct {
	ready chan struct{} // closed once the permit is granted
}

// NewLimiter returns a Limiter configured by o.
func NewLimiter(o LimiterOptions) *Limiter {
	if o.Max <= 0 {
		o.Max = DefaultLimitMax
	}
	if o.Min <= 0 {
		o.Min = DefaultLimitMin
	}
	o.Min = min(o.Min, o.Max)
	if o.Initial <= 0 {
		o.Initial = DefaultLimitInitial
	}
	o.Initial = min(max(o.Initial, o.Min), o.Max)
	return &Limiter{min: float64(o.Min), max: float64(o.Max), limit: float64(o.Initial), slowStart: true}
}

// Limit is the number of requests the limiter lets be in flight now.
func (l *Limiter) Limit() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.limit)
}

// Inflight is the number of requests holding a permit now.
func (l *Limiter) Inflight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inflight
}

// Max is the ceiling of the limit.
func (l *Limiter) Max() int { return int(l.max) }

// permit is one request's right to be in flight. Release it exactly once.
type permit struct {
	l     *Limiter
	epoch uint64
	start time.Time
}

// acquire waits for a permit, first come first served, and returns ctx's
// error if ctx ends first.
func (l *Limiter) acquire(ctx context.Context) (*permit, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.waiters.Len() == 0 && l.inflight < int(l.limit) {
		p := l.grantLocked()
		l.mu.Unlock()
		return p, nil
	}
	l.waited = true
	w := &waiter{ready: make(chan struct{})}
	e := l.waiters.PushBack(w)
	l.mu.Unlock()

	select {
	case <-w.ready:
		return l.started(), nil
	case <-ctx.Done():
		l.mu.Lock()
		select {
		case <-w.ready: // granted just now: hand the permit on
			l.inflight--
			l.wakeLocked()
		default:
			l.waiters.Remove(e)
		}
		l.mu.Unlock()
		return nil, ctx.Err()
	}
}

func (l *Limiter) grantLocked() *permit {
	l.inflight++
	if l.inflight >= int(l.limit) {
		l.waited = true // every permit taken: demand reaches the limit
	}
	return &permit{l: l, epoch: l.epoch, start: time.Now()}
}

// started is the permit of a waiter that wakeLocked granted.
func (l *Limiter) started() *permit {
	l.mu.Lock()
	defer l.mu.Unlock()
	return &permit{l: l, epoch: l.epoch, start: time.Now()}
}

// wakeLocked grants permits to waiters while the limit allows.
func (l *Limiter) wakeLocked() {
	for l.waiters.Len() > 0 && l.inflight < int(l.limit) {
		w := l.waiters.Remove(l.waiters.Front()).(*waiter)
		l.inflight++
		close(w.ready)
	}
}

// done releases p after an attempt with outcome o, taking the time since
// the permit was granted as the attempt's latency.
func (p *permit) done(o outcome) {
	p.l.release(p, time.Since(p.start), o)
}

// release returns p's permit and lets the attempt's latency and outcome move
// the limit.
func (l *Limiter) release(p *permit, latency time.Duration, o outcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight--
	if p.epoch == l.epoch {
		switch o {
		case outcomeUnavailable:
			l.setLocked(l.limit * failureCut)
		case outcomeOK, outcomeNotFound, outcomeBad:
			l.samples = append(l.samples, latency)
			if len(l.samples) >= min(max(int(l.limit)/2, minWindow), maxWindow) {
				l.judgeLocked()
			}
		}
	}
	l.wakeLocked()
}

// judgeLocked ends a window: it compares the window's median latency with
// the baseline, moves the limit, and then the baseline.
//
// A cut goes half the way to the limit that, by Little's law, would bring a
// queue back to the baseline latency (the limit times baseline/recent): a
// 20-fold slowdown about halves the limit per window, a passing 1.6-fold
// spike takes a fifth off. The windows after a cut show the source's own
// pace and keep the baseline honest.
// The baseline falls half the way to any faster window, and rises only at
// the floor, where there is nothing left to cut: a source that became slower
// for good is cut down to the floor, and there its new pace becomes the
// baseline at the next window, from which the limit grows again. Anywhere
// else a slower window never moves the baseline up, or the limiter's own
// queueing would become the new normal and the limit would creep to the
// ceiling.
func (l *Limiter) judgeLocked() {
	slices.Sort(l.samples)
	recent := l.samples[len(l.samples)/2]
	base := l.baseline
	if base == 0 {
		base = recent
	}
	atFloor := l.limit <= l.min
	allowed := time.Duration(tolerance*float64(base)) + slack
	// Demand: a request had to wait during the window, or requests still
	// wait now (a standing queue adds no new waiter to notice).
	waited := l.waited || l.waiters.Len() > 0
	switch {
	case recent > allowed:
		l.setLocked(l.limit * (1 + float64(base)/float64(recent)) / 2)
	case waited && l.slowStart:
		l.setLocked(l.limit * 2)
	case waited:
		l.setLocked(l.limit + max(1, l.limit*growth))
	default: // latency holds, and the callers do not need more: keep the limit
		l.samples, l.waited = l.samples[:0], false
	}
	switch {
	case atFloor:
		// Alone in flight (or nearly), the limiter queues nothing: what the
		// window saw is the source's own pace, taken as it is.
		base = recent
	case recent < base:
		base -= (base - recent) / 2
	}
	l.baseline = base
}

// setLocked moves the limit within its bounds and starts a new epoch.
func (l *Limiter) setLocked(limit float64) {
	limit = math.Min(math.Max(limit, l.min), l.max)
	switch {
	case limit <= l.min:
		l.slowStart = true
	case limit < l.limit:
		l.slowStart = false
	}
	l.limit = limit
	l.epoch++
	l.samples, l.waited = l.samples[:0], false
}
