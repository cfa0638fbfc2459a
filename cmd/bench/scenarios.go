package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/readside/readside/internal/benchkit"
	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/stream"
)

// The defaults of projector.Options and of the sources' adaptive limit
// (source.DefaultLimitMax), which the bounds of the table assume.
const (
	defaultBatch            = 256
	defaultWorkers          = 4
	defaultFetchConcurrency = 0   // no per-batch bound: the adaptive limit alone
	defaultSourceMax        = 512 // -source-max-concurrency
)

// consumeBatch is how many messages the consumer baseline fetches at once:
// the most the projector pulls at once (its maxPull, at the time of writing).
const consumeBatch = 1024

// onEachBackend runs scenario name of one round on every set of stores of
// -backends, in order (js, which writes no document, once), and gives each
// embedded row the rate of the same row on the servers just before.
func (b *bench) onEachBackend(ctx context.Context, name string, round int) ([]result, error) {
	if name == "js" {
		b.progress("round %d/%d: %s", round, b.s.Runs, name)
		return b.jetStreamAlone(ctx)
	}
	var all, onServers []result
	for _, set := range b.s.backends {
		if set == servers {
			b.progress("round %d/%d: %s", round, b.s.Runs, name)
		} else {
			b.progress("round %d/%d: %s, %s", round, b.s.Runs, name, set)
		}
		rs, err := b.scenario(ctx, name, set)
		if err != nil {
			return nil, fmt.Errorf("on %s: %w", set, err)
		}
		if set == servers {
			onServers = rs
		} else if len(onServers) == len(rs) { // the same rows, in the same order
			for i := range rs {
				rs[i].serversRate = onServers[i].rate()
			}
		}
		all = append(all, rs...)
	}
	return all, nil
}

// scenario runs scenario name (any but js) on set.
func (b *bench) scenario(ctx context.Context, name string, set storeSet) ([]result, error) {
	switch name {
	case "stores":
		r, err := b.storesAlone(ctx, set)
		return []result{r}, err
	case "e2e":
		all := ids(b.s.events)
		r, err := b.projectorRun(ctx, projectorCase{
			row:   fmt.Sprintf("2. projector, source 0 ms, %d distinct ids, all published up front%s", len(all), set.rowSuffix()),
			label: "e2e", ids: all, events: all, set: set,
		})
		r.ref, r.refRate = set.ceilingRef("1a"), b.round.ceiling(set)
		return []result{r}, err
	case "latency":
		return b.latency(ctx, set)
	case "dups":
		return b.duplicates(ctx, set)
	case "step":
		r, err := b.step(ctx, set)
		return []result{r}, err
	}
	return nil, fmt.Errorf("unknown scenario %q", name)
}

// jetStreamAlone is baseline 1a: N events published asynchronously, then
// fetched by the projector's kind of durable consumer (same filters, same
// config) in batches and acked one by one, timed until JetStream counts no
// event unacked. It runs twice: over N distinct subjects (scenarios 2 and 3)
// and over scenario 4's subjects, dupFactor events each, shuffled.
func (b *bench) jetStreamAlone(ctx context.Context) ([]result, error) {
	distinct := ids(b.s.events)
	pub, consume, err := b.consumeAlone(ctx, distinct)
	if err != nil {
		return nil, err
	}
	consume.row = fmt.Sprintf("1a. JetStream alone: pull consume + ack, batches of %d, distinct subjects", consumeBatch)
	b.round.consume = consume.rate()
	_, dups, err := b.consumeAlone(ctx, dupEvents(b.s.events, b.s.dupFactor))
	if err != nil {
		return nil, err
	}
	dups.row = fmt.Sprintf("1a. JetStream alone: pull consume + ack, batches of %d, %d events per subject (as in 4)", consumeBatch, b.s.dupFactor)
	b.round.consumeDups = dups.rate()
	return []result{pub, consume, dups}, nil
}

