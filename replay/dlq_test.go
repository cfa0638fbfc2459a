package replay_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/readside/readside/replay"
)

// The dead-letter round trip: a source refuses some ids (400), their events
// are dead-lettered; --list groups them by reason; once the source is fixed,
// replay dlq re-issues them, they converge, and their entries are gone from
// the dead-letter stream. An entry without a valid id is kept and listed,
// until --purge.
func TestDLQRoundTrip(t *testing.T) {
	r, api := newShopRig(t)
	ids := idSpan(1, 30)
	rejected := []string{"3", "9", "14", "21", "27"}
	for _, id := range ids {
		api.Put(id, "shop "+id)
	}
	for _, id := range rejected {
		api.Reject(id, 400)
	}
	r.start()
	r.publish(withPrefix(r.ns+".shop.changed.", ids)...)
	if _, err := r.js.Publish(rigCtx(t), r.ns+".shop.events", []byte(`{"shopId": null}`)); err != nil {
		t.Fatal(err)
	}
	good := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return slices.Contains(rejected, id) })
	r.waitConverged(good, 30*time.Second, "the accepted ids")
	deadline := time.Now().Add(20 * time.Second)
	for r.deadLetters() < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("%d dead-letter entries after 20s, want 6", r.deadLetters())
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx := rigCtx(t)

	// --list groups the entries by reason, the id replaced by {id}.
	for _, projection := range []string{r.def.Name, ""} {
		groups, err := r.env.ListDLQ(ctx, projection)
		if err != nil {
			t.Fatal(err)
		}
		if len(groups) != 2 {
			t.Fatalf("ListDLQ(%q) = %+v, want 2 groups", projection, groups)
		}
		g400, gBody := groups[0], groups[1]
		if g400.Projection != r.def.Name || g400.Count != 5 || !strings.Contains(g400.Reason, "/shops/{id}: status 400") ||
			len(g400.Examples) != 3 || !slices.Contains(rejected, g400.Examples[0]) || g400.First.After(g400.Last) || g400.First.IsZero() {
			t.Errorf("the 400 group = %+v", g400)
		}
		if gBody.Count != 1 || !strings.Contains(gBody.Reason, `"shopId" is null`) || !slices.Equal(gBody.Examples, []string{"subject " + r.ns + ".shop.events"}) {
			t.Errorf("the bad body group = %+v", gBody)
		}
		var out bytes.Buffer
		replay.WriteDLQGroups(&out, groups)
		if !strings.Contains(out.String(), r.def.Name+": 6 entries") || !strings.Contains(out.String(), "    5  ") {
			t.Errorf("WriteDLQGroups:\n%s", out.String())
		}
	}

	// A reason no entry has, and a dry run, change nothing.
	got, err := r.env.DLQ(ctx, r.def, replay.DLQOptions{Reason: "no such reason"}, replay.Options{Rate: -1})
	if err != nil || got.Events != 0 || got.Reissued != 0 {
		t.Fatalf("DLQ with an unknown reason = %+v, %v", got, err)
	}
	before := r.lastSeq()
	got, err = r.env.DLQ(ctx, r.def, replay.DLQOptions{Reason: "STATUS 400"}, replay.Options{DryRun: true})
	if err != nil || got.Reissued != 5 || got.Deleted != 5 || got.Events != 5 || r.deadLetters() != 6 || len(r.replayed(before)) != 0 {
		t.Fatalf("dry run = %+v, %v; %d entries left", got, err, r.deadLetters())
	}

	// Fixed: replay dlq re-issues the five, deletes their entries, keeps the one without an id.
	for _, id := range rejected {
		api.Reject(id, 0)
	}
	got, err = r.env.DLQ(ctx, r.def, replay.DLQOptions{}, replay.Options{Rate: -1})
	if err != nil {
		t.Fatal(err)
	}
	want := replay.Counts{Reissued: 5, Events: 6, Deleted: 5, Kept: 1, Invalid: 1}
	if got.Counts != want || len(got.Problems) != 1 || !strings.Contains(got.Problems[0].String(), `cannot re-issue: the body's "shopId" is null`) {
		t.Errorf("DLQ = %+v %v, want %+v and the kept entry listed", got.Counts, got.Problems, want)
	}
	replayed := r.replayed(before)
	slices.Sort(replayed)
	slices.Sort(rejected)
	if !slices.Equal(replayed, rejected) {
		t.Errorf("re-issued %v, want %v", replayed, rejected)
	}
	r.waitConverged(ids, 30*time.Second, "after replay dlq")
	if n := r.deadLetters(); n != 1 {
		t.Errorf("%d dead-letter entries left, want the 1 without an id", n)
	}

	got, err = r.env.DLQ(ctx, r.def, replay.DLQOptions{Purge: true}, replay.Options{Rate: -1})
	if err != nil || got.Deleted != 1 || got.Kept != 0 || got.Reissued != 0 {
		t.Errorf("DLQ --purge = %+v, %v", got, err)
	}
	if n := r.deadLetters(); n != 0 {
		t.Errorf("%d dead-letter entries left after --purge, want 0", n)
	}
}
