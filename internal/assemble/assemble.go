// Package assemble builds documents from the source APIs: it fetches the
// primary source (in batches when the definition has a batch endpoint), then
// each joined source in definition order with fields of the sources before
// it, and flattens the answers with the projection's definition.
//
// The projector and the query API both build documents with it, so a
// document has the same shape whichever built it.
package assemble

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/readside/readside/internal/source"
	"github.com/readside/readside/projections"
)

// Fetcher gets a source URL; its errors follow internal/source: ErrNotFound,
// permanent errors (source.IsPermanent), and anything else is transient.
type Fetcher interface {
	Get(ctx context.Context, url string) ([]byte, error)
}

// Ref is an entity of a joined source that a document uses: document ID,
// built at Version, uses entity Key of source Source. Reverse lookups are
// built from refs.
type Ref struct {
	ID, Source, Key string
	Version         int64
}

// Result is what was built for one id.
type Result struct {
	ID      string
	Doc     []byte   // the flat document; nil when Deleted or Err
	Deleted bool     // the primary source says the entity is gone (404/410)
	Version int64    // the source's version, when the definition names one
	Partial []string // optional sources that failed: the document lacks their part
	Refs    []Ref    // the looked-up entities the document uses
	// Err is set when no document could be built. Permanent errors (a bad
	// id, a source answering 400, an answer that is not JSON) will fail
	// again; others are a dependency down: try again later.
	Err       error
	Permanent bool
}

// Options tune an Assembler.
type Options struct {
	// Concurrency bounds the source requests of one Assemble call [32].
	Concurrency int
	// BeforeJoin, when set, is called with the refs a stage is about to
	// fetch, before fetching them. The projector records reverse lookups
	// there, so a change of a joined entity that happens after the fetch
	// always finds the document. An error fails those ids (transiently).
	BeforeJoin func(ctx context.Context, refs []Ref) error
}

// Assembler builds the documents of one projection. Safe for concurrent use.
type Assembler struct {
	def     *projections.Definition
	sources []Fetcher // one per source of def
	o       Options
}

// New returns an Assembler for def reading each source with the fetcher of
// the same index.
func New(def *projections.Definition, sources []Fetcher, o Options) *Assembler {
	if o.Concurrency <= 0 {
		o.Concurrency = 32
	}
	return &Assembler{def: def, sources: sources, o: o}
}

// Assemble builds the documents for ids, one Result per id in the same order.
func (a *Assembler) Assemble(ctx context.Context, ids []string) []Result {
	return a.AssembleAt(ctx, ids, nil)
}

// AssembleAt is Assemble for a caller that knows each document's version
// when the definition has no source version (the projector: the events'
// stream sequence); refs carry it. versions may be nil. It traces the work
// when ctx has spans (see WithSpans).
func (a *Assembler) AssembleAt(ctx context.Context, ids []string, versions []int64) []Result {
	out := make([]Result, len(ids))
	answers := make([]map[string][]byte, len(ids))
	for i, id := range ids {
		out[i].ID = id
		if versions != nil {
			out[i].Version = versions[i]
		}
		answers[i] = map[string][]byte{}
	}
	t := startTracing(ctx, len(ids))
	a.primary(ctx, t, ids, out, answers)
	if a.def.Versioned() && a.def.VersionFromPrimary() {
		a.versions(out, answers) // before the joins, so refs carry it
	}
	for s := 1; s < len(a.def.Sources); s++ {
		a.join(ctx, t, s, out, answers)
	}
	if a.def.Versioned() && !a.def.VersionFromPrimary() {
		a.versions(out, answers)
	}
	t.fetched(out)
	for i := range out {
		r := &out[i]
		if r.Err != nil || r.Deleted {
			continue
		}
		t.build(ctx, i, func() error {
			doc, err := a.def.Build(r.ID, answers[i], r.Partial...)
			if err != nil {
				r.Err, r.Permanent = err, true
				return err
			}
			r.Doc = doc
			return nil
		})
	}
	return out
}

// versions reads the source version of every document still being built.
func (a *Assembler) versions(out []Result, answers []map[string][]byte) {
	for i := range out {
		r := &out[i]
		if r.Err != nil || r.Deleted {
			continue
		}
		v, err := a.def.VersionOf(answers[i])
		if err != nil {
			r.Err, r.Permanent = err, true
			continue
		}
		r.Version = v
	}
}

