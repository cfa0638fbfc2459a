package query

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sony/gobreaker/v2"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/projections"
)

// Reserved query parameters; every other parameter is a filter on a field.
var reserved = []string{"ids", "q", "sort", "limit", "cursor", "near", "within"}

// Range suffixes of filters on numbers and dates: rating.gte=4.
var rangeOps = []string{"gte", "gt", "lte", "lt"}

const maxTerms = 50 // values of one filter

// collection answers GET /v1/{projection}: a multi-get with ids, else a list
// (with q, a search).
func (s *Server) collection(w http.ResponseWriter, r *http.Request) {
	v := s.view(w, r)
	if v == nil {
		return
	}
	params := r.URL.Query()
	if params.Has("ids") {
		s.multiGet(w, r, v, params) // read bounds what waits for sources
		return
	}
	// Lists and searches wait for the limit, the engine, the sources: all
	// of it bounded by the deadline's timer.
	ctx, cancel := bounded(r.Context())
	defer cancel()
	r = r.WithContext(ctx)
	lq, issues := s.parseList(v, params)
	if len(issues) > 0 {
		badRequest(w, r, issues)
		return
	}
	release, ok := s.admitSearch(w, r)
	if !ok {
		return
	}
	s.list(w, r, v, lq)
	release(r.Context().Err() == nil)
}

