package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/readside/readside/internal/health"
	"github.com/readside/readside/internal/stream"
)

// JetStreamInfo is what Monitor asks JetStream; jetstream.JetStream has it.
type JetStreamInfo interface {
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
	Consumer(ctx context.Context, stream, name string) (jetstream.Consumer, error)
}

// MonitorOptions tune a Monitor. Zero values take the defaults in brackets.
type MonitorOptions struct {
	Interval time.Duration // between two rounds of checks [5s]
	Timeout  time.Duration // for one stream or consumer info request [2s]
	// StreamOf names the stream of a consumer (stream.Setup.StreamOf); nil:
	// every consumer is on the stream given to NewMonitor. Each stream it
	// names is checked too.
	StreamOf func(consumer string) string
	// Projections are the projections whose freshness the Monitor reads:
	// each one's four durable consumers (see stream.ConsumersOf; watched for
	// availability too, whether or not NewMonitor was given them) and, with
	// DeadLetters, its dead-letter entries.
	Projections []string
	// DeadLetters counts and reads the dead-letter entries (stream.Setup);
	// nil: not read.
	DeadLetters DeadLetterReader
}

// DeadLetterReader reads the dead-letter stream; *stream.Setup has it.
type DeadLetterReader interface {
	// CountDeadLetters counts the entries of every projection at once.
	CountDeadLetters(ctx context.Context) (map[string]uint64, error)
	// ReadDeadLetters counts one projection's entries and reads the reasons
	// of the newest.
	ReadDeadLetters(ctx context.Context, projection string) (stream.DeadLetters, error)
}

// Monitor checks, every Interval, that JetStream answers for the events
// stream and for each durable consumer: a stream-info and a consumer-info
// request each, within Timeout. A stream whose servers are gone, a stream or
// consumer without a leader, one deleted, or NATS unreachable all fail the
// check, while the projector itself may only see its pulls go quiet.
//
// It logs a WARN line when something becomes unavailable and an INFO line
// when it is back, never one per check, and sets the gauge
// readside_jetstream_available{what="stream"|"consumer",name} to 0 or 1.
//
// Each round also reads the freshness of the projections in
// MonitorOptions.Projections (see Freshness and the lag gauges): the
// consumer info just read gives each consumer's backlog, and when anything
// is unacknowledged one message get per filter subject gives the age of the
// oldest such event (stream.LagOf); one stream info request counts the
// dead-letter entries of all projections, and a projection's newest entries
// are read for their reasons when its count changes (at most once a minute
// otherwise). Its methods are safe for concurrent use.
type Monitor struct {
	js        JetStreamInfo
	stream    string
	consumers []string
	o         MonitorOptions
	log       *slog.Logger
	gauge     *prometheus.GaugeVec
	g         lagGauges

	mu      sync.Mutex
	checked bool
	down    map[target]error // the last round's failures
	fresh   Freshness        // the last round's; History is kept here
	// lagDown: the consumers whose oldest event could not be read, and
	// whether the dead letters could not be read: logged on a change.
	lagDown  map[string]bool
	deadDown bool
	reasons  map[string]stream.DeadLetters // the last reasons read, by projection
	reasonAt map[string]time.Time          // when they were read
}

type target struct{ what, name string }

// NewMonitor watches stream and its durable consumers, and the freshness of
// o.Projections, registering its gauges on reg when reg is not nil.
func NewMonitor(js JetStreamInfo, streamName string, consumers []string, log *slog.Logger, reg prometheus.Registerer, o MonitorOptions) *Monitor {
	if o.Interval <= 0 {
		o.Interval = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	o.Projections = slices.Clone(o.Projections)
	slices.Sort(o.Projections) // Freshness lists them in order
	m := &Monitor{
		js: js, stream: streamName, consumers: slices.Clone(consumers), o: o, log: log, down: map[target]error{},
		lagDown: map[string]bool{},
		reasons: map[string]stream.DeadLetters{}, reasonAt: map[string]time.Time{},
		gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "readside_jetstream_available",
			Help: "1 while JetStream answers for the events stream or a durable consumer (the projector's last check), 0 while not.",
		}, []string{"what", "name"}),
		g:     newLagGauges(),
		fresh: Freshness{History: map[string][]stream.ConsumerLag{}},
	}
	for _, p := range o.Projections {
		for _, c := range stream.ConsumersOf(p) {
			if !slices.Contains(m.consumers, c.Name) {
				m.consumers = append(m.consumers, c.Name)
			}
		}
	}
	if reg != nil {
		reg.MustRegister(m.gauge)
		m.g.register(reg)
	}
	return m
}

