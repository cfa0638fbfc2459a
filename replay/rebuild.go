package replay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidwall/gjson"

	"github.com/readside/readside/internal/sink/elasticindex"
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
}

// RebuildSettle is how long Rebuild waits after creating the rebuild alias
// before it re-issues anything: twice elasticindex.RebuildDiscovery, the
// longest a projector takes to see the alias, so that by then every projector
// writes both indices (a write that started before has had as long again to
// land).
const RebuildSettle = 2 * elasticindex.RebuildDiscovery

// Rebuild builds a new index for def behind its alias without downtime; it
// is also how a changed mapping is rolled out. Run it with the NEW
// definition while the projectors still run the old one, and deploy the new
// definition once it has swapped: the projectors check the mapping of the
// index behind the alias only, which is the new one from then on.
//
// Its steps, each told to o.Out:
//  1. create "<alias>-v<N+1>" (N: the highest version among the indices
//     named "<alias>-v<N>") with the definition's mapping and the alias
//     "<alias>-rebuild" on it; when that alias exists already, continue with
//     its index (an earlier run stopped);
//  2. wait RebuildSettle, so that every projector writes every live change
//     to both indices (see elasticindex.Index.Write);
//  3. re-issue every id (see All: the list endpoint, else the ids in Redis)
//     at o.Rate, so the projectors fill the new index too;
//  4. wait until the projection's replay consumer has no pending and no
//     unacknowledged event, and refresh both indices;
//  5. count the live documents of both; when the new index has fewer than
//     the old × (1 − o.Tolerance), stop with ErrRebuildShort: nothing is
//     swapped, and running again continues;
//  6. in one atomic _aliases call, move the alias to the new index (as its
//     write index) and remove the rebuild alias;
//  7. delete the old index with o.DeleteOld, else keep it.
//
// Running it again after any failure is safe. It needs e.Elastic and
// e.JetStream, and e.Redis when the ids come from Redis. When ctx ends it
// stops where it is, leaving the rebuild alias in place.
func (e *Env) Rebuild(ctx context.Context, def *projections.Definition, o RebuildOptions) (_ *RebuildResult, err error) {
	if e.Elastic == nil || e.JetStream == nil {
		return nil, errors.New("replay: rebuild needs Elasticsearch and JetStream (the embedded search index re-indexes itself when its definition changes)")
	}
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	alias := def.Elasticsearch.Alias
	rebuildAlias := alias + elasticindex.RebuildSuffix
	res := &RebuildResult{Alias: alias, DryRun: o.DryRun}

	old, err := e.aliasIndices(ctx, alias)
	if err != nil {
		return nil, err
	}
	if len(old) == 0 {
		return nil, fmt.Errorf("replay: alias %s does not exist: start the projector with projection %s first (it creates %s-v1)", alias, def.Name, alias)
	}
	res.Old = old
	building, err := e.aliasIndices(ctx, rebuildAlias)
	if err != nil {
		return nil, err
	}
	switch {
	case len(building) > 1:
		return nil, fmt.Errorf("replay: alias %s points at %d indices (%s): remove it from all but one", rebuildAlias, len(building), strings.Join(building, ", "))
	case len(building) == 1 && slices.Contains(old, building[0]):
		return nil, fmt.Errorf("replay: alias %s points at %s, which alias %s points at too: remove %s", rebuildAlias, building[0], alias, rebuildAlias)
	}
	if err := e.refresh(ctx, old); err != nil {
		return nil, err
	}
	counts, err := e.liveCounts(ctx, old)
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
			if on, aerr := e.aliasIndices(context.WithoutCancel(ctx), rebuildAlias); aerr == nil && slices.Equal(on, []string{res.New}) {
				say("stopped: alias %s has not moved; %s and alias %s stay, and running the rebuild again continues (or give it up: DELETE /%s)",
					alias, res.New, rebuildAlias, res.New)
			}
		}
	}()

	// 1. The new index, or the one an earlier run left.
	if len(building) == 1 {
		res.New, res.Resumed = building[0], true
		say("continuing the rebuild into %s (alias %s is on it already)", res.New, rebuildAlias)
		if !o.DryRun {
			// An earlier run may have had another definition: its mapping
			// must be this one's (fields it lacks are added).
			_, err := elasticindex.New(e.Elastic, elasticindex.Options{Alias: rebuildAlias, Mapping: def.Mapping()}).CheckMapping(ctx)
			var conflict *elasticindex.MappingConflictError
			if errors.As(err, &conflict) {
				return res, fmt.Errorf("replay: %s, left by an earlier rebuild, has another mapping than this definition: give it up (DELETE /%s) and run the rebuild again: %w",
					res.New, res.New, err)
			}
			if err != nil {
				return res, err
			}
		}
	} else {
		res.New, err = e.nextIndex(ctx, alias, old)
		if err != nil {
			return nil, err
		}
		if o.DryRun {
			say("dry run: would create %s with the definition's mapping, and alias %s on it", res.New, rebuildAlias)
		} else {
			if err := e.createRebuildIndex(ctx, def, res.New, old[0]); err != nil {
				return nil, err
			}
			say("created %s with the definition's mapping, and alias %s on it", res.New, rebuildAlias)
		}
	}

	// 2. Every projector writes both indices before anything is re-issued.
	settle := RebuildSettle
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
	if err := e.refresh(ctx, old); err != nil {
		return res, err
	}
	res.Tombstones, err = e.reissueTombstones(ctx, def, old, ReissueOptions{Rate: o.Rate, DryRun: o.DryRun, RunID: newRunID()})
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
	if err := e.refresh(ctx, indices); err != nil {
		return res, err
	}
	say("drained; refreshed %s", strings.Join(indices, " and "))

	// 5. Compare, counting both in one search right after the refresh: live
	// changes keep landing in both, and each index refreshes on its own.
	counts, err = e.liveCounts(ctx, indices)
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
	if err := e.swap(ctx, alias, old, res.New); err != nil {
		return res, err
	}
	res.Swapped = true
	say("swapped: alias %s → %s (write index); alias %s removed", alias, res.New, rebuildAlias)

	// 7. The old index.
	if o.DeleteOld {
		if err := e.deleteIndices(ctx, old); err != nil {
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

// aliasIndices lists the indices alias points at, sorted; none when it does
// not exist.
func (e *Env) aliasIndices(ctx context.Context, alias string) ([]string, error) {
	g := e.Elastic.Indices.GetAlias
	res, err := g(g.WithContext(ctx), g.WithName(alias))
	if err != nil {
		return nil, fmt.Errorf("replay: elasticsearch alias %s: %w", alias, err)
	}
	if res.StatusCode == http.StatusNotFound {
		res.Body.Close()
		return nil, nil
	}
	body, err := esAnswer("alias", alias)(res, nil)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("replay: elasticsearch alias %s: %w", alias, err)
	}
	return slices.Sorted(maps.Keys(m)), nil
}

// nextIndex names the new index: "<alias>-v<N+1>", N the highest version
// among the indices behind the alias and those named "<alias>-v<digits>"
// (a kept old index, or a rebuild given up on, must not be reused).
func (e *Env) nextIndex(ctx context.Context, alias string, behind []string) (string, error) {
	g := e.Elastic.Indices.Get
	body, err := esAnswer("indices", alias+"-v*")(g([]string{alias + "-v*"}, g.WithContext(ctx),
		g.WithExpandWildcards("all"), g.WithFilterPath("*.settings.index.provided_name")))
	if err != nil {
		return "", err
	}
	var named map[string]json.RawMessage
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &named); err != nil {
			return "", fmt.Errorf("replay: elasticsearch indices %s-v*: %w", alias, err)
		}
	}
	n := 0
	for _, index := range append(slices.Collect(maps.Keys(named)), behind...) {
		if v, ok := indexVersion(alias, index); ok {
			n = max(n, v)
		}
	}
	return alias + "-v" + strconv.Itoa(n+1), nil
}

