package main

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// The lag metrics on the projector's /metrics move as an operator expects:
// while the source answers 503 the live consumer's lag in seconds and its
// unacknowledged events rise, after it heals they fall to 0 and the
// event-to-store histogram shows how long the documents waited; a bad event
// is counted in the projection's dead-letter depth.
func TestLagMetrics(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	const n = 40
	ids := shopIDs(n)
	for _, id := range ids {
		w.api.Put(id, "shop "+id)
	}
	w.api.FailAll(503)
	addr := freeAddr(t)
	p := w.start("lag", "-metrics-addr", addr, "-monitor-interval", "200ms", "-batch", "16")
	series := func(name, consumer string) string {
		return fmt.Sprintf(`%s{consumer=%q,projection=%q}`, name, consumer, w.def.Name)
	}
	lag := series("readside_consumer_lag_seconds", "live")
	pending := series("readside_consumer_pending_messages", "live")
	ackPending := series("readside_consumer_ack_pending_messages", "live")
	dead := fmt.Sprintf(`readside_dead_letter_messages{projection=%q}`, w.def.Name)
	alive := func() {
		if p.exited() {
			t.Fatalf("the projector exited: %v", p.err)
		}
	}
	w.waitFor(20*time.Second, "the monitor exports the idle consumers", func() (bool, string) {
		alive()
		for _, kind := range []string{"live", "reproject", "replay", "retry"} {
			if v := metric(addr, series("readside_consumer_lag_seconds", kind)); v != 0 {
				return false, fmt.Sprintf("%s lag %v", kind, v)
			}
		}
		return metric(addr, dead) == 0, fmt.Sprintf("dead letters %v", metric(addr, dead))
	})

	w.publish(ids, func(int) int { return 1 })
	var first float64
	w.waitFor(20*time.Second, "the lag rises while the source answers 503", func() (bool, string) {
		alive()
		first = metric(addr, lag)
		unacked := metric(addr, pending) + metric(addr, ackPending)
		return first >= 1 && unacked == n, fmt.Sprintf("lag %v, %v unacknowledged", first, unacked)
	})
	var before float64
	w.waitFor(20*time.Second, "the lag keeps rising", func() (bool, string) {
		alive()
		before = metric(addr, lag)
		return before > first && before >= 3, fmt.Sprintf("lag %v, first %v", before, first)
	})
	if w.stored(ids) != 0 {
		t.Fatalf("documents written while the source answers 503")
	}

	w.api.FailAll(0)
	w.waitFor(30*time.Second, "the lag falls to 0 once the source answers", func() (bool, string) {
		alive()
		l, pe, ap := metric(addr, lag), metric(addr, pending), metric(addr, ackPending)
		return l == 0 && pe == 0 && ap == 0, fmt.Sprintf("lag %v, pending %v, ack-pending %v", l, pe, ap)
	})
	count := metric(addr, series("readside_projector_event_to_store_seconds_count", "live"))
	sum := metric(addr, series("readside_projector_event_to_store_seconds_sum", "live"))
	t.Logf("lag while the source was down: %v s, then %v s; event-to-store: %v documents, %.2f s on average", first, before, count, sum/count)
	// Every document waited at least for the lag seen while the source was
	// down, less the time publishing took (well under a second).
	if count < n || sum/count < before-1 {
		t.Errorf("event-to-store: %v documents, %v s on average; want %d, at least %v s", count, sum/count, n, before-1)
	}

	// A bad event: dead-lettered and counted.
	if _, err := w.jsc.Publish(context.Background(), w.ns+".shop.events", []byte(`{"shopId":""}`)); err != nil {
		t.Fatal(err)
	}
	w.waitFor(20*time.Second, "the dead-letter depth counts the bad event", func() (bool, string) {
		alive()
		v := metric(addr, dead)
		return v == 1 && metric(addr, lag) == 0, fmt.Sprintf("dead letters %v, lag %v", v, metric(addr, lag))
	})
}
