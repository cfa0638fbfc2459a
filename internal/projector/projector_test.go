package projector_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/stream"
)

// Many events for many ids, duplicated and shuffled, some with the id in the
// body: every document equals the source's state, and duplicates coalesce.
func TestManyEventsConvergeAndCoalesce(t *testing.T) {
	for _, versioned := range []bool{true, false} {
		for _, stores := range backends {
			t.Run(fmt.Sprintf("versioned=%v/%s", versioned, stores), func(t *testing.T) {
				t.Parallel()
				h := newHarnessOn(t, versioned, stores)
				all := ids(300)
				var events []func()
				for _, id := range all {
					h.api.Put(id, "shop "+id)
					for k := range 1 + rand.IntN(10) {
						if k%3 == 2 {
							events = append(events, func() { h.changedBody(`{"shopId": ` + id + `}`) })
						} else {
							events = append(events, func() { h.changed(id) })
						}
					}
				}
				rand.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
				for _, publish := range events {
					publish()
				}
				h.startDefault()
				h.waitConverged(all, 60*time.Second)
				h.waitDrained(30 * time.Second)
				fetches := h.api.Fetches()
				t.Logf("%d events for %d ids cost %d fetches (%.2f per event)", len(events), len(all), fetches, float64(fetches)/float64(len(events)))
				// Every event was stored before the projector started, so the
				// first fetch of an id answers all of its events: one each.
				if fetches > int64(len(all))*11/10 {
					t.Errorf("%d fetches for %d events over %d ids, want about one per id: the backlog did not coalesce", fetches, len(events), len(all))
				}
				if dl := h.deadLetters(); len(dl) != 0 {
					t.Errorf("%d events dead-lettered, want none: %s", len(dl), dl[0].Headers().Get(stream.HeaderReason))
				}
			})
		}
	}
}

// An event that arrives while its id is being fetched is not lost: the id is
// fetched again afterwards.
func TestEventDuringFetchRefetches(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	h.api.SetLatency(300 * time.Millisecond)
	h.api.Put("7", "before")
	h.startDefault()
	h.changed("7")
	deadline := time.Now().Add(10 * time.Second)
	for h.api.FetchesOf("7") == 0 { // the fetch is under way
		if time.Now().After(deadline) {
			t.Fatal("no fetch started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.api.Put("7", "after")
	h.changed("7")
	h.waitConverged([]string{"7"}, 20*time.Second)
}

// Two projectors on one durable consumer while the source keeps changing: no
// store ends older than the source's last state.
func TestTwoProjectorsShareWorkAndNeverGoBack(t *testing.T) {
	for _, versioned := range []bool{true, false} {
		for _, stores := range backends {
			t.Run(fmt.Sprintf("versioned=%v/%s", versioned, stores), func(t *testing.T) {
				t.Parallel()
				h := newHarnessOn(t, versioned, stores)
				h.api.SetLatency(2 * time.Millisecond)
				all := ids(60)
				for _, id := range all {
					h.api.Put(id, "v0")
					h.changed(id)
				}
				h.startDefault()
				h.startDefault()
				var wg sync.WaitGroup
				for w := range 4 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := range 150 {
							id := all[rand.IntN(len(all))]
							h.api.Put(id, fmt.Sprintf("w%d-%d", w, i))
							h.changed(id)
							time.Sleep(time.Millisecond)
						}
					}()
				}
				wg.Wait()
				h.waitConverged(all, 60*time.Second)
				h.waitDrained(30 * time.Second)
			})
		}
	}
}

// Source 404 → a tombstone in both stores; a late write of an older version
// does not bring the document back; a newer state re-creates it.
func TestNotFoundLeavesTombstone(t *testing.T) {
	for _, versioned := range []bool{true, false} {
		for _, stores := range backends {
			t.Run(fmt.Sprintf("versioned=%v/%s", versioned, stores), func(t *testing.T) {
				t.Parallel()
				h := newHarnessOn(t, versioned, stores)
				h.startDefault()
				h.api.Put("1", "alive")
				h.api.Put("2", "stays")
				h.changed("1")
				h.changed("2")
				h.waitConverged([]string{"1", "2"}, 20*time.Second)
				old, err := h.docs.Get(context.Background(), "1")
				if err != nil {
					t.Fatal(err)
				}

				h.api.Delete("1")
				h.changed("1")
				h.waitConverged([]string{"1", "2"}, 20*time.Second)

				// A stale writer (a slow replica) writes the old state late.
				late := sink.Doc{ID: "1", Version: old.Version, Body: old.Body}
				ctx := context.Background()
				for _, st := range []interface {
					Write(context.Context, []sink.Doc) error
					Get(context.Context, string) (sink.Stored, error)
				}{h.docs, h.index} {
					if err := st.Write(ctx, []sink.Doc{late}); err != nil {
						t.Fatal(err)
					}
					got, err := st.Get(ctx, "1")
					if err != nil || !got.Deleted {
						t.Fatalf("after a late stale write: %+v, %v; want the tombstone", got, err)
					}
				}

				h.api.Put("1", "re-created")
				h.changed("1")
				h.waitConverged([]string{"1", "2"}, 20*time.Second)
			})
		}
	}
}

// Bad events land in the dead-letter stream with their reason, and the
// events behind them are processed.
func TestBadEventsAreDeadLettered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	h.api.Put("10", "good")
	h.api.Put("11", "also good")
	h.api.Put("12", "rejected by the source")
	h.api.Reject("12", 400)

	h.changedBody(`{not json`)
	h.changedBody(`{"shopId": "has space"}`)
	h.changedBody(`{"shopId": "` + strings.Repeat("x", 300) + `"}`)
	h.changedBody(`{"other": 1}`)
	h.changed("12")
	h.changed("10")
	h.changedBody(`{"shopId": "11"}`)
	h.startDefault()

	h.waitConverged([]string{"10", "11"}, 20*time.Second)
	h.waitDrained(20 * time.Second)
	reasons := map[string]bool{}
	for _, m := range h.deadLetters() {
		hd := m.Headers()
		if hd.Get(stream.HeaderSubject) == "" || hd.Get(stream.HeaderSequence) == "" || hd.Get(stream.HeaderDeliveries) == "" {
			t.Errorf("dead-letter entry lacks headers: %v", hd)
		}
		reasons[hd.Get(stream.HeaderReason)] = true
	}
	for _, want := range []string{"not valid JSON", "contains whitespace", "300 bytes long", `no field "shopId"`, "400"} {
		found := false
		for r := range reasons {
			found = found || strings.Contains(r, want)
		}
		if !found {
			t.Errorf("no dead-letter reason mentions %q; reasons: %v", want, reasons)
		}
	}
	if len(reasons) != 5 {
		t.Errorf("%d distinct dead-letter reasons, want 5: %v", len(reasons), reasons)
	}
}

