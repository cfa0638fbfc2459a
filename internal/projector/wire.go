package projector

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/readside/readside/internal/assemble"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/source"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/telemetry"
	"github.com/readside/readside/projections"
)

// Env is what every projection of a process shares: connections, logs, metrics.
type Env struct {
	JetStream jetstream.JetStream
	Streams   *stream.Setup
	Stores    StoreOpener
	Transport http.RoundTripper // for source requests; nil: the source client's default
	Log       *slog.Logger
	Metrics   *Metrics
	// SourceRetryBudget bounds the retries of one source request before the
	// id is retried later with backoff [3s]. Short, so a source outage is
	// noticed fast and pulling pauses.
	SourceRetryBudget time.Duration
	// SourceLimits bounds the requests in flight to each source of each
	// projection with a limit that adapts to the source's latency and
	// failures, shared by all the projection's consumers and workers (see
	// assemble.Limits); main makes one per process, registered on its
	// registry. Nil: each ForDefinition makes its own, with the default
	// ceiling and unregistered metrics.
	SourceLimits *assemble.Limits
	// Tracing, when on, traces every id processed, its source requests
	// (sending their trace context to the sources) and its writes. Nil: off.
	Tracing *telemetry.Tracing
}

// StoreOpener opens a projection's stores (see backend.Stores).
type StoreOpener interface {
	For(ctx context.Context, def *projections.Definition) (sink.Stores, error)
}

// ForDefinition prepares one projection: its stores (on Elasticsearch, the
// index and alias, refusing an index whose mapping conflicts with the
// definition), its durable consumers and its source clients, and returns the
// Projection ready to Run.
//
// Options.FetchConcurrency bounds the source requests of one batch; zero
// leaves them to the sources' adaptive limits alone (up to their ceiling).
func ForDefinition(ctx context.Context, def *projections.Definition, env Env, o Options) (*Projection, error) {
	limits := env.SourceLimits
	if limits == nil {
		limits = assemble.NewLimits(source.LimiterOptions{}, nil)
	}
	fanOut := o.FetchConcurrency
	if fanOut <= 0 {
		fanOut = limits.Max()
	}
	o.defaults()
	o.FetchConcurrency = fanOut
	stores, err := env.Stores.For(ctx, def)
	if err != nil {
		return nil, err
	}
	cc := stream.ConsumerConfig{AckWait: o.AckWait, MaxAckPending: o.MaxAckPending}
	pcons, err := env.Streams.ReprojectConsumer(ctx, def.Name, def.ReprojectSubject(), cc)
	if err != nil {
		return nil, fmt.Errorf("projection %s: %w", def.Name, err)
	}
	cons, err := env.Streams.Consumer(ctx, def.Name, def.TriggerSubjects(), cc)
	if err != nil {
		return nil, fmt.Errorf("projection %s: %w", def.Name, err)
	}
	parts := Parts{
		Def: def, Consumer: cons, DLQ: env.Streams, Log: env.Log, Metrics: env.Metrics, Publisher: env.JetStream, Tracing: env.Tracing,
		Stores: []NamedStore{{Name: stores.DocsName, Store: stores.Docs}, {Name: stores.IndexName, Store: stores.Index}},
	}
	var ao assemble.Options
	if def.HasLookups() {
		refs := stores.Refs
		parts.Refs = refs
		ao.BeforeJoin = func(ctx context.Context, rs []assemble.Ref) error {
			conv := make([]sink.Ref, len(rs))
			for j, r := range rs {
				conv[j] = sink.Ref(r)
			}
			return refs.Add(ctx, conv)
		}
	}
	ao.Concurrency = o.FetchConcurrency
	transport := env.Transport
	if env.Tracing.On() {
		if transport == nil {
			transport = source.NewTransport()
		}
		transport = env.Tracing.Transport(transport)
	}
	parts.Assembler = assemble.New(def, limits.Clients(def, transport, env.SourceRetryBudget), ao)
	live := New(parts, o)

	// Re-project events (joined entities' changes fanned out, heal requests
	// of the query API) are live work on a consumer of their own, so the
	// live consumer has the triggers alone as filters.
	// The consumers of the own stream version documents by the events
	// stream's sequence too (see Parts.EventsHead).
	events := env.Streams.Config().Events
	eventsHead := func(ctx context.Context) (uint64, error) {
		st, err := env.JetStream.Stream(ctx, events)
		if err != nil {
			return 0, err
		}
		return st.CachedInfo().State.LastSeq, nil
	}
	pparts := parts
	pparts.Consumer, pparts.EventsHead, pparts.Kind = pcons, eventsHead, "reproject"
	reprojects := New(pparts, o)

	// Re-issued events have a consumer of their own, served by a smaller
	// projector alongside, so a replay never holds live events back; the
	// replay tool's rate limit bounds what it asks of the sources.
	rcons, err := env.Streams.ReplayConsumer(ctx, def.Name, def.ReplaySubject(), stream.ConsumerConfig{AckWait: o.AckWait, MaxAckPending: o.MaxAckPending})
	if err != nil {
		return nil, fmt.Errorf("projection %s: %w", def.Name, err)
	}
	rparts, ro := parts, o
	rparts.Consumer, rparts.EventsHead, rparts.Kind = rcons, eventsHead, "replay"
	ro.Workers = max(1, o.Workers/2)
	ro.MaxHeld = 4 * o.Batch * ro.Workers
	replay := New(rparts, ro)

	// Partial documents wait for their optional sources on a consumer of
	// their own: a long outage fills only its ack-pending limit.
	tcons, err := env.Streams.RetryConsumer(ctx, def.Name, def.RetrySubject(), stream.ConsumerConfig{AckWait: o.AckWait, MaxAckPending: o.MaxAckPending})
	if err != nil {
		return nil, fmt.Errorf("projection %s: %w", def.Name, err)
	}
	tparts, to := parts, o
	tparts.Consumer, tparts.EventsHead, tparts.Kind, tparts.Delays = tcons, eventsHead, "retry", true
	to.Workers = 1
	to.MaxHeld = 4 * o.Batch
	retry := New(tparts, to)
	return &Projection{peers: []*Projector{live, reprojects, replay, retry}}, nil
}

// Projection is one projection's Projectors, one per durable consumer: live
// events, re-project events, replayed events and partial documents' retries.
// Create it with ForDefinition; Run it once.
type Projection struct {
	peers []*Projector
}

// Run runs every Projector of the projection until ctx ends, then each shuts
// down as Projector.Run does. The first to fail (its consumer gone) stops
// the rest; Run returns its error, or nil after a clean shutdown.
func (p *Projection) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, peer := range p.peers {
		g.Go(func() error { return peer.Run(gctx) })
	}
	return g.Wait()
}