// indexVersion reads N of an index named "<alias>-v<N>".
func indexVersion(alias, index string) (int, bool) {
	digits, ok := strings.CutPrefix(index, alias+"-v")
	if !ok || digits == "" || strings.Trim(digits, "0123456789") != "" {
		return 0, false
	}
	v, err := strconv.Atoi(digits)
	return v, err == nil
}

// createRebuildIndex creates index with the definition's mapping (and the
// tombstone field, as elasticindex.Index.Ensure does), the shard and replica
// counts of like, and the rebuild alias, in one call. When a concurrent run
// created it first, with the rebuild alias, that is fine.
func (e *Env) createRebuildIndex(ctx context.Context, def *projections.Definition, index, like string) error {
	mapping := def.Mapping()
	props := mapping["properties"].(map[string]any) // Mapping returns a fresh map
	props[elasticindex.DeletedField] = map[string]any{"type": "boolean"}
	body := map[string]any{
		"mappings": mapping,
		"aliases":  map[string]any{def.Elasticsearch.Alias + elasticindex.RebuildSuffix: map[string]any{"is_write_index": true}},
	}
	gs := e.Elastic.Indices.GetSettings
	settings, err := esAnswer("settings", like)(gs(gs.WithContext(ctx), gs.WithIndex(like),
		gs.WithFilterPath("*.settings.index.number_of_shards", "*.settings.index.number_of_replicas")))
	if err != nil {
		return err
	}
	s := map[string]any{}
	for _, k := range []string{"number_of_shards", "number_of_replicas"} {
		if v := gjson.GetBytes(settings, gjson.Escape(like)+".settings.index."+k); v.Exists() {
			s[k] = v.String()
		}
	}
	if len(s) > 0 {
		body["settings"] = s
	}
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("replay: index %s: %w", index, err)
	}
	c := e.Elastic.Indices.Create
	res, err := c(index, c.WithContext(ctx), c.WithBody(bytes.NewReader(b)))
	if err != nil {
		return fmt.Errorf("replay: creating index %s: %w", index, err)
	}
	answer, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return fmt.Errorf("replay: creating index %s: %w", index, err)
	}
	if !res.IsError() {
		return nil
	}
	if gjson.GetBytes(answer, "error.type").Str == "resource_already_exists_exception" {
		if on, err := e.aliasIndices(ctx, def.Elasticsearch.Alias+elasticindex.RebuildSuffix); err == nil && slices.Equal(on, []string{index}) {
			return nil // a concurrent run of the rebuild
		}
		return fmt.Errorf("replay: index %s exists already, without alias %s%s: delete it, or add the alias to continue a rebuild into it",
			index, def.Elasticsearch.Alias, elasticindex.RebuildSuffix)
	}
	return fmt.Errorf("replay: creating index %s: %s: %s", index, res.Status(), gjson.GetBytes(answer, "error.reason").Str)
}