// Run checks at once, then every Interval, until ctx ends; then it returns nil.
func (m *Monitor) Run(ctx context.Context) error {
	t := time.NewTicker(m.o.Interval)
	defer t.Stop()
	for {
		m.Check(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Check runs one round of checks, all at once, and records the result. A
// round cut short by ctx ending is not recorded.
func (m *Monitor) Check(ctx context.Context) {
	targets := []target{{"stream", m.stream}}
	for _, c := range m.consumers {
		if st := m.streamOf(c); !slices.Contains(targets, target{"stream", st}) {
			targets = append(targets, target{"stream", st})
		}
	}
	for _, c := range m.consumers {
		targets = append(targets, target{"consumer", c})
	}
	errs := make([]error, len(targets))
	found := make([]any, len(targets)) // jetstream.Stream or jetstream.Consumer
	var g errgroup.Group
	g.SetLimit(8)
	for i, tg := range targets {
		g.Go(func() error {
			found[i], errs[i] = m.check(ctx, tg)
			return nil
		})
	}
	g.Wait()
	if ctx.Err() != nil {
		return
	}
	fresh := m.readFreshness(ctx, targets, found, errs)
	if ctx.Err() != nil {
		return
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	m.record(fresh)
	for i, tg := range targets {
		was, wasDown := m.down[tg]
		attrs := []any{tg.what, tg.name}
		if tg.what == "consumer" {
			attrs = append(attrs, "stream", m.streamOf(tg.name))
		}
		switch {
		case errs[i] != nil && !wasDown && m.log != nil:
			m.log.Warn("JetStream "+tg.what+" unavailable: the projector consumes nothing that depends on it until it is back",
				append(attrs, "err", errs[i])...)
		case errs[i] == nil && wasDown && m.log != nil:
			m.log.Info("JetStream "+tg.what+" available again", append(attrs, "was", was)...)
		}
		if errs[i] != nil {
			m.down[tg] = errs[i]
			m.gauge.WithLabelValues(tg.what, tg.name).Set(0)
		} else {
			delete(m.down, tg)
			m.gauge.WithLabelValues(tg.what, tg.name).Set(1)
		}
	}
	m.checked = true
}

// check asks JetStream for the target's info and returns what it got: a
// jetstream.Stream or a jetstream.Consumer holding the info.
func (m *Monitor) check(ctx context.Context, tg target) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, m.o.Timeout)
	defer cancel()
	var found any
	var err error
	if tg.what == "stream" {
		found, err = m.js.Stream(ctx, tg.name)
	} else {
		found, err = m.js.Consumer(ctx, m.streamOf(tg.name), tg.name)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("no answer within %s: it has no leader, or NATS is unreachable", m.o.Timeout)
	}
	return found, err
}

func (m *Monitor) streamOf(consumer string) string {
	if m.o.StreamOf == nil {
		return m.stream
	}
	return m.o.StreamOf(consumer)
}

// State is the last round's result: "up" or "down" for the stream and for
// the consumers (all of them up, or at least one down), and the names of
// what is down. Before the first round ends both are "unknown".
func (m *Monitor) State() (stream, consumers string, down []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.checked {
		return "unknown", "unknown", nil
	}
	stream, consumers = "up", "up"
	for tg := range m.down {
		if tg.what == "stream" {
			stream = "down"
		} else {
			consumers = "down"
		}
		down = append(down, tg.what+" "+tg.name)
	}
	slices.Sort(down)
	return stream, consumers, down
}

// Readiness is the projector's readiness: NATS connected, the events stream
// and every durable consumer available at the Monitor's last check, and
// every store answering. Each part missing is not ready, with its reason.
type Readiness struct {
	NATS    health.Conn
	Monitor *Monitor
	// Stores asks each store whether it answers (backend.Stores.Check).
	Stores func(ctx context.Context) map[string]error
}

// Check reports whether the projector is ready, and each part's state:
// "nats", "stream" (the events and own streams), "consumers" (every durable
// consumer), and one entry per store; each part not up has its reason, the
// streams' and consumers' naming which one. Before the Monitor's first
// round, "stream" and "consumers" are unknown, and the projector is not
// ready. Safe for concurrent use.
func (r Readiness) Check(ctx context.Context) health.Status {
	s := health.NewStatus()
	if r.Stores != nil {
		for name, err := range r.Stores(ctx) {
			s.Set(name, err)
		}
	}
	s.Set("nats", health.NATSCheck(r.NATS))
	if r.Monitor != nil {
		stream, _, _ := r.Monitor.State()
		unavailable := r.Monitor.Unavailable()
		for _, part := range []struct{ check, what string }{{"stream", "stream "}, {"consumers", "consumer "}} {
			if stream == health.Unknown {
				s.SetUnknown(part.check, "not checked yet: the first JetStream check has not ended")
				continue
			}
			var why []string
			for _, name := range slices.Sorted(maps.Keys(unavailable)) {
				if strings.HasPrefix(name, part.what) {
					why = append(why, name+": "+unavailable[name].Error())
				}
			}
			if len(why) == 0 {
				s.Set(part.check, nil)
			} else {
				s.Set(part.check, errors.New(strings.Join(why, "; ")))
			}
		}
	}
	s.Ready = s.AllUp()
	return s
}

// Unavailable returns why each stream and consumer was unavailable at the
// last round of checks, keyed "stream <name>" or "consumer <name>" as State
// names them.
func (m *Monitor) Unavailable() map[string]error {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]error, len(m.down))
	for tg, err := range m.down {
		out[tg.what+" "+tg.name] = err
	}
	return out
}