func (s *Server) multiGet(w http.ResponseWriter, r *http.Request, v *view, params url.Values) {
	var issues []ParameterIssue
	for p := range params {
		if p != "ids" {
			issues = append(issues, ParameterIssue{Parameter: p, Message: "not allowed with ids: a multi-get takes ids only"})
		}
	}
	var ids []string
	n := 0
	for _, raw := range params["ids"] {
		n += strings.Count(raw, ",") + 1
	}
	seen := make(map[string]bool, min(n, s.o.MaxIDs+1))
	given := 0 // ids as given, duplicates too: what the limit counts
	for _, raw := range params["ids"] {
		for id := range strings.SplitSeq(raw, ",") {
			given++
			if err := projections.ValidateID(id); err != nil {
				issues = append(issues, ParameterIssue{Parameter: "ids", Message: strings.TrimPrefix(err.Error(), "bad event: ")})
			} else if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	if given > s.o.MaxIDs {
		issues = append(issues, ParameterIssue{Parameter: "ids", Message: fmt.Sprintf("%d ids; at most %d per request", given, s.o.MaxIDs)})
	}
	if len(issues) > 0 {
		slices.SortStableFunc(issues, func(a, b ParameterIssue) int { return strings.Compare(a.Parameter, b.Parameter) })
		badRequest(w, r, issues)
		return
	}
	docs, _ := s.read(r.Context(), v, ids)
	if r.Context().Err() != nil && len(docs) < len(ids) {
		timedOut(w, r)
		return
	}
	s.writeItems(w, v, ids, docs, "", epMultiget, false)
}

// answers are buffers for the answers of writeItems: a page of 25
// documents is some 30 KB, which a new buffer would allocate and clear for
// every request.
var answers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledAnswer is the largest buffer kept for another answer.
const maxPooledAnswer = 1 << 20

// endpoint is the endpoint label of the query's answer: search with q, else list.
func (lq *listQuery) endpoint() endpoint {
	if lq.q != "" {
		return epSearch
	}
	return epList
}

// writeItems answers {"items": [...], "missing": [...], "next": ...} with the
// stored JSON spliced in as it is, in the order of ids, and counts the
// answer for endpoint e (degraded: a list from the source's list endpoint).
func (s *Server) writeItems(w http.ResponseWriter, v *view, ids []string, docs map[string]doc, next string, e endpoint, degraded bool) {
	b := answers.Get().(*bytes.Buffer)
	defer func() {
		if b.Cap() <= maxPooledAnswer {
			b.Reset()
			answers.Put(b)
		}
	}()
	b.WriteString(`{"items":[`)
	var missing []string
	var f freshness
	for _, id := range ids {
		d, ok := docs[id]
		if !ok {
			missing = append(missing, id)
			continue
		}
		if f.store+f.src > 0 {
			b.WriteByte(',')
		}
		b.Write(d.body)
		f.add(&d)
	}
	b.WriteString(`],"missing":`)
	if missing == nil {
		b.WriteString("[]")
	} else {
		m, _ := json.Marshal(missing)
		b.Write(m)
	}
	if e != epMultiget {
		b.WriteString(`,"next":`)
		if next == "" {
			b.WriteString("null")
		} else {
			n, _ := json.Marshal(next)
			b.Write(n)
		}
	}
	b.WriteString("}")
	f.set(w)
	v.m.answered(e, &f, degraded)
	w.Header()["Content-Type"] = jsonType
	w.Write(b.Bytes())
}

// listed leaves out of a page the ids whose documents are gone: Elasticsearch
// is near-real-time, so a document deleted a moment ago can still be found
// there while Redis already holds its tombstone. The page then has fewer
// items; it is not missing anything.
func listed(ids []string, gone map[string]bool) []string {
	if len(gone) == 0 {
		return ids
	}
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !gone[id] {
			out = append(out, id)
		}
	}
	return out
}

// listQuery is a validated list or search request.
type listQuery struct {
	q       string
	filters []sink.Filter
	sort    []sink.SortKey
	limit   int
	near    *sink.LatLon
	within  float64     // metres
	after   []any       // the search engine's Page.After, from the cursor
	plain   bool        // no q, filter, sort or geo: a source's list endpoint can serve it
	srcPage *sourcePage // the cursor of a degraded list served from the source
	key     string      // identifies the query for its cursors
}

func (s *Server) parseList(v *view, params url.Values) (*listQuery, []ParameterIssue) {
	lp := &listParser{s: s, v: v, params: params, lq: &listQuery{limit: 20}}
	lp.once()
	lp.text()
	lp.limit()
	lp.geo()
	lp.filters()
	lp.sort()
	lq := lp.lq
	lq.plain = lq.q == "" && len(lq.filters) == 0 && lq.near == nil && !params.Has("sort")
	lq.key = queryKey(v.Def.Name, params)
	if c := params.Get("cursor"); params.Has("cursor") {
		if err := s.openCursor(c, lq); err != nil {
			lp.bad("cursor", "%v", err)
		}
	}
	slices.SortFunc(lp.issues, func(a, b ParameterIssue) int { return strings.Compare(a.Parameter, b.Parameter) })
	return lq, lp.issues
}

// listParser reads a list's parameters, one step per kind, into lq,
// collecting every issue rather than stopping at the first.
type listParser struct {
	s      *Server
	v      *view
	params url.Values
	lq     *listQuery
	issues []ParameterIssue
}

func (lp *listParser) bad(p, format string, args ...any) {
	lp.issues = append(lp.issues, ParameterIssue{Parameter: p, Message: fmt.Sprintf(format, args...)})
}

// once: every parameter is given once (a filter's values are comma-separated).
func (lp *listParser) once() {
	for p, vals := range lp.params {
		if len(vals) > 1 && p != "ids" {
			lp.bad(p, "given %d times; give it once (several values of a filter are comma-separated)", len(vals))
		}
	}
}

// text reads q, the full-text query.
func (lp *listParser) text() {
	q := lp.params.Get("q")
	if !lp.params.Has("q") {
		return
	}
	switch {
	case strings.TrimSpace(q) == "":
		lp.bad("q", "is empty")
	case !utf8.ValidString(q):
		lp.bad("q", "is not valid UTF-8")
	case utf8.RuneCountInString(q) > lp.s.o.MaxQuery:
		lp.bad("q", "is %d characters; at most %d", utf8.RuneCountInString(q), lp.s.o.MaxQuery)
	case !slices.ContainsFunc(lp.v.Def.Fields, func(f projections.Field) bool { return f.Search }):
		lp.bad("q", "projection %s has no searchable field", lp.v.Def.Name)
	default:
		lp.lq.q = q
	}
}

// limit reads the page size.
func (lp *listParser) limit() {
	l := lp.params.Get("limit")
	if !lp.params.Has("limit") {
		return
	}
	n, err := strconv.Atoi(l)
	if err != nil || n < 1 || n > lp.s.o.MaxLimit {
		lp.bad("limit", "%q is not a number from 1 to %d", l, lp.s.o.MaxLimit)
	} else {
		lp.lq.limit = n
	}
}

// geo reads near and within.
func (lp *listParser) geo() {
	params, v := lp.params, lp.v
	if !params.Has("near") {
		if params.Has("within") {
			lp.bad("within", "needs near=lat,lon")
		}
		return
	}
	if v.geoField == "" {
		lp.bad("near", "projection %s has no geo_point field", v.Def.Name)
	} else if lat, lon, ok := parseLatLon(params.Get("near")); !ok {
		lp.bad("near", "%q is not lat,lon (e.g. 52.52,13.40)", params.Get("near"))
	} else {
		lp.lq.near = &sink.LatLon{Lat: lat, Lon: lon}
	}
	if w := params.Get("within"); params.Has("within") {
		if d, ok := parseDistance(w); ok {
			lp.lq.within = d
		} else {
			lp.bad("within", "%q is not a distance from 1m to 500km, such as 800m or 3km", w)
		}
	}
}

// filters reads every other parameter as a filter on a field, or a range
// of one (field.gte, ...).
func (lp *listParser) filters() {
	v := lp.v
	for p, vals := range lp.params {
		if slices.Contains(reserved, p) {
			continue
		}
		name, op, dotted := strings.Cut(p, ".")
		f := v.fields[name]
		switch {
		case f == nil || !filterableField(*f):
			lp.bad(p, "is not a parameter: filter on %s; or use %s", strings.Join(filterable(v), ", "), strings.Join(reserved[1:], ", "))
			continue
		case dotted && !slices.Contains(rangeOps, op):
			lp.bad(p, "%q is not a range operator: use %s", op, strings.Join(rangeOps, ", "))
			continue
		case op != "" && !ranged(f.Type):
			lp.bad(p, "%s is a %s field: ranges apply to integer, float and date fields", name, f.Type)
			continue
		}
		filter, err := filterOf(f, op, vals[0])
		if err != nil {
			lp.bad(p, "%v", err)
			continue
		}
		lp.lq.filters = append(lp.lq.filters, filter)
	}
}

// sort reads the sort keys, or takes the default: relevance with q, else
// distance with near.
func (lp *listParser) sort() {
	v, lq := lp.v, lp.lq
	if sp := lp.params.Get("sort"); lp.params.Has("sort") {
		for key := range strings.SplitSeq(sp, ",") {
			desc := strings.HasPrefix(key, "-")
			name := strings.TrimPrefix(key, "-")
			switch f := v.fields[name]; {
			case name == "":
				lp.bad("sort", "has an empty key: give field names, comma-separated, each with - before it to sort descending (e.g. sort=-rating,name); sortable are %s", strings.Join(sortable(v), ", "))
				continue
			case name == sink.SortDistance:
				if lq.near == nil {
					lp.bad("sort", "distance needs near=lat,lon")
					continue
				}
			case name == "relevance":
				if lq.q == "" {
					lp.bad("sort", "relevance needs q")
					continue
				}
				name = sink.SortRelevance
			case f == nil || !sortableField(*f):
				lp.bad("sort", "%q is not sortable: sort on %s", name, strings.Join(sortable(v), ", "))
				continue
			}
			lq.sort = append(lq.sort, sink.SortKey{Field: name, Desc: desc})
		}
		if len(lq.sort) > 3 {
			lp.bad("sort", "at most 3 sort keys")
		}
	}
	if len(lq.sort) == 0 {
		switch {
		case lq.q != "":
			lq.sort = []sink.SortKey{{Field: sink.SortRelevance, Desc: true}}
		case lq.near != nil:
			lq.sort = []sink.SortKey{{Field: sink.SortDistance}}
		}
	}
}

func filterable(v *view) []string {
	var out []string
	for _, f := range v.Def.Fields {
		if filterableField(f) {
			out = append(out, f.Name)
		}
	}
	return out
}

func sortable(v *view) []string {
	var out []string
	for _, f := range v.Def.Fields {
		if sortableField(f) {
			out = append(out, f.Name)
		}
	}
	return out
}

// filterableField reports whether the API takes a filter on f: a point or an
// object has no value to compare (Elasticsearch would refuse the query).
func filterableField(f projections.Field) bool {
	return f.Filter && f.Type != projections.Object && f.Type != projections.GeoPoint
}

// sortableField reports whether the API sorts on f: a point sorts by
// distance (sort=distance), never by its value.
func sortableField(f projections.Field) bool {
	return f.Sort && f.Type != projections.Object && f.Type != projections.GeoPoint
}

func ranged(t projections.FieldType) bool {
	return t == projections.Integer || t == projections.Float || t == projections.Date
}

// filterOf turns one filter parameter into a sink.Filter; the user's text is
// always a value, never query syntax.
func filterOf(f *projections.Field, op, raw string) (sink.Filter, error) {
	if op != "" {
		val, err := typedValue(f.Type, raw)
		if err != nil {
			return sink.Filter{}, err
		}
		return sink.Filter{Field: f.Name, Op: op, Values: []any{val}}, nil
	}
	parts := strings.Split(raw, ",")
	if len(parts) > maxTerms {
		return sink.Filter{}, fmt.Errorf("%d values; at most %d", len(parts), maxTerms)
	}
	vals := make([]any, 0, len(parts))
	for _, p := range parts {
		val, err := typedValue(f.Type, p)
		if err != nil {
			return sink.Filter{}, err
		}
		vals = append(vals, val)
	}
	return sink.Filter{Field: f.Name, Values: vals}, nil
}

func typedValue(t projections.FieldType, raw string) (any, error) {
	switch t {
	case projections.Integer:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", raw)
		}
		return n, nil
	case projections.Float:
		x, err := strconv.ParseFloat(raw, 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("%q is not a number", raw)
		}
		return x, nil
	case projections.Boolean:
		b, err := strconv.ParseBool(raw)
		if err != nil || (raw != "true" && raw != "false") {
			return nil, fmt.Errorf("%q is not true or false", raw)
		}
		return b, nil
	case projections.Date:
		// time.Parse takes a comma before the fraction of a second too;
		// RFC 3339 (and Elasticsearch) only a dot.
		if strings.ContainsRune(raw, ',') {
			return nil, fmt.Errorf("%q is not a date such as 2026-11-21 or 2026-11-21T10:00:00Z", raw)
		}
		ts, err := time.Parse(time.RFC3339, raw)
		if err != nil {
			if _, err := time.Parse(time.DateOnly, raw); err != nil {
				return nil, fmt.Errorf("%q is not a date such as 2026-11-21 or 2026-11-21T10:00:00Z", raw)
			}
		}
		// Go reads offsets up to ±23:59 and any number of fractional digits;
		// Elasticsearch (java.time) refuses offsets beyond ±18:00 and more than 9 digits.
		if _, off := ts.Zone(); off > 18*3600 || off < -18*3600 {
			return nil, fmt.Errorf("%q has a time zone offset beyond ±18:00", raw)
		}
		if _, frac, ok := strings.Cut(raw, "."); ok && len(frac)-len(strings.TrimLeft(frac, "0123456789")) > 9 {
			return nil, fmt.Errorf("%q has more than 9 fractional digits", raw)
		}
		return raw, nil
	}
	if raw == "" || len(raw) > 256 || !utf8.ValidString(raw) {
		return nil, fmt.Errorf("values must be 1 to 256 bytes of UTF-8")
	}
	return raw, nil
}

