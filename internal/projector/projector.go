// Package projector runs one projection: it pulls change events from the
// projection's durable JetStream consumer, coalesces them by entity id,
// fetches the current state from the source API, flattens it into a document
// and writes it to every store under the write guard; only then does it
// acknowledge the events.
//
// Outcomes, one explicit JetStream call each:
//   - written (or dropped as stale by the guard) in every store → Ack;
//   - the source answers 404/410 → a tombstone is written → Ack;
//   - a bad event (no valid id), a source answering another 4xx, a document
//     a store rejects for good → dead-letter entry, then Term;
//   - a dependency down (source, Redis, Elasticsearch) → the messages are
//     held (kept alive with InProgress) and the id retried with backoff,
//     waiting at least as long as a source's Retry-After asked (up to 5 min);
//     pulling pauses while nothing succeeds. Nothing is dead-lettered for it;
//   - shutdown → what is in flight finishes within the grace period; what is
//     still held is Nak'ed for redelivery.
package projector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/readside/readside/internal/assemble"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/telemetry"
	"github.com/readside/readside/projections"
)

// Store is a document store under the write guard (see internal/sink).
type Store interface {
	Write(ctx context.Context, docs []sink.Doc) error
	Get(ctx context.Context, id string) (sink.Stored, error)
}

// Assembler builds documents from the source APIs (see internal/assemble).
type Assembler interface {
	AssembleAt(ctx context.Context, ids []string, versions []int64) []assemble.Result
}

// RefStore is the reverse lookup of joined entities (see redisstore.Refs).
type RefStore interface {
	Commit(ctx context.Context, built []sink.Built) error
	Users(ctx context.Context, source, key string, fn func(ids []string) error) error
}

