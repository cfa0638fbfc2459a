package projector_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
)

// The monitor reports what JetStream stops answering for, the stream or a
// consumer, with one WARN line when it goes and one INFO line when it is
// back, never one per check, and a gauge per stream and consumer.
func TestMonitor(t *testing.T) {
	_, js := testenv.StartJetStream(t).Connect(t)
	ctx := context.Background()
	setup, err := stream.Ensure(ctx, js, stream.Config{}, []string{"m.>", projections.ReplayPrefix + "shops"})
	if err != nil {
		t.Fatal(err)
	}
	consumers := []string{stream.ConsumerName("shops"), stream.ReplayConsumerName("shops")}
	ensureConsumers := func() {
		t.Helper()
		if _, err := setup.Consumer(ctx, "shops", []string{"m.shop.>"}, stream.ConsumerConfig{}); err != nil {
			t.Fatal(err)
		}
		if _, err := setup.ReplayConsumer(ctx, "shops", projections.ReplayPrefix+"shops", stream.ConsumerConfig{}); err != nil {
			t.Fatal(err)
		}
	}
	ensureConsumers()
	var logs testenv.Buffer
	reg := prometheus.NewRegistry()
	m := projector.NewMonitor(js, "READSIDE_EVENTS", consumers, slog.New(slog.NewTextHandler(&logs, nil)), reg, projector.MonitorOptions{Timeout: time.Second, StreamOf: setup.StreamOf})
	gauge := func(what, name string) float64 {
		t.Helper()
		want := `readside_jetstream_available{name="` + name + `",what="` + what + `"}`
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, mm := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range mm.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if mf.GetName() == "readside_jetstream_available" && labels["what"] == what && labels["name"] == name {
					return mm.GetGauge().GetValue()
				}
			}
		}
		t.Fatalf("no %s", want)
		return 0
	}
	state := func() string {
		s, c, down := m.State()
		return s + " " + c + " " + strings.Join(down, ",")
	}

	if got := state(); got != "unknown unknown " {
		t.Errorf("before the first check: %q", got)
	}
	m.Check(ctx)
	if got := state(); got != "up up " {
		t.Errorf("all there: %q", got)
	}
	if logs.String() != "" {
		t.Errorf("all there, the monitor logged:\n%s", logs.String())
	}

	if err := js.DeleteConsumer(ctx, setup.StreamOf(consumers[1]), consumers[1]); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		m.Check(ctx)
	}
	if got := state(); got != "up down consumer readside_shops_replay" {
		t.Errorf("replay consumer deleted: %q", got)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 ||
		!strings.Contains(logs.String(), `msg="JetStream consumer unavailable`) || !strings.Contains(logs.String(), "consumer=readside_shops_replay stream=READSIDE_OWN") {
		t.Errorf("%d WARN lines after 3 checks, want one naming the consumer:\n%s", n, logs.String())
	}
	if g := gauge("consumer", consumers[1]); g != 0 {
		t.Errorf("gauge of the deleted consumer: %v, want 0", g)
	}
	if g := gauge("consumer", consumers[0]); g != 1 {
		t.Errorf("gauge of the live consumer: %v, want 1", g)
	}

	ensureConsumers()
	m.Check(ctx)
	if got := state(); got != "up up " {
		t.Errorf("consumer back: %q", got)
	}
	if !strings.Contains(logs.String(), `level=INFO msg="JetStream consumer available again" consumer=readside_shops_replay`) {
		t.Errorf("no INFO line for the consumer's return:\n%s", logs.String())
	}

	if err := js.DeleteStream(ctx, "READSIDE_EVENTS"); err != nil {
		t.Fatal(err)
	}
	m.Check(ctx)
	// The replay consumer lives on the own stream, which is still there.
	if got := state(); got != "down down consumer readside_shops,stream READSIDE_EVENTS" {
		t.Errorf("events stream deleted: %q", got)
	}
	if !strings.Contains(logs.String(), `level=WARN msg="JetStream stream unavailable`) || !strings.Contains(logs.String(), "stream=READSIDE_EVENTS err=") {
		t.Errorf("no WARN line naming the stream:\n%s", logs.String())
	}
	if g := gauge("stream", "READSIDE_EVENTS"); g != 0 {
		t.Errorf("gauge of the deleted stream: %v, want 0", g)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "readside_jetstream_available" && len(mf.GetMetric()) != 4 {
			t.Errorf("%d readside_jetstream_available series, want 4 (2 streams, 2 consumers)", len(mf.GetMetric()))
		}
	}
}