// The source answering 500 for a while: events wait, none is dead-lettered,
// and everything converges once it answers again.
func TestSourceErrorsAreRetriedNotDeadLettered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	all := ids(40)
	for _, id := range all {
		h.api.Put(id, "n")
	}
	h.api.FailAll(500)
	h.startDefault()
	for _, id := range all {
		h.changed(id)
	}
	waitFor(t, 10*time.Second, "the source to be asked", func() bool { return h.api.Fetches() > 5 })
	time.Sleep(2 * time.Second) // several retry rounds against the failing source
	if ok, _ := h.converged(all[:1]); ok {
		t.Fatal("converged while the source failed")
	}
	h.api.FailAll(0)
	h.waitConverged(all, 60*time.Second)
	h.waitDrained(30 * time.Second)
	if dl := h.deadLetters(); len(dl) != 0 {
		t.Errorf("%d events dead-lettered while the source failed; want none", len(dl))
	}
}

// A source answering 503 with Retry-After: the projector asks for the id
// again no sooner than the source said, though its own backoff (50 to 500
// ms in tests) is much shorter; and the id converges once the source answers.
func TestSourceRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	const hint = 2 * time.Second
	h := newHarness(t, true)
	h.api.Put("1", "n")
	h.api.SetRetryAfter(int(hint / time.Second))
	h.api.FailAll(http.StatusServiceUnavailable)
	var (
		mu    sync.Mutex
		asked []time.Time
	)
	h.api.OnAnswer(func(string, bool) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, time.Now())
	})
	h.startDefault()
	h.changed("1")
	waitFor(t, 20*time.Second, "the source to be asked twice", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(asked) >= 2
	})
	mu.Lock()
	gap := asked[1].Sub(asked[0])
	mu.Unlock()
	if gap < hint {
		t.Errorf("the source was asked again %s after answering 503 with Retry-After: %d; want at least %s", gap, int(hint/time.Second), hint)
	}
	h.api.FailAll(0)
	h.waitConverged([]string{"1"}, 30*time.Second)
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
