package replay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/tidwall/gjson"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/readside/readside/internal/assemble"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/elasticindex"
	"github.com/readside/readside/internal/sink/redisstore"
	"github.com/readside/readside/internal/source"
	"github.com/readside/readside/projections"
)

// Drift is how a stored document differs from what its sources say now.
type Drift string

// The kinds of drift, in the order reports list them.
const (
	// Missing: the source has the entity; the store has no document for it
	// (nothing, or a tombstone).
	Missing Drift = "missing"
	// Stale: the stored document differs from one built now (compared as
	// JSON values: key order and number spelling do not matter).
	Stale Drift = "stale"
	// Extra: the store has a document (not a tombstone) for an id the
	// source answers 404 for.
	Extra Drift = "extra"
	// Partial: the stored document lacks the part of an optional source
	// (it lists it in readside_partial).
	Partial Drift = "partial"
)

// Drifts are the kinds of drift, in report order.
var Drifts = []Drift{Missing, Stale, Extra, Partial}

// The stores Verify compares, as reports name them.
const (
	storeRedis         = "redis"
	storeElasticsearch = "elasticsearch"
)

// DefaultSample is how many ids Verify samples from the stores, and from
// the list endpoint, when neither a sample size nor All is given.
const DefaultSample = 100

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// Sample is how many random ids are taken from the stores (half from
	// Redis, by SCAN and reservoir sampling; half from Elasticsearch, by
	// random_score) and as many from the list endpoint, when the definition
	// has one [DefaultSample]. Ignored with All.
	Sample int
	// All checks every id: those of the list endpoint, of Redis and of
	// Elasticsearch.
	All bool
	// Fix re-issues every drifted id, so the projectors build it again.
	Fix bool
	// Rate is the most ids fetched from the sources per second, and
	// re-issued per second with Fix [DefaultRate]; negative: no limit.
	Rate float64
	// Recheck is how long Verify waits before it checks a drifted id a
	// second time, and reports it only if it still drifts: a document may
	// change between reading the store and fetching the source [2s].
	Recheck time.Duration
	// Notes receives a line for each step. nil: none.
	Notes io.Writer
}

// DriftIDs are the ids found with one kind of drift.
type DriftIDs struct {
	// IDs are the distinct ids, sorted.
	IDs []string
	// Redis and Elasticsearch are the ids with this drift in each store.
	Redis, Elasticsearch []string
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	Projection string
	// Scope says which ids were checked.
	Scope   string
	Checked int
	// Drift holds the ids of each kind of drift found (absent: none).
	Drift map[Drift]*DriftIDs
	// Unverified are the ids that could not be checked (a source failing,
	// or an optional source failing while the stored document is whole),
	// sorted; Why tells the first reason.
	Unverified []string
	Why        string
	// Fixed is how many ids Fix re-issued.
	Fixed   int64
	Elapsed time.Duration
}

