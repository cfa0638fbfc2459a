package projector_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
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
	if got := gathered(t, reg, "readside_consumer_lag_seconds", "consumer=live,projection=shops"); got != 0 {
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
	// The consumers learn of new messages a moment after the stream
	// stores them.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		m.Check(ctx)
		f = m.Freshness()
		if f.Consumers[0].Pending == 2 && f.Consumers[3].Pending == 1 && f.DeadLetters[0].Messages == 1 || time.Now().After(deadline) {
			break
		}
	}
	live, retry := f.Consumers[0], f.Consumers[3]
	if live.Pending != 2 || live.Lag <= 0 || retry.Pending != 1 || retry.Lag <= 0 || f.Consumers[1].Lag != 0 {
		t.Errorf("after publishing: live %+v, retry %+v", live, retry)
	}
	if got := gathered(t, reg, "readside_consumer_pending_messages", "consumer=live,projection=shops"); got != 2 {
		t.Errorf("pending gauge %v, want 2", got)
	}
	if got := gathered(t, reg, "readside_consumer_lag_seconds", "consumer=live,projection=shops"); got != live.Lag.Seconds() {
		t.Errorf("lag gauge %v, want %v", got, live.Lag.Seconds())
	}
	if d := f.DeadLetters[0]; d.Messages != 1 || len(d.Reasons) != 1 || d.Reasons[0].Reason != "no valid id" {
		t.Errorf("dead letters %+v", d)
	}
	if got := gathered(t, reg, "readside_dead_letter_messages", "projection=shops"); got != 1 {
		t.Errorf("dead-letter gauge %v, want 1", got)
	}
	if h := f.History["readside_shops"]; len(h) < 2 || h[0].Pending != 0 || h[len(h)-1].Pending != 2 {
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
	if got := gathered(t, reg, "readside_consumer_lag_seconds", "consumer=live,projection=shops"); got != -1 {
		t.Errorf("lag gauge of a deleted consumer: %v, want absent", got)
	}
}

// Freshness follows a running projector: the lag rises while the source is
// slow and falls to 0 after; a source answering 400 for an id dead-letters
// its event, which Freshness counts with its reason (the id replaced); the
// written documents are observed in the event-to-store histogram of the
// live consumer.
func TestFreshnessOfRunningProjector(t *testing.T) {
	h := newHarness(t, true)
	ctx := context.Background()
	const n = 30
	all := ids(n)
	for _, id := range all {
		h.api.Put(id, "shop "+id)
	}
	reg := prometheus.NewRegistry()
	metrics := projector.NewMetrics(reg)
	env := projector.Env{
		JetStream: h.js, Streams: h.streams, Stores: h.stores, Log: testenv.Logger(t, "projector"),
		SourceRetryBudget: 300 * time.Millisecond, Metrics: metrics,
	}
	p, err := projector.ForDefinition(ctx, h.def, env, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	m := projector.NewMonitor(h.js, h.streams.Config().Events, nil, testenv.Logger(t, "monitor"), reg, projector.MonitorOptions{
		StreamOf: h.streams.StreamOf, Projections: []string{h.def.Name}, DeadLetters: h.streams,
	})
	testenv.Start(t, "projector", p.Run)
	live := func() stream.ConsumerLag {
		m.Check(ctx)
		l := m.Freshness().Consumers[0]
		if l.Kind != "live" || l.Err != "" || l.LagErr != "" {
			t.Fatalf("live consumer: %+v", l)
		}
		return l
	}
	wait := func(what string, cond func() (bool, string)) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			ok, why := cond()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after 30s: %s", what, why)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Slower than a second per fetch (under the definition's 2 s timeout).
	h.api.SetLatency(1500 * time.Millisecond)
	h.api.Reject(all[0], http.StatusBadRequest)
	for _, id := range all {
		h.changed(id)
	}
	var max time.Duration
	wait("the lag rises while the source is slow", func() (bool, string) {
		l := live()
		max = l.Lag
		return l.Lag >= time.Second && l.Unacked() > 0, fmt.Sprintf("%+v", l)
	})
	h.api.SetLatency(0)
	wait("the lag falls to 0 once the source is fast", func() (bool, string) {
		l := live()
		return l.Lag == 0 && l.Unacked() == 0, fmt.Sprintf("%+v", l)
	})
	h.waitConverged(all[1:], 10*time.Second)
	wait("the dead letter is counted with its reason", func() (bool, string) {
		m.Check(ctx)
		d := m.Freshness().DeadLetters
		return len(d) == 1 && d[0].Messages == 1 && len(d[0].Reasons) == 1 &&
			strings.Contains(d[0].Reasons[0].Reason, "/shops/{id}") && strings.Contains(d[0].Reasons[0].Reason, "400"), fmt.Sprintf("%+v", d)
	})
	if got := gathered(t, reg, "readside_dead_letter_messages", "projection="+h.def.Name); got != 1 {
		t.Errorf("readside_dead_letter_messages %v, want 1", got)
	}
	var count uint64
	var sum float64
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "readside_projector_event_to_store_seconds" {
			continue
		}
		for _, mm := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range mm.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["projection"] == h.def.Name && labels["consumer"] == "live" {
				count, sum = mm.GetHistogram().GetSampleCount(), mm.GetHistogram().GetSampleSum()
			}
		}
	}
	t.Logf("lag reached %s; event-to-store: %d documents, %.2f s on average", max, count, sum/float64(count))
	// Each written document waited for at least one slow fetch.
	if count < n-1 || sum/float64(count) < 1.5 {
		t.Errorf("event-to-store: %d documents, %.2f s on average; want %d, at least 1.5 s (the lag reached %s)", count, sum/float64(count), n-1, max)
	}
}