// Publisher publishes re-project events and waits for JetStream to store them.
type Publisher interface {
	Publish(ctx context.Context, subject string, data []byte, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// DeadLetterer stores a bad event with the reason (see internal/stream).
type DeadLetterer interface {
	DeadLetter(ctx context.Context, projection string, msg jetstream.Msg, id, reason string) error
}

// NamedStore is a Store with a name for logs and metrics.
type NamedStore struct {
	Name  string
	Store Store
}

// Options tune a Projector. Zero values take the defaults in brackets.
type Options struct {
	Batch            int           // ids per write batch [256]
	Workers          int           // batches in flight at once [4]
	FetchConcurrency int           // source requests at once per batch, under each source's adaptive limit [ForDefinition: the limits' ceiling]
	MaxHeld          int           // messages held before pulling waits [8 × Batch × Workers]
	AckWait          time.Duration // the consumer's ack wait; held messages get InProgress every third of it [30s]
	MaxAckPending    int           // the consumer's limit of unacknowledged events, across replicas [20000]
	RetryInitial     time.Duration // first retry delay of an id whose dependency failed [250ms]
	RetryMax         time.Duration // longest retry delay, unless a source's Retry-After asks for longer (up to 5 min) [15s]
	ShutdownGrace    time.Duration // how long in-flight batches may finish on shutdown [10s]
	// PartialRetry is the first delay before a partial document is built
	// again; it doubles with every redelivery, up to 5 minutes [5s].
	PartialRetry time.Duration
}

// DefaultOptions are the settings of a Projector given none: what a zero
// field of Options takes, and the defaults of cmd/projector's flags. MaxHeld
// and MaxAckPending are left zero: they follow from Batch and Workers, and
// from the stream package's consumer default.
func DefaultOptions() Options {
	return Options{
		Batch:            256,
		Workers:          4,
		FetchConcurrency: 32,
		AckWait:          30 * time.Second,
		RetryInitial:     250 * time.Millisecond,
		RetryMax:         15 * time.Second,
		ShutdownGrace:    10 * time.Second,
		PartialRetry:     5 * time.Second,
	}
}

func (o *Options) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	d := DefaultOptions()
	def(&o.Batch, d.Batch)
	def(&o.Workers, d.Workers)
	def(&o.FetchConcurrency, d.FetchConcurrency)
	def(&o.MaxHeld, 8*o.Batch*o.Workers)
	defd(&o.AckWait, d.AckWait)
	defd(&o.RetryInitial, d.RetryInitial)
	defd(&o.RetryMax, d.RetryMax)
	defd(&o.ShutdownGrace, d.ShutdownGrace)
	defd(&o.PartialRetry, d.PartialRetry)
}

// maxAnswered bounds how many ids a Projector remembers the last fetch of
// (see Projector.answered); past it the memory starts afresh, which costs
// at most one spare fetch per id.
const maxAnswered = 200_000

// probeEvery is how often a paused projector pulls one batch anyway.
const probeEvery = 5 * time.Second

// maxPull bounds one pull request.
const maxPull = 1024

// Parts are what a Projector works with.
type Parts struct {
	Def       *projections.Definition
	Consumer  jetstream.Consumer
	Assembler Assembler
	Stores    []NamedStore
	Refs      RefStore // nil when no trigger looks a source up
	DLQ       DeadLetterer
	Publisher Publisher // for re-project events; needed with Refs
	// EventsHead, on a consumer of another stream than the events stream
	// (the own stream), returns the events stream's last sequence: without a
	// source version, documents are versioned by the events stream's
	// sequence, whatever stream the event that asked for them is on.
	EventsHead func(ctx context.Context) (uint64, error)
	Log        *slog.Logger
	Metrics    *Metrics // nil: unregistered metrics
	// Kind names a consumer other than the live one ("reproject", "replay",
	// "retry"): logs say it, and metrics are labelled "<projection>/<kind>".
	Kind string
	// Delays is set on the retry consumer: a partial document's newest event
	// is redelivered after a backoff. Elsewhere it is acknowledged and a
	// retry event published, so waiting documents never fill the live
	// consumer's ack-pending limit.
	Delays bool
	// Tracing, when on, traces every id processed (see trace.go); nil: off,
	// and nothing is spent on it.
	Tracing *telemetry.Tracing
}

// Projector runs one projection. Create it with New; Run it once.
type Projector struct {
	def    *projections.Definition
	cons   jetstream.Consumer
	asm    Assembler
	stores []NamedStore
	refs   RefStore
	pub    Publisher
	dlq    DeadLetterer
	log    *slog.Logger
	// eventsHead: see Parts.EventsHead; nil on the live consumer.
	eventsHead func(ctx context.Context) (uint64, error)
	settleWarn rate.Sometimes // spaces out the log of failed acks (see settled)
	m          *Metrics
	o          Options
	label      string              // the projection's name, with "/<kind>" on the other consumers (see Parts.Kind)
	delays     bool                // see Parts.Delays
	kind       string              // Parts.Kind, "live" for the live consumer
	stored     prometheus.Observer // m.EventToStore of this projection and consumer
	tracing    *telemetry.Tracing  // see Parts.Tracing
	fanout     chan jetstream.Msg  // lookup events waiting to fan out

	// head is a stream sequence every event up to which was stored before
	// now: the highest sequence plus pending count of any message received
	// (JetStream numbers a stream's messages in the order it stores them,
	// and a message's pending count is how many matching ones follow it).
	// A fetch that starts now answers every event up to head: it sees at
	// least the changes they announce. It needs no clock.
	head atomic.Uint64

	sched   *schedule[jetstream.Msg] // the events held, by id (see schedule)
	failing atomic.Bool              // the last batch failed for a dependency and nothing succeeded
}

// New builds a Projector from its parts.
func New(p Parts, o Options) *Projector {
	o.defaults()
	m := p.Metrics
	if m == nil {
		m = NewMetrics(nil)
	}
	pr := &Projector{
		def: p.Def, cons: p.Consumer, asm: p.Assembler, stores: p.Stores, refs: p.Refs, pub: p.Publisher,
		dlq: p.DLQ, m: m, o: o, eventsHead: p.EventsHead, settleWarn: rate.Sometimes{Interval: 5 * time.Second},
		fanout: make(chan jetstream.Msg, 256),
		label:  p.Def.Name,
		log:    p.Log.With("projection", p.Def.Name),
		delays: p.Delays, kind: cmp.Or(p.Kind, "live"), tracing: p.Tracing,
	}
	if p.Kind != "" {
		pr.label += "/" + p.Kind
		pr.log = pr.log.With("consumer", p.Kind)
	}
	pr.sched = newSchedule(o.Batch, o.MaxHeld, seqOf, pr.backoff)
	pr.stored = m.EventToStore.WithLabelValues(pr.def.Name, pr.kind)
	pr.sched.onHeld = func(n int) { m.Held.WithLabelValues(pr.label).Set(float64(n)) }
	return pr
}

// Run pulls and processes events until ctx ends, then shuts down: it stops
// pulling, lets in-flight batches finish within the grace period, and Naks
// every message still held so another process gets it at once. It returns
// nil after a clean shutdown and an error when its consumer is gone; then
// every part stops the same way.
func (p *Projector) Run(ctx context.Context) error {
	// Work outlives ctx by the grace period so in-flight batches can finish.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(p.o.ShutdownGrace, cancelWork)
		context.AfterFunc(work, func() { t.Stop() })
	})
	defer stopGrace()

	// The first part to fail (a consumer gone) stops every other part.
	g, gctx := errgroup.WithContext(ctx)
	stopGraceOnFail := context.AfterFunc(gctx, func() {
		if ctx.Err() == nil { // failed, not shut down: the same grace applies
			t := time.AfterFunc(p.o.ShutdownGrace, cancelWork)
			context.AfterFunc(work, func() { t.Stop() })
		}
	})
	defer stopGraceOnFail()
	g.Go(func() error { return p.pull(gctx) })
	for range p.o.Workers {
		g.Go(func() error { p.work(gctx, work); return nil })
	}
	g.Go(func() error { p.keepAlive(gctx); return nil })
	for range 2 {
		g.Go(func() error { p.fanOut(gctx); return nil })
	}
	err := g.Wait()
	p.nakHeld()
	return err
}

