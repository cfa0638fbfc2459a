// Package query is the read API storefront apps call: detail, multi-get,
// list and search over every loaded projection.
//
// Reads are nonblocking for the stores: documents come from the doc store
// (Redis, or the embedded bbolt one) and are spliced into answers as the
// stored JSON; list and search ask the search engine (a sink.Searcher:
// Elasticsearch, or the embedded bleve index) for ids only. When the doc
// store misses, fails, times out or its breaker is open, a document is built
// from the source APIs with the same code the projector uses
// (internal/assemble), so its shape is identical; concurrent misses for one
// id share one build, and each source gets a bounded number of requests at
// once, so a store outage cannot flood the domain services. The API never
// writes a store: for a document it had to build, it publishes a re-project
// event, and the projector heals the store.
package query

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"hash/fnv"
	"log/slog"
	"net/http"
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivelimiter"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/propagation"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/readside/readside/internal/assemble"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/source"
	"github.com/readside/readside/projections"
)

// Docs reads stored documents by id (redisstore.Store, boltstore.Docs).
type Docs interface {
	GetMany(ctx context.Context, ids []string) ([]*sink.Stored, error)
}

// Publisher publishes re-project events without waiting (see jetstream.JetStream).
type Publisher interface {
	PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

// DefaultRequestTimeout is the deadline of one request when Options set none.
const DefaultRequestTimeout = 2 * time.Second

// DefaultCoalesceReads is Options.CoalesceReads when it is 0: twice the
// CPUs the process may use (measured on 2: 2 and 4 lanes served detail at
// 1.2–1.3× the rate of a GET a request, 8 at 1.1×; fewer lanes join more).
func DefaultCoalesceReads() int { return 2 * runtime.GOMAXPROCS(0) }

// Options tune the API. Zero values take the defaults in brackets.
type Options struct {
	RequestTimeout    time.Duration // deadline of one request [2s]
	SourceConcurrency int           // requests at once to each source, for fallbacks [16]
	MaxLimit          int           // largest page of list and search [100]
	MaxIDs            int           // most ids of one multi-get [100]
	MaxQuery          int           // longest q, in characters [200]
	CursorKey         []byte        // signs cursors; share it between replicas [random per process]
	MaxInflight       int           // requests in flight at once; more get a fast 503 [2048]
	SearchMaxInflight int           // ceiling of the adaptive limit on lists and searches in flight [64]
	// CoalesceReads is how many doc-store reads of detail requests a
	// projection has in flight at once; the detail reads that come
	// meanwhile wait and go together in the next one (see coalescer).
	// Negative: none waits, every detail read is a read of its own.
	// [2×GOMAXPROCS]
	CoalesceReads int
	// Registerer, when set, gets the API's metrics (readside_query_*).
	Registerer prometheus.Registerer
	// Propagator, when set (tracing on), writes the request's trace context
	// into the headers of the re-project events it publishes, so that the
	// projector's work for them continues the request's trace.
	Propagator propagation.TextMapPropagator
}

func (o *Options) defaults() {
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.SourceConcurrency <= 0 {
		o.SourceConcurrency = 16
	}
	if o.MaxLimit <= 0 {
		o.MaxLimit = 100
	}
	if o.MaxIDs <= 0 {
		o.MaxIDs = 100
	}
	if o.MaxQuery <= 0 {
		o.MaxQuery = 200
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = 2048
	}
	if o.SearchMaxInflight <= 0 {
		o.SearchMaxInflight = 64
	}
	if o.CoalesceReads == 0 {
		o.CoalesceReads = DefaultCoalesceReads()
	}
}

// View is one projection as the API serves it.
type View struct {
	Def     *projections.Definition
	Docs    Docs               // the doc store
	Search  sink.Searcher      // list and search (elasticindex.Index, bleveindex.Index)
	Sources []assemble.Fetcher // one per source of Def, for fallbacks
	// SearchProbe, when set, asks the search engine whether it answers at
	// all (a cheap request, such as Elasticsearch's cluster health). The API
	// probes when searches run out of time, to tell an expensive query from
	// an engine that is down: only the second opens the search breaker.
	SearchProbe func(ctx context.Context) error
}

// Server answers the read API. Build it with New; it is an http.Handler.
type Server struct {
	views map[string]*view
	pub   Publisher
	log   *slog.Logger
	o     Options
	mux   *http.ServeMux
	ready func(ctx context.Context) map[string]string
	spec  []byte // the OpenAPI document, generated once by New

	ids         *requestIDs
	inflight    atomic.Int64
	searchLimit adaptivelimiter.AdaptiveLimiter[any]
	m           *metrics
	maxURI      int // longest request target; longer ones get 414
	// macs are HMACs keyed with CursorKey, kept for the next cursor: a new
	// one hashes the key twice and allocates two digests.
	macs sync.Pool
}

type view struct {
	View
	asm      *assemble.Assembler
	builds   singleflight.Group
	redisCB  *gobreaker.CircuitBreaker[[]*sink.Stored]
	searchCB *gobreaker.CircuitBreaker[sink.Page]
	geoField string
	fields   map[string]*projections.Field
	// partialWarn spaces out the warning that the doc store could give only
	// part of a multi-get, which lasts as long as a Redis Cluster failover.
	partialWarn rate.Sometimes
	// limitedPrimary is the primary source under the per-source bound.
	limitedPrimary assemble.Fetcher
	// probing is set while a probe of the search engine runs; probeFailed
	// when the last one failed, which opens the search breaker at once.
	probing, probeFailed atomic.Bool
	// storeWarn and searchWarn space out the warnings that a store fails.
	storeWarn, searchWarn, sourceWarn rate.Sometimes
	m                                 *viewMetrics
	// coalesce joins the doc-store reads of concurrent detail requests
	// (nil: each is a read of its own).
	coalesce *coalescer
}

// New builds the API over views. pub may be nil (no re-project events);
// ready reports each backend's state for /readyz.
func New(views []View, pub Publisher, log *slog.Logger, ready func(ctx context.Context) map[string]string, o Options) *Server {
	o.defaults()
	if len(o.CursorKey) == 0 {
		o.CursorKey = randomKey()
	}
	s := &Server{views: map[string]*view{}, pub: pub, log: log, o: o, ready: ready, ids: newRequestIDs()}
	s.macs.New = func() any { return hmac.New(sha256.New, o.CursorKey) }
	s.searchLimit = newSearchLimiter(o)
	s.m = newMetrics(s, o.Registerer)
	// The longest request target a valid request needs: a multi-get of
	// MaxIDs ids of the longest length, every byte percent-encoded.
	s.maxURI = max(16<<10, o.MaxIDs*(projections.MaxIDLen*3+3)+8<<10)
	for _, v := range views {
		limited := make([]assemble.Fetcher, len(v.Sources))
		for i, f := range v.Sources {
			limited[i] = &limitedFetcher{f: f, sem: make(chan struct{}, o.SourceConcurrency)}
		}
		vw := &view{
			View:           v,
			asm:            assemble.New(v.Def, limited, assemble.Options{Concurrency: o.SourceConcurrency}),
			fields:         map[string]*projections.Field{},
			limitedPrimary: limited[0],
			partialWarn:    rate.Sometimes{Interval: 5 * time.Second},
			storeWarn:      rate.Sometimes{Interval: 5 * time.Second},
			searchWarn:     rate.Sometimes{Interval: 5 * time.Second},
			sourceWarn:     rate.Sometimes{Interval: 5 * time.Second},
			m:              s.m.forView(v.Def.Name),
		}
		if o.CoalesceReads > 0 {
			vw.coalesce = newCoalescer(v.Docs.GetMany, o.CoalesceReads, vw.m.coalesced.Observe)
		}
		vw.redisCB = gobreaker.NewCircuitBreaker[[]*sink.Stored](gobreaker.Settings{
			Name: v.Def.Name + "/redis", Timeout: source.BreakerOpen,
			ReadyToTrip:   func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= source.BreakerFailures },
			IsExcluded:    func(err error) bool { return errors.Is(err, context.Canceled) },
			OnStateChange: s.breakerChanged(v.Def.Name, "docs"),
		})
		vw.searchCB = gobreaker.NewCircuitBreaker[sink.Page](gobreaker.Settings{
			Name: v.Def.Name + "/search", Timeout: source.BreakerOpen,
			// Half-open lets a few searches through: one that is slow (an
			// expensive query) must not hold every other one off.
			MaxRequests: 4,
			ReadyToTrip: func(c gobreaker.Counts) bool {
				return c.ConsecutiveFailures >= source.BreakerFailures || vw.probeFailed.Load()
			},
			// A search that ran out of time is not the engine failing: it
			// may be an expensive query (and its request's deadline the
			// client's choice). The engine is probed instead (probeSearch).
			// A query the engine refuses is the client's error.
			IsExcluded: func(err error) bool {
				return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sink.ErrBadQuery)
			},
			OnStateChange: s.breakerChanged(v.Def.Name, "search"),
		})
		for i := range v.Def.Fields {
			f := &v.Def.Fields[i]
			vw.fields[f.Name] = f
			if f.Type == projections.GeoPoint && vw.geoField == "" {
				vw.geoField = f.Name
			}
		}
		s.views[v.Def.Name] = vw
	}
	s.spec = buildOpenAPI(s)
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /v1/{projection}/{id}", s.detail)
	s.mux.HandleFunc("GET /v1/{projection}", s.collection)
	s.mux.HandleFunc("GET /openapi.json", s.openAPI)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("/", s.noRoute)
	return s
}

