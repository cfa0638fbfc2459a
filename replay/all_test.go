package replay_test

import (
	"cmp"
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/replay"
)

// After an outage that lost both stores, replay all restores every document
// from the list endpoint, which knows every entity whatever the stores lost.
func TestAllRestoresStoresAfterOutage(t *testing.T) {
	const n = 500
	r, _ := newSampleRig(t, n)
	r.start()
	ids := idSpan(1, n)
	r.publish(withPrefix("shop.changed.", ids)...)
	r.waitConverged(ids, 60*time.Second, "projected")

	// The outage: Redis loses the namespace's keys (documents and reverse
	// lookups), Elasticsearch the index behind the alias.
	ctx := rigCtx(t)
	t.Run("outage", func(t *testing.T) { testenv.CleanRedis(t, r.rdb, r.ns) }) // deletes when the subtest ends
	res, err := r.es.Indices.Delete([]string{r.def.Elasticsearch.Alias + "-v1"}, r.es.Indices.Delete.WithContext(ctx))
	if err != nil || res.IsError() {
		t.Fatalf("deleting the index: %v %v", err, res)
	}
	res.Body.Close()
	if _, err := r.redis.Get(ctx, "1"); !errors.Is(err, sink.ErrNotFound) {
		t.Fatalf("Redis still has shop 1: %v", err)
	}
	// Deleting the index deleted its alias too, and the projector writes
	// with require_alias: an operator restarts the projector, which creates
	// the index and alias again at start. Ensure is that step.
	if err := r.elastic.Ensure(ctx); err != nil {
		t.Fatal(err)
	}

	before := r.lastSeq()
	cps := replay.NewCheckpoints(t.TempDir())
	var notes strings.Builder
	got, err := r.env.All(ctx, r.def, replay.FromAuto, replay.Options{Rate: -1, Checkpoints: cps, Notes: &notes})
	if err != nil {
		t.Fatal(err)
	}
	if got.Reissued != n || got.Invalid != 0 || !strings.Contains(got.Source, "list endpoint of source shop") {
		t.Errorf("All = %+v, want %d re-issued from the list endpoint", got, n)
	}
	if !strings.Contains(notes.String(), "ids from the list endpoint") {
		t.Errorf("notes %q do not say where the ids come from", notes.String())
	}
	if replayed := r.replayed(before); len(replayed) != n {
		t.Errorf("%d events on the replay subject, want %d", len(replayed), n)
	}
	r.waitConverged(ids, 60*time.Second, "replayed")
	if entries, _ := os.ReadDir(cps.Dir()); len(entries) != 0 {
		t.Errorf("a completed run left %d files in the state directory", len(entries))
	}
}

// Without a list endpoint, replay all finds the ids in the stores: Redis
// keys or the Elasticsearch index, skipping tombstones either way.
func TestAllFromTheStores(t *testing.T) {
	r, api := newShopRig(t)
	r.start()
	ids := idSpan(1, 120)
	for _, id := range ids {
		api.Put(id, "shop "+id)
	}
	deleted := []string{"7", "8", "50", "99"}
	for _, id := range deleted {
		api.Delete(id)
	}
	r.publish(withPrefix(r.ns+".shop.changed.", ids)...)
	r.waitConverged(ids, 30*time.Second, "projected")
	ctx := rigCtx(t)
	if err := r.elastic.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	// A key under the pattern whose id is not valid: counted, never re-issued.
	if err := r.rdb.Set(ctx, r.ns+":shop:bad id", "00000000000000000001d{}", 0).Err(); err != nil {
		t.Fatal(err)
	}
	live := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return slices.Contains(deleted, id) })
	slices.Sort(live)

	if _, err := r.env.All(ctx, r.def, replay.FromList, replay.Options{}); err == nil || !strings.Contains(err.Error(), "no list endpoint") {
		t.Errorf("All from the list endpoint of a definition without one: %v", err)
	}
	for _, tc := range []struct {
		from       replay.Origin
		source     string
		invalid    int64
		tombstones int64
	}{
		{replay.FromAuto, "the redis store (a scan; tombstones skipped)", 1, 4},
		{replay.FromIndex, "the elasticsearch store (a scan; tombstones skipped)", 0, 4},
	} {
		t.Run(cmp.Or(string(tc.from), "auto"), func(t *testing.T) {
			before := r.lastSeq()
			got, err := r.env.All(ctx, r.def, tc.from, replay.Options{Rate: -1})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(got.Source, tc.source) || got.Reissued != int64(len(live)) || got.Invalid != tc.invalid || got.Tombstones != tc.tombstones {
				t.Errorf("All = %+v\nwant source %q, %d re-issued, %d invalid, %d tombstones", got, tc.source, len(live), tc.invalid, tc.tombstones)
			}
			replayed := r.replayed(before)
			slices.Sort(replayed)
			if !slices.Equal(replayed, live) {
				t.Errorf("re-issued %d ids %v\nwant the %d live ones %v", len(replayed), replayed, len(live), live)
			}
		})
	}
}

