// Package storeapi lets operators' tools reach stores that only one process
// can open: the embedded ones (bbolt locks its file, the bleve index
// belongs to the projector that writes it). The projector serves the store
// contracts of package sink (Reader, Scanner, Counter, Sampler, Reindexer,
// and the reverse lookups' Users) as JSON over HTTP on its admin address,
// with Handler; replay reaches them through a Client, whose stores keep the
// same contracts, so replay's code is the same whichever side the store is.
//
// The routes, under /stores/v1/{projection}, {store} being "docs" or
// "index":
//
//	GET  {store}/scan?from=POS   one page of a Scan from POS: {"ids","deleted","at","next"}
//	POST {store}/get             {"ids":[...]} (at most MaxGet) → {"docs":[{"version","deleted","body","builtAt"} | null]}
//	GET  {store}/count           {"count":N}
//	GET  {store}/sample?n=N      {"ids":[...]} (n at most MaxSample)
//	POST {store}/reindex         {"documents":N}, once the index has re-indexed itself
//	GET  refs?source=S&key=K     NDJSON, one {"ids":[...]} line per page of Users
//
// Every error is an RFC 9457 problem (application/problem+json) whose
// detail says what failed, never the store's own error (which names hosts
// and files): that is in the projector's log. 404: no such projection,
// store or route; 400: a bad parameter or body; 501: the store does not
// keep the contract asked for (the Client's ErrNotSupported); 503: the
// stores are not open (the projector is starting or stopping); 500: the
// store failed.
//
// The API reads every document and starts a re-index: it belongs on an
// address only operators reach, never a public one.
package storeapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/projections"
)

// The limits of a request.
const (
	// MaxGet is the most ids one get request reads.
	MaxGet = 1000
	// MaxSample is the most ids one sample request asks for.
	MaxSample = 10000
	// maxBody bounds a request body: MaxGet ids of up to 1 KiB, as JSON.
	maxBody = 2 << 20
	// pageWriteTimeout is how long writing one page of a refs stream may
	// take: a stream goes on as long as it makes progress.
	pageWriteTimeout = 30 * time.Second
)

// ErrUnknownProjection is what an open function returns, wrapped, for a
// projection the process does not serve: the answer is 404.
var ErrUnknownProjection = errors.New("no such projection")

// ErrUnavailable is what an open function returns, wrapped, while the
// stores cannot be opened for a passing reason (the process is starting or
// stopping): the answer is 503, with the error's text as its detail.
var ErrUnavailable = errors.New("stores unavailable")

// Open opens a projection's stores for reading. Handler calls it for every
// request, concurrently, so it must be cheap: backend.Stores.Read is (it
// sends no request, and the embedded stores are opened once).
type Open func(ctx context.Context, projection string) (sink.Stores, error)

// ByName is an Open over the projections defs, whose stores read opens
// (such as backend.Stores.Read); a projection not among them is
// ErrUnknownProjection.
func ByName(defs []*projections.Definition, read func(ctx context.Context, def *projections.Definition) (sink.Stores, error)) Open {
	byName := map[string]*projections.Definition{}
	for _, d := range defs {
		byName[d.Name] = d
	}
	return func(ctx context.Context, projection string) (sink.Stores, error) {
		def := byName[projection]
		if def == nil {
			return sink.Stores{}, fmt.Errorf("projection %q: %w", projection, ErrUnknownProjection)
		}
		return read(ctx, def)
	}
}