// consumeAlone publishes one event per id of events and consumes them.
func (b *bench) consumeAlone(ctx context.Context, events []string) (pub, consume result, err error) {
	n := len(events)
	p, err := b.newProjection(ctx, "js", nil)
	if err != nil {
		return pub, consume, err
	}
	defer b.closeProjection(p)
	subjects := make([]string, n)
	for i, id := range events {
		subjects[i] = p.subject(id)
	}

	cpu := benchkit.SampleCPU(b.pids())
	began := time.Now()
	if err := b.publishAll(ctx, subjects); err != nil {
		return pub, consume, err
	}
	pub = result{
		row: "1a. JetStream alone: async publish (context, not a baseline)", events: n, seconds: time.Since(began).Seconds(),
		fetches: -1, cpu: cpu.Since(),
	}

	var triggers []string
	for _, t := range p.def.Triggers {
		triggers = append(triggers, t.Subject)
	}
	cons, err := p.streams.Consumer(ctx, p.def.Name, triggers, stream.ConsumerConfig{})
	if err != nil {
		return pub, consume, err
	}
	cpu = benchkit.SampleCPU(b.pids())
	began = time.Now()
	deadline := began.Add(b.s.timeout)
	fetches := 0
	for got := 0; got < n; {
		if time.Now().After(deadline) {
			return pub, consume, fmt.Errorf("consumed %d of %d events in %v", got, n, b.s.timeout)
		}
		batch, err := cons.Fetch(consumeBatch, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return pub, consume, fmt.Errorf("fetch: %w", err)
		}
		fetches++
		for m := range batch.Messages() {
			if err := m.Ack(); err != nil {
				return pub, consume, fmt.Errorf("ack: %w", err)
			}
			got++
		}
	}
	end, _, err := b.waitDrained(ctx, cons, nil)
	if err != nil {
		return pub, consume, err
	}
	consume = result{
		events: n, seconds: end.Sub(began).Seconds(), fetches: -1, cpu: cpu.Since(),
		notes: []string{fmt.Sprintf("%d fetch requests; consumer filters %s", fetches, strings.Join(triggers, ", "))},
	}
	return pub, consume, nil
}