// An interrupted replay all continues where it stopped: every id is
// re-issued exactly once overall, because the resumed run keeps the run id
// and JetStream drops the ids both processes published; the checkpoint is
// gone at the end.
func TestAllInterruptAndResume(t *testing.T) {
	const n = 3000
	r, _ := newSampleRig(t, n)
	cps := replay.NewCheckpoints(t.TempDir())
	o := replay.Options{Rate: 2000, Checkpoints: cps}

	// Interrupt it after about a second, once it is well under way (what
	// SIGINT does to the command: its ctx ends).
	ctx, cancel := context.WithCancel(rigCtx(t))
	defer cancel()
	o.Progress = interrupter{after: time.Second, done: 500, cancel: cancel}
	first, err := r.env.All(ctx, r.def, replay.FromList, o)
	if !errors.Is(err, replay.ErrInterrupted) || !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted All: %v, want ErrInterrupted", err)
	}
	if first.Reissued == 0 || first.Reissued >= n || first.Checkpoint == "" {
		t.Fatalf("interrupted All = %+v, want some of %d ids and a checkpoint", first, n)
	}
	if _, err := os.Stat(first.Checkpoint); err != nil {
		t.Fatalf("no checkpoint: %v", err)
	}
	// The events of the chunk in flight when the run stopped are stored, but
	// not yet in the checkpoint: the resumed run publishes them again.
	overlap := len(r.replayed(0)) - int(first.Reissued)
	t.Logf("interrupted after %d ids (%d more published, which the resumed run repeats); checkpoint %s", first.Reissued, overlap, first.Checkpoint)

	var notes strings.Builder
	o.Notes, o.Progress = &notes, nil
	second, err := r.env.All(rigCtx(t), r.def, replay.FromList, o)
	if err != nil {
		t.Fatal(err)
	}
	if !second.Resumed || second.Before.Reissued != first.Reissued || second.Reissued != n {
		t.Errorf("resumed All = %+v, want it to continue after %d and total %d", second, first.Reissued, n)
	}
	if !strings.Contains(notes.String(), "resuming the run") {
		t.Errorf("the resumed run did not say so: %q", notes.String())
	}
	replayed := r.replayed(0)
	distinct := slices.Compact(slices.Sorted(slices.Values(replayed)))
	if len(replayed) != n || len(distinct) != n {
		t.Errorf("the replay subject holds %d events for %d distinct ids, want %d each once", len(replayed), len(distinct), n)
	}
	if _, err := os.Stat(first.Checkpoint); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the checkpoint is still there after the run completed: %v", err)
	}
}

// interrupter is a Reporter that cancels the run once it has run for after
// and done at least done.
type interrupter struct {
	after  time.Duration
	done   int64
	cancel context.CancelFunc
}

func (i interrupter) Report(m *replay.Meter, stop <-chan struct{}) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if m.Elapsed() >= i.after && m.Done() >= i.done {
				i.cancel()
			}
		}
	}
}

func TestParseOrigin(t *testing.T) {
	for in, want := range map[string]replay.Origin{"": replay.FromAuto, "auto": replay.FromAuto, "list": replay.FromList,
		"Redis": replay.FromDocs, "docs": replay.FromDocs, "es": replay.FromIndex, "elasticsearch": replay.FromIndex, "index": replay.FromIndex} {
		if got, err := replay.ParseOrigin(in); err != nil || got != want {
			t.Errorf("ParseOrigin(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := replay.ParseOrigin("kafka"); err == nil || !strings.Contains(err.Error(), "auto, list, docs (redis) or index (elasticsearch)") {
		t.Errorf("ParseOrigin(kafka): %v", err)
	}
}
