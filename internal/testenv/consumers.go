package testenv

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/readside/readside/internal/stream"
)

// The stream and consumer names are parameters: the caller has them from its
// stream.Setup and stream.ConsumerName, or from the flags of the binary it
// runs. testenv imports package stream only for the header names, and nothing
// that imports package sink, whose internal tests import testenv.

// ConsumerState returns how many events the durable consumer of the events
// stream has not delivered yet, and how many it has delivered without an ack.
// It fails the test when the consumer cannot be read.
func ConsumerState(t testing.TB, js jetstream.JetStream, events, consumer string) (pending uint64, ackPending int) {
	t.Helper()
	info := consumerInfo(t, js, events, consumer)
	return info.NumPending, info.NumAckPending
}

// consumerInfo is the durable consumer's info, as JetStream gives it now
// (looking a consumer up reads its info); it fails the test when the
// consumer cannot be read.
func consumerInfo(t testing.TB, js jetstream.JetStream, events, consumer string) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := js.Consumer(context.Background(), events, consumer)
	if err != nil {
		t.Fatal(err)
	}
	return c.CachedInfo()
}

// WaitDrained waits until the durable consumer of the events stream has no
// event pending or unacked (every event was acked or terminated), polling
// every 100ms. It fails the test, with both counts, when d passes first.
//
// Every event published before the call counts, including one whose
// publication JetStream acknowledged a moment ago: the stream tells its
// consumers of a new message on a goroutine of its own, so "nothing
// pending" alone can hold just after a publish. The consumer must also
// have been given the newest event its filters match.
func WaitDrained(t testing.TB, js jetstream.JetStream, events, consumer string, d time.Duration) {
	t.Helper()
	info := consumerInfo(t, js, events, consumer)
	last := lastMatching(t, js, events, info.Config)
	deadline := time.Now().Add(d)
	for {
		if info.NumPending == 0 && info.NumAckPending == 0 && info.Delivered.Stream >= last {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("events not drained after %s: %d pending, %d unacked, delivered up to %d of %d", d, info.NumPending, info.NumAckPending, info.Delivered.Stream, last)
		}
		time.Sleep(100 * time.Millisecond)
		info = consumerInfo(t, js, events, consumer)
	}
}

// lastMatching is the stream sequence of the newest event in the events
// stream that a consumer of cfg matches; 0 when there is none.
func lastMatching(t testing.TB, js jetstream.JetStream, events string, cfg jetstream.ConsumerConfig) uint64 {
	t.Helper()
	filters := cfg.FilterSubjects
	if cfg.FilterSubject != "" {
		filters = append(filters, cfg.FilterSubject)
	}
	if len(filters) == 0 {
		filters = []string{">"}
	}
	ctx := context.Background()
	s, err := js.Stream(ctx, events)
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for _, f := range filters {
		m, err := s.GetLastMsgForSubject(ctx, f)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			t.Fatalf("the newest event on %s in %s: %v", f, events, err)
		default:
			last = max(last, m.Sequence)
		}
	}
	return last
}

// DeadLetters returns the entries of the dead-letter stream dlq, oldest first,
// read with an ordered consumer; nil when it holds none.
func DeadLetters(t testing.TB, js jetstream.JetStream, dlq string) []jetstream.Msg {
	t.Helper()
	ctx := context.Background()
	s, info := streamInfo(t, js, dlq)
	if info.State.Msgs == 0 {
		return nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(int(info.State.Msgs), jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for m := range batch.Messages() {
		out = append(out, m)
	}
	return out
}

// NoDeadLetters returns nil when the dead-letter stream dlq is empty, and
// otherwise an error that counts its entries and shows the first one's
// original subject and reason (stream.HeaderSubject, stream.HeaderReason). It
// fails the test when the stream cannot be read; what to do with the error,
// t.Error or t.Fatal, is the caller's choice.
func NoDeadLetters(t testing.TB, js jetstream.JetStream, dlq string) error {
	t.Helper()
	ctx := context.Background()
	s, info := streamInfo(t, js, dlq)
	n := info.State.Msgs
	if n == 0 {
		return nil
	}
	m, err := s.GetMsg(ctx, info.State.FirstSeq)
	if err != nil {
		return fmt.Errorf("%d events dead-lettered, want none; the first is unreadable: %v", n, err)
	}
	return fmt.Errorf("%d events dead-lettered, want none; the first: %s: %s",
		n, m.Header.Get(stream.HeaderSubject), m.Header.Get(stream.HeaderReason))
}

// streamInfo returns the stream called name and its current state, failing
// the test when it cannot be read.
func streamInfo(t testing.TB, js jetstream.JetStream, name string) (jetstream.Stream, *jetstream.StreamInfo) {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s, info
}