// breakerChanged logs a breaker's state changes and keeps its metric.
func (s *Server) breakerChanged(projection, store string) func(string, gobreaker.State, gobreaker.State) {
	metric := s.m.breaker(projection, store)
	return func(name string, from, to gobreaker.State) {
		metric(name, from, to)
		level := slog.LevelWarn
		if to == gobreaker.StateClosed {
			level = slog.LevelInfo
		}
		s.log.Log(context.Background(), level, "circuit breaker "+to.String(), "projection", projection, "store", store, "from", from.String())
	}
}

// noRoute answers what no route takes: 405 with Allow for a path served
// with other methods, else 404.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		get := r.Clone(r.Context())
		get.Method = http.MethodGet
		if _, pattern := s.mux.Handler(get); pattern != "/" {
			w.Header().Set("Allow", "GET, HEAD")
			methodNotAllowed(w, r)
			return
		}
	}
	notFound(w, r, "no such endpoint: the API serves GET /v1/{projection}, GET /v1/{projection}/{id} and GET /openapi.json")
}

// ServeHTTP gives every request an id and the deadline, refuses what is
// too long or over the bound on requests in flight, and hands the rest to
// the routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := s.ids.of(r)
	w.Header()["X-Request-Id"] = []string{id}
	// The recorder and the request's context, allocated as one.
	ex := &exchange{rec: recorder{ResponseWriter: w, status: http.StatusOK}}
	rec := &ex.rec
	n := s.inflight.Add(1)
	switch {
	case len(r.RequestURI) > s.maxURI:
		uriTooLong(rec, r, s.maxURI)
	case headerBytes(r.Header) > maxHeaderBytes:
		headersTooLarge(rec, r)
	case notClean(r.URL.EscapedPath()):
		// net/http's mux would redirect /v1/p/.. or //v1/p to the cleaned
		// path: no API path has dot segments or empty ones (an id is never
		// "." or "..").
		notFound(rec, r, "no such endpoint: the path has an empty, . or .. segment")
	case n > int64(s.o.MaxInflight):
		s.m.shed(classRead)
		overloaded(rec, r, "too many requests at once on this replica")
	default:
		// No timer: see requestCtx. A detail read from the doc store,
		// the most common request, then has one (stored's), not two.
		ex.ctx = requestCtx{Context: r.Context(), id: id, deadline: start.Add(s.o.RequestTimeout)}
		s.mux.ServeHTTP(rec, r.WithContext(&ex.ctx))
	}
	s.inflight.Add(-1)
	s.m.observe(endpointOf(r), rec.status, time.Since(start))
}

