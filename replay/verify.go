package replay

import (
	"bytes"
	"cmp"
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

// DefaultSample is how many ids Verify samples from the stores, and from
// the list endpoint, when neither a sample size nor All is given.
const DefaultSample = 100

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// Sample is how many random ids are taken from the stores (half from
	// the doc store, half from the search index: each by its sink.Sampler,
	// such as Elasticsearch's random_score, else by a reservoir sample of
	// its Scan) and as many from the list endpoint, when the definition has
	// one [DefaultSample]. Ignored with All.
	Sample int
	// All checks every id: those of the list endpoint and of both stores.
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
	// Docs and Index are the ids with this drift in the doc store and in
	// the search index.
	Docs, Index []string
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	Projection string
	// DocsName and IndexName name the stores compared ("redis",
	// "elasticsearch", "embedded-docs", "embedded-search").
	DocsName, IndexName string
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
	fmt.Fprintf(tw, "kind\t%s\t%s\tids\t\n", r.DocsName, r.IndexName)
	for _, k := range Drifts {
		d := r.Drift[k]
		if d == nil {
			d = &DriftIDs{}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t\n", k, len(d.Docs), len(d.Index), len(d.IDs))
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

// Verify compares the documents in the doc store and the search index with
// documents built now from the sources (the projector's own assembly), for
// a random sample of ids or for every id, and reports the drift by kind
// (see Drift). An id found drifted is checked once more after o.Recheck
// before it is reported. With o.Fix, the drifted ids are re-issued (see
// Reissuer).
//
// It reads both stores (e.Stores: sink.Reader, and sink.Scanner to find
// ids; in real time) and the sources (through e.Transport), and publishes
// only with o.Fix (e.JetStream). It writes nothing to the stores. The error
// is about the run (a store unreachable, ctx ended), not about the drift
// found.
func (e *Env) Verify(ctx context.Context, def *projections.Definition, o VerifyOptions) (*VerifyReport, error) {
	st, err := e.stores(ctx, def, "verify")
	if err != nil {
		return nil, err
	}
	if st.Docs == nil || st.Index == nil {
		return nil, fmt.Errorf("replay: verify %s needs both stores (the doc store and the search index)", def.Name)
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
	v := newVerifier(e, st, def, o.Rate)
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
	r := &VerifyReport{Projection: def.Name, DocsName: st.DocsName, IndexName: st.IndexName, Scope: scope, Checked: len(ids), Drift: map[Drift]*DriftIDs{}}
	for _, id := range ids { // ids are sorted, so every list is
		f := found[id]
		if f.why != "" {
			if r.Why == "" {
				r.Why = f.why
			}
			r.Unverified = append(r.Unverified, id)
		}
		for _, k := range []Drift{f.docs, f.index} {
			if k != "" && r.Drift[k] == nil {
				r.Drift[k] = &DriftIDs{}
			}
		}
		if f.docs != "" {
			r.Drift[f.docs].Docs = append(r.Drift[f.docs].Docs, id)
		}
		if f.index != "" {
			r.Drift[f.index].Index = append(r.Drift[f.index].Index, id)
		}
		for _, k := range []Drift{f.docs, f.index} {
			if d := r.Drift[k]; k != "" && (len(d.IDs) == 0 || d.IDs[len(d.IDs)-1] != id) {
				d.IDs = append(d.IDs, id)
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
	docs, index Drift
	why         string // set when the id could not be checked
}

func (f finding) any() bool { return f.docs != "" || f.index != "" || f.why != "" }

// verifier checks ids of one projection.
type verifier struct {
	e   *Env
	st  Stores
	def *projections.Definition
	asm *assemble.Assembler
	lim *rate.Limiter
}

// verifyBatch is how many ids are read and built together.
const verifyBatch = 100

func newVerifier(e *Env, st Stores, def *projections.Definition, r float64) *verifier {
	if r == 0 {
		r = DefaultRate
	}
	lim := rate.NewLimiter(rate.Inf, verifyBatch)
	if r > 0 {
		lim = rate.NewLimiter(rate.Limit(r), verifyBatch)
	}
	return &verifier{
		e: e, st: st, def: def, lim: lim,
		asm: assemble.New(def, assemble.Clients(def, e.Transport, 0), assemble.Options{}),
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
	inDocs, err := v.st.Docs.GetMany(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("replay: verify, reading %s: %w", v.st.DocsName, err)
	}
	inIndex, err := v.st.Index.GetMany(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("replay: verify, reading %s: %w", v.st.IndexName, err)
	}
	fresh := v.asm.Assemble(ctx, ids)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	out := make([]finding, len(ids))
	for i := range ids {
		f := &out[i]
		var whyR, whyE string
		f.docs, whyR = classify(fresh[i], inDocs[i])
		f.index, whyE = classify(fresh[i], inIndex[i])
		f.why = cmp.Or(whyR, whyE)
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

// ids chooses the ids to check, sorted, and says which they are.
func (v *verifier) ids(ctx context.Context, o VerifyOptions) ([]string, string, error) {
	set := map[string]bool{}
	add := func(ids []string) error {
		for _, id := range ids {
			if projections.ValidateID(id) == nil {
				set[id] = true
			}
		}
		return nil
	}
	var scope []string
	if o.All {
		if v.def.Listable() {
			if err := v.listIDs(ctx, add); err != nil {
				return nil, "", err
			}
			scope = append(scope, "the list endpoint")
		}
		for _, s := range []struct {
			name  string
			store sink.Reader
		}{{v.st.DocsName, v.st.Docs}, {v.st.IndexName, v.st.Index}} {
			if err := scanAll(ctx, s.name, s.store, func(p sink.ScanPage) error { add(p.IDs); return add(p.Deleted) }); err != nil {
				return nil, "", err
			}
			scope = append(scope, s.name)
		}
		return slices.Sorted(maps.Keys(set)), "every id of " + strings.Join(scope, ", "), nil
	}
	fromIndex := o.Sample / 2
	fromDocs, err := sample(ctx, v.st.DocsName, v.st.Docs, o.Sample-fromIndex)
	if err != nil {
		return nil, "", err
	}
	add(fromDocs)
	random, err := sample(ctx, v.st.IndexName, v.st.Index, fromIndex)
	if err != nil {
		return nil, "", err
	}
	add(random)
	scope = append(scope, fmt.Sprintf("%d random ids of %s and %d of %s", len(fromDocs), v.st.DocsName, len(random), v.st.IndexName))
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

// scanAll calls fn with every page of store's Scan; a store that cannot
// scan is an error that says so.
func scanAll(ctx context.Context, name string, store any, fn func(sink.ScanPage) error) error {
	sc, ok := store.(sink.Scanner)
	if !ok {
		return fmt.Errorf("replay: the %s store cannot list its ids", name)
	}
	if err := sc.Scan(ctx, "", fn); err != nil {
		return fmt.Errorf("replay: scanning %s: %w", name, err)
	}
	return nil
}

// sample picks up to n random ids of store, tombstones included: by its
// sink.Sampler, else by a reservoir sample of its Scan.
func sample(ctx context.Context, name string, store any, n int) ([]string, error) {
	if n <= 0 {
		return nil, nil
	}
	if s, ok := store.(sink.Sampler); ok {
		ids, err := s.Sample(ctx, n)
		if err == nil {
			return ids, nil
		}
		if !errors.Is(err, sink.ErrNotSupported) {
			return nil, fmt.Errorf("replay: sampling %s: %w", name, err)
		}
	}
	r := newReservoir(n)
	err := scanAll(ctx, name, store, func(p sink.ScanPage) error { r.add(p.IDs); return r.add(p.Deleted) })
	return r.ids, err
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