// The forms near and within take: exactly what the OpenAPI document says.
var (
	nearForm   = regexp.MustCompile(nearPattern)
	withinForm = regexp.MustCompile(withinPattern)
)

func parseLatLon(s string) (lat, lon float64, ok bool) {
	if !nearForm.MatchString(s) {
		return 0, 0, false
	}
	a, b, found := strings.Cut(s, ",")
	lat, err1 := strconv.ParseFloat(strings.TrimSpace(a), 64)
	lon, err2 := strconv.ParseFloat(strings.TrimSpace(b), 64)
	return lat, lon, found && err1 == nil && err2 == nil && lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180
}

func parseDistance(s string) (float64, bool) {
	if !withinForm.MatchString(s) {
		return 0, false
	}
	num, unit := strings.TrimRight(s, "kmKM"), strings.ToLower(strings.TrimLeft(s, "0123456789."))
	x, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, false
	}
	meters := x
	switch unit {
	case "m":
	case "km":
		meters = x * 1000
	default:
		return 0, false
	}
	if meters < 1 || meters > 500_000 {
		return 0, false
	}
	return meters, true
}

// list answers a list or search page: ids from the search engine, documents
// from the doc store (or the sources), in the search engine's order.
func (s *Server) list(w http.ResponseWriter, r *http.Request, v *view, lq *listQuery) {
	if lq.srcPage != nil {
		s.listFromSource(w, r, v, lq)
		return
	}
	ids, after, err := s.searchIDs(r.Context(), v, lq)
	switch {
	case errors.Is(err, sink.ErrBadQuery):
		// The API validated the parameters, so this is a combination the
		// engine refuses that validation missed: worth a look, and the
		// engine's words (index names, its own syntax) stay in the log.
		s.log.Warn("the search engine refused a query the API let through", "projection", v.Def.Name, "request", RequestID(r.Context()), "query", r.URL.RawQuery, "err", err)
		badRequest(w, r, []ParameterIssue{{Parameter: "query", Message: "the search engine cannot answer this combination of parameters"}})
		return
	case err != nil && r.Context().Err() != nil:
		timedOut(w, r)
		return
	case err != nil && lq.plain && v.Def.Listable():
		v.searchWarn.Do(func() {
			s.log.Warn("search failed; listing from the source's list endpoint (logged at most every 5s)", "projection", v.Def.Name, "request", RequestID(r.Context()), "err", err)
		})
		lq.srcPage = &sourcePage{}
		s.listFromSource(w, r, v, lq)
		return
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		unavailable(w, r, "search is paused on this replica: the search engine failed several times in a row, and is tried again every 2s (circuit breaker open); detail and multi-get still work", 2*time.Second)
		return
	case err != nil:
		v.searchWarn.Do(func() {
			s.log.Warn("search failed (logged at most every 5s)", "projection", v.Def.Name, "request", RequestID(r.Context()), "err", err)
		})
		unavailable(w, r, "search is unavailable: the search engine failed to answer; detail and multi-get still work", 5*time.Second)
		return
	}
	next := ""
	if len(ids) == lq.limit && after != nil {
		next = s.sealCursor(lq.key, cursorState{After: after})
	}
	docs, gone := s.read(r.Context(), v, ids)
	if r.Context().Err() != nil && len(docs)+len(gone) < len(ids) {
		timedOut(w, r)
		return
	}
	s.writeItems(w, v, listed(ids, gone), docs, next, lq.endpoint(), false)
}