// Handler serves the stores that open gives under /stores/v1/ (see the
// package documentation). Store failures are logged on log (nil: nowhere),
// at WARN, one line per failed request. Requests run on their own context: a client
// gone cancels what it asked for, a re-index included. A re-index may take
// minutes: its route lifts the server's write timeout.
func Handler(open Open, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &api{open: open, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stores/v1/{projection}/{store}/scan", a.scan)
	mux.HandleFunc("POST /stores/v1/{projection}/{store}/get", a.get)
	mux.HandleFunc("GET /stores/v1/{projection}/{store}/count", a.count)
	mux.HandleFunc("GET /stores/v1/{projection}/{store}/sample", a.sample)
	mux.HandleFunc("POST /stores/v1/{projection}/{store}/reindex", a.reindex)
	mux.HandleFunc("GET /stores/v1/{projection}/refs", a.refs)
	mux.HandleFunc("/stores/v1/", func(w http.ResponseWriter, r *http.Request) {
		problem(w, http.StatusNotFound, fmt.Sprintf("no route %s %s: see the README's store API", r.Method, r.URL.Path))
	})
	return mux
}

type api struct {
	open Open
	log  *slog.Logger
}

// target is the store a request names.
type target struct {
	projection string
	name       string // the store's own name: "redis", "embedded-docs"...
	store      any    // a sink.DocStore or sink.Index
}

func (t target) String() string { return "the " + t.name + " store of projection " + t.projection }

// stores opens the projection the request names; false when it answered.
func (a *api) stores(w http.ResponseWriter, r *http.Request) (sink.Stores, bool) {
	projection := r.PathValue("projection")
	s, err := a.open(r.Context(), projection)
	switch {
	case err == nil:
		return s, true
	case errors.Is(err, ErrUnknownProjection):
		problem(w, http.StatusNotFound, fmt.Sprintf("projection %q is not one this projector serves", projection))
	case errors.Is(err, ErrUnavailable):
		problem(w, http.StatusServiceUnavailable, err.Error())
	default:
		a.log.Warn("store API: cannot open the stores", "projection", projection, "err", err)
		problem(w, http.StatusInternalServerError, fmt.Sprintf("the stores of projection %s cannot be opened: the projector's log has the error", projection))
	}
	return sink.Stores{}, false
}

// target finds the store the request names; false when it answered.
func (a *api) target(w http.ResponseWriter, r *http.Request) (target, bool) {
	s, ok := a.stores(w, r)
	if !ok {
		return target{}, false
	}
	t := target{projection: r.PathValue("projection")}
	switch store := r.PathValue("store"); store {
	case "docs":
		t.name, t.store = s.DocsName, s.Docs
	case "index":
		t.name, t.store = s.IndexName, s.Index
	default:
		problem(w, http.StatusNotFound, fmt.Sprintf("no store %q: docs or index", store))
		return t, false
	}
	if t.store == nil {
		problem(w, http.StatusNotFound, fmt.Sprintf("projection %s has no %s store", t.projection, r.PathValue("store")))
		return t, false
	}
	return t, true
}

// keeping finds the store the request names as a C, the contract a route
// needs, answering 501 when the store does not keep it (what it cannot do);
// false when it answered.
func keeping[C any](a *api, w http.ResponseWriter, r *http.Request, what string) (target, C, bool) {
	var none C
	t, ok := a.target(w, r)
	if !ok {
		return t, none, false
	}
	c, ok := t.store.(C)
	if !ok {
		problem(w, http.StatusNotImplemented, fmt.Sprintf("%s cannot %s", t, what))
		return t, none, false
	}
	return t, c, true
}

// fail answers the failure err of t doing what.
func (a *api) fail(w http.ResponseWriter, r *http.Request, t fmt.Stringer, what string, err error) {
	switch {
	case r.Context().Err() != nil:
		// The client is gone: nobody reads an answer.
	case errors.Is(err, sink.ErrBadPosition):
		problem(w, http.StatusBadRequest, fmt.Sprintf("from: %q is not a position of a scan of %s", r.URL.Query().Get("from"), t))
	default:
		a.log.Warn("store API: a store failed", "store", t.String(), "op", what, "err", err)
		problem(w, http.StatusInternalServerError, fmt.Sprintf("%s failed to %s: the projector's log has the error", t, what))
	}
}

// errPageServed stops a Scan after its first page.
var errPageServed = errors.New("storeapi: page served")

// scanPage is the JSON of a sink.ScanPage.
type scanPage struct {
	IDs     []string `json:"ids"`
	Deleted []string `json:"deleted"`
	At      string   `json:"at"`
	Next    string   `json:"next"`
}

// scan answers the first page of a Scan from the position "from"; a scan
// that has no page answers an empty one, at from, with no next.
func (a *api) scan(w http.ResponseWriter, r *http.Request) {
	t, sc, ok := keeping[sink.Scanner](a, w, r, "scan")
	if !ok {
		return
	}
	from := r.URL.Query().Get("from")
	page := sink.ScanPage{At: from}
	err := sc.Scan(r.Context(), from, func(p sink.ScanPage) error {
		page = p
		return errPageServed
	})
	if err != nil && !errors.Is(err, errPageServed) {
		a.fail(w, r, t, "scan", err)
		return
	}
	answer(w, scanPage{IDs: orEmpty(page.IDs), Deleted: orEmpty(page.Deleted), At: page.At, Next: page.Next})
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// idsBody is the body of a get request, and a line of a refs stream.
type idsBody struct {
	IDs []string `json:"ids"`
}

// storedHead is a sink.Stored without its body, which get writes as it is
// stored (json.Marshal would compact and escape it).
type storedHead struct {
	Version int64  `json:"version"`
	Deleted bool   `json:"deleted"`
	BuiltAt string `json:"builtAt,omitempty"`
}

// get answers GetMany of the ids of the body, in their order: null where
// nothing is stored; each body byte for byte as the store holds it.
func (a *api) get(w http.ResponseWriter, r *http.Request) {
	t, rd, ok := keeping[sink.Reader](a, w, r, "read by id")
	if !ok {
		return
	}
	var in idsBody
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		problem(w, http.StatusBadRequest, `the body is not {"ids":["..."]} of at most `+strconv.Itoa(maxBody>>20)+" MiB: "+err.Error())
		return
	}
	if len(in.IDs) > MaxGet {
		problem(w, http.StatusBadRequest, fmt.Sprintf("%d ids: at most %d in one request", len(in.IDs), MaxGet))
		return
	}
	docs, err := rd.GetMany(r.Context(), in.IDs)
	if err != nil {
		a.fail(w, r, t, "read by id", err)
		return
	}
	if len(docs) != len(in.IDs) {
		a.fail(w, r, t, "read by id", fmt.Errorf("GetMany answered %d documents for %d ids", len(docs), len(in.IDs)))
		return
	}
	out := []byte(`{"docs":[`)
	for i, d := range docs {
		if i > 0 {
			out = append(out, ',')
		}
		if d == nil {
			out = append(out, "null"...)
			continue
		}
		head := storedHead{Version: d.Version, Deleted: d.Deleted}
		if !d.BuiltAt.IsZero() {
			head.BuiltAt = d.BuiltAt.UTC().Format(time.RFC3339Nano)
		}
		b, err := json.Marshal(head)
		if err != nil {
			a.fail(w, r, t, "read by id", err)
			return
		}
		if len(d.Body) > 0 {
			if !json.Valid(d.Body) {
				a.fail(w, r, t, "read by id", fmt.Errorf("the body of %q is not JSON", in.IDs[i]))
				return
			}
			b = append(append(append(b[:len(b)-1], `,"body":`...), d.Body...), '}')
		}
		out = append(out, b...)
	}
	out = append(out, "]}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
}

func (a *api) count(w http.ResponseWriter, r *http.Request) {
	t, c, ok := keeping[sink.Counter](a, w, r, "count")
	if !ok {
		return
	}
	n, err := c.Count(r.Context())
	if err != nil {
		a.fail(w, r, t, "count", err)
		return
	}
	answer(w, map[string]int64{"count": n})
}

func (a *api) sample(w http.ResponseWriter, r *http.Request) {
	t, sm, ok := keeping[sink.Sampler](a, w, r, "sample")
	if !ok {
		return
	}
	n, err := strconv.Atoi(r.URL.Query().Get("n"))
	if err != nil || n < 1 || n > MaxSample {
		problem(w, http.StatusBadRequest, fmt.Sprintf("n: %q is not a number of ids from 1 to %d", r.URL.Query().Get("n"), MaxSample))
		return
	}
	ids, err := sm.Sample(r.Context(), n)
	if err != nil {
		a.fail(w, r, t, "sample", err)
		return
	}
	answer(w, idsBody{IDs: orEmpty(ids)})
}

// reindex runs a Reindex, which takes as long as the index is big: the
// admin server's write timeout is lifted for it.
func (a *api) reindex(w http.ResponseWriter, r *http.Request) {
	t, ri, ok := keeping[sink.Reindexer](a, w, r, "re-index itself")
	if !ok {
		return
	}
	if err := http.NewResponseController(w).SetWriteDeadline(time.Time{}); err != nil {
		a.log.Warn("store API: cannot lift the write timeout for a re-index: its answer may be cut", "store", t.String(), "err", err)
	}
	n, err := ri.Reindex(r.Context())
	if err != nil {
		a.fail(w, r, t, "re-index itself", err)
		return
	}
	answer(w, map[string]int64{"documents": n})
}

// refsTarget names the reverse lookups of a projection in messages.
type refsTarget string

func (p refsTarget) String() string { return "the reverse lookups of projection " + string(p) }

// refs streams the pages of Users as NDJSON, each flushed as it comes. A
// failure before the first page is a problem answer; after it, the last
// line is {"error":"..."} (the Client returns it as an error), since the
// status is sent.
func (a *api) refs(w http.ResponseWriter, r *http.Request) {
	s, ok := a.stores(w, r)
	if !ok {
		return
	}
	t := refsTarget(r.PathValue("projection"))
	if s.Refs == nil {
		problem(w, http.StatusNotImplemented, fmt.Sprintf("projection %s keeps no reverse lookups", r.PathValue("projection")))
		return
	}
	q := r.URL.Query()
	source, key := q.Get("source"), q.Get("key")
	if source == "" || key == "" {
		problem(w, http.StatusBadRequest, "source and key are both needed: the users of entity key of source")
		return
	}
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	started := false
	start := func() {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		started = true
	}
	var writeErr error
	err := s.Refs.Users(r.Context(), source, key, func(ids []string) error {
		if !started {
			start()
		}
		rc.SetWriteDeadline(time.Now().Add(pageWriteTimeout)) // an error: the server has no deadlines to move
		if writeErr = enc.Encode(idsBody{IDs: ids}); writeErr == nil {
			writeErr = rc.Flush()
		}
		return writeErr
	})
	switch {
	case err == nil && !started:
		start()
	case err == nil, writeErr != nil:
		// Done, or the client is gone.
	case !started:
		a.fail(w, r, t, "read the users of "+source+" "+key, err)
	case r.Context().Err() == nil:
		a.log.Warn("store API: a store failed", "store", t.String(), "op", "users", "source", source, "key", key, "err", err)
		enc.Encode(map[string]string{"error": fmt.Sprintf("%s failed to read the users of %s %s: the projector's log has the error", t, source, key)})
	}
}

// answer writes v as JSON with status 200.
func answer(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// Problem is the RFC 9457 problem detail of every error answer.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

func problem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail})
}
