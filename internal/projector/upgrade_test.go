package projector_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
)

// A deployment from before re-project events had a consumer of their own:
// its live consumer reads the triggers and the re-project subject, and holds
// events of both, some acknowledged. The projector upgrades it in place: the
// re-project consumer starts where the live consumer's acknowledgements end,
// the live consumer is narrowed to the triggers, and no event is lost.
func TestUpgradeGivesReprojectEventsTheirOwnConsumer(t *testing.T) {
	h := newHarness(t, false)
	ctx := context.Background()
	events := h.streams.Config().Events
	old, err := h.js.CreateOrUpdateConsumer(ctx, events, jetstream.ConsumerConfig{
		Durable: stream.ConsumerName(h.def.Name), AckPolicy: jetstream.AckExplicitPolicy,
		FilterSubjects: h.def.Subjects(), MaxDeliver: -1, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	var ids []string
	for i := range n {
		id := fmt.Sprint(i)
		ids = append(ids, id)
		h.api.Put(id, "shop "+id)
		h.changed(id)
	}
	for _, id := range ids { // then a re-project event for each
		if _, err := h.js.Publish(ctx, h.def.ReprojectSubject(), []byte(`{"id":"`+id+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	// The old projector had processed the first 10 trigger events.
	batch, err := old.Fetch(10, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	acked := 0
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
		acked++
	}
	if acked != 10 {
		t.Fatalf("acked %d events with the old consumer, want 10", acked)
	}
	// Meanwhile the source changed every shop: only the re-project events
	// (all after the ack floor) can bring the first 10 to it.
	for _, id := range ids {
		h.api.Put(id, "changed "+id)
	}

	h.startDefault()
	h.waitConverged(ids, 30*time.Second)

	live, err := h.js.Consumer(ctx, events, stream.ConsumerName(h.def.Name))
	if err != nil {
		t.Fatal(err)
	}
	lc := live.CachedInfo().Config
	if got := append(lc.FilterSubjects, lc.FilterSubject); slices.Contains(got, h.def.ReprojectSubject()) {
		t.Errorf("the live consumer still reads the re-project subject: filters %q", got)
	}
	rp, err := h.js.Consumer(ctx, events, stream.ReprojectConsumerName(h.def.Name))
	if err != nil {
		t.Fatalf("no re-project consumer: %v", err)
	}
	rc := rp.CachedInfo().Config
	if rc.FilterSubject != h.def.ReprojectSubject() || len(rc.FilterSubjects) > 0 {
		t.Errorf("re-project consumer filters %q %q, want the one subject %s", rc.FilterSubject, rc.FilterSubjects, h.def.ReprojectSubject())
	}
	if rc.DeliverPolicy != jetstream.DeliverByStartSequencePolicy || rc.OptStartSeq != 11 {
		t.Errorf("re-project consumer starts with policy %v at %d, want at sequence 11, after the live consumer's ack floor", rc.DeliverPolicy, rc.OptStartSeq)
	}
	for _, c := range []string{stream.ConsumerName(h.def.Name), stream.ReprojectConsumerName(h.def.Name)} {
		testenv.WaitDrained(t, h.js, events, c, 20*time.Second)
	}
	if dl := h.deadLetters(); len(dl) > 0 {
		t.Errorf("%d events dead-lettered", len(dl))
	}
}
