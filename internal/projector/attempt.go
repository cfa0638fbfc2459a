package projector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/source"
	"github.com/readside/readside/projections"
)

// attempt fetches and builds every id of the batch (fetches start after
// started), writes the documents to every store at once, and returns one
// outcome per item. Items may gain events answered by their fetch (absorb).
func (p *Projector) attempt(ctx context.Context, batch []item, started time.Time) []outcome {
	out := make([]outcome, len(batch))
	docs := make([]sink.Doc, len(batch))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(p.o.FetchConcurrency)
	for i := range batch {
		g.Go(func() error {
			docs[i], out[i] = p.build(gctx, batch[i])
			return nil
		})
	}
	g.Wait()
	p.absorb(batch, started)
	if !p.def.Versioned() {
		for i := range batch {
			docs[i].Version = max(docs[i].Version, maxSeq(batch[i]))
		}
	}

	// Write what was built; an id that failed already keeps its outcome.
	var idx []int
	var write []sink.Doc
	for i := range batch {
		if out[i].err == nil {
			idx = append(idx, i)
			write = append(write, docs[i])
		}
	}
	if len(write) == 0 {
		return out
	}
	errs := make([]error, len(p.stores))
	var wg errgroup.Group
	for s, st := range p.stores {
		wg.Go(func() error {
			errs[s] = st.Store.Write(ctx, write)
			p.m.Writes.WithLabelValues(p.def.Name, st.Name, result(errs[s])).Inc()
			return nil
		})
	}
	wg.Wait()
	for s, err := range errs {
		if err == nil {
			continue
		}
		name := p.stores[s].Name
		var be *sink.BatchError
		if !errors.As(err, &be) {
			for _, i := range idx { // the whole write failed: the store is down
				out[i] = worse(out[i], outcome{err: fmt.Errorf("%s: %w", name, err)})
			}
			continue
		}
		for j, ierr := range be.Items {
			out[idx[j]] = worse(out[idx[j]], outcome{err: fmt.Errorf("%s: %w", name, ierr), permanent: sink.IsPermanent(ierr)})
		}
	}
	return out
}

// worse keeps a permanent failure over a transient one over success.
func worse(a, b outcome) outcome {
	switch {
	case a.err == nil:
		return b
	case b.err == nil:
		return a
	case b.permanent && !a.permanent:
		return b
	}
	return a
}

func result(err error) string {
	if err == nil {
		return "ok"
	}
	return "error"
}

// build fetches the state of one id and flattens it into a document, or a
// tombstone when the source says the entity is gone.
func (p *Projector) build(ctx context.Context, it item) (sink.Doc, outcome) {
	url, err := p.def.SourceURL(0, it.id)
	if err != nil { // the id cannot be put in the URL: a bad event
		return sink.Doc{}, outcome{err: err, permanent: true}
	}
	body, err := p.src.Get(ctx, url)
	switch {
	case errors.Is(err, source.ErrNotFound):
		p.m.Fetches.WithLabelValues(p.def.Name, "not_found").Inc()
		v, err := p.tombstoneVersion(ctx, it)
		if err != nil {
			return sink.Doc{}, outcome{err: err}
		}
		return sink.Doc{ID: it.id, Version: v, Deleted: true}, outcome{}
	case source.IsPermanent(err):
		p.m.Fetches.WithLabelValues(p.def.Name, "bad").Inc()
		return sink.Doc{}, outcome{err: err, permanent: true}
	case err != nil:
		p.m.Fetches.WithLabelValues(p.def.Name, "unavailable").Inc()
		return sink.Doc{}, outcome{err: err}
	}
	p.m.Fetches.WithLabelValues(p.def.Name, "ok").Inc()
	answers := map[string][]byte{p.def.Sources[0].Name: body}
	doc, err := p.def.Build(it.id, answers)
	if err != nil {
		return sink.Doc{}, outcome{err: err, permanent: true}
	}
	v := maxSeq(it)
	if p.def.Versioned() {
		if v, err = p.def.VersionOf(answers); err != nil {
			return sink.Doc{}, outcome{err: err, permanent: errors.Is(err, projections.ErrBadSource)}
		}
	}
	return sink.Doc{ID: it.id, Version: v, Body: doc}, outcome{}
}

// tombstoneVersion is the version a deletion is written with. Without a
// source version it is the event's stream sequence. With one, the source has
// no version left to give, so the tombstone takes one more than the newest
// version any store holds: every older write is blocked, and a re-created
// entity (whose version moves on) replaces it.
func (p *Projector) tombstoneVersion(ctx context.Context, it item) (int64, error) {
	if !p.def.Versioned() {
		return maxSeq(it), nil
	}
	var newest int64
	for _, st := range p.stores {
		s, err := st.Store.Get(ctx, it.id)
		switch {
		case errors.Is(err, sink.ErrNotFound):
		case err != nil:
			return 0, fmt.Errorf("%s: reading the stored version: %w", st.Name, err)
		case s.Deleted:
			newest = max(newest, s.Version-1) // already a tombstone: keep its version
		default:
			newest = max(newest, s.Version)
		}
	}
	return newest + 1, nil
}

// maxSeq is the newest stream sequence among the item's events.
func maxSeq(it item) int64 {
	var seq uint64
	for _, m := range it.msgs {
		if md, err := m.Metadata(); err == nil {
			seq = max(seq, md.Sequence.Stream)
		}
	}
	return int64(seq)
}
