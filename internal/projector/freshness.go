package projector

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/readside/readside/internal/stream"
)

// Freshness is what the Monitor learnt at its last rounds: each durable
// consumer's backlog now and over the last minutes, and each projection's
// dead letters.
type Freshness struct {
	At        time.Time            // of the last round
	Consumers []stream.ConsumerLag // the last round, by projection then kind
	// History holds the rounds of the last HistoryWindow by consumer name,
	// oldest first.
	History     map[string][]stream.ConsumerLag
	DeadLetters []stream.DeadLetters // by projection
}

// HistoryWindow is how far back Freshness.History goes.
const HistoryWindow = 15 * time.Minute

// maxHistory bounds the rounds Freshness.History keeps per consumer, however
// short the Monitor's interval: with the default 5 s it holds the whole
// HistoryWindow (180 rounds); below 900 ms, less.
const maxHistory = 1000

// reasonsEvery is how often a projection's dead-letter reasons are read
// again while its count does not change.
const reasonsEvery = time.Minute

// Freshness returns a copy of what the Monitor last learnt; safe for
// concurrent use. Before the first round it is empty.
func (m *Monitor) Freshness() Freshness {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.fresh
	f.Consumers = slices.Clone(f.Consumers)
	f.DeadLetters = slices.Clone(f.DeadLetters)
	f.History = make(map[string][]stream.ConsumerLag, len(m.fresh.History))
	for name, h := range m.fresh.History {
		f.History[name] = slices.Clone(h)
	}
	return f
}

// readFreshness reads the lag of every consumer of Projections from the
// infos the round's checks found (targets, found and errs of Check), and
// the dead letters. It holds no lock: a round runs at a time (Run), and a
// concurrent Check only costs requests.
func (m *Monitor) readFreshness(ctx context.Context, targets []target, found []any, errs []error) Freshness {
	f := Freshness{At: time.Now()}
	if len(m.o.Projections) == 0 {
		return f
	}
	streams := map[string]jetstream.Stream{}
	consumers := map[string]jetstream.Consumer{}
	failed := map[string]error{}
	for i, tg := range targets {
		if tg.what == "stream" {
			if st, ok := found[i].(jetstream.Stream); ok && errs[i] == nil {
				streams[tg.name] = st
			}
			continue
		}
		if c, ok := found[i].(jetstream.Consumer); ok && errs[i] == nil {
			consumers[tg.name] = c
		} else if errs[i] != nil {
			failed[tg.name] = errs[i]
		}
	}
	for _, p := range m.o.Projections {
		for _, c := range stream.ConsumersOf(p) {
			f.Consumers = append(f.Consumers, stream.ConsumerLag{
				Projection: p, Kind: c.Kind, Name: c.Name, Stream: m.streamOf(c.Name), At: f.At,
			})
		}
	}
	var g errgroup.Group
	g.SetLimit(8)
	for i := range f.Consumers {
		l := &f.Consumers[i]
		c := consumers[l.Name]
		if c == nil {
			l.Err = "no consumer info"
			if err := failed[l.Name]; err != nil {
				l.Err = err.Error()
			}
			continue
		}
		g.Go(func() error {
			ctx, cancel := context.WithTimeout(ctx, m.o.Timeout)
			defer cancel()
			var st stream.MsgGetter
			if s := streams[l.Stream]; s != nil {
				st = s
			}
			got := stream.LagOf(ctx, st, c.CachedInfo())
			got.Projection, got.Kind, got.Name, got.Stream = l.Projection, l.Kind, l.Name, l.Stream
			*l = got
			return nil
		})
	}
	if m.o.DeadLetters != nil {
		g.Go(func() error {
			f.DeadLetters = m.readDeadLetters(ctx)
			return nil
		})
	}
	g.Wait()
	return f
}

// readDeadLetters counts every projection's dead letters and reads the
// reasons of those whose count changed since their reasons were read (or
// that were read over reasonsEvery ago).
func (m *Monitor) readDeadLetters(ctx context.Context) []stream.DeadLetters {
	out := make([]stream.DeadLetters, len(m.o.Projections))
	cctx, cancel := context.WithTimeout(ctx, m.o.Timeout)
	counts, err := m.o.DeadLetters.CountDeadLetters(cctx)
	cancel()
	m.mu.Lock()
	last, lastAt := maps.Clone(m.reasons), maps.Clone(m.reasonAt)
	m.mu.Unlock()
	var g errgroup.Group
	g.SetLimit(4)
	for i, p := range m.o.Projections {
		out[i] = stream.DeadLetters{Projection: p}
		if err != nil {
			out[i].Err = err.Error()
			continue
		}
		out[i].Messages = counts[p]
		prev, seen := last[p]
		if counts[p] == 0 || seen && prev.Err == "" && prev.Messages == counts[p] && time.Since(lastAt[p]) < reasonsEvery {
			if counts[p] > 0 {
				out[i].Reasons, out[i].Read = prev.Reasons, prev.Read
			}
			continue
		}
		g.Go(func() error {
			rctx, cancel := context.WithTimeout(ctx, 2*m.o.Timeout)
			defer cancel()
			d, err := m.o.DeadLetters.ReadDeadLetters(rctx, p)
			if err != nil {
				// The count stands; the reasons are those read before.
				out[i].Reasons, out[i].Read, out[i].Err = prev.Reasons, prev.Read, "reading the reasons: "+err.Error()
				return nil
			}
			out[i] = d
			m.mu.Lock()
			m.reasons[p], m.reasonAt[p] = d, time.Now()
			m.mu.Unlock()
			return nil
		})
	}
	g.Wait()
	return out
}