// pull fetches messages while there is room and no dependency is failing.
// It returns an error when the consumer is gone (deleted by someone): the
// process then stops, and its restart creates the consumer again.
func (p *Projector) pull(ctx context.Context) error {
	delay := time.Second
	var lastPull time.Time
	failures := 0 // pulls failed in a row; from 2, logged as failing
	for ctx.Err() == nil {
		// While a dependency fails, pull only a probe batch now and then: the
		// events stay in JetStream, and a lone id that keeps failing cannot
		// stop the others for long.
		if p.failing.Load() && time.Since(lastPull) < probeEvery {
			p.m.Paused.WithLabelValues(p.label).Set(1)
			sleep(ctx, 100*time.Millisecond)
			continue
		}
		p.m.Paused.WithLabelValues(p.label).Set(0)
		room := p.sched.room()
		if room <= 0 {
			select {
			case <-ctx.Done():
			case <-p.sched.roomFreed():
			case <-time.After(time.Second):
			}
			continue
		}
		lastPull = time.Now()
		// Pull well ahead of the workers: the further ahead, the more
		// duplicate events for one id coalesce into one fetch.
		batch, err := p.cons.Fetch(min(room, maxPull), jetstream.FetchMaxWait(time.Second))
		if err == nil {
			for msg := range batch.Messages() {
				p.accept(ctx, msg)
			}
			err = batch.Error() // a failure after the request was sent
		}
		if err != nil && ctx.Err() == nil {
			if gone := p.consumerGone(ctx, err); gone != nil {
				return gone
			}
			p.m.PullErrors.WithLabelValues(p.label).Inc()
			// One failed pull is no outage: a consumer just made with
			// replicas has no leader for a moment ("no responders"). A
			// second failure in a row is one, logged once until pulls work.
			failures++
			if failures == 2 {
				p.log.Warn("pulling events failed; retrying with backoff", "consumer", p.consumerName(), "err", err, "in", delay, "failures", failures)
			} else {
				p.log.Debug("pulling events failed", "err", err, "in", delay, "failures", failures)
			}
			sleep(ctx, delay)
			delay = min(2*delay, 30*time.Second)
			continue
		}
		if err == nil {
			if failures >= 2 {
				p.log.Info("pulling events works again", "consumer", p.consumerName())
			}
			failures = 0
		}
		delay = time.Second
	}
	return nil
}

// consumerGone returns an error when err, from pulling, means the durable
// consumer no longer exists. A pull to a deleted consumer may also just find
// no responders, as during a leader election, so then the consumer is looked
// up to tell the two apart.
func (p *Projector) consumerGone(ctx context.Context, err error) error {
	if !errors.Is(err, jetstream.ErrConsumerDeleted) && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, ierr := p.cons.Info(ictx)
		cancel()
		if !errors.Is(ierr, jetstream.ErrConsumerNotFound) {
			return nil
		}
		err = ierr
	}
	return fmt.Errorf("projector %s: the durable consumer %s is gone, stopping (a restart creates it again): %w", p.def.Name, p.consumerName(), err)
}

// consumerName is the name of the durable consumer, for logs.
func (p *Projector) consumerName() string {
	if info := p.cons.CachedInfo(); info != nil {
		return info.Name
	}
	return ""
}

// accept reads the id of one event and queues it, hands a lookup event to
// the fan-out, or dead-letters a bad event.
func (p *Projector) accept(ctx context.Context, msg jetstream.Msg) {
	ev, err := p.def.Route(msg.Subject(), msg.Data())
	switch {
	case err != nil:
		p.deadLetter(context.WithoutCancel(ctx), msg, "", err.Error())
		return
	case ev.Lookup != "":
		select {
		case p.fanout <- msg:
		case <-ctx.Done():
			p.nak(msg)
		}
		return
	}
	p.see(msg)
	if p.sched.add(ev.ID, msg) {
		// Stored before the id's last written fetch started: that fetch
		// answers it (a burst of events for one id, pulled after its fetch).
		p.ackMsg(msg)
		p.m.Events.WithLabelValues(p.label, "coalesced").Inc()
	}
}

