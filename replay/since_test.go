package replay_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/readside/readside/replay"
)

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		err  string
	}{
		{in: "2h", want: now.Add(-2 * time.Hour)},
		{in: "90s", want: now.Add(-90 * time.Second)},
		{in: "1h30m", want: now.Add(-90 * time.Minute)},
		{in: "3d", want: now.Add(-72 * time.Hour)},
		{in: "1d12h", want: now.Add(-36 * time.Hour)},
		{in: "2026-11-21T10:00:00Z", want: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)},
		{in: "2026-11-21T11:00:00+01:00", want: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)},
		{in: "2026-11-23T10:00:00Z", err: "in the future"},
		{in: "-2h", err: "must be positive"},
		{in: "2y", err: "RFC 3339"},
		{in: "yesterday", err: "a duration back from now"},
		{in: "2026-11-21 10:00", err: "2026-11-21T10:00:00Z"},
		{in: "", err: "is not a time"},
	} {
		got, err := replay.ParseSince(tc.in, now)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseSince(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.err)
		case tc.err == "" && (err != nil || !got.Equal(tc.want)):
			t.Errorf("ParseSince(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// since re-issues exactly the ids of the projection's events in the window,
// each once; a lookup event re-issues the documents that use its entity.
func TestSinceReissuesTheWindow(t *testing.T) {
	r, _ := newSampleRig(t, 100)
	r.start()
	a := idSpan(1, 40)
	r.publish(withPrefix("shop.changed.", a)...)
	r.waitConverged(a, 30*time.Second, "set A") // and the reverse lookups of A are recorded

	time.Sleep(50 * time.Millisecond)
	since := time.Now()
	time.Sleep(50 * time.Millisecond)
	b := idSpan(60, 79)
	r.publish(withPrefix("shop.changed.", b)...)
	r.publish(withPrefix("shop.changed.", b)...) // every id twice
	r.publish("menu.changed.65", "owner.changed.2")
	// Owner 2 owns shops 20..29 (sampleapi: owner i/10 owns shop i), all in A.
	want := append(slices.Clone(b), idSpan(20, 29)...)
	slices.Sort(want)
	end := r.lastSeq()

	got, err := r.env.Since(rigCtx(t), r.def, since.Format(time.RFC3339Nano), replay.Options{Rate: -1})
	if err != nil {
		t.Fatal(err)
	}
	replayed := r.replayed(end)
	slices.Sort(replayed)
	if !slices.Equal(replayed, want) {
		t.Errorf("re-issued %v\nwant %v", replayed, want)
	}
	wantCounts := replay.Counts{Reissued: 30, Events: 42, Lookups: 1, Duplicates: 21}
	if got.Counts != wantCounts {
		t.Errorf("Counts = %+v, want %+v", got.Counts, wantCounts)
	}
	r.waitConverged(append(a, b...), 30*time.Second, "after since")
}

// since reads up to the events stream's last sequence when it starts, and a
// window with no event of the projection re-issues nothing.
func TestSinceEmptyWindow(t *testing.T) {
	r, _ := newShopRig(t)
	got, err := r.env.Since(rigCtx(t), r.def, "1h", replay.Options{Rate: -1})
	if err != nil || got.Reissued != 0 || got.Events != 0 {
		t.Fatalf("Since on an empty stream = %+v, %v", got, err)
	}
	r.publish(r.ns + ".shop.changed.1")
	got, err = r.env.Since(rigCtx(t), r.def, time.Now().Add(time.Second).Format(time.RFC3339), replay.Options{Rate: -1})
	if err == nil || !strings.Contains(err.Error(), "future") {
		t.Fatalf("Since a future time = %+v, %v", got, err)
	}
	got, err = r.env.Since(rigCtx(t), r.def, "1m", replay.Options{Rate: -1})
	if err != nil || got.Reissued != 1 || got.Events != 1 {
		t.Fatalf("Since with one event = %+v, %v", got, err)
	}
}
