package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/projections"
)

// DefaultTolerance is the default share of live documents the new index of
// a rebuild may lack before the rebuild refuses to swap: one in a thousand,
// for documents deleted at the source while the old index kept them.
const DefaultTolerance = 0.001

// ErrRebuildShort means a rebuild did not swap the alias: the new index has
// too few live documents next to the old one. The new index and its rebuild
// alias are left for inspection; running the rebuild again continues it.
var ErrRebuildShort = errors.New("the new index has too few documents")

// RebuildOptions tune Rebuild. The zero value keeps the old index and
// tolerates no missing document.
type RebuildOptions struct {
	// Rate is the most ids re-issued per second [DefaultRate]; negative: no limit.
	Rate float64
	// Tolerance is the share of the old index's live documents the new one
	// may lack and still take the alias (DefaultTolerance is the command's
	// default). 0: none may be missing.
	Tolerance float64
	// DeleteOld deletes the old index after the swap; otherwise it is kept,
	// without an alias, and Out says how to delete it.
	DeleteOld bool
	// DryRun says what the rebuild would do, and creates, re-issues, swaps
	// and deletes nothing.
	DryRun bool
	// Out receives a line for every step as it happens. nil: nothing.
	Out io.Writer
	// Progress shows the re-issuing while it runs. nil: nothing.
	Progress Reporter
}

// RebuildResult is what a rebuild did.
type RebuildResult struct {
	Alias    string
	Old      []string // the indices the alias pointed at
	New      string   // the index the rebuild filled
	Resumed  bool     // the rebuild alias was there: an earlier run was continued
	Reissued int64
	// Tombstones are the ids of the old indices' tombstones re-issued after
	// every id, so the new index keeps those deletions too.
	Tombstones int64
	// OldCount and NewCount are the live documents (tombstones left out) of
	// the old indices and the new one, once the replay consumer had drained.
	OldCount, NewCount int64
	Swapped            bool
	DeletedOld         bool
	DryRun             bool
	// Reindexed is how many documents (tombstones included) an index that
	// rebuilds itself (a sink.Reindexer: the embedded index) copied; such
	// a rebuild re-issues nothing and has no Old or New.
	Reindexed int64
}

// Rebuild builds def's search index anew without downtime; it is also how a
// changed mapping is rolled out. How depends on the index:
//   - an index with generations (sink.Generations: Elasticsearch, versioned
//     indices behind the alias) is filled from the sources again, as
//     rebuildGenerations says;
//   - an index that rebuilds itself (sink.Reindexer: the embedded index,
//     which keeps every document's stored value) re-indexes what it holds
//     into a new generation with the current definition's mapping: nothing
//     is re-issued, and no source is called.
//
// Any other index is an error that says so.
func (e *Env) Rebuild(ctx context.Context, def *projections.Definition, o RebuildOptions) (*RebuildResult, error) {
	st, err := e.stores(ctx, def, "rebuild")
	if err != nil {
		return nil, err
	}
	switch idx := st.Index.(type) {
	case sink.Generations:
		return e.rebuildGenerations(ctx, def, idx, o)
	case sink.Reindexer:
		return rebuildReindex(ctx, def, st.IndexName, idx, o)
	}
	return nil, fmt.Errorf("replay: rebuild %s: the %s index can be neither rebuilt nor re-indexed", def.Name, cmpOr(st.IndexName, "search"))
}

// rebuildReindex has an index that keeps its documents rebuild itself.
func rebuildReindex(ctx context.Context, def *projections.Definition, name string, idx sink.Reindexer, o RebuildOptions) (*RebuildResult, error) {
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	res := &RebuildResult{Alias: def.Name, DryRun: o.DryRun}
	if o.DryRun {
		fmt.Fprintf(out, "dry run: would re-index the %s index of %s from the documents it holds, with the definition's fields\n", name, def.Name)
		return res, nil
	}
	fmt.Fprintf(out, "re-indexing the %s index of %s from the documents it holds; reads go on from the old generation until the new one takes its place\n", name, def.Name)
	n, err := idx.Reindex(ctx)
	if err != nil {
		return res, fmt.Errorf("replay: rebuild %s: re-indexing %s: %w", def.Name, name, err)
	}
	res.Reindexed, res.Swapped = n, true
	fmt.Fprintf(out, "re-indexed %d documents (tombstones included); the new generation serves\n", n)
	return res, nil
}