// reissueTombstones re-issues the ids of the tombstones in indices, a page
// at a time, and returns how many.
func (e *Env) reissueTombstones(ctx context.Context, def *projections.Definition, indices []string, o ReissueOptions) (int64, error) {
	r := NewReissuer(e.JetStream, def, o)
	err := e.pitIDs(ctx, indices, map[string]any{"term": map[string]any{elasticindex.DeletedField: true}}, func(ids []string) error {
		valid := slices.DeleteFunc(ids, func(id string) bool { return projections.ValidateID(id) != nil })
		return r.Reissue(ctx, valid)
	})
	return r.Done(), err
}

// liveQuery matches the documents that are not tombstones.
var liveQuery = map[string]any{"bool": map[string]any{"must_not": []any{map[string]any{"term": map[string]any{elasticindex.DeletedField: true}}}}}

// liveCounts counts the documents that are not tombstones in each of
// indices, in one search (a terms aggregation on _index).
func (e *Env) liveCounts(ctx context.Context, indices []string) (map[string]int64, error) {
	body, err := e.esSearch(ctx, strings.Join(indices, ","), map[string]any{
		"size": 0, "track_total_hits": true, "query": liveQuery,
		"aggs": map[string]any{"by": map[string]any{"terms": map[string]any{"field": "_index", "size": len(indices) + 1}}},
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(indices))
	for _, b := range gjson.GetBytes(body, "aggregations.by.buckets").Array() {
		out[b.Get("key").Str] = b.Get("doc_count").Int()
	}
	return out, nil
}

func (e *Env) refresh(ctx context.Context, indices []string) error {
	r := e.Elastic.Indices.Refresh
	_, err := esAnswer("refresh", strings.Join(indices, ","))(r(r.WithContext(ctx), r.WithIndex(indices...)))
	return err
}

// swap moves alias from old to index and removes the rebuild alias, in one
// atomic call; every removal must find its alias, so a concurrent change
// fails the whole call rather than leave a half swap.
func (e *Env) swap(ctx context.Context, alias string, old []string, index string) error {
	var actions []any
	for _, o := range old {
		actions = append(actions, map[string]any{"remove": map[string]any{"index": o, "alias": alias, "must_exist": true}})
	}
	actions = append(actions,
		map[string]any{"add": map[string]any{"index": index, "alias": alias, "is_write_index": true}},
		map[string]any{"remove": map[string]any{"index": index, "alias": alias + elasticindex.RebuildSuffix, "must_exist": true}})
	b, _ := json.Marshal(map[string]any{"actions": actions})
	u := e.Elastic.Indices.UpdateAliases
	_, err := esAnswer("swap of", alias)(u(bytes.NewReader(b), u.WithContext(ctx)))
	return err
}

func (e *Env) deleteIndices(ctx context.Context, indices []string) error {
	d := e.Elastic.Indices.Delete
	_, err := esAnswer("delete", strings.Join(indices, ","))(d(indices, d.WithContext(ctx)))
	return err
}
