package projector_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
)

// The Monitor reads every consumer's backlog and each projection's dead
// letters each round, keeps them as Freshness with a history, and exports
// them as gauges; a consumer it cannot read has no lag series rather than a
// stale one.
func TestMonitorFreshness(t *testing.T) {
	_, js := testenv.StartJetStream(t).Connect(t)
	ctx := context.Background()
	def := &projections.Definition{Name: "shops"}
	setup, err := stream.Ensure(ctx, js, stream.Config{}, []string{"f.shop.*", def.ReprojectSubject(), def.ReplaySubject(), def.RetrySubject()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := setup.Consumer(ctx, "shops", []string{"f.shop.*"}, stream.ConsumerConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, err := setup.ReprojectConsumer(ctx, "shops", def.ReprojectSubject(), stream.ConsumerConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, err := setup.ReplayConsumer(ctx, "shops", def.ReplaySubject(), stream.ConsumerConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, err := setup.RetryConsumer(ctx, "shops", def.RetrySubject(), stream.ConsumerConfig{}); err != nil {
		t.Fatal(err)
	}
	var logs testenv.Buffer
	reg := prometheus.NewRegistry()
	m := projector.NewMonitor(js, "READSIDE_EVENTS", nil, slog.New(slog.NewTextHandler(&logs, nil)), reg, projector.MonitorOptions{
		Timeout: time.Second, StreamOf: setup.StreamOf, Projections: []string{"shops"}, DeadLetters: setup,
	})
	gauges := func(names ...string) string {
		t.Helper()
		var b strings.Builder
		for _, n := range names {
			n, err := testutil.GatherAndCount(reg, n)
			if err != nil {
				t.Fatal(err)
			}
			b.WriteString(strings.Repeat("+", n))
		}
		return b.String()
	}
	value := func(g *prometheus.Registry, name, labels string) float64 {
		t.Helper()
		mfs, err := g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, mm := range mf.GetMetric() {
				var ls []string
				for _, l := range mm.GetLabel() {
					ls = append(ls, l.GetName()+"="+l.GetValue())
				}
				if strings.Join(ls, ",") == labels {
					return mm.GetGauge().GetValue()
				}
			}
		}
		return -1
	}

	m.Check(ctx)
	f := m.Freshness()
	if len(f.Consumers) != 4 || f.Consumers[0].Kind != "live" || f.Consumers[0].Name != "readside_shops" || f.Consumers[3].Kind != "retry" {
		t.Fatalf("consumers %+v", f.Consumers)
	}
	for _, l := range f.Consumers {
		if l.Err != "" || l.Lag != 0 || l.Pending != 0 || l.Projection != "shops" {
			t.Errorf("idle: %+v", l)
		}
	}
	if len(f.DeadLetters) != 1 || f.DeadLetters[0].Messages != 0 || f.DeadLetters[0].Err != "" {
		t.Errorf("dead letters %+v", f.DeadLetters)
	}
	if got := value(reg, "readside_consumer_lag_seconds", "consumer=live,projection=shops"); got != 0 {
		t.Errorf("idle lag gauge %v", got)
	}

	for _, subj := range []string{"f.shop.1", "f.shop.2", def.RetrySubject()} {
		if _, err := js.Publish(ctx, subj, nil); err != nil {
			t.Fatal(err)
		}
	}
	dl := nats.NewMsg(setup.DeadLetterSubject("shops"))
	dl.Header.Set(stream.HeaderReason, "no valid id")
	if _, err := js.PublishMsg(ctx, dl); err != nil {
		t.Fatal(err)
	}
	m.Check(ctx)
	f = m.Freshness()
	live, retry := f.Consumers[0], f.Consumers[3]
	if live.Pending != 2 || live.Lag <= 0 || retry.Pending != 1 || retry.Lag <= 0 || f.Consumers[1].Lag != 0 {
		t.Errorf("after publishing: live %+v, retry %+v", live, retry)
	}
	if got := value(reg, "readside_consumer_pending_messages", "consumer=live,projection=shops"); got != 2 {
		t.Errorf("pending gauge %v, want 2", got)
	}
	if got := value(reg, "readside_consumer_lag_seconds", "consumer=live,projection=shops"); got != live.Lag.Seconds() {
		t.Errorf("lag gauge %v, want %v", got, live.Lag.Seconds())
	}
	if d := f.DeadLetters[0]; d.Messages != 1 || len(d.Reasons) != 1 || d.Reasons[0].Reason != "no valid id" {
		t.Errorf("dead letters %+v", d)
	}
	if got := value(reg, "readside_dead_letter_messages", "projection=shops"); got != 1 {
		t.Errorf("dead-letter gauge %v, want 1", got)
	}
	if h := f.History["readside_shops"]; len(h) != 2 || h[0].Pending != 0 || h[1].Pending != 2 {
		t.Errorf("history %+v", h)
	}

	// A consumer gone: no lag series for it, not a stale one.
	if err := js.DeleteConsumer(ctx, "READSIDE_EVENTS", "readside_shops"); err != nil {
		t.Fatal(err)
	}
	m.Check(ctx)
	if l := m.Freshness().Consumers[0]; l.Err == "" || l.Pending != 0 {
		t.Errorf("deleted consumer: %+v", l)
	}
	if got := gauges("readside_consumer_lag_seconds", "readside_consumer_pending_messages", "readside_consumer_ack_pending_messages"); got != strings.Repeat("+", 9) {
		t.Errorf("%d lag, pending and ack-pending series with the live consumer gone; want 3 each for the other consumers", len(got))
	}
	if got := value(reg, "readside_consumer_lag_seconds", "consumer=live,projection=shops"); got != -1 {
		t.Errorf("lag gauge of a deleted consumer: %v, want absent", got)
	}
}
