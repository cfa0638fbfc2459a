package projector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/readside/readside/internal/assemble"
	"github.com/readside/readside/internal/sink"
)

// result is what an attempt made of one item: its outcome and, when a
// document was built, what it is.
type result struct {
	outcome
	version int64
	deleted bool
	partial []string   // optional sources the document lacks
	refs    []sink.Ref // looked-up entities the document uses
}

// attempt builds every id of the batch from the sources, writes the
// documents to every store at once, and returns one result per item; it
// does not change the items. Every event up to head was stored before the
// fetches start, so each item's fetch answers the events up to its answers
// (set by the caller). fetched runs once the documents are built and before
// they are written (see Projector.absorb). bt, when tracing is on, holds
// the items' spans: the fetches, builds and writes go under them.
//
// With a source version, a deletion carries no version of its own, so it is
// confirmed before it is written (see confirmDeletions), and an item whose
// write the guard found racing another replica's is fetched again (recheck):
// a tombstone dropped because a document of a higher version was stored
// meanwhile, or a document stored over a tombstone. Either may be the entity
// re-created, or a fetch made before the deletion written after it; a new
// fetch tells which.
func (p *Projector) attempt(ctx context.Context, head uint64, batch []item, bt *batchTrace, fetched func()) []result {
	ids := make([]string, len(batch))
	for i := range batch {
		ids[i] = batch[i].id
	}
	// Without a source version, the documents' version is the newest
	// sequence of the events stream they answer: on the live consumer its
	// head; on a consumer of the own stream, the events stream's last
	// sequence, asked for now (see Parts.EventsHead).
	var versions []int64 // nil with a source version
	var version int64
	if !p.def.Versioned() {
		version = int64(head)
		if p.eventsHead != nil {
			last, err := p.eventsHead(ctx)
			if err != nil {
				out := make([]result, len(batch))
				for i := range out {
					out[i].outcome = outcome{err: fmt.Errorf("reading the events stream's last sequence: %w", err)}
				}
				return out
			}
			version = int64(last)
		}
		versions = make([]int64, len(batch))
		for i := range batch {
			if p.eventsHead == nil {
				versions[i] = int64(batch[i].answers)
			} else {
				versions[i] = version
			}
		}
	}
	actx := ctx
	if bt != nil {
		actx = assemble.WithSpans(ctx, bt.spans)
	}
	res := p.asm.AssembleAt(actx, ids, versions)
	var floor map[int]int64 // with a source version: confirmed deletions → tombstone version
	if p.def.Versioned() {
		floor = p.confirmDeletions(ctx, ids, res)
	}
	built := time.Now()
	fetched()

	out := make([]result, len(batch))
	var idx []int
	var write []sink.Doc
	for i := range batch {
		r, o := res[i], &out[i]
		switch {
		case r.Err != nil:
			o.outcome = outcome{err: r.Err, permanent: r.Permanent}
			p.m.Fetches.WithLabelValues(p.label, map[bool]string{true: "bad", false: "unavailable"}[r.Permanent]).Inc()
			continue
		case r.Deleted:
			p.m.Fetches.WithLabelValues(p.label, "not_found").Inc()
			o.deleted = true
			if p.def.Versioned() {
				o.version = floor[i]
			} else {
				o.version = versions[i]
			}
		default:
			p.m.Fetches.WithLabelValues(p.label, "ok").Inc()
			o.version = r.Version
			if !p.def.Versioned() {
				o.version = versions[i] // covers the absorbed events too
			}
			o.partial = r.Partial
			o.refs = make([]sink.Ref, len(r.Refs))
			for j, ref := range r.Refs {
				o.refs[j] = sink.Ref(ref)
			}
		}
		idx = append(idx, i)
		write = append(write, sink.Doc{ID: batch[i].id, Version: o.version, Body: r.Doc, Deleted: o.deleted, BuiltAt: built})
	}
	if len(write) == 0 {
		return out
	}
	errs := make([]error, len(p.stores))
	reports := make([][]sink.Outcome, len(p.stores)) // from the stores that are Reporters
	var wg errgroup.Group
	for s, st := range p.stores {
		wg.Go(func() error {
			start := time.Now()
			ctx, done := bt.startWrites(ctx, st.Name, idx)
			if r, ok := st.Store.(sink.Reporter); ok {
				reports[s], errs[s] = r.WriteReport(ctx, write)
			} else {
				errs[s] = st.Store.Write(ctx, write)
			}
			p.m.WriteSeconds.WithLabelValues(p.label, st.Name).Observe(time.Since(start).Seconds())
			done(errs[s])
			p.m.Writes.WithLabelValues(p.label, st.Name, status(errs[s])).Inc()
			return nil
		})
	}
	wg.Wait()
	if p.def.Versioned() {
		for _, rep := range reports {
			for j, o := range rep {
				if o == sink.Revived || (o == sink.Dropped && write[j].Deleted) {
					out[idx[j]].outcome.recheck = true
				}
			}
		}
	}
	for s, err := range errs {
		if err == nil {
			continue
		}
		name := p.stores[s].Name
		var be *sink.BatchError
		if !errors.As(err, &be) {
			for _, i := range idx { // the whole write failed: the store is down
				out[i].outcome = worse(out[i].outcome, outcome{err: fmt.Errorf("%s: %w", name, err)})
			}
			continue
		}
		for j, ierr := range be.Items {
			out[idx[j]].outcome = worse(out[idx[j]].outcome, outcome{err: fmt.Errorf("%s: %w", name, ierr), permanent: sink.IsPermanent(ierr)})
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

func status(err error) string {
	if err == nil {
		return "ok"
	}
	return "error"
}

// confirmDeletions confirms, for a projection with a source version, each
// deletion in res (the source answered 404 or 410) and returns the version of
// its tombstone by index. A deletion has no version of its own: it happened
// after the newest version stored, but a version stored after the fetch may
// be the entity re-created (by another replica). So the stored version is
// read first and the entity fetched again: when it is still gone, every
// version stored before that fetch is older than the deletion, and the
// tombstone takes one more than the newest of them, which blocks every older
// write and never hides a re-creation (see sink.Doc.Deleted). An entity found
// again replaces its result in res; a failure of either step does too, so
// the id is retried.
func (p *Projector) confirmDeletions(ctx context.Context, ids []string, res []assemble.Result) map[int]int64 {
	var idx []int
	var again []string
	floor := map[int]int64{}
	for i, r := range res {
		if r.Err != nil || !r.Deleted {
			continue
		}
		v, err := p.tombstoneVersion(ctx, ids[i])
		if err != nil {
			res[i] = assemble.Result{Err: err}
			continue
		}
		floor[i] = v
		idx = append(idx, i)
		again = append(again, ids[i])
	}
	if len(again) == 0 {
		return floor
	}
	for j, r := range p.asm.AssembleAt(ctx, again, nil) {
		if !r.Deleted {
			res[idx[j]] = r // re-created meanwhile, or failing now
		}
	}
	return floor
}

// tombstoneVersion is the version a deletion of id is written with when the
// stores hold what they hold now: one more than the newest version any store
// holds (a tombstone's own version when it is the newest).
func (p *Projector) tombstoneVersion(ctx context.Context, id string) (int64, error) {
	var newest int64
	for _, st := range p.stores {
		s, err := st.Store.Get(ctx, id)
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