// record keeps f as the last round, adds it to the history, sets the lag
// gauges and logs what stopped or started working. m.mu is held.
func (m *Monitor) record(f Freshness) {
	if len(m.o.Projections) == 0 || f.At.Before(m.fresh.At) {
		return // nothing to read, or a concurrent Check ended after a later one
	}
	history := m.fresh.History
	for _, l := range f.Consumers {
		h := append(history[l.Name], l)
		cut := 0
		for cut < len(h) && (h[cut].At.Before(f.At.Add(-HistoryWindow)) || len(h)-cut > maxHistory) {
			cut++
		}
		if cut > 0 {
			h = slices.Clone(h[cut:]) // free the start
		}
		history[l.Name] = h
		m.g.set(l)
		m.logLag(l)
	}
	for _, d := range f.DeadLetters {
		if d.Err != "" && d.Messages == 0 {
			m.g.dead.DeleteLabelValues(d.Projection)
		} else {
			m.g.dead.WithLabelValues(d.Projection).Set(float64(d.Messages))
		}
	}
	if m.o.DeadLetters != nil && m.log != nil {
		var failing []string
		for _, d := range f.DeadLetters {
			if d.Err != "" {
				failing = append(failing, d.Projection+": "+d.Err)
			}
		}
		switch {
		case len(failing) > 0 && !m.deadDown:
			m.log.Warn("reading the dead-letter stream failed: readside_dead_letter_messages is missing or its reasons old until it works",
				"err", failing[0], "projections", len(failing))
		case len(failing) == 0 && m.deadDown:
			m.log.Info("reading the dead-letter stream works again")
		}
		m.deadDown = len(failing) > 0
	}
	f.History = history
	m.fresh = f
}

// logLag logs a WARN line when the oldest unacknowledged event of a
// consumer whose info was read cannot be (its lag is then missing), and an
// INFO line when it can again. A consumer whose info cannot be read is
// logged by Check.
func (m *Monitor) logLag(l stream.ConsumerLag) {
	was := m.lagDown[l.Name]
	now := l.Err == "" && l.LagErr != ""
	switch {
	case m.log == nil:
	case now && !was:
		m.log.Warn("reading a consumer's oldest unacknowledged event failed: its readside_consumer_lag_seconds is missing until it works",
			"consumer", l.Name, "stream", l.Stream, "err", l.LagErr)
	case !now && was:
		m.log.Info("reading a consumer's oldest unacknowledged event works again", "consumer", l.Name)
	}
	if now {
		m.lagDown[l.Name] = true
	} else {
		delete(m.lagDown, l.Name)
	}
}

// lagGauges are the Monitor's freshness gauges.
type lagGauges struct {
	pending, ackPending, lag *prometheus.GaugeVec // by projection and consumer kind
	dead                     *prometheus.GaugeVec // by projection
}

func newLagGauges() lagGauges {
	labels := []string{"projection", "consumer"}
	return lagGauges{
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "readside_consumer_pending_messages",
			Help: "Events stored for a durable consumer and not delivered yet, from the consumer's leader at the projector's last check; absent while its info cannot be read. Every replica reports the same: aggregate with max.",
		}, labels),
		ackPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "readside_consumer_ack_pending_messages",
			Help: "Events delivered to a durable consumer and not acknowledged yet, from the consumer's leader at the projector's last check; absent while its info cannot be read. Aggregate with max.",
		}, labels),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "readside_consumer_lag_seconds",
			Help: "Age of the oldest event a durable consumer has not acknowledged (pending or ack-pending), from its stream timestamp; 0 when none. Absent while it cannot be read. Aggregate with max.",
		}, labels),
		dead: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "readside_dead_letter_messages",
			Help: "Entries in a projection's dead-letter subject; absent while the dead-letter stream cannot be read. Aggregate with max.",
		}, []string{"projection"}),
	}
}

func (g lagGauges) register(reg prometheus.Registerer) {
	reg.MustRegister(g.pending, g.ackPending, g.lag, g.dead)
}

// set exports l. A consumer whose info could not be read has its series
// deleted rather than kept at a value that may look healthy; its lag alone
// is deleted when only the oldest event could not be read.
func (g lagGauges) set(l stream.ConsumerLag) {
	if l.Err != "" {
		g.pending.DeleteLabelValues(l.Projection, l.Kind)
		g.ackPending.DeleteLabelValues(l.Projection, l.Kind)
		g.lag.DeleteLabelValues(l.Projection, l.Kind)
		return
	}
	g.pending.WithLabelValues(l.Projection, l.Kind).Set(float64(l.Pending))
	g.ackPending.WithLabelValues(l.Projection, l.Kind).Set(float64(l.AckPending))
	if l.LagErr != "" {
		g.lag.DeleteLabelValues(l.Projection, l.Kind)
		return
	}
	g.lag.WithLabelValues(l.Projection, l.Kind).Set(l.Lag.Seconds())
}
