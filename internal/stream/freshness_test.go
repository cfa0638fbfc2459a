package stream_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
)

// ReadLag reports what the consumer's leader says is pending and
// ack-pending, and the age of the oldest event not yet acknowledged: the
// first one after the ack floor matching any of the consumer's filter
// subjects, never an event of another subject stored before it, nor one
// deleted from the stream.
func TestReadLag(t *testing.T) {
	_, js := testenv.StartJetStream(t).Connect(t)
	ctx := context.Background()
	setup, err := stream.Ensure(ctx, js, stream.Config{}, []string{"lag.>"})
	if err != nil {
		t.Fatal(err)
	}
	// Two filter subjects, and a single-filter consumer of one of them.
	multi, err := setup.Consumer(ctx, "multi", []string{"lag.a.*", "lag.b.*"}, stream.ConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := setup.Consumer(ctx, "single", []string{"lag.a.*"}, stream.ConsumerConfig{}); err != nil {
		t.Fatal(err)
	}
	events, err := js.Stream(ctx, "READSIDE_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	publish := func(subject string) *jetstream.RawStreamMsg {
		t.Helper()
		ack, err := js.Publish(ctx, subject, nil)
		if err != nil {
			t.Fatal(err)
		}
		m, err := events.GetMsg(ctx, ack.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	read := func(durable string) stream.ConsumerLag {
		t.Helper()
		l, err := stream.ReadLag(ctx, js, "READSIDE_EVENTS", durable)
		if err != nil || l.Err != "" || l.LagErr != "" {
			t.Fatalf("ReadLag %s: %v (Err %q, LagErr %q)", durable, err, l.Err, l.LagErr)
		}
		if l.Name != durable || l.Stream != "READSIDE_EVENTS" || l.At.IsZero() {
			t.Fatalf("ReadLag %s: name %q stream %q at %v", durable, l.Name, l.Stream, l.At)
		}
		return l
	}
	// want reads the consumer until its figures are these and its Lag is
	// the age, at the consumer info's time, of the event oldest (nil:
	// none), and fails the test when they are not within 5 s: the
	// consumer learns of new messages a moment after the stream stores
	// them.
	want := func(what, durable string, pending uint64, ackPending int, oldest *jetstream.RawStreamMsg) stream.ConsumerLag {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			l := read(durable)
			var seq uint64
			var lag time.Duration
			if oldest != nil {
				seq, lag = oldest.Sequence, l.At.Sub(oldest.Time)
			}
			if l.Pending == pending && l.AckPending == ackPending && l.Oldest == seq && l.Lag == lag {
				return l
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: pending %d, ack-pending %d, oldest %d, lag %s; want %d, %d, %d, %s",
					what, l.Pending, l.AckPending, l.Oldest, l.Lag, pending, ackPending, seq, lag)
				return l
			}
		}
	}

	want("nothing stored", "readside_multi", 0, 0, nil)

	other := publish("lag.other.1") // no consumer's
	b1 := publish("lag.b.1")
	a1 := publish("lag.a.1")
	l := want("multi, before any delivery", "readside_multi", 2, 0, b1)
	want("single, before any delivery", "readside_single", 1, 0, a1)
	if l.Lag <= 0 || l.Lag > l.At.Sub(other.Time) {
		t.Errorf("lag %s: want positive and not counting the other subject's older event (%s)", l.Lag, l.At.Sub(other.Time))
	}

	// The request budget: "lag.*.*" covers both filters; another subject
	// under it comes first, so each filter is asked too.
	if gets, l := countGets(t, events, multi); gets != 3 || l.Oldest != b1.Sequence {
		t.Errorf("with another subject first: %d gets, oldest %d; want 3, %d", gets, l.Oldest, b1.Sequence)
	}

	// Delivered, not acknowledged: still the oldest.
	got := fetch(t, multi, 1)
	want("multi, b1 ack-pending", "readside_multi", 1, 1, b1)

	// Nak'ed and delivered again: redelivered.
	if err := got[0].Nak(); err != nil {
		t.Fatal(err)
	}
	got = fetch(t, multi, 2)
	if l := want("multi, b1 redelivered", "readside_multi", 0, 2, b1); l.Redelivered != 1 {
		t.Errorf("after a nak and a redelivery: redelivered %d, want 1", l.Redelivered)
	}
	// b1 acknowledged: the floor moves past it, to a1 (ack-pending).
	ackSubject(t, got, "lag.b.1")
	want("multi, b1 acked", "readside_multi", 0, 1, a1)
	// The first event under the cover is one of the consumer's: one get.
	if gets, l := countGets(t, events, multi); gets != 1 || l.Oldest != a1.Sequence {
		t.Errorf("with the consumer's event first: %d gets, oldest %d; want 1, %d", gets, l.Oldest, a1.Sequence)
	}

	// The oldest unacknowledged event deleted from the stream: the next
	// matching one is the oldest.
	a2 := publish("lag.a.2")
	publish("lag.other.2")
	if err := events.DeleteMsg(ctx, a1.Sequence); err != nil {
		t.Fatal(err)
	}
	want("single, a1 deleted", "readside_single", 1, 0, a2)

	// Everything acknowledged: no lag.
	ackSubject(t, got, "lag.a.1") // deleted meanwhile; its ack still counts
	ackSubject(t, fetch(t, multi, 1), "lag.a.2")
	if l := want("multi, all acked", "readside_multi", 0, 0, nil); l.Acked == 0 {
		t.Errorf("acked %d after acknowledging events", l.Acked)
	}

	// A consumer that does not exist: an error, and Err says it.
	l, err = stream.ReadLag(ctx, js, "READSIDE_EVENTS", "readside_nope")
	if err == nil || l.Err == "" || l.Name != "readside_nope" {
		t.Errorf("missing consumer: %+v, %v; want an error", l, err)
	}
}

// countGets runs LagOf on c's info and counts the message gets it makes.
func countGets(t *testing.T, st jetstream.Stream, c jetstream.Consumer) (int, stream.ConsumerLag) {
	t.Helper()
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	g := &countingGetter{st: st}
	l := stream.LagOf(context.Background(), g, info)
	if l.LagErr != "" {
		t.Fatal(l.LagErr)
	}
	return int(g.n.Load()), l
}

type countingGetter struct {
	st jetstream.Stream
	n  atomic.Int32
}

func (g *countingGetter) GetMsg(ctx context.Context, seq uint64, opts ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error) {
	g.n.Add(1)
	return g.st.GetMsg(ctx, seq, opts...)
}

func fetch(t *testing.T, c jetstream.Consumer, n int) []jetstream.Msg {
	t.Helper()
	var out []jetstream.Msg
	for deadline := time.Now().Add(10 * time.Second); len(out) < n && time.Now().Before(deadline); {
		b, err := c.Fetch(n-len(out), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range b.Messages() {
			out = append(out, m)
		}
		if err := b.Error(); err != nil {
			t.Fatal(err)
		}
	}
	if len(out) != n {
		t.Fatalf("fetched %d messages, want %d", len(out), n)
	}
	return out
}

func ackSubject(t *testing.T, msgs []jetstream.Msg, subject string) {
	t.Helper()
	for _, m := range msgs {
		if m.Subject() == subject {
			if err := m.DoubleAck(context.Background()); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no %s among the fetched messages", subject)
}

// ReadDeadLetters counts a projection's entries, and only its own, and
// gives the most frequent reasons among the newest, one reason for entries
// that differ only by id.
func TestReadDeadLetters(t *testing.T) {
	_, js := testenv.StartJetStream(t).Connect(t)
	ctx := context.Background()
	setup, err := stream.Ensure(ctx, js, stream.Config{}, []string{"dl.>"})
	if err != nil {
		t.Fatal(err)
	}
	entry := func(projection, id, reason string) {
		t.Helper()
		m := nats.NewMsg(setup.DeadLetterSubject(projection))
		m.Header.Set(stream.HeaderReason, reason)
		m.Header.Set(stream.HeaderID, id)
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}

	d, err := setup.ReadDeadLetters(ctx, "shops")
	if err != nil || d.Messages != 0 || len(d.Reasons) != 0 || d.Projection != "shops" {
		t.Fatalf("no entries: %+v, %v", d, err)
	}
	// Older entries with a reason the newest do not give, more than one
	// read takes (800); then the newest, among three times as many of
	// another projection's (the estimated start is too late at first).
	const old = 1000
	for i := range old {
		entry("shops", fmt.Sprint(i), "old reason")
	}
	for i := range stream.MaxReasonEntries {
		if i%4 == 0 {
			entry("shops", fmt.Sprint(1000+i), fmt.Sprintf("GET /shops/%d: status 400", 1000+i))
		} else {
			entry("shops", fmt.Sprint(1000+i), "no valid id")
		}
		for range 3 {
			entry("others", fmt.Sprint(i), "another projection's reason")
		}
	}
	d, err = setup.ReadDeadLetters(ctx, "shops")
	if err != nil {
		t.Fatal(err)
	}
	wantReasons := []stream.ReasonCount{{"no valid id", 150}, {"GET /shops/{id}: status 400", 50}}
	if d.Messages != old+stream.MaxReasonEntries || d.Read != stream.MaxReasonEntries || fmt.Sprint(d.Reasons) != fmt.Sprint(wantReasons) {
		t.Errorf("got %d entries, %d read, reasons %v; want %d, %d, %v", d.Messages, d.Read, d.Reasons, old+stream.MaxReasonEntries, stream.MaxReasonEntries, wantReasons)
	}
	// The ordered consumers that read the entries are gone.
	dlq, err := js.Stream(ctx, setup.Config().DeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	info, err := dlq.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Errorf("%d consumers left on the dead-letter stream", info.State.Consumers)
	}
	counts, err := setup.CountDeadLetters(ctx)
	if err != nil || counts["shops"] != old+stream.MaxReasonEntries || counts["others"] != 3*stream.MaxReasonEntries || len(counts) != 2 {
		t.Errorf("CountDeadLetters: %v, %v", counts, err)
	}
}