// Drifted are the distinct ids with any drift, sorted.
func (r *VerifyReport) Drifted() []string {
	set := map[string]bool{}
	for _, d := range r.Drift {
		for _, id := range d.IDs {
			set[id] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// reportIDs is how many ids of each kind a report shows.
const reportIDs = 20

// Print writes the report: a table of the drift found per kind and store,
// then the first ids of each kind.
func (r *VerifyReport) Print(w io.Writer) {
	fmt.Fprintf(w, "verify %s: %d ids checked (%s) in %s\n", r.Projection, r.Checked, r.Scope, r.Elapsed.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "kind\t%s\t%s\tids\t\n", storeRedis, storeElasticsearch)
	for _, k := range Drifts {
		d := r.Drift[k]
		if d == nil {
			d = &DriftIDs{}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t\n", k, len(d.Redis), len(d.Elasticsearch), len(d.IDs))
	}
	tw.Flush()
	drifted := r.Drifted()
	if len(drifted) == 0 {
		fmt.Fprintln(w, "no drift")
	} else {
		fmt.Fprintf(w, "drift in %d ids\n", len(drifted))
	}
	for _, k := range Drifts {
		if d := r.Drift[k]; d != nil {
			fmt.Fprintf(w, "%s (%d): %s\n", k, len(d.IDs), firstIDs(d.IDs))
		}
	}
	if len(r.Unverified) > 0 {
		fmt.Fprintf(w, "could not verify %d ids: %s\n  first reason: %s\n", len(r.Unverified), firstIDs(r.Unverified), r.Why)
	}
	if r.Fixed > 0 {
		fmt.Fprintf(w, "re-issued %d drifted ids; the projectors build them again\n", r.Fixed)
	}
}

func firstIDs(ids []string) string {
	s := strings.Join(ids[:min(len(ids), reportIDs)], " ")
	if len(ids) > reportIDs {
		s += fmt.Sprintf(" … and %d more", len(ids)-reportIDs)
	}
	return s
}

// Verify compares the documents in Redis and Elasticsearch with documents
// built now from the sources (the projector's own assembly), for a random
// sample of ids or for every id, and reports the drift by kind (see Drift).
// An id found drifted is checked once more after o.Recheck before it is
// reported. With o.Fix, the drifted ids are re-issued (see Reissuer).
//
// It reads Redis (e.Redis), Elasticsearch (e.Elastic, through the alias, in
// real time) and the sources (through e.Transport), and publishes only with
// o.Fix (e.JetStream). It writes nothing to the stores. The error is about
// the run (a store unreachable, ctx ended), not about the drift found.
func (e *Env) Verify(ctx context.Context, def *projections.Definition, o VerifyOptions) (*VerifyReport, error) {
	if e.Redis == nil || e.Elastic == nil {
		return nil, errors.New("replay: verify needs Redis and Elasticsearch (embedded stores are read only by their own process)")
	}
	if o.Fix && e.JetStream == nil {
		return nil, errors.New("replay: verify --fix needs JetStream")
	}
	if o.Sample <= 0 {
		o.Sample = DefaultSample
	}
	if o.Recheck <= 0 {
		o.Recheck = 2 * time.Second
	}
	if o.Notes == nil {
		o.Notes = io.Discard
	}
	start := time.Now()
	v := newVerifier(e, def, o.Rate)
	ids, scope, err := v.ids(ctx, o)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Notes, "checking %d ids (%s)\n", len(ids), scope)
	found, err := v.check(ctx, ids)
	if err != nil {
		return nil, err
	}
	var again []string
	for _, id := range ids {
		if found[id].any() {
			again = append(again, id)
		}
	}
	if len(again) > 0 {
		fmt.Fprintf(o.Notes, "checking %d ids again in %s: a document may have changed while it was checked\n", len(again), o.Recheck)
		if err := sleep(ctx, o.Recheck); err != nil {
			return nil, err
		}
		second, err := v.check(ctx, again)
		if err != nil {
			return nil, err
		}
		maps.Copy(found, second)
	}
	r := &VerifyReport{Projection: def.Name, Scope: scope, Checked: len(ids), Drift: map[Drift]*DriftIDs{}}
	for _, id := range ids { // ids are sorted, so every list is
		f := found[id]
		if f.why != "" {
			if r.Why == "" {
				r.Why = f.why
			}
			r.Unverified = append(r.Unverified, id)
		}
		for store, k := range map[string]Drift{storeRedis: f.redis, storeElasticsearch: f.elastic} {
			if k == "" {
				continue
			}
			d := r.Drift[k]
			if d == nil {
				d = &DriftIDs{}
				r.Drift[k] = d
			}
			if len(d.IDs) == 0 || d.IDs[len(d.IDs)-1] != id {
				d.IDs = append(d.IDs, id)
			}
			if store == storeRedis {
				d.Redis = append(d.Redis, id)
			} else {
				d.Elasticsearch = append(d.Elasticsearch, id)
			}
		}
	}
	if drifted := r.Drifted(); o.Fix && len(drifted) > 0 {
		re := NewReissuer(e.JetStream, def, ReissueOptions{Rate: o.Rate, RunID: "verify-" + newRunID()})
		err := re.Reissue(ctx, drifted)
		r.Fixed = re.Done()
		if err != nil {
			return r, err
		}
	}
	r.Elapsed = time.Since(start)
	return r, nil
}

// finding is what one check found for one id.
type finding struct {
	redis, elastic Drift
	why            string // set when the id could not be checked
}

func (f finding) any() bool { return f.redis != "" || f.elastic != "" || f.why != "" }

// verifier checks ids of one projection.
type verifier struct {
	e   *Env
	def *projections.Definition
	asm *assemble.Assembler
	rd  *redisstore.Store
	lim *rate.Limiter
}

// verifyBatch is how many ids are read and built together.
const verifyBatch = 100

func newVerifier(e *Env, def *projections.Definition, r float64) *verifier {
	if r == 0 {
		r = DefaultRate
	}
	lim := rate.NewLimiter(rate.Inf, verifyBatch)
	if r > 0 {
		lim = rate.NewLimiter(rate.Limit(r), verifyBatch)
	}
	return &verifier{
		e: e, def: def, lim: lim,
		asm: assemble.New(def, assemble.Clients(def, e.Transport, 0), assemble.Options{}),
		rd:  redisstore.New(e.Redis, redisstore.Options{KeyPattern: def.Redis.Key}),
	}
}

// check checks ids in batches, a few at once, at most the rate per second.
func (v *verifier) check(ctx context.Context, ids []string) (map[string]finding, error) {
	out := make(map[string]finding, len(ids))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i := 0; i < len(ids); i += verifyBatch {
		batch := ids[i:min(i+verifyBatch, len(ids))]
		if err := v.lim.WaitN(gctx, len(batch)); err != nil {
			g.Wait()
			return nil, err
		}
		g.Go(func() error {
			found, err := v.checkBatch(gctx, batch)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			for j, id := range batch {
				out[id] = found[j]
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// checkBatch reads the stores first and builds afresh second, so a change
// in between shows as drift that the second check clears.
func (v *verifier) checkBatch(ctx context.Context, ids []string) ([]finding, error) {
	inRedis, err := v.rd.GetMany(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("replay: verify: %w", err)
	}
	inElastic, err := v.e.esGetMany(ctx, v.def.Elasticsearch.Alias, ids)
	if err != nil {
		return nil, err
	}
	fresh := v.asm.Assemble(ctx, ids)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	out := make([]finding, len(ids))
	for i := range ids {
		f := &out[i]
		var whyR, whyE string
		f.redis, whyR = classify(fresh[i], inRedis[i])
		f.elastic, whyE = classify(fresh[i], inElastic[i])
		f.why = cmpOr(whyR, whyE)
	}
	return out, nil
}

// classify compares what a store holds for an id (nil: nothing) with what
// was built for it now. It returns the drift, or why it cannot tell.
func classify(fresh assemble.Result, stored *sink.Stored) (Drift, string) {
	live := stored != nil && !stored.Deleted
	switch {
	case fresh.Err != nil:
		return "", fresh.Err.Error()
	case fresh.Deleted:
		if live {
			return Extra, ""
		}
		return "", ""
	case !live:
		return Missing, ""
	case gjson.GetBytes(stored.Body, projections.PartialField).Exists():
		return Partial, ""
	case len(fresh.Partial) > 0:
		return "", fmt.Sprintf("optional source %s did not answer", strings.Join(fresh.Partial, ", "))
	case !sameJSON(stored.Body, fresh.Doc):
		return Stale, ""
	}
	return "", ""
}

// sameJSON reports whether a and b are the same JSON value: objects with
// the same members in any order, numbers equal in value however spelled
// (1, 1.0, 1e0). Invalid JSON is never the same as anything.
func sameJSON(a, b []byte) bool {
	va, oka := decodeJSON(a)
	vb, okb := decodeJSON(b)
	return oka && okb && sameValue(va, vb)
}

func decodeJSON(b []byte) (any, bool) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, false
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, false // trailing data
	}
	return v, true
}

func sameValue(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, va := range a {
			vb, ok := b[k]
			if !ok || !sameValue(va, vb) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !sameValue(a[i], b[i]) {
				return false
			}
		}
		return true
	case json.Number:
		b, ok := b.(json.Number)
		if !ok {
			return false
		}
		if a == b {
			return true
		}
		ra, oka := new(big.Rat).SetString(string(a))
		rb, okb := new(big.Rat).SetString(string(b))
		return oka && okb && ra.Cmp(rb) == 0
	}
	return a == b // string, bool, nil
}

// esGetMany reads ids through alias in real time: nil where nothing is stored.
func (e *Env) esGetMany(ctx context.Context, alias string, ids []string) ([]*sink.Stored, error) {
	b, err := json.Marshal(map[string]any{"ids": ids})
	if err != nil {
		return nil, err
	}
	m := e.Elastic.Mget
	body, err := esAnswer("mget", alias)(m(bytes.NewReader(b), m.WithContext(ctx), m.WithIndex(alias)))
	if err != nil {
		return nil, err
	}
	out := make([]*sink.Stored, len(ids))
	docs := gjson.GetBytes(body, "docs").Array()
	if len(docs) != len(ids) {
		return nil, fmt.Errorf("replay: elasticsearch mget %s: %d documents answered for %d ids", alias, len(docs), len(ids))
	}
	for i, d := range docs {
		if fail := d.Get("error"); fail.Exists() {
			return nil, fmt.Errorf("replay: elasticsearch mget %s, id %q: %s: %s", alias, ids[i], fail.Get("type").Str, fail.Get("reason").Str)
		}
		if !d.Get("found").Bool() {
			continue
		}
		s := &sink.Stored{Version: d.Get("_version").Int()}
		if src := d.Get("_source"); src.Get(elasticindex.DeletedField).Bool() {
			s.Deleted = true
		} else {
			s.Body = []byte(src.Raw)
		}
		out[i] = s
	}
	return out, nil
}

// ids chooses the ids to check, sorted, and says which they are.
func (v *verifier) ids(ctx context.Context, o VerifyOptions) ([]string, string, error) {
	set := map[string]bool{}
	add := func(ids []string) {
		for _, id := range ids {
			if projections.ValidateID(id) == nil {
				set[id] = true
			}
		}
	}
	var scope []string
	if o.All {
		if v.def.Listable() {
			if err := v.listIDs(ctx, func(ids []string) error { add(ids); return nil }); err != nil {
				return nil, "", err
			}
			scope = append(scope, "the list endpoint")
		}
		if err := v.redisIDs(ctx, func(ids []string) error { add(ids); return nil }); err != nil {
			return nil, "", err
		}
		if err := v.elasticIDs(ctx, func(ids []string) error { add(ids); return nil }); err != nil {
			return nil, "", err
		}
		scope = append(scope, "Redis", "Elasticsearch")
		return slices.Sorted(maps.Keys(set)), "every id of " + strings.Join(scope, ", "), nil
	}
	fromElastic := o.Sample / 2
	sample := newReservoir(o.Sample - fromElastic)
	if err := v.redisIDs(ctx, sample.add); err != nil {
		return nil, "", err
	}
	add(sample.ids)
	random, err := v.randomElasticIDs(ctx, fromElastic)
	if err != nil {
		return nil, "", err
	}
	add(random)
	scope = append(scope, fmt.Sprintf("%d random ids of Redis and %d of Elasticsearch", len(sample.ids), len(random)))
	if v.def.Listable() {
		listed := newReservoir(o.Sample)
		if err := v.listIDs(ctx, listed.add); err != nil {
			return nil, "", err
		}
		add(listed.ids)
		scope = append(scope, fmt.Sprintf("%d of the list endpoint", len(listed.ids)))
	}
	return slices.Sorted(maps.Keys(set)), "a sample: " + strings.Join(scope, ", "), nil
}

// reservoir keeps a uniform random sample of up to k of the ids it is given.
type reservoir struct {
	k    int
	seen int
	ids  []string
}

func newReservoir(k int) *reservoir { return &reservoir{k: k} }

func (r *reservoir) add(ids []string) error {
	for _, id := range ids {
		r.seen++
		if len(r.ids) < r.k {
			r.ids = append(r.ids, id)
		} else if j := rand.IntN(r.seen); j < r.k {
			r.ids[j] = id
		}
	}
	return nil
}

// redisIDs calls fn with the ids of every key of the projection, tombstones
// included, page by page (SCAN on each node).
func (v *verifier) redisIDs(ctx context.Context, fn func([]string) error) error {
	prefix, suffix, _ := strings.Cut(v.def.Redis.Key, "{id}")
	pattern := globEscape(prefix) + "*" + globEscape(suffix)
	nodes, err := scanNodes(ctx, v.e.Redis)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		var cursor uint64
		for {
			keys, next, err := n.c.Scan(ctx, cursor, pattern, listPageSize).Result()
			if err != nil {
				return fmt.Errorf("replay: redis SCAN %s: %w", pattern, err)
			}
			ids := make([]string, 0, len(keys))
			for _, k := range keys {
				if len(k) >= len(prefix)+len(suffix) && strings.HasPrefix(k, prefix) && strings.HasSuffix(k, suffix) {
					ids = append(ids, k[len(prefix):len(k)-len(suffix)])
				}
			}
			if err := fn(ids); err != nil {
				return err
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	return nil
}

// elasticIDs calls fn with the id of every document behind the alias,
// tombstones included, page by page.
func (v *verifier) elasticIDs(ctx context.Context, fn func([]string) error) error {
	return v.e.pitIDs(ctx, []string{v.def.Elasticsearch.Alias}, nil, fn)
}

// pitIDs calls fn with the ids of the documents of indices that query
// matches (nil: all, tombstones included), page by page: a point in time,
// sorted by _shard_doc, which pages through any document, with or without
// fields.
func (e *Env) pitIDs(ctx context.Context, indices []string, query any, fn func([]string) error) error {
	name := strings.Join(indices, ",")
	open := e.Elastic.OpenPointInTime
	body, err := esAnswer("point in time", name)(open(indices, "2m", open.WithContext(ctx)))
	if err != nil {
		return err
	}
	pit := gjson.GetBytes(body, "id").Str
	defer func() {
		b, _ := json.Marshal(map[string]string{"id": pit})
		c := e.Elastic.ClosePointInTime
		if res, err := c(c.WithContext(context.WithoutCancel(ctx)), c.WithBody(bytes.NewReader(b))); err == nil {
			res.Body.Close()
		}
	}()
	var after []any
	for {
		q := map[string]any{
			"size": listPageSize, "_source": false, "track_total_hits": false,
			"pit":  map[string]any{"id": pit, "keep_alive": "2m"},
			"sort": []any{map[string]any{"_shard_doc": "asc"}},
		}
		if query != nil {
			q["query"] = query
		}
		if after != nil {
			q["search_after"] = after
		}
		b, err := json.Marshal(q)
		if err != nil {
			return err
		}
		s := e.Elastic.Search
		body, err := esAnswer("search", name)(s(s.WithContext(ctx), s.WithBody(bytes.NewReader(b))))
		if err != nil {
			return err
		}
		hits := gjson.GetBytes(body, "hits.hits").Array()
		if len(hits) == 0 {
			return nil
		}
		ids := make([]string, len(hits))
		for i, h := range hits {
			ids[i] = h.Get("_id").Str
		}
		if err := fn(ids); err != nil {
			return err
		}
		if p := gjson.GetBytes(body, "pit_id").Str; p != "" {
			pit = p
		}
		if err := json.Unmarshal([]byte(hits[len(hits)-1].Get("sort").Raw), &after); err != nil {
			return fmt.Errorf("replay: elasticsearch search %s: sort values: %w", name, err)
		}
	}
}

// randomElasticIDs picks up to n random ids behind the alias, tombstones
// included (function_score random_score).
func (v *verifier) randomElasticIDs(ctx context.Context, n int) ([]string, error) {
	if n <= 0 {
		return nil, nil
	}
	q := map[string]any{
		"size": n, "_source": false, "track_total_hits": false,
		"query": map[string]any{"function_score": map[string]any{
			"query":        map[string]any{"match_all": map[string]any{}},
			"random_score": map[string]any{"seed": rand.Int64(), "field": "_seq_no"},
			"boost_mode":   "replace",
		}},
	}
	body, err := v.e.esSearch(ctx, v.def.Elasticsearch.Alias, q)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, h := range gjson.GetBytes(body, "hits.hits").Array() {
		ids = append(ids, h.Get("_id").Str)
	}
	return ids, nil
}

// listIDs calls fn with each page of the list endpoint.
func (v *verifier) listIDs(ctx context.Context, fn func([]string) error) error {
	c := source.New(source.Options{Transport: v.e.Transport, Timeout: v.def.SourceTimeout(0)})
	cursor := ""
	for page := 1; ; page++ {
		url, err := v.def.ListURL(cursor)
		if err != nil {
			return fmt.Errorf("replay: list endpoint, cursor %q: %w", cursor, err)
		}
		body, err := c.Get(ctx, url)
		if err != nil {
			return fmt.Errorf("replay: list endpoint, page %d (cursor %q): %w", page, cursor, err)
		}
		ids, next, err := v.def.ListPage(body)
		if err != nil {
			return fmt.Errorf("replay: list endpoint, page %d (cursor %q): %w", page, cursor, err)
		}
		if err := fn(ids); err != nil {
			return err
		}
		if next == "" {
			return nil
		}
		if next == cursor {
			return fmt.Errorf("replay: list endpoint, page %d: the next cursor is the page's own (%q): the endpoint would loop", page, cursor)
		}
		cursor = next
	}
}