// primary fetches the primary source: through the batch endpoint for the
// ids it can take, one by one for the rest and for any id a batch answer
// lacks (so a missing id gets its proper 404).
func (a *Assembler) primary(ctx context.Context, t *tracing, ids []string, out []Result, answers []map[string][]byte) {
	name := a.def.Sources[0].Name
	single := make([]int, 0, len(ids))
	if max, ok := a.def.Batchable(); ok && len(ids) > 1 {
		var batchable []int
		for i, id := range ids {
			if strings.Contains(id, ",") {
				single = append(single, i)
			} else {
				batchable = append(batchable, i)
			}
		}
		var mu sync.Mutex
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(a.o.Concurrency)
		for start := 0; start < len(batchable); start += max {
			chunk := batchable[start:min(start+max, len(batchable))]
			g.Go(func() error {
				got, err := a.fetchBatch(t.at(gctx, chunk[0]), ids, chunk)
				mu.Lock()
				defer mu.Unlock()
				for _, i := range chunk {
					switch body, ok := got[ids[i]]; {
					case err != nil:
						out[i].Err, out[i].Permanent = err, source.IsPermanent(err)
					case ok:
						answers[i][name] = body
					default:
						single = append(single, i)
					}
				}
				return nil
			})
		}
		g.Wait()
	} else {
		for i := range ids {
			single = append(single, i)
		}
	}
	a.each(ctx, single, func(ctx context.Context, i int) {
		url, err := a.def.SourceURL(0, ids[i])
		if err != nil { // the id cannot be put in the URL: a bad event
			out[i].Err, out[i].Permanent = err, true
			return
		}
		body, err := a.sources[0].Get(t.at(ctx, i), url)
		switch {
		case errors.Is(err, source.ErrNotFound):
			out[i].Deleted = true
		case err != nil:
			out[i].Err, out[i].Permanent = fmt.Errorf("source %s: %w", name, err), source.IsPermanent(err)
		default:
			answers[i][name] = body
		}
	})
}

func (a *Assembler) fetchBatch(ctx context.Context, ids []string, chunk []int) (map[string][]byte, error) {
	batch := make([]string, len(chunk))
	for j, i := range chunk {
		batch[j] = ids[i]
	}
	url, err := a.def.BatchURL(batch)
	if err != nil {
		return nil, err
	}
	body, err := a.sources[0].Get(ctx, url)
	if errors.Is(err, source.ErrNotFound) {
		return map[string][]byte{}, nil // none of them: each is asked alone
	}
	if err != nil {
		return nil, fmt.Errorf("source %s batch: %w", a.def.Sources[0].Name, err)
	}
	return a.def.SplitBatch(body)
}

// join fetches joined source s for every id still being built.
func (a *Assembler) join(ctx context.Context, t *tracing, s int, out []Result, answers []map[string][]byte) {
	src := a.def.Sources[s]
	urls := make([]string, len(out))
	var todo []int
	var refs []Ref
	for i := range out {
		if out[i].Err != nil || out[i].Deleted {
			continue
		}
		url, ok, err := a.def.JoinURL(s, out[i].ID, answers[i])
		switch {
		case err != nil:
			out[i].Err, out[i].Permanent = fmt.Errorf("source %s: %w", src.Name, err), true
			continue
		case !ok: // the answers lack the field it is fetched by: nothing to join
			continue
		}
		urls[i] = url
		todo = append(todo, i)
		if a.def.Looked(s) {
			if key, ok := a.def.RefKey(s, answers[i]); ok {
				ref := Ref{ID: out[i].ID, Source: src.Name, Key: key, Version: out[i].Version}
				refs = append(refs, ref)
				out[i].Refs = append(out[i].Refs, ref)
			}
		}
	}
	if len(refs) > 0 && a.o.BeforeJoin != nil {
		if err := a.o.BeforeJoin(ctx, refs); err != nil {
			for _, i := range todo {
				out[i].Err = fmt.Errorf("recording the use of %s: %w", src.Name, err)
			}
			return
		}
	}
	var mu sync.Mutex
	a.each(ctx, todo, func(ctx context.Context, i int) {
		body, err := a.sources[s].Get(t.at(ctx, i), urls[i])
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			answers[i][src.Name] = body
		case errors.Is(err, source.ErrNotFound):
			// The joined entity does not exist: the document has no such part.
		case src.Optional:
			out[i].Partial = append(out[i].Partial, src.Name)
		default:
			out[i].Err, out[i].Permanent = fmt.Errorf("source %s: %w", src.Name, err), source.IsPermanent(err)
		}
	})
}

// each runs f for every index, at most Concurrency at once.
func (a *Assembler) each(ctx context.Context, idx []int, f func(context.Context, int)) {
	var g errgroup.Group
	g.SetLimit(a.o.Concurrency)
	for _, i := range idx {
		g.Go(func() error { f(ctx, i); return nil })
	}
	g.Wait()
}
