package replay

import (
	"cmp"
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
//     into a new generation with the fields it was opened with (the
//     projector's definition, not def): nothing is re-issued, and no source
//     is called.
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
	return nil, fmt.Errorf("replay: rebuild %s: the %s index can be neither rebuilt nor re-indexed", def.Name, cmp.Or(st.IndexName, "search"))
}

// rebuildReindex has an index that keeps its documents rebuild itself.
func rebuildReindex(ctx context.Context, def *projections.Definition, name string, idx sink.Reindexer, o RebuildOptions) (*RebuildResult, error) {
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	res := &RebuildResult{Alias: def.Name, DryRun: o.DryRun}
	if o.DryRun {
		fmt.Fprintf(out, "dry run: would re-index the %s index of %s from the documents it holds, with the fields of the definition the projector runs\n", name, def.Name)
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

// RebuildSteps are the steps of a rebuild of an index with generations
// (Elasticsearch), as replay rebuild --help tells them; %s is how long it
// waits for the projectors (sink.Generations.Settle).
const RebuildSteps = `  1. create <alias>-v<N+1> with the definition's mapping, and the alias
     <alias>-rebuild on it (if that alias exists, an earlier run stopped:
     continue with its index);
  2. wait %s, so that every projector writes every live change to both indices;
  3. re-issue every id (as replay all does: the list endpoint, else the doc
     store) at --rate, so the projectors fill the new index, then the ids of the
     old index's tombstones;
  4. wait until the replay consumer has drained, and refresh both indices;
  5. compare the live documents (tombstones left out): if the new index has
     fewer than the old × (1 − --tolerance), stop without swapping; the new
     index stays for inspection, and running the command again continues;
  6. in one step, move the alias to the new index and remove <alias>-rebuild;
  7. keep the old index (--keep-old, the default; the output says how to
     delete it) or delete it (--delete-old).`

// rebuildGenerations builds a new generation of def's index behind its
// alias, in the steps of RebuildSteps, each told to o.Out: begin, settle,
// reissue, drain, compare, swap, dropOld. Run it with the NEW definition
// while the projectors still run the old one, and deploy the new definition
// once it has swapped: the projectors check the mapping of the index behind
// the alias only, which is the new one from then on.
//
// Running it again after any failure is safe. It needs e.JetStream. When
// ctx ends it stops where it is, leaving the rebuild alias in place. With
// o.DryRun it says what it would do and stops after counting the ids.
func (e *Env) rebuildGenerations(ctx context.Context, def *projections.Definition, g sink.Generations, o RebuildOptions) (_ *RebuildResult, err error) {
	if e.JetStream == nil {
		return nil, errors.New("replay: rebuild needs JetStream")
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	out := o.Out
	alias := def.Elasticsearch.Alias
	r := &rebuild{e: e, def: def, g: g, o: o, alias: alias, rebuildAlias: alias + "-rebuild", // elasticindex.RebuildSuffix, for messages: replay knows the stores by sink's contracts only
		say: func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) },
		res: &RebuildResult{Alias: alias, DryRun: o.DryRun}}
	if err := r.start(ctx); err != nil {
		return nil, err
	}
	// Once the new index exists, a stop leaves it for the next run.
	defer func() {
		if err != nil && r.res.New != "" && !r.res.Swapped && !o.DryRun && !errors.Is(err, ErrRebuildShort) && ctx.Err() == nil {
			if _, on, aerr := g.State(context.WithoutCancel(ctx)); aerr == nil && on == r.res.New {
				r.say("stopped: alias %s has not moved; %s and alias %s stay, and running the rebuild again continues (or give it up: DELETE /%s)",
					alias, r.res.New, r.rebuildAlias, r.res.New)
			}
		}
	}()
	for _, step := range []func(context.Context) error{r.begin, r.settle, r.reissue} {
		if err := step(ctx); err != nil {
			return r.result(err)
		}
	}
	if o.DryRun {
		r.say("dry run: would re-issue %d ids, wait for consumer %s to drain, compare the live documents of %s with %s's (%d) with tolerance %g, and swap alias %s onto %s",
			r.res.Reissued, stream.ReplayConsumerName(def.Name), r.res.New, strings.Join(r.res.Old, ", "), r.oldLive, o.Tolerance, alias, r.res.New)
		r.res.OldCount = r.oldLive
		return r.res, nil
	}
	for _, step := range []func(context.Context) error{r.drain, r.compare, r.swap, r.dropOld} {
		if err := step(ctx); err != nil {
			return r.result(err)
		}
	}
	return r.res, nil
}

// rebuild is one run of rebuildGenerations.
type rebuild struct {
	e                   *Env
	def                 *projections.Definition
	g                   sink.Generations
	o                   RebuildOptions
	alias, rebuildAlias string
	say                 func(format string, args ...any)
	res                 *RebuildResult
	building            string // the generation an earlier run left, if any
	oldLive             int64  // the live documents of the old generations at the start
	cons                jetstream.Consumer
}

// result is what rebuildGenerations returns when a step failed: the result
// so far once the new generation is known.
func (r *rebuild) result(err error) (*RebuildResult, error) {
	if r.res.New == "" {
		return nil, err
	}
	return r.res, err
}

// start finds the generations and the replay consumer, and says where the
// alias points.
func (r *rebuild) start(ctx context.Context) error {
	old, building, err := r.g.State(ctx)
	if err != nil {
		return fmt.Errorf("replay: rebuild %s: %w", r.def.Name, err)
	}
	if len(old) == 0 {
		return fmt.Errorf("replay: alias %s does not exist: start the projector with projection %s first (it creates %s-v1)", r.alias, r.def.Name, r.alias)
	}
	r.res.Old, r.building = old, building
	if err := r.g.RefreshGenerations(ctx, old); err != nil {
		return err
	}
	counts, err := r.g.CountGenerations(ctx, old)
	if err != nil {
		return err
	}
	for _, o := range old {
		r.oldLive += counts[o]
	}
	r.say("rebuild %s: alias %s → %s (%d live documents)", r.def.Name, r.alias, strings.Join(old, ", "), r.oldLive)
	if err := r.e.checkEvents(ctx, r.def); err != nil {
		return err
	}
	name := stream.ReplayConsumerName(r.def.Name)
	if r.cons, err = r.e.JetStream.Consumer(ctx, r.e.own(), name); err != nil {
		return fmt.Errorf("replay: the replay consumer %s of stream %s: %w (the projector creates it when it starts with projection %s)",
			name, r.e.own(), err, r.def.Name)
	}
	return nil
}

// begin is step 1: the new generation, or the one an earlier run left.
func (r *rebuild) begin(ctx context.Context) (err error) {
	switch {
	case r.building != "":
		r.res.New, r.res.Resumed = r.building, true
		r.say("continuing the rebuild into %s (alias %s is on it already)", r.res.New, r.rebuildAlias)
		if r.o.DryRun {
			return nil
		}
		// An earlier run may have had another definition: its mapping must
		// be this one's (fields it lacks are added).
		if err := r.g.CheckBuilding(ctx); err != nil {
			return fmt.Errorf("replay: checking %s, left by an earlier rebuild, against this definition (when its mapping is another, give it up: DELETE /%s, and run the rebuild again): %w",
				r.res.New, r.res.New, err)
		}
	case r.o.DryRun:
		if r.res.New, err = r.g.Next(ctx); err != nil {
			return err
		}
		r.say("dry run: would create %s with the definition's mapping, and alias %s on it", r.res.New, r.rebuildAlias)
	default:
		if r.res.New, err = r.g.Begin(ctx); err != nil {
			return err
		}
		r.say("created %s with the definition's mapping, and alias %s on it", r.res.New, r.rebuildAlias)
	}
	return nil
}

// settle is step 2: every projector writes both generations before
// anything is re-issued.
func (r *rebuild) settle(ctx context.Context) error {
	if r.o.DryRun {
		r.say("dry run: would wait %s so that every projector writes to both indices", r.g.Settle())
		return nil
	}
	r.say("waiting %s so that every projector writes to both indices", r.g.Settle())
	return sleep(ctx, r.g.Settle())
}

// reissue is step 3: every id again, then the old generations' tombstones.
func (r *rebuild) reissue(ctx context.Context) error {
	rate := cmp.Or(r.o.Rate, DefaultRate)
	switch {
	case r.o.DryRun:
		r.say("dry run: counting the ids that would be re-issued")
	case rate < 0:
		r.say("re-issuing every id, without a rate limit")
	default:
		r.say("re-issuing every id, at most %.0f per second", rate)
	}
	// No checkpoint: a rebuild that stops re-issues every id again when it
	// is run again, since ids re-issued before its rebuild alias existed
	// (by another run of all) would be missing from the new index.
	all, err := r.e.All(ctx, r.def, FromAuto, Options{Rate: r.o.Rate, DryRun: r.o.DryRun, Notes: r.o.Out, Progress: r.o.Progress})
	if all != nil {
		r.res.Reissued = all.Reissued
	}
	if err != nil {
		return err
	}
	// An entity deleted before every projector wrote the new index too is
	// in no list and no doc store, but the old index keeps its tombstone,
	// which keeps a late stale write from bringing it back. Re-issued, the
	// source's 404 writes that tombstone to the new index as well.
	if err := r.g.RefreshGenerations(ctx, r.res.Old); err != nil {
		return err
	}
	if r.res.Tombstones, err = r.e.reissueTombstones(ctx, r.def, r.g, r.res.Old, ReissueOptions{Rate: r.o.Rate, DryRun: r.o.DryRun, RunID: newRunID()}); err != nil {
		return err
	}
	r.say("re-issued the %d tombstones of %s", r.res.Tombstones, strings.Join(r.res.Old, ", "))
	if !r.o.DryRun {
		r.say("re-issued %d ids", r.res.Reissued)
	}
	return nil
}

// drain is step 4: wait until the projectors have written them, and
// refresh both generations.
func (r *rebuild) drain(ctx context.Context) error {
	r.say("waiting for the replay consumer %s to drain", stream.ReplayConsumerName(r.def.Name))
	if err := waitDrained(ctx, r.cons, r.say, fmt.Sprintf("is a projector of %s running? A partial document (an optional source failing) keeps its event "+
		"until it is complete; a document that %s rejects (see the projectors' logs) keeps its event until alias %s is removed", r.def.Name, r.res.New, r.rebuildAlias)); err != nil {
		return err
	}
	gens := append(slices.Clone(r.res.Old), r.res.New)
	if err := r.g.RefreshGenerations(ctx, gens); err != nil {
		return err
	}
	r.say("drained; refreshed %s", strings.Join(gens, " and "))
	return nil
}

// compare is step 5: count both in one search right after the refresh (live
// changes keep landing in both, and each refreshes on its own), and stop
// with ErrRebuildShort when the new one lacks more than the tolerance.
func (r *rebuild) compare(ctx context.Context) error {
	old, res := r.res.Old, r.res
	counts, err := r.g.CountGenerations(ctx, append(slices.Clone(old), res.New))
	if err != nil {
		return err
	}
	for _, o := range old {
		res.OldCount += counts[o]
	}
	res.NewCount = counts[res.New]
	r.say("live documents: %s %d, %s %d", strings.Join(old, ", "), res.OldCount, res.New, res.NewCount)
	if float64(res.NewCount) >= float64(res.OldCount)*(1-r.o.Tolerance) {
		return nil
	}
	r.say("not swapping: %s lacks %d of the old index's %d live documents, more than the tolerance %g allows.\n"+
		"Alias %s still points at %s; %s and alias %s stay for inspection. "+
		"Run the rebuild again to continue it (with a larger --tolerance if the old index holds documents the source no longer has), "+
		"or give it up: DELETE /%s",
		res.New, res.OldCount-res.NewCount, res.OldCount, r.o.Tolerance, r.alias, strings.Join(old, ", "), res.New, r.rebuildAlias, res.New)
	return fmt.Errorf("replay: rebuild %s: %w: %d live documents in %s, %d in %s", r.def.Name, ErrRebuildShort, res.NewCount, res.New, res.OldCount, strings.Join(old, ", "))
}

// swap is step 6, in one step.
func (r *rebuild) swap(ctx context.Context) error {
	if err := r.g.Swap(ctx, r.res.Old, r.res.New); err != nil {
		return err
	}
	r.res.Swapped = true
	r.say("swapped: alias %s → %s (write index); alias %s removed", r.alias, r.res.New, r.rebuildAlias)
	return nil
}

// dropOld is step 7: the old generations go with o.DeleteOld, else stay.
func (r *rebuild) dropOld(ctx context.Context) error {
	old := r.res.Old
	if !r.o.DeleteOld {
		r.say("kept %s, which no alias points at; delete it once it is no longer needed: DELETE /%s (curl -X DELETE \"$ES_URL/%s\")",
			strings.Join(old, ", "), strings.Join(old, ","), strings.Join(old, ","))
		return nil
	}
	if err := r.g.Drop(ctx, old); err != nil {
		return err
	}
	r.res.DeletedOld = true
	r.say("deleted %s", strings.Join(old, ", "))
	return nil
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