// searchIDs asks the search engine for one page of ids, and where the next
// page starts.
func (s *Server) searchIDs(ctx context.Context, v *view, lq *listQuery) ([]string, []any, error) {
	q := sink.Query{
		Text: lq.q, Filters: lq.filters, Near: lq.near, Within: lq.within,
		Sort: lq.sort, Limit: lq.limit, After: lq.after,
	}
	p, err := v.searchCB.Execute(func() (sink.Page, error) { return s.search(ctx, v, q) })
	switch {
	case err == nil || errors.Is(err, sink.ErrBadQuery) || errors.Is(err, context.Canceled):
	case errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests):
	case errors.Is(err, context.DeadlineExceeded):
		s.m.failed(v.Def.Name, "search")
		s.probeSearch(v)
	default:
		s.m.failed(v.Def.Name, "search")
	}
	return p.IDs, p.After, err
}

// search asks the engine, and returns at ctx's deadline even when the engine
// does not (a search must never outlive its request, whatever its
// parameters say). A search that finishes later is counted and logged.
//
// An engine that promises to return by then (sink.ContextBound) is asked
// on the request's goroutine: a goroutine of its own for every search, its
// stack grown anew each time, cost about 5 % of the API's CPU on search.
func (s *Server) search(ctx context.Context, v *view, q sink.Query) (sink.Page, error) {
	if _, ok := v.Search.(sink.ContextBound); ok {
		p, err := v.Search.Search(ctx, q)
		if err != nil && ctx.Err() != nil {
			return sink.Page{}, fmt.Errorf("query: search: %w", ctx.Err())
		}
		return p, err
	}
	type result struct {
		p   sink.Page
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := v.Search.Search(ctx, q)
		done <- result{p, err}
	}()
	select {
	case res := <-done:
		return res.p, res.err
	case <-ctx.Done():
		id := RequestID(ctx)
		go func() {
			if res := <-done; res.err == nil || !errors.Is(res.err, ctx.Err()) {
				s.m.late.Inc()
				s.log.Warn("a search finished after its request's deadline", "projection", v.Def.Name, "request", id, "err", res.err)
			}
		}()
		return sink.Page{}, fmt.Errorf("query: search: %w", ctx.Err())
	}
}