// exchange is what ServeHTTP makes for a request.
type exchange struct {
	rec recorder
	ctx requestCtx
}

// Route is the pattern of the route r takes, such as
// "GET /v1/{projection}/{id}", without serving it: what names a request's
// trace span, never its path, which holds ids.
func (s *Server) Route(r *http.Request) string {
	_, pattern := s.mux.Handler(r)
	return pattern
}

// notClean reports whether an escaped path has an empty, . or .. segment
// (an id's own slashes are escaped, %2F, so they do not count).
func notClean(p string) bool {
	return p != "/" && p != path.Clean(p)
}

// maxHeaderBytes bounds a request's header fields (the request line aside,
// see Server.maxURI); Serve lets more through, so that the answer is a
// problem, not net/http's plain text.
const maxHeaderBytes = 64 << 10

func headerBytes(h http.Header) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

func (s *Server) view(w http.ResponseWriter, r *http.Request) *view {
	v := s.views[r.PathValue("projection")]
	if v == nil {
		names := make([]string, 0, len(s.views))
		for n := range s.views {
			names = append(names, n)
		}
		notFound(w, r, "no projection "+strconv.Quote(r.PathValue("projection"))+"; served are: "+strings.Join(names, ", "))
	}
	return v
}

// doc is one document to answer, with where it came from.
type doc struct {
	body      []byte
	version   int64
	builtAt   time.Time
	fromStore bool
	versioned bool // version is the stored one (a strong ETag)
}