// rebuildGenerations builds a new generation of def's index behind its
// alias. Run it with the NEW definition while the projectors still run the
// old one, and deploy the new definition once it has swapped: the
// projectors check the mapping of the index behind the alias only, which is
// the new one from then on.
//
// Its steps, each told to o.Out:
//  1. begin "<alias>-v<N+1>" (see sink.Generations.Begin: the definition's
//     mapping and the alias "<alias>-rebuild" on it); when a generation is
//     being built already, continue with it (an earlier run stopped);
//  2. wait its Settle, so that every projector writes every live change to
//     both generations;
//  3. re-issue every id (see All: the list endpoint, else the doc store) at
//     o.Rate, so the projectors fill the new generation too, then the
//     tombstones of the old one;
//  4. wait until the projection's replay consumer has no pending and no
//     unacknowledged event, and refresh both generations;
//  5. count the live documents of both; when the new one has fewer than
//     the old × (1 − o.Tolerance), stop with ErrRebuildShort: nothing is
//     swapped, and running again continues;
//  6. swap, in one step: the alias moves to the new generation and the
//     rebuild alias goes;
//  7. drop the old generation with o.DeleteOld, else keep it.
//
// Running it again after any failure is safe. It needs e.JetStream. When
// ctx ends it stops where it is, leaving the rebuild alias in place.
func (e *Env) rebuildGenerations(ctx context.Context, def *projections.Definition, g sink.Generations, o RebuildOptions) (_ *RebuildResult, err error) {
	if e.JetStream == nil {
		return nil, errors.New("replay: rebuild needs JetStream")
	}
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	alias := def.Elasticsearch.Alias
	rebuildAlias := alias + "-rebuild"
	res := &RebuildResult{Alias: alias, DryRun: o.DryRun}

	old, building, err := g.State(ctx)
	if err != nil {
		return nil, fmt.Errorf("replay: rebuild %s: %w", def.Name, err)
	}
	if len(old) == 0 {
		return nil, fmt.Errorf("replay: alias %s does not exist: start the projector with projection %s first (it creates %s-v1)", alias, def.Name, alias)
	}
	res.Old = old
	if err := g.RefreshGenerations(ctx, old); err != nil {
		return nil, err
	}
	counts, err := g.CountGenerations(ctx, old)
	if err != nil {
		return nil, err
	}
	var oldLive int64
	for _, o := range old {
		oldLive += counts[o]
	}
	say("rebuild %s: alias %s → %s (%d live documents)", def.Name, alias, strings.Join(old, ", "), oldLive)

	if err := e.checkEvents(ctx, def); err != nil {
		return nil, err
	}
	cons, err := e.JetStream.Consumer(ctx, e.own(), stream.ReplayConsumerName(def.Name))
	if err != nil {
		return nil, fmt.Errorf("replay: the replay consumer %s of stream %s: %w (the projector creates it when it starts with projection %s)",
			stream.ReplayConsumerName(def.Name), e.own(), err, def.Name)
	}

	// Once the new index exists, a stop leaves it for the next run.
	defer func() {
		if err != nil && res.New != "" && !res.Swapped && !o.DryRun && !errors.Is(err, ErrRebuildShort) && ctx.Err() == nil {
			if _, on, aerr := g.State(context.WithoutCancel(ctx)); aerr == nil && on == res.New {
				say("stopped: alias %s has not moved; %s and alias %s stay, and running the rebuild again continues (or give it up: DELETE /%s)",
					alias, res.New, rebuildAlias, res.New)
			}
		}
	}()

	// 1. The new index, or the one an earlier run left.
	if building != "" {
		res.New, res.Resumed = building, true
		say("continuing the rebuild into %s (alias %s is on it already)", res.New, rebuildAlias)
		if !o.DryRun {
			// An earlier run may have had another definition: its mapping
			// must be this one's (fields it lacks are added).
			if err := g.CheckBuilding(ctx); err != nil {
				return res, fmt.Errorf("replay: checking %s, left by an earlier rebuild, against this definition (when its mapping is another, give it up: DELETE /%s, and run the rebuild again): %w",
					res.New, res.New, err)
			}
		}
	} else if o.DryRun {
		if res.New, err = g.Next(ctx); err != nil {
			return nil, err
		}
		say("dry run: would create %s with the definition's mapping, and alias %s on it", res.New, rebuildAlias)
	} else {
		if res.New, err = g.Begin(ctx); err != nil {
			return nil, err
		}
		say("created %s with the definition's mapping, and alias %s on it", res.New, rebuildAlias)
	}

	// 2. Every projector writes both indices before anything is re-issued.
	settle := g.Settle()
	if o.DryRun {
		say("dry run: would wait %s so that every projector writes to both indices", settle)
	} else {
		say("waiting %s so that every projector writes to both indices", settle)
		if err := sleep(ctx, settle); err != nil {
			return res, err
		}
	}

	// 3. Every id again.
	rate := o.Rate
	if rate == 0 {
		rate = DefaultRate
	}
	if o.DryRun {
		say("dry run: counting the ids that would be re-issued")
	} else if rate < 0 {
		say("re-issuing every id, without a rate limit")
	} else {
		say("re-issuing every id, at most %.0f per second", rate)
	}
	// No checkpoint: a rebuild that stops re-issues every id again when it
	// is run again, since ids re-issued before its rebuild alias existed
	// (by another run of all) would be missing from the new index.
	all, err := e.All(ctx, def, FromAuto, Options{Rate: o.Rate, DryRun: o.DryRun, Notes: out, Progress: o.Progress})
	if all != nil {
		res.Reissued = all.Reissued
	}
	if err != nil {
		return res, err
	}
	// An entity deleted before every projector wrote the new index too is
	// in no list and no Redis scan, but the old index keeps its tombstone,
	// which keeps a late stale write from bringing it back. Re-issued, the
	// source's 404 writes that tombstone to the new index as well.
	if err := g.RefreshGenerations(ctx, old); err != nil {
		return res, err
	}
	res.Tombstones, err = e.reissueTombstones(ctx, def, g, old, ReissueOptions{Rate: o.Rate, DryRun: o.DryRun, RunID: newRunID()})
	if err != nil {
		return res, err
	}
	say("re-issued the %d tombstones of %s", res.Tombstones, strings.Join(old, ", "))
	if o.DryRun {
		say("dry run: would re-issue %d ids, wait for consumer %s to drain, compare the live documents of %s with %s's (%d) with tolerance %g, and swap alias %s onto %s",
			res.Reissued, stream.ReplayConsumerName(def.Name), res.New, strings.Join(old, ", "), oldLive, o.Tolerance, alias, res.New)
		res.OldCount = oldLive
		return res, nil
	}
	say("re-issued %d ids", res.Reissued)

	// 4. Wait until the projectors have written them.
	say("waiting for the replay consumer %s to drain", stream.ReplayConsumerName(def.Name))
	if err := waitDrained(ctx, cons, say, fmt.Sprintf("is a projector of %s running? A partial document (an optional source failing) keeps its event "+
		"until it is complete; a document that %s rejects (see the projectors' logs) keeps its event until alias %s is removed", def.Name, res.New, rebuildAlias)); err != nil {
		return res, err
	}
	indices := append(slices.Clone(old), res.New)
	if err := g.RefreshGenerations(ctx, indices); err != nil {
		return res, err
	}
	say("drained; refreshed %s", strings.Join(indices, " and "))

	// 5. Compare, counting both in one search right after the refresh: live
	// changes keep landing in both, and each index refreshes on its own.
	counts, err = g.CountGenerations(ctx, indices)
	if err != nil {
		return res, err
	}
	for _, o := range old {
		res.OldCount += counts[o]
	}
	res.NewCount = counts[res.New]
	say("live documents: %s %d, %s %d", strings.Join(old, ", "), res.OldCount, res.New, res.NewCount)
	if float64(res.NewCount) < float64(res.OldCount)*(1-o.Tolerance) {
		say("not swapping: %s lacks %d of the old index's %d live documents, more than the tolerance %g allows.\n"+
			"Alias %s still points at %s; %s and alias %s stay for inspection. "+
			"Run the rebuild again to continue it (with a larger --tolerance if the old index holds documents the source no longer has), "+
			"or give it up: DELETE /%s",
			res.New, res.OldCount-res.NewCount, res.OldCount, o.Tolerance, alias, strings.Join(old, ", "), res.New, rebuildAlias, res.New)
		return res, fmt.Errorf("replay: rebuild %s: %w: %d live documents in %s, %d in %s", def.Name, ErrRebuildShort, res.NewCount, res.New, res.OldCount, strings.Join(old, ", "))
	}

	// 6. Swap, in one step.
	if err := g.Swap(ctx, old, res.New); err != nil {
		return res, err
	}
	res.Swapped = true
	say("swapped: alias %s → %s (write index); alias %s removed", alias, res.New, rebuildAlias)

	// 7. The old index.
	if o.DeleteOld {
		if err := g.Drop(ctx, old); err != nil {
			return res, err
		}
		res.DeletedOld = true
		say("deleted %s", strings.Join(old, ", "))
	} else {
		say("kept %s, which no alias points at; delete it once it is no longer needed: DELETE /%s (curl -X DELETE \"$ES_URL/%s\")",
			strings.Join(old, ", "), strings.Join(old, ","), strings.Join(old, ","))
	}
	return res, nil
}