// probeSearch asks the search engine, once at a time, whether it answers at
// all after a search ran out of time. If not, the engine is down, not
// merely slow on an expensive query, and the search breaker opens.
func (s *Server) probeSearch(v *view) {
	if v.SearchProbe == nil || !v.probing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer v.probing.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := v.SearchProbe(ctx)
		v.probeFailed.Store(err != nil)
		if err != nil {
			// Record the failure through the breaker; %v, not %w: a probe
			// timing out is a failure (the searches' own timeouts are not).
			v.searchCB.Execute(func() (sink.Page, error) {
				return sink.Page{}, fmt.Errorf("query: the search engine does not answer: %v", err)
			})
			v.probeFailed.Store(false)
		}
	}()
}

// cursorState is what a cursor carries.
type cursorState struct {
	After  []any  `json:"a,omitempty"` // the search engine's Page.After
	Source string `json:"s,omitempty"` // a degraded list: the source's cursor
	Offset int    `json:"o,omitempty"` // and how far into that page
	Degr   bool   `json:"d,omitempty"`
}

// sealCursor signs a cursor for the query key, so a tampered cursor, or one
// of another query, is refused.
func (s *Server) sealCursor(key string, c cursorState) string {
	payload, _ := json.Marshal(c)
	p := base64.RawURLEncoding.EncodeToString(payload)
	return p + "." + s.sign(key, p)
}

