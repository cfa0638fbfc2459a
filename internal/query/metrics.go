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
	shedBy   [2]prometheus.Counter    // shedN's children, by class
	breakers *prometheus.GaugeVec     // projection, store
	failures *prometheus.CounterVec   // projection, store
	late     prometheus.Counter
	answers  *prometheus.CounterVec   // projection, endpoint, from
	reprojN  *prometheus.CounterVec   // projection, result
	readIDs  *prometheus.HistogramVec // projection
	// Children of the vectors above, looked up once: a request then costs
	// no label hashing.
	byEndpoint map[string]prometheus.Observer
	counted    map[string]map[int]prometheus.Counter // endpoint, then the usual codes
}

// endpoint is the index of an endpoint label value in endpoints.
type endpoint int

const (
	epDetail endpoint = iota
	epMultiget
	epList
	epSearch
)

// Where the documents of an answer came from: the values of the from label,
// in the order of answerFroms.
const (
	fromStoreAll  = iota // every document from the doc store (or none at all)
	fromSourceAll        // every document built from the sources
	fromMixed            // some of each
	fromDegraded         // a list from the source's list endpoint: the search engine down
)

var answerFroms = []string{"store", "source", "mixed", "degraded"}

// viewMetrics are the series of one projection, looked up once when the
// server is built: counting an answer or a re-project event costs an
// atomic add, no label hashing.
type viewMetrics struct {
	answers                   [epSearch + 1][fromDegraded + 1]prometheus.Counter
	reprojectOK, reprojectErr prometheus.Counter
	coalesced                 prometheus.Observer // ids of each doc-store read of detail requests
}

// answered counts an answer of endpoint e whose documents came as f says
// (degraded: from the source's list endpoint).
func (vm *viewMetrics) answered(e endpoint, f *freshness, degraded bool) {
	from := fromStoreAll
	switch {
	case degraded:
		from = fromDegraded
	case f.src == 0:
	case f.store == 0:
		from = fromSourceAll
	default:
		from = fromMixed
	}
	vm.answers[e][from].Inc()
}

// forView returns projection's series.
func (m *metrics) forView(projection string) *viewMetrics {
	vm := &viewMetrics{
		reprojectOK:  m.reprojN.WithLabelValues(projection, "ok"),
		reprojectErr: m.reprojN.WithLabelValues(projection, "failed"),
		coalesced:    m.readIDs.WithLabelValues(projection),
	}
	for e := range vm.answers {
		for f := range vm.answers[e] {
			vm.answers[e][f] = m.answers.WithLabelValues(projection, endpoints[e], answerFroms[f])
		}
	}
	return vm
}

// usualCodes are the status codes whose counters are looked up once.
var usualCodes = []int{200, 304, 400, 404, 405, 414, 431, 503, 504}

// endpoints are the values of the endpoint label (see endpoint).
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
		answers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "readside_query_answers_total",
			Help: "Answers with documents (200 and 304), by projection, endpoint (detail, multiget, list, search) and where their documents came from: store (the doc store; also an answer with no document), source (every one built from the source APIs, the store missing them or failing), mixed (some of each), degraded (a list served from the source's list endpoint while the search engine is down).",
		}, []string{"projection", "endpoint", "from"}),
		reprojN: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "readside_query_reproject_published_total",
			Help: "Re-project events the API published for documents it built from the sources because the store lacked them, by projection and result: ok (handed to NATS; JetStream drops repeats of an id within 10s), failed (refused at once: NATS disconnected, or too many events awaiting JetStream's acknowledgement).",
		}, []string{"projection", "result"}),
		readIDs: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "readside_query_detail_read_ids",
			Help:    "Ids in each doc-store read of detail requests (and of multi-gets and pages of one id), by projection: 1 when a read found a lane free, more when reads that waited for one went together (see -coalesce-reads).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
		}, []string{"projection"}),
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
		m.shedBy[c] = m.shedN.WithLabelValues(c.String())
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.requests, m.seconds, m.shedN, m.breakers, m.failures, m.late, m.answers, m.reprojN, m.readIDs,
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

func (m *metrics) shed(c class) { m.shedBy[c].Inc() }

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