// drainPoll is how often the replay consumer is asked whether it drained.
const drainPoll = 250 * time.Millisecond

// waitDrained waits until cons has no pending and no unacknowledged event,
// telling how far it is every 5 s and, when nothing moves for 30 s, the hint.
func waitDrained(ctx context.Context, cons jetstream.Consumer, say func(string, ...any), hint string) error {
	var told, moved time.Time
	var last [2]uint64
	hinted := false
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("replay: replay consumer: %w", err)
		}
		now := [2]uint64{info.NumPending, uint64(info.NumAckPending)}
		if now == [2]uint64{} {
			return nil
		}
		if now != last || moved.IsZero() {
			last, moved = now, time.Now()
		}
		if time.Since(told) >= 5*time.Second {
			told = time.Now()
			say("  %d events pending, %d being worked on", now[0], now[1])
		}
		if !hinted && time.Since(moved) >= 30*time.Second {
			hinted = true
			say("  nothing has moved for 30s: %s", hint)
		}
		if err := sleep(ctx, drainPoll); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// reissueTombstones re-issues the ids of the tombstones in the generations
// gens, a page at a time, and returns how many.
func (e *Env) reissueTombstones(ctx context.Context, def *projections.Definition, g sink.Generations, gens []string, o ReissueOptions) (int64, error) {
	r := NewReissuer(e.JetStream, def, o)
	for _, gen := range gens {
		err := g.Tombstones(ctx, gen, func(ids []string) error {
			valid := slices.DeleteFunc(ids, func(id string) bool { return projections.ValidateID(id) != nil })
			return r.Reissue(ctx, valid)
		})
		if err != nil {
			return r.Done(), err
		}
	}
	return r.Done(), nil
}
