package projector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/readside/readside/internal/sink"
)

// attempt builds every id of the batch from the sources (fetches start after
// started), writes the documents to every store at once, and returns one
// outcome per item. Items learn what was built (version, tombstone, partial,
// refs) and may gain events their fetch answers (absorb).
func (p *Projector) attempt(ctx context.Context, batch []item, started time.Time) []outcome {
	ids := make([]string, len(batch))
	var versions []int64
	if !p.def.Versioned() {
		versions = make([]int64, len(batch))
	}
	for i := range batch {
		ids[i] = batch[i].id
		if versions != nil {
			versions[i] = maxSeq(batch[i])
		}
	}
	res := p.asm.AssembleAt(ctx, ids, versions)
	built := time.Now()
	p.absorb(batch, started)

	out := make([]outcome, len(batch))
	var idx []int
	var write []sink.Doc
	for i := range batch {
		r, it := res[i], &batch[i]
		switch {
		case r.Err != nil:
			out[i] = outcome{err: r.Err, permanent: r.Permanent}
			p.m.Fetches.WithLabelValues(p.label, map[bool]string{true: "bad", false: "unavailable"}[r.Permanent]).Inc()
			continue
		case r.Deleted:
			p.m.Fetches.WithLabelValues(p.label, "not_found").Inc()
			v, err := p.tombstoneVersion(ctx, *it)
			if err != nil {
				out[i] = outcome{err: err}
				continue
			}
			it.version, it.deleted = v, true
		default:
			p.m.Fetches.WithLabelValues(p.label, "ok").Inc()
			it.version = r.Version
			if !p.def.Versioned() {
				it.version = maxSeq(*it) // covers the absorbed events too
			}
			it.partial = r.Partial
			it.refs = make([]sink.Ref, len(r.Refs))
			for j, ref := range r.Refs {
				it.refs[j] = sink.Ref(ref)
			}
		}
		idx = append(idx, i)
		write = append(write, sink.Doc{ID: it.id, Version: it.version, Body: r.Doc, Deleted: it.deleted, BuiltAt: built})
	}
	if len(write) == 0 {
		return out
	}
	errs := make([]error, len(p.stores))
	var wg errgroup.Group
	for s, st := range p.stores {
		wg.Go(func() error {
			errs[s] = st.Store.Write(ctx, write)
			p.m.Writes.WithLabelValues(p.label, st.Name, result(errs[s])).Inc()
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