// see moves head on with what msg tells.
func (p *Projector) see(msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		return
	}
	for h := md.Sequence.Stream + md.NumPending; ; {
		cur := p.head.Load()
		if h <= cur || p.head.CompareAndSwap(cur, h) {
			break
		}
	}
}

// work processes batches of ready ids until ctx ends.
func (p *Projector) work(ctx, work context.Context) {
	for {
		jobs := p.sched.take(ctx)
		if jobs == nil {
			return
		}
		batch := make([]item, len(jobs))
		for i, j := range jobs {
			batch[i] = item{job: j}
		}
		p.process(ctx, work, batch)
	}
}

// item is one id in flight with the messages it answers.
type item struct {
	job[jetstream.Msg]
	answers uint64 // the head when its fetch started: it answers every event up to it
}

// outcome is what happened to one id.
type outcome struct {
	err       error // nil: written
	permanent bool  // dead-letter its events
	// recheck: written, but the guard found it racing another replica's
	// write (see attempt): fetch the id again before its events are acked.
	recheck bool
}

// maxRechecks bounds the fetches of one id in a row that recheck a race;
// past it the events are acked (an entity that keeps flipping between
// deleted and re-created also keeps sending events).
const maxRechecks = 4

// process fetches, builds and writes one batch and settles its messages.
func (p *Projector) process(ctx, work context.Context, batch []item) {
	start := time.Now()
	// Every event up to head was stored before the fetches start now, so
	// they answer all of them.
	head := p.head.Load()
	for i := range batch {
		batch[i].answers = max(head, uint64(maxSeq(batch[i])))
	}
	bt := p.startTrace(work, batch)
	out := p.attempt(work, head, batch, bt, func() { p.absorb(batch) })
	var written, retried, rechecked int
	var firstErr error
	var built []sink.Built
	for i, it := range batch {
		f := p.settle(work, it, out[i])
		bt.end(i, f, out[i].err)
		switch f {
		case settledWritten:
			written++
			if p.refs != nil {
				o := out[i]
				built = append(built, sink.Built{ID: it.id, Version: o.version, Deleted: o.deleted, Refs: o.refs})
			}
		case settledRechecked:
			rechecked++
		case settledRetried:
			retried++
			if firstErr == nil {
				firstErr = out[i].err
			}
		}
	}
	if err := p.commitRefs(work, built); err != nil {
		// The new refs were added before the joins were fetched; only the
		// removal of old ones failed, which costs a spare re-projection later.
		p.log.Warn("cleaning old reverse lookups failed", "err", err)
	}
	took := time.Since(start)
	p.m.BatchSeconds.WithLabelValues(p.label).Observe(took.Seconds())
	p.log.Debug("batch done", "ids", len(batch), "written", written, "retried", retried, "rechecked", rechecked, "took", took)
	failing := retried > 0 && written == 0 && rechecked == 0
	if was := p.failing.Swap(failing); was != failing {
		if failing {
			p.log.Warn("a dependency is failing: pulling paused, retrying with backoff", "err", firstErr)
		} else {
			p.log.Info("dependencies answer again: pulling resumed")
		}
	} else if failing && ctx.Err() == nil {
		p.log.Debug("still failing", "err", firstErr)
	}
}

// absorb adds to each in-flight item the events its fetch answers that
// arrived while it was fetched (see schedule.absorb).
func (p *Projector) absorb(batch []item) {
	for i := range batch {
		batch[i].msgs = p.sched.absorb(batch[i].id, batch[i].answers, batch[i].msgs)
	}
}

func (p *Projector) commitRefs(ctx context.Context, built []sink.Built) error {
	if len(built) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return p.refs.Commit(ctx, built)
}

// backoff is the delay before the n-th retry: exponential with full jitter
// over its upper half, capped at RetryMax.
func (p *Projector) backoff(n int) time.Duration {
	d := p.o.RetryInitial << min(n-1, 16)
	if d <= 0 || d > p.o.RetryMax {
		d = p.o.RetryMax
	}
	return d/2 + rand.N(d/2+1)
}

// keepAlive tells JetStream every held message is still being worked on, so
// that a message waiting behind a retry is not redelivered elsewhere.
func (p *Projector) keepAlive(ctx context.Context) {
	t := time.NewTicker(p.o.AckWait / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, m := range p.sched.heldMsgs() {
			p.inProgress(m)
		}
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