// Readiness is ready only when NATS, the stream, every consumer and every
// store are up; it reports each part, and why each one not up is not.
func TestReadiness(t *testing.T) {
	_, js := testenv.StartJetStream(t).Connect(t)
	ctx := context.Background()
	if _, err := stream.Ensure(ctx, js, stream.Config{}, []string{"r.>"}); err != nil {
		t.Fatal(err)
	}
	up := projector.NewMonitor(js, "READSIDE_EVENTS", nil, nil, nil, projector.MonitorOptions{})
	up.Check(ctx)
	down := projector.NewMonitor(js, "NO_SUCH_STREAM", nil, nil, nil, projector.MonitorOptions{})
	down.Check(ctx)
	noConsumer := projector.NewMonitor(js, "READSIDE_EVENTS", []string{"readside_gone"}, nil, nil, projector.MonitorOptions{})
	noConsumer.Check(ctx)
	unchecked := projector.NewMonitor(js, "READSIDE_EVENTS", nil, nil, nil, projector.MonitorOptions{})
	stores := func(s map[string]error) func(context.Context) map[string]error {
		return func(context.Context) map[string]error { return s }
	}
	refused := errors.New("dial tcp 127.0.0.1:9200: connect: connection refused")
	for _, tc := range []struct {
		name   string
		r      projector.Readiness
		ready  bool
		want   string // a check that must hold, name=state
		reason string // what its reason says, when not up
	}{
		{"all up", projector.Readiness{NATS: conn{connected: true}, Monitor: up, Stores: stores(map[string]error{"redis": nil, "elasticsearch": nil})}, true, "stream=up", ""},
		{"nats down", projector.Readiness{NATS: conn{status: nats.RECONNECTING, err: errors.New("connection refused")}, Monitor: up, Stores: stores(map[string]error{"redis": nil})}, false, "nats=down",
			"not connected (RECONNECTING): nothing is published or consumed until nats.go reconnects; last error: connection refused"},
		{"stream down", projector.Readiness{NATS: conn{connected: true}, Monitor: down, Stores: stores(map[string]error{"redis": nil})}, false, "stream=down", "stream NO_SUCH_STREAM: nats: API error: code=404 err_code=10059 description=stream not found"},
		{"a consumer down", projector.Readiness{NATS: conn{connected: true}, Monitor: noConsumer, Stores: stores(map[string]error{"redis": nil})}, false, "consumers=down", "consumer readside_gone: nats: API error: code=404 err_code=10014 description=consumer not found"},
		{"not checked yet", projector.Readiness{NATS: conn{connected: true}, Monitor: unchecked, Stores: stores(map[string]error{"redis": nil})}, false, "stream=unknown", "not checked yet"},
		{"a store down", projector.Readiness{NATS: conn{connected: true}, Monitor: up, Stores: stores(map[string]error{"redis": nil, "elasticsearch": refused})}, false, "elasticsearch=down", refused.Error()},
	} {
		s := tc.r.Check(ctx)
		name, state, _ := strings.Cut(tc.want, "=")
		if s.Ready != tc.ready || s.Checks[name] != state {
			t.Errorf("%s: ready %v, checks %v; want ready %v and %s", tc.name, s.Ready, s.Checks, tc.ready, tc.want)
		}
		if !strings.Contains(s.Reasons[name], tc.reason) || (tc.reason == "") != (s.Reasons[name] == "") {
			t.Errorf("%s: reason of %s %q, want %q", tc.name, name, s.Reasons[name], tc.reason)
		}
	}
}

// conn is a NATS connection's state, for Readiness.
type conn struct {
	connected bool
	status    nats.Status
	err       error
}

func (c conn) IsConnected() bool   { return c.connected }
func (c conn) Status() nats.Status { return c.status }
func (c conn) LastError() error    { return c.err }

var _ projector.JetStreamInfo = jetstream.JetStream(nil)