func (s *Server) sign(key, payload string) string {
	m := s.macs.Get().(hash.Hash)
	defer s.macs.Put(m)
	m.Reset()
	m.Write([]byte(key))
	m.Write([]byte{0})
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

func (s *Server) openCursor(raw string, lq *listQuery) error {
	p, sig, ok := strings.Cut(raw, ".")
	if !ok || len(raw) > 4096 || !hmac.Equal([]byte(sig), []byte(s.sign(lq.key, p))) {
		return errors.New("is not a cursor of this query: it was changed, or it belongs to other parameters (start again without cursor)")
	}
	payload, err := base64.RawURLEncoding.DecodeString(p)
	var c cursorState
	if err == nil {
		d := json.NewDecoder(bytes.NewReader(payload))
		d.UseNumber() // sort values stay exact (a long beyond 2^53 does not survive a float64)
		err = d.Decode(&c)
	}
	if err != nil {
		return errors.New("is malformed")
	}
	lq.after = c.After
	if c.Degr {
		lq.srcPage = &sourcePage{cursor: c.Source, offset: c.Offset}
	}
	return nil
}

// queryKey identifies a list query by its parameters other than cursor and limit.
func queryKey(projection string, params url.Values) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		if k != "cursor" && k != "limit" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString(projection)
	for _, k := range keys {
		b.WriteString("\x00" + k + "=" + strings.Join(params[k], "\x01"))
	}
	return b.String()
}