// detail answers GET /v1/{projection}/{id}.
func (s *Server) detail(w http.ResponseWriter, r *http.Request) {
	v := s.view(w, r)
	if v == nil {
		return
	}
	id := r.PathValue("id")
	if err := projections.ValidateID(id); err != nil {
		badRequest(w, r, []ParameterIssue{{Parameter: "id", Message: strings.TrimPrefix(err.Error(), "bad event: ")}})
		return
	}
	d, ok, gone := s.readOne(r.Context(), v, id)
	switch {
	case ok:
	case gone:
		notFound(w, r, "projection "+v.Def.Name+" has no document "+strconv.Quote(id))
		return
	case r.Context().Err() != nil:
		timedOut(w, r)
		return
	default: // read logged and counted why
		unavailable(w, r, "neither the store nor the source API could give the document", 2*time.Second)
		return
	}
	etag := d.etag()
	w.Header()["Etag"] = []string{etag}
	var f freshness
	f.add(&d)
	f.set(w)
	v.m.answered(epDetail, &f, false)
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatch(inm, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header()["Content-Type"] = jsonType
	w.Write(d.body)
}

func (d doc) etag() string {
	if d.versioned {
		var b [24]byte
		return string(append(strconv.AppendInt(append(b[:0], `"v`...), d.version, 10), '"'))
	}
	h := fnv.New64a()
	h.Write(d.body)
	return `W/"` + strconv.FormatUint(h.Sum64(), 36) + `"`
}

// etagMatch compares an If-None-Match header with an ETag, weakly (RFC 9110).
func etagMatch(header, etag string) bool {
	weak := func(t string) string { return strings.TrimPrefix(strings.TrimSpace(t), "W/") }
	for t := range strings.SplitSeq(header, ",") {
		if strings.TrimSpace(t) == "*" || weak(t) == weak(etag) {
			return true
		}
	}
	return false
}

// Header values every answer of their kind has, shared rather than made
// per answer (net/http only reads them; keys in canonical form).
var (
	fromStore  = []string{"store"}
	fromSource = []string{"source"}
	fromBoth   = []string{"mixed"}
	jsonType   = []string{"application/json"}
)

// freshness is where the documents of an answer came from and when the
// oldest was built.
type freshness struct {
	store, src int
	oldest     time.Time
}

func (f *freshness) add(d *doc) {
	if d.fromStore {
		f.store++
	} else {
		f.src++
	}
	if !d.builtAt.IsZero() && (f.oldest.IsZero() || d.builtAt.Before(f.oldest)) {
		f.oldest = d.builtAt
	}
}

// set says it in the answer's headers.
func (f *freshness) set(w http.ResponseWriter) {
	h := w.Header()
	switch {
	case f.src == 0:
		h["X-Readside-Source"] = fromStore
	case f.store == 0:
		h["X-Readside-Source"] = fromSource
	default:
		h["X-Readside-Source"] = fromBoth
	}
	if !f.oldest.IsZero() {
		var b [len(time.RFC3339Nano) + 8]byte
		h["X-Readside-Built-At"] = []string{string(f.oldest.UTC().AppendFormat(b[:0], time.RFC3339Nano))}
	}
}

// sourceFailed logs (at most every 5s per projection) and counts that the
// sources could not give documents the store could not give either (read
// calls it for every endpoint; a multi-get or a page answers those ids as
// missing). The
// error, with its URL and upstream body, stays here: the client's answer
// carries only the request id to quote.
func (s *Server) sourceFailed(ctx context.Context, v *view, err error) {
	s.m.failed(v.Def.Name, "source")
	v.sourceWarn.Do(func() {
		s.log.Warn("neither the store nor the sources could give a document (logged at most every 5s)", "projection", v.Def.Name, "request", RequestID(ctx), "err", err)
	})
}
