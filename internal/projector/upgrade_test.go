package projector_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
)

// A deployment of the layout before the own stream: the events stream also
// captures the projection's re-project, replay and retry subjects; the live
// consumer reads the triggers and re-project events, the replay and retry
// consumers live on the events stream, and events of every kind wait there,
// some already acknowledged. The projector upgrades it in place: Readside's
// own subjects move to the own stream, the events waiting on them are
// copied, the old consumers are retired or narrowed, and no event is lost.
func TestUpgradeMovesOwnSubjectsToTheirStream(t *testing.T) {
	h := newHarness(t, false)
	ctx := context.Background()
	// The harness made the new layout; make the old one on a fresh pair.
	cfg := h.streams.Config()
	for _, name := range []string{cfg.Events, cfg.Own} {
		if err := h.js.DeleteStream(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.js.CreateStream(ctx, jetstream.StreamConfig{Name: cfg.Events, Subjects: h.def.AllSubjects(), Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	consumer := func(name string, filters ...string) jetstream.Consumer {
		t.Helper()
		c, err := h.js.CreateOrUpdateConsumer(ctx, cfg.Events, jetstream.ConsumerConfig{
			Durable: name, AckPolicy: jetstream.AckExplicitPolicy, FilterSubjects: filters, MaxDeliver: -1,
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	live := consumer(stream.ConsumerName(h.def.Name), h.def.Subjects()...)
	consumer(stream.ReplayConsumerName(h.def.Name), h.def.ReplaySubject())
	consumer(stream.RetryConsumerName(h.def.Name), h.def.RetrySubject())

	const n = 30
	var ids []string
	for i := range n {
		id := fmt.Sprint(i)
		ids = append(ids, id)
		h.api.Put(id, "shop "+id)
		h.changed(id)
	}
	publish := func(subject, id string) {
		t.Helper()
		if _, err := h.js.Publish(ctx, subject, []byte(`{"id":"`+id+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range ids { // then one event of Readside's own for each
		publish([]string{h.def.ReprojectSubject(), h.def.ReplaySubject(), h.def.RetrySubject()}[i%3], id)
	}
	// The old projector had processed the first 10 trigger events.
	batch, err := live.Fetch(10, jetstream.FetchMaxWait(5*time.Second))
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
	// The source changed every shop since: for the first 10, only the events
	// of Readside's own (all after the ack floor) can bring them to it.
	for _, id := range ids {
		h.api.Put(id, "changed "+id)
	}

	// The projector upgrades at start (stream.Ensure, as cmd/projector does).
	var logs testenv.Buffer
	cfg.Log = slog.New(slog.NewTextHandler(&logs, nil))
	if h.streams, err = stream.Ensure(ctx, h.js, cfg, h.def.AllSubjects()); err != nil {
		t.Fatal(err)
	}
	h.startDefault()
	h.waitConverged(ids, 30*time.Second)

	events, err := h.js.Stream(ctx, cfg.Events)
	if err != nil {
		t.Fatal(err)
	}
	if subjects := events.CachedInfo().Config.Subjects; !slices.Equal(subjects, h.def.TriggerSubjects()) {
		t.Errorf("the events stream captures %q, want the triggers alone", subjects)
	}
	own, err := h.js.Stream(ctx, cfg.Own)
	if err != nil {
		t.Fatalf("no own stream: %v", err)
	}
	for _, s := range []string{h.def.ReprojectSubject(), h.def.ReplaySubject(), h.def.RetrySubject()} {
		if !slices.Contains(own.CachedInfo().Config.Subjects, s) {
			t.Errorf("the own stream does not capture %s: %q", s, own.CachedInfo().Config.Subjects)
		}
	}
	lc, err := h.js.Consumer(ctx, cfg.Events, stream.ConsumerName(h.def.Name))
	if err != nil {
		t.Fatal(err)
	}
	if got := lc.CachedInfo().Config; !slices.Equal(append(got.FilterSubjects, got.FilterSubject), append(h.def.TriggerSubjects(), "")) {
		t.Errorf("the live consumer reads %q %q, want the triggers alone", got.FilterSubjects, got.FilterSubject)
	}
	for _, name := range []string{stream.ReplayConsumerName(h.def.Name), stream.RetryConsumerName(h.def.Name)} {
		if _, err := h.js.Consumer(ctx, cfg.Events, name); err == nil {
			t.Errorf("consumer %s is still on the events stream", name)
		}
	}
	for _, name := range []string{stream.ConsumerName(h.def.Name), stream.ReprojectConsumerName(h.def.Name), stream.ReplayConsumerName(h.def.Name), stream.RetryConsumerName(h.def.Name)} {
		testenv.WaitDrained(t, h.js, h.streams.StreamOf(name), name, 20*time.Second)
	}
	if dl := h.deadLetters(); len(dl) > 0 {
		t.Errorf("%d events dead-lettered", len(dl))
	}
	t.Logf("upgrade log:\n%s", logs.String())
}