// dupEvents are the ids of n events over n/factor ids, factor events each,
// shuffled the same way in every run.
func dupEvents(n, factor int) []string {
	distinct := ids(n / factor)
	events := make([]string, n)
	for i := range events {
		events[i] = distinct[i%len(distinct)]
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(n, func(i, j int) { events[i], events[j] = events[j], events[i] })
	return events
}

// storesAlone is baseline 1b: N shop documents, built by the projection's
// Build from the fake API's bodies, written to the doc store and the index
// that ForDefinition opens on set (redisstore.Store and elasticindex.Index, or
// boltstore.Docs and bleveindex.Index), both stores at once per batch, as the
// projector does.
func (b *bench) storesAlone(ctx context.Context, set storeSet) (result, error) {
	w, err := b.writeStores(ctx, "stores", b.s.events, set)
	if err != nil {
		return result{}, err
	}
	docsCall, indexCall := set.calls()
	r := result{
		row:    fmt.Sprintf("1b. stores alone: %s, batches of %d, %d in flight", set.stores(), b.s.storeBatch, b.s.storeWorkers),
		events: b.s.events, seconds: w.seconds, fetches: -1, cpu: w.cpu,
		notes: []string{fmt.Sprintf("mean %s %.1f ms, %s %.1f ms; documents %d B on average",
			docsCall, ms(w.docsMean), indexCall, ms(w.indexMean), w.docBytes)},
	}
	b.round.stores[set] = r.rate()
	return r, nil
}

// warmup writes a few thousand documents to the servers and throws them
// away, so that the first baseline does not pay for Elasticsearch's JIT and
// index creation.
func (b *bench) warmup(ctx context.Context) error {
	_, err := b.writeStores(ctx, "warmup", 4096, servers)
	return err
}

// storeWrite is how long writing N documents took.
type storeWrite struct {
	seconds   float64
	cpu       benchkit.CPUUse
	docsMean  time.Duration // per batch: see timings
	indexMean time.Duration // per batch
	docBytes  int           // mean document size
}

func (b *bench) writeStores(ctx context.Context, label string, n int, set storeSet) (storeWrite, error) {
	all := ids(n)
	p, err := b.newProjection(ctx, label, all)
	if err != nil {
		return storeWrite{}, err
	}
	defer b.closeProjection(p)
	// The stores ForDefinition opens.
	if err := b.openStores(p, set); err != nil {
		return storeWrite{}, err
	}
	stores, err := p.stores.For(ctx, p.def)
	if err != nil {
		return storeWrite{}, err
	}
	docs := make([]sink.Doc, n)
	size := 0
	for i, id := range all {
		answers := map[string][]byte{"shop": p.api.Body(id)}
		body, err := p.def.Build(id, answers)
		if err != nil {
			return storeWrite{}, err
		}
		v, err := p.def.VersionOf(answers)
		if err != nil {
			return storeWrite{}, err
		}
		docs[i] = sink.Doc{ID: id, Version: v, Body: body}
		size += len(body)
	}

	var g errgroup.Group
	g.SetLimit(b.s.storeWorkers)
	b.times.reset()
	cpu := benchkit.SampleCPU(b.pids())
	began := time.Now()
	for start := 0; start < n; start += b.s.storeBatch {
		batch := docs[start:min(n, start+b.s.storeBatch)]
		g.Go(func() error {
			var both errgroup.Group
			both.Go(func() error { return stores.Docs.Write(ctx, batch) })
			both.Go(func() error { return stores.Index.Write(ctx, batch) })
			return both.Wait()
		})
	}
	if err := g.Wait(); err != nil {
		return storeWrite{}, err
	}
	return storeWrite{
		seconds: time.Since(began).Seconds(), cpu: cpu.Since(),
		docsMean:  b.times.docs.mean(),
		indexMean: b.times.index.mean(),
		docBytes:  size / n,
	}, nil
}

func ms(d time.Duration) float64 { return d.Seconds() * 1000 }

// latency is scenario 3: scenario 2 with a slow source, once per
// FetchConcurrency, every time under the source's adaptive limit.
func (b *bench) latency(ctx context.Context, set storeSet) ([]result, error) {
	all := ids(b.s.events)
	var out []result
	for _, fc := range b.s.latencyFC {
		name := fmt.Sprintf("FetchConcurrency %d", fc)
		if fc == defaultFetchConcurrency {
			name += " (default)"
		}
		if b.s.sourceMax != defaultSourceMax {
			name += fmt.Sprintf(", source max concurrency %d", b.s.sourceMax)
		}
		r, err := b.projectorRun(ctx, projectorCase{
			row:   fmt.Sprintf("3. projector, source %v, %s, %d distinct ids, up front%s", b.s.latency, name, len(all), set.rowSuffix()),
			label: "latency", ids: all, events: all, latency: b.s.latency, set: set,
			opts: projector.Options{FetchConcurrency: fc},
		})
		if err != nil {
			return nil, err
		}
		// A batch fetches at most min(FetchConcurrency, Batch) ids per source
		// latency, Workers batches are in flight, and the source's adaptive
		// limit lets at most its ceiling be in flight.
		perBatch := defaultBatch
		if fc > 0 {
			perBatch = min(fc, defaultBatch)
		}
		inFlight := min(defaultWorkers*perBatch, b.s.sourceMax)
		bound := float64(inFlight) / b.s.latency.Seconds()
		r.ref, r.refRate = fmt.Sprintf("fetch bound %d/%v", inFlight, b.s.latency), bound
		if c := b.round.ceiling(set); c > 0 && c < bound {
			r.ref, r.refRate = set.ceilingRef("1a"), c
		}
		out = append(out, r)
	}
	return out, nil
}

// duplicates is scenario 4: N events over N/dupFactor ids, shuffled, first
// all published before the projector starts, then published at a steady
// rate while it runs.
func (b *bench) duplicates(ctx context.Context, set storeSet) ([]result, error) {
	distinct := ids(b.s.events / b.s.dupFactor)
	events := dupEvents(b.s.events, b.s.dupFactor)

	upFront, err := b.projectorRun(ctx, projectorCase{
		row:   fmt.Sprintf("4. projector, source 0 ms, %d events/id shuffled, all published up front%s", b.s.dupFactor, set.rowSuffix()),
		label: "dups", ids: distinct, events: events, set: set,
	})
	if err != nil {
		return nil, err
	}
	upFront.ref, upFront.refRate = set.ceilingRef("1a dup"), b.round.ceilingDups(set)
	steady, err := b.projectorRun(ctx, projectorCase{
		row:   fmt.Sprintf("4. projector, source 0 ms, %d events/id shuffled, published at %d/s while running%s", b.s.dupFactor, b.s.dupRate, set.rowSuffix()),
		label: "dups", ids: distinct, events: events, rate: b.s.dupRate, set: set,
	})
	if err != nil {
		return nil, err
	}
	steady.ref, steady.refRate = "offered rate", float64(b.s.dupRate)
	return []result{upFront, steady}, nil
}

// projectorCase is one end-to-end run of the projector.
type projectorCase struct {
	row     string
	label   string
	ids     []string // the shops the source knows
	events  []string // the id of every event, in publishing order
	latency time.Duration
	opts    projector.Options
	rate    int // events/s published while the projector runs; 0: all before it starts
	set     storeSet
	// during, when set, runs while the projector works; the notes its stop
	// function returns once the consumer is drained join the row's.
	during func(p *projection) (stop func() []string)
}

// step is scenario 5: distinct ids up front while the source's latency
// steps from 5 ms to 100 ms at a third of the fetches and back to 5 ms at
// two thirds. Per phase it notes the events/s and the most requests the
// source saw at once: with an adaptive limit they fall while it is slow and
// rise again after.
func (b *bench) step(ctx context.Context, set storeSet) (result, error) {
	all := ids(b.s.events)
	third := int64(len(all) / 3)
	during := func(p *projection) func() []string {
		running, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		var notes []string
		go func() {
			defer close(done)
			start, phase := time.Now(), 0
			lat := []time.Duration{5 * time.Millisecond, 100 * time.Millisecond, 5 * time.Millisecond}
			note := func() {
				peak, took := p.api.ResetPeak(), time.Since(start)
				notes = append(notes, fmt.Sprintf("phase %d (source %v): %.0f events/s, peak %d requests at once",
					phase+1, lat[phase], float64(third)/took.Seconds(), peak))
				start = time.Now()
			}
			for phase < 2 {
				time.Sleep(5 * time.Millisecond)
				if p.api.Fetches() >= third*int64(phase+1) {
					note()
					phase++
					p.api.SetLatency(lat[phase])
				}
				if running.Err() != nil {
					return
				}
			}
			<-running.Done()
			note()
		}()
		return func() []string { stop(); <-done; return notes }
	}
	r, err := b.projectorRun(ctx, projectorCase{
		row:   fmt.Sprintf("5. projector, source 5 → 100 → 5 ms, %d distinct ids, up front, default flags%s", len(all), set.rowSuffix()),
		label: "step", ids: all, events: all, latency: 5 * time.Millisecond, set: set, during: during,
	})
	r.ref, r.refRate = set.ceilingRef("1a"), b.round.ceiling(set)
	return r, err
}

// projectorRun publishes the events of c (before the projector starts, or
// at c.rate while it runs), runs a projector with ForDefinition and Run, and
// times it from Run until the consumer has no pending and no unacked event.
func (b *bench) projectorRun(ctx context.Context, c projectorCase) (result, error) {
	p, err := b.newProjection(ctx, c.label, c.ids)
	if err != nil {
		return result{}, err
	}
	defer b.closeProjection(p)
	if err := b.openStores(p, c.set); err != nil {
		return result{}, err
	}
	p.api.SetLatency(c.latency)
	subjects := make([]string, len(c.events))
	for i, id := range c.events {
		subjects[i] = p.subject(id)
	}
	if c.rate == 0 {
		if err := b.publishAll(ctx, subjects); err != nil {
			return result{}, err
		}
	}

	b.times.reset()
	cpu := benchkit.SampleCPU(b.pids())
	run, err := b.runProjector(ctx, p, c.opts)
	if err != nil {
		return result{}, err
	}
	stopped := false
	defer func() {
		if !stopped {
			run.stop()
		}
	}()
	var duringNotes func() []string
	if c.during != nil {
		duringNotes = c.during(p)
	}
	var published time.Time
	if c.rate > 0 {
		if err := b.publishPaced(ctx, subjects, c.rate); err != nil {
			return result{}, err
		}
		published = time.Now()
	}
	cons, err := b.consumer(ctx, p)
	if err != nil {
		return result{}, err
	}
	// How many messages the projector holds, sampled at every poll: whether
	// pulling keeps ahead of the workers (MaxHeld is 8 × Batch × Workers).
	var heldSum, heldMax, unacked float64
	var polls int
	end, info, err := b.waitDrained(ctx, cons, func(info *jetstream.ConsumerInfo) {
		h := run.stats().held
		heldSum, heldMax, polls = heldSum+h, max(heldMax, h), polls+1
		unacked += float64(info.NumAckPending)
	})
	if err != nil {
		return result{}, err
	}
	use := cpu.Since()
	var phaseNotes []string
	if duringNotes != nil {
		phaseNotes = duringNotes()
	}
	fetches := p.api.Fetches()
	stopped = true
	if err := run.stop(); err != nil {
		return result{}, fmt.Errorf("projector Run: %w", err)
	}
	st := run.stats()

	r := result{
		row: c.row, events: len(c.events), ids: len(c.ids), seconds: end.Sub(run.began).Seconds(),
		fetches: fetches, cpu: use,
	}
	var notes []string
	if st.batches > 0 {
		notes = append(notes, fmt.Sprintf("%d batches of %.0f ids on average, %.0f ms each",
			st.batches, float64(fetches)/float64(st.batches), 1000*st.batchSeconds/float64(st.batches)))
	}
	if polls > 0 {
		notes = append(notes, fmt.Sprintf("messages held: mean %.0f, peak %.0f (JetStream's unacked: mean %.0f)",
			heldSum/float64(polls), heldMax, unacked/float64(polls)))
	}
	docsCall, indexCall := c.set.calls()
	notes = append(notes, fmt.Sprintf("mean source GET %.1f ms, %s %.1f ms, %s %.1f ms; peak source requests at once: %d",
		ms(b.times.source.mean()), docsCall, ms(b.times.docs.mean()), indexCall, ms(b.times.index.mean()), p.api.PeakConcurrency()))
	if !published.IsZero() {
		notes = append(notes, fmt.Sprintf("drained %.2f s after the last event was stored", end.Sub(published).Seconds()))
	}
	var odd []string
	for _, o := range []string{"retried", "dead_lettered", "naked"} {
		if v := st.events[o]; v > 0 {
			odd = append(odd, fmt.Sprintf("%s %.0f", o, v))
		}
	}
	if info.NumRedelivered > 0 {
		odd = append(odd, fmt.Sprintf("redelivered %d", info.NumRedelivered))
	}
	if len(odd) > 0 {
		notes = append(notes, "events "+strings.Join(odd, ", ")+" (figures suspect)")
	}
	notes = append(notes, phaseNotes...)
	r.notes = notes
	return r, nil
}
