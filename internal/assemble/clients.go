package assemble

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/readside/readside/internal/source"
	"github.com/readside/readside/projections"
)

// DefaultRetryBudget bounds the retries of one source request when the
// caller gives no budget (and cmd/projector's -source-retry-budget): long
// enough to ride out a blip, short enough that an id then waits for a later
// retry instead of holding a batch.
const DefaultRetryBudget = 3 * time.Second

// Clients returns a client for every source of def, each behind its own
// circuit breaker, in definition order. retryBudget bounds the retries of one
// request [DefaultRetryBudget]. Their requests are not limited: the caller bounds them (see
// Limits for clients whose concurrency adapts).
func Clients(def *projections.Definition, transport http.RoundTripper, retryBudget time.Duration) []Fetcher {
	return clients(def, transport, retryBudget, nil)
}

func clients(def *projections.Definition, transport http.RoundTripper, retryBudget time.Duration, l *Limits) []Fetcher {
	if retryBudget <= 0 {
		retryBudget = DefaultRetryBudget
	}
	out := make([]Fetcher, len(def.Sources))
	for i, s := range def.Sources {
		o := source.Options{Timeout: def.SourceTimeout(i), MaxElapsed: retryBudget, Transport: transport}
		if l != nil {
			key := limitKey{def.Name, s.Name}
			o.Limiter = l.limiter(key)
			hist := l.seconds.MustCurryWith(prometheus.Labels{"projection": key.projection, "source": key.source})
			o.Observe = func(result string, d time.Duration) { hist.WithLabelValues(result).Observe(d.Seconds()) }
		}
		b := source.WithBreaker(source.New(o), def.Name+"/"+s.Name)
		if l != nil {
			l.mu.Lock()
			l.breakers[limitKey{def.Name, s.Name}] = b
			l.mu.Unlock()
		}
		out[i] = b
	}
	return out
}

// Limits keeps one adaptive concurrency limiter (source.Limiter) per source
// of each projection, and reports them as metrics. Every client that
// Clients returns for a source shares its limiter, so the limit holds for the
// whole process — all the projection's consumers, workers and batches — not
// per Assemble call. Make one per process. Safe for concurrent use.
//
// Its metrics, labelled projection and source:
//
//	readside_source_concurrency_limit  gauge: requests the limiter lets be in flight now
//	readside_source_inflight           gauge: requests in flight now
//	readside_source_request_seconds    histogram of one attempt (a retry is another), also labelled
//	                                   result: ok, not_found, bad, unavailable
//	readside_source_breaker_state      gauge: the source's circuit breaker, 0 closed, 1 half-open, 2 open
type Limits struct {
	o        source.LimiterOptions
	mu       sync.Mutex
	limiters map[limitKey]*source.Limiter
	breakers map[limitKey]*source.Breaker // the last made for each source

	limit, inflight, breaker *prometheus.Desc
	seconds                  *prometheus.HistogramVec
}

type limitKey struct{ projection, source string }

// NewLimits returns the limiters' registry, each limiter configured by o
// (o.Max is the ceiling, source.DefaultLimitMax when zero), and registers its
// metrics on reg unless reg is nil.
func NewLimits(o source.LimiterOptions, reg prometheus.Registerer) *Limits {
	if o.Max <= 0 {
		o.Max = source.DefaultLimitMax
	}
	l := &Limits{
		o:        o,
		limiters: map[limitKey]*source.Limiter{},
		breakers: map[limitKey]*source.Breaker{},
		limit: prometheus.NewDesc("readside_source_concurrency_limit",
			"Requests to the source that the adaptive limiter lets be in flight now.", []string{"projection", "source"}, nil),
		inflight: prometheus.NewDesc("readside_source_inflight",
			"Requests to the source in flight now.", []string{"projection", "source"}, nil),
		breaker: prometheus.NewDesc("readside_source_breaker_state",
			fmt.Sprintf("State of the source's circuit breaker: 0 closed (requests go through), 1 half-open (one probes the source), 2 open (failing fast after %d failures in a row).", source.BreakerFailures), []string{"projection", "source"}, nil),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "readside_source_request_seconds", Help: "Time of one request to the source (one attempt), by result: ok, not_found, bad (another 4xx), unavailable (a network error, a timeout, 408, 429, 5xx).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"projection", "source", "result"}),
	}
	if reg != nil {
		reg.MustRegister(l)
	}
	return l
}

// Max is the ceiling of every limit.
func (l *Limits) Max() int { return l.o.Max }

// Clients is the package's Clients with the concurrency of each source's
// requests bounded by its limiter.
func (l *Limits) Clients(def *projections.Definition, transport http.RoundTripper, retryBudget time.Duration) []Fetcher {
	return clients(def, transport, retryBudget, l)
}

// Limiter returns the limiter of a projection's source, made on first use.
func (l *Limits) Limiter(projection, source string) *source.Limiter {
	return l.limiter(limitKey{projection, source})
}

func (l *Limits) limiter(k limitKey) *source.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.limiters[k]
	if !ok {
		lim = source.NewLimiter(l.o)
		l.limiters[k] = lim
	}
	return lim
}

// Describe is part of prometheus.Collector.
func (l *Limits) Describe(ch chan<- *prometheus.Desc) {
	ch <- l.limit
	ch <- l.inflight
	ch <- l.breaker
	l.seconds.Describe(ch)
}

// Collect is part of prometheus.Collector.
func (l *Limits) Collect(ch chan<- prometheus.Metric) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, lim := range l.limiters {
		ch <- prometheus.MustNewConstMetric(l.limit, prometheus.GaugeValue, float64(lim.Limit()), k.projection, k.source)
		ch <- prometheus.MustNewConstMetric(l.inflight, prometheus.GaugeValue, float64(lim.Inflight()), k.projection, k.source)
	}
	for k, b := range l.breakers {
		ch <- prometheus.MustNewConstMetric(l.breaker, prometheus.GaugeValue, float64(b.State()), k.projection, k.source)
	}
	l.seconds.Collect(ch)
}