// gathered is the value of the gauge name with labels ("k=v,k=v", sorted by
// name) on reg, or -1 when there is no such series.
func gathered(t *testing.T, reg *prometheus.Registry, name, labels string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
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

// Freshness lists projections in order whatever order they are given in;
// consumers that do not exist have Err set and no lag series.
func TestMonitorFreshnessOrderAndMissingConsumers(t *testing.T) {
	_, js := testenv.StartJetStream(t).Connect(t)
	ctx := context.Background()
	setup, err := stream.Ensure(ctx, js, stream.Config{}, []string{"o.>"})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	given := []string{"zeta", "alpha"}
	m := projector.NewMonitor(js, "READSIDE_EVENTS", nil, nil, reg, projector.MonitorOptions{
		Timeout: time.Second, StreamOf: setup.StreamOf, Projections: given, DeadLetters: setup,
	})
	m.Check(ctx)
	f := m.Freshness()
	var got []string
	for _, l := range f.Consumers {
		got = append(got, l.Projection+"/"+l.Kind)
		if l.Err == "" {
			t.Errorf("%s: no error for a consumer that does not exist", l.Name)
		}
	}
	if want := "alpha/live alpha/reproject alpha/replay alpha/retry zeta/live zeta/reproject zeta/replay zeta/retry"; strings.Join(got, " ") != want {
		t.Errorf("consumers %v, want %s", got, want)
	}
	if len(f.DeadLetters) != 2 || f.DeadLetters[0].Projection != "alpha" || f.DeadLetters[1].Projection != "zeta" {
		t.Errorf("dead letters %+v", f.DeadLetters)
	}
	if given[0] != "zeta" {
		t.Errorf("the caller's list was reordered: %v", given)
	}
	if n, err := testutil.GatherAndCount(reg, "readside_consumer_lag_seconds"); err != nil || n != 0 {
		t.Errorf("%d lag series for consumers that do not exist (%v)", n, err)
	}
	if got := gathered(t, reg, "readside_dead_letter_messages", "projection=alpha"); got != 0 {
		t.Errorf("dead letters of alpha: %v, want 0", got)
	}
}
