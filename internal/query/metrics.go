package query

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// metrics are the API's Prometheus metrics, registered on
// Options.Registerer when it is set.
type metrics struct {
	requests *prometheus.CounterVec   // endpoint, code
	seconds  *prometheus.HistogramVec // endpoint
	shedN    *prometheus.CounterVec   // class
	breakers *prometheus.GaugeVec     // projection, store
	failures *prometheus.CounterVec   // projection, store
	late     prometheus.Counter
	// Children of the vectors above, looked up once: a request then costs
	// no label hashing.
	byEndpoint map[string]prometheus.Observer
	counted    map[string]map[int]prometheus.Counter // endpoint, then the usual codes
}

// usualCodes are the status codes whose counters are looked up once.
var usualCodes = []int{200, 304, 400, 404, 405, 414, 431, 503, 504}

// endpoints are the values of the endpoint label.
var endpoints = []string{"detail", "multiget", "list", "search", "other"}

func newMetrics(s *Server, reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "readside_query_requests_total",
			Help: "Requests answered by the query API, by endpoint (detail, multiget, list, search, other) and status code.",
		}, []string{"endpoint", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "readside_query_request_seconds",
			Help:    "Time to answer a request, by endpoint.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"endpoint"}),
		shedN: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "readside_query_shed_total",
			Help: "Requests answered 503 at once because the replica was saturated, by class: search (list and search, over the adaptive limit) or read (any request, over -max-inflight).",
		}, []string{"class"}),
		breakers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "readside_query_breaker_state",
			Help: "State of the circuit breaker in front of a store: 0 closed (used), 1 half-open (trying it again), 2 open (skipped).",
		}, []string{"projection", "store"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "readside_query_store_failures_total",
			Help: "Reads of a store (docs: the doc store; search: the search engine) that failed or timed out (not counting reads an open breaker skipped: see readside_query_breaker_state).",
		}, []string{"projection", "store"}),
		late: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "readside_query_search_late_total",
			Help: "Searches the search engine finished after their request's deadline (the request was answered 504 at the deadline).",
		}),
		byEndpoint: map[string]prometheus.Observer{},
	}
	m.counted = map[string]map[int]prometheus.Counter{}
	for _, e := range endpoints {
		m.byEndpoint[e] = m.seconds.WithLabelValues(e)
		m.counted[e] = map[int]prometheus.Counter{}
		for _, c := range usualCodes {
			m.counted[e][c] = m.requests.WithLabelValues(e, strconv.Itoa(c))
		}
	}
	for _, c := range []class{classRead, classSearch} {
		m.shedN.WithLabelValues(c.String())
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.requests, m.seconds, m.shedN, m.breakers, m.failures, m.late,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "readside_query_inflight",
			Help: "Requests being answered.",
		}, func() float64 { return float64(s.inflight.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "readside_query_search_limit",
			Help: "Current adaptive limit of lists and searches at once (at most -search-max-inflight).",
		}, func() float64 { return float64(s.searchLimit.Limit()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "readside_query_search_inflight",
			Help: "Lists and searches being answered under the adaptive limit.",
		}, func() float64 { return float64(s.searchLimit.Inflight()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "readside_query_search_queued",
			Help: "Lists and searches waiting for the adaptive limit.",
		}, func() float64 { return float64(s.searchLimit.Queued()) }),
	)
	return m
}

func (m *metrics) shed(c class) { m.shedN.WithLabelValues(c.String()).Inc() }

// breaker records a breaker's state changes.
func (m *metrics) breaker(projection, store string) func(string, gobreaker.State, gobreaker.State) {
	g := m.breakers.WithLabelValues(projection, store)
	g.Set(0)
	return func(_ string, _, to gobreaker.State) {
		switch to {
		case gobreaker.StateClosed:
			g.Set(0)
		case gobreaker.StateHalfOpen:
			g.Set(1)
		default:
			g.Set(2)
		}
	}
}

func (m *metrics) failed(projection, store string) {
	m.failures.WithLabelValues(projection, store).Inc()
}

func (m *metrics) observe(endpoint string, code int, took time.Duration) {
	if c, ok := m.counted[endpoint][code]; ok {
		c.Inc()
	} else {
		m.requests.WithLabelValues(endpoint, strconv.Itoa(code)).Inc()
	}
	m.byEndpoint[endpoint].Observe(took.Seconds())
}

// endpointOf names what r asks for, without routing it.
func endpointOf(r *http.Request) string {
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1/")
	if !ok || rest == "" {
		return "other"
	}
	if strings.IndexByte(rest, '/') >= 0 {
		return "detail"
	}
	q := r.URL.RawQuery
	switch {
	case strings.HasPrefix(q, "ids=") || strings.Contains(q, "&ids="):
		return "multiget"
	case strings.HasPrefix(q, "q=") || strings.Contains(q, "&q="):
		return "search"
	}
	return "list"
}
