package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/readside/readside/internal/assemble"
	"github.com/readside/readside/internal/benchkit"
	"github.com/readside/readside/internal/fixture"
	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/source"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/telemetry"
	"github.com/readside/readside/projections"
)

const howToStart = "start the test services with `make testenv` (or run `make bench`, which does)"

// bench is what every scenario shares: the services, two NATS connections
// (one publishing, one for the projector and the consumer baseline) and the
// namespace under which every key, index and stream of this run is made.
type bench struct {
	s      *settings
	log    *slog.Logger
	out    io.Writer        // progress
	base   string           // namespace prefix of this run, such as "bench3f9a1c"
	seq    int              // projections made so far, for unique names; 0: nothing to clean
	stores *benchkit.Stores // the servers; nil when -backends has no need of them
	// tracing is on when the OTEL_* environment turns it on (see
	// internal/telemetry); nil: off, as by default.
	tracing *telemetry.Tracing
	srv     *server.Server
	dir     string // JetStream store
	pubNC   *nats.Conn
	pubJS   jetstream.JetStream
	projNC  *nats.Conn
	projJS  jetstream.JetStream
	round   baselines       // measured in the current round
	times   timings         // of the clients above and of the projector's source client
	idle    benchkit.CPUUse // one second before the run
}

// baselines are the rates of 1a and 1b in the current round, 0 when not run.
type baselines struct {
	consume     float64              // 1a: JetStream consume+ack, distinct subjects, events/s
	consumeDups float64              // 1a: the same over scenario 4's repeated subjects
	stores      map[storeSet]float64 // 1b: both stores, docs/s, on each set of stores
}

func newBaselines() baselines { return baselines{stores: map[storeSet]float64{}} }

// ceiling is the store-bound ceiling of the projector on set: the slower of
// the two baselines, or 0 when either is missing.
func (b baselines) ceiling(set storeSet) float64 {
	if b.consume == 0 || b.stores[set] == 0 {
		return 0
	}
	return min(b.consume, b.stores[set])
}

// ceilingDups is ceiling for scenario 4's events. Its stores baseline is the
// same: coalescing only lowers the writes an event costs.
func (b baselines) ceilingDups(set storeSet) float64 {
	if b.consumeDups == 0 || b.stores[set] == 0 {
		return 0
	}
	return min(b.consumeDups, b.stores[set])
}

// start checks the services (unless -backends is embedded only) and starts
// the embedded JetStream server. Close the bench when done: it deletes
// everything the run made.
func start(ctx context.Context, s *settings, log *slog.Logger, out io.Writer) (*bench, error) {
	base, err := benchkit.Namespace("bench")
	if err != nil {
		return nil, err
	}
	b := &bench{s: s, log: log, out: out, base: base}
	// Traced as the projector is, when the OTEL_* environment says so
	// (README: Tracing): how its cost is measured.
	if b.tracing, err = telemetry.New(ctx, "readside-bench", log); err != nil {
		return nil, err
	}
	if slices.Contains(s.backends, servers) {
		b.stores, err = benchkit.Connect(ctx, benchkit.StoresConfig{
			RedisAddr: s.RedisAddr, ElasticURL: s.ElasticURL, HowToStart: howToStart, Tracing: b.tracing,
			WrapElastic: func(next http.RoundTripper) http.RoundTripper {
				return timedTransport{t: &b.times.index, match: isBulk, next: next}
			},
		})
		if err != nil {
			return nil, err
		}
		b.stores.Redis.AddHook(pipelineHook{&b.times.docs})
		if err := b.tracing.InstrumentRedis(b.stores.Redis); err != nil {
			b.close()
			return nil, err
		}
	}
	if err := b.startJetStream(); err != nil {
		b.close()
		return nil, err
	}
	// How busy the machine is before we start: the others' share is noise
	// that no baseline of ours will see coming.
	if b.idle, err = benchkit.MeasureIdle(ctx, b.pids()); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

func (b *bench) startJetStream() error {
	dir, err := os.MkdirTemp("", "readside-bench-")
	if err != nil {
		return err
	}
	b.dir = dir
	b.srv, err = server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true,
	})
	if err != nil {
		return fmt.Errorf("embedded NATS server: %w", err)
	}
	go b.srv.Start()
	if !b.srv.ReadyForConnections(10 * time.Second) {
		return errors.New("embedded NATS server did not start within 10s")
	}
	if b.pubNC, b.pubJS, err = connect(b.srv.ClientURL(), "readside-bench-publisher"); err != nil {
		return err
	}
	b.projNC, b.projJS, err = connect(b.srv.ClientURL(), "readside-bench-projector")
	return err
}

func connect(url, name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url, nats.Name(name))
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to the embedded NATS server: %w", err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// pids are those of Redis and Elasticsearch, for SampleCPU; none without the servers.
func (b *bench) pids() benchkit.PIDs {
	if b.stores == nil {
		return benchkit.PIDs{}
	}
	return b.stores.PIDs
}

// close deletes every Redis key and Elasticsearch index of the run, stops the
// JetStream server and removes its store.
func (b *bench) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if b.stores != nil {
		if b.seq > 0 {
			if err := b.stores.Clean(ctx, b.base); err != nil {
				b.progress("%v", err)
			}
		}
		b.stores.Close()
	}
	if err := b.tracing.Shutdown(ctx); err != nil {
		b.progress("tracing: %v", err)
	}
	for _, nc := range []*nats.Conn{b.pubNC, b.projNC} {
		if nc != nil {
			nc.Close()
		}
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(b.out, "bench: "+format+"\n", args...)
}

// describe is the report's header: where and how the figures were taken.
func (b *bench) describe() []string {
	where := "JetStream embedded (file store)"
	if b.tracing.On() {
		where += "; tracing on (OTEL_* environment)"
	}
	if b.stores != nil {
		where = b.stores.Describe() + "; " + where
	}
	flags := fmt.Sprintf("-events %d -runs %d -scenarios %s", b.s.events, b.s.Runs, strings.Join(b.s.Scenarios, ","))
	if slices.Contains(b.s.backends, embedded) {
		dir := b.s.embeddedDir
		if dir == "" {
			dir = os.TempDir()
		}
		where += fmt.Sprintf("; embedded stores: bbolt ‖ bleve in a fresh directory under %s per scenario", dir)
		flags += " -backends " + b.s.backendsFlag
	}
	return append(benchkit.Machine(b.idle), where, flags)
}

// projection is one fresh projection of the fake shop API, with streams,
// keys and an index of its own, so that no scenario sees another's state.
type projection struct {
	ns      string
	def     *projections.Definition
	api     *fixture.ShopAPI
	streams *stream.Setup
	// stores opens the projection's stores (see openStores); nil when it
	// has none. closeStores, when not nil, closes them.
	stores      projector.StoreOpener
	closeStores func() error
}

// newProjection makes a projection named after label, whose source knows
// the shops ids.
func (b *bench) newProjection(ctx context.Context, label string, ids []string) (*projection, error) {
	b.seq++
	ns := fmt.Sprintf("%s-%s-%d", b.base, label, b.seq)
	api := fixture.NewShopAPI()
	for _, id := range ids {
		api.Put(id, shopName(id))
	}
	def, err := projections.Parse(ns+".yaml", []byte(fixture.ShopDefinition(ns, api.URL, true)), projections.Options{})
	if err != nil {
		api.Close()
		return nil, err
	}
	upper := strings.ToUpper(ns)
	streams, err := stream.Ensure(ctx, b.projJS, stream.Config{
		Events: upper + "_EVENTS", DeadLetter: upper + "_DLQ", DLQPrefix: ns + ".dlq",
	}, []string{ns + ".shop.>"})
	if err != nil {
		api.Close()
		return nil, err
	}
	return &projection{ns: ns, def: def, api: api, streams: streams}, nil
}

// closeProjection deletes the projection's streams, keys and index, and
// closes its stores.
func (b *bench) closeProjection(p *projection) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p.api.Close()
	cfg := p.streams.Config()
	errs := []error{
		b.projJS.DeleteStream(ctx, cfg.Events),
		b.projJS.DeleteStream(ctx, cfg.DeadLetter),
	}
	if p.closeStores != nil {
		errs = append(errs, p.closeStores())
	}
	if b.stores != nil {
		errs = append(errs, b.stores.DeleteKeys(ctx, p.ns+":"), b.stores.DeleteIndices(ctx, p.ns+"-shops-*"))
	}
	return errors.Join(errs...)
}

// shopName is a plausible shop name, so documents have a realistic size.
func shopName(id string) string {
	kinds := []string{"Pizzeria", "Trattoria", "Ramen Bar", "Bäckerei", "Taqueria", "Bistro"}
	areas := []string{"Kreuzberg", "Mitte", "Gangnam", "Alfama", "South Congress", "Prenzlauer Berg"}
	n, _ := strconv.Atoi(id)
	return fmt.Sprintf("%s %s %s", kinds[n%len(kinds)], areas[(n/7)%len(areas)], id)
}

// ids are n distinct ids.
func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(100000 + i)
	}
	return out
}

// subject is the change event subject of id ("shop <id> changed", id in the subject).
func (p *projection) subject(id string) string { return p.ns + ".shop.changed." + id }

// stallWait is how long a publish may wait for room among the 4096 it
// keeps outstanding: long, so a busy machine slows the publisher down
// instead of failing the run.
var stallWait = jetstream.WithStallWait(30 * time.Second)

// publishAll publishes one zero-payload event per subject, asynchronously,
// and waits until JetStream has stored every one.
func (b *bench) publishAll(ctx context.Context, subjects []string) error {
	futures := make([]jetstream.PubAckFuture, 0, len(subjects))
	for _, s := range subjects {
		f, err := b.pubJS.PublishAsync(s, nil, stallWait)
		if err != nil {
			return fmt.Errorf("publishing: %w", err)
		}
		futures = append(futures, f)
	}
	return b.published(ctx, futures)
}

// publishPaced publishes one zero-payload event per subject at rate events/s.
// It returns when JetStream has stored every one.
func (b *bench) publishPaced(ctx context.Context, subjects []string, rate int) error {
	futures := make([]jetstream.PubAckFuture, 0, len(subjects))
	const tick = 5 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	began := time.Now()
	for sent := 0; sent < len(subjects); {
		due := min(len(subjects), int(time.Since(began).Seconds()*float64(rate))+1)
		for ; sent < due; sent++ {
			f, err := b.pubJS.PublishAsync(subjects[sent], nil, stallWait)
			if err != nil {
				return fmt.Errorf("publishing: %w", err)
			}
			futures = append(futures, f)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return b.published(ctx, futures)
}

func (b *bench) published(ctx context.Context, futures []jetstream.PubAckFuture) error {
	select {
	case <-b.pubJS.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(b.s.timeout):
		return fmt.Errorf("JetStream did not store the events within %v", b.s.timeout)
	}
	for _, f := range futures {
		select {
		case err := <-f.Err():
			return fmt.Errorf("publishing %s: %w", f.Msg().Subject, err)
		default:
		}
	}
	return nil
}

// consumer is a handle on the projection's durable consumer for Info calls,
// on the publisher's connection so that it does not queue behind the
// projector's traffic.
func (b *bench) consumer(ctx context.Context, p *projection) (jetstream.Consumer, error) {
	return b.pubJS.Consumer(ctx, p.streams.Config().Events, stream.ConsumerName(p.def.Name))
}

// pollEvery is how often waitDrained asks the consumer; it bounds the
// precision of every end-to-end time.
const pollEvery = 20 * time.Millisecond

// waitDrained waits until cons has no pending and no unacked event and
// returns when that was seen, and the consumer's last info. It calls poll,
// when not nil, with every info it gets.
func (b *bench) waitDrained(ctx context.Context, cons jetstream.Consumer, poll func(*jetstream.ConsumerInfo)) (time.Time, *jetstream.ConsumerInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, b.s.timeout)
	defer cancel()
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	var last *jetstream.ConsumerInfo
	for {
		info, err := cons.Info(ctx)
		if err == nil {
			last = info
			if poll != nil {
				poll(info)
			}
			if info.NumPending == 0 && info.NumAckPending == 0 {
				return time.Now(), info, nil
			}
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return time.Time{}, last, fmt.Errorf("not drained within %v: %d pending, %d unacked", b.s.timeout, last.NumPending, last.NumAckPending)
			}
			return time.Time{}, nil, fmt.Errorf("consumer info: %w", err)
		case <-t.C:
		}
	}
}

// running is a projector running in the background.
type running struct {
	reg   *prometheus.Registry
	began time.Time // just before Run
	stop  func() error
}

// runProjector builds the projector of p with ForDefinition and o and runs it
// until stop is called.
func (b *bench) runProjector(ctx context.Context, p *projection, o projector.Options) (*running, error) {
	reg := prometheus.NewRegistry()
	env := projector.Env{
		JetStream: b.projJS, Streams: p.streams, Stores: p.stores, Log: b.log, Metrics: projector.NewMetrics(reg),
		Transport:    sourceTransport(&b.times.source),
		SourceLimits: assemble.NewLimits(source.LimiterOptions{Max: b.s.sourceMax}, reg),
		Tracing:      b.tracing,
	}
	pr, err := projector.ForDefinition(ctx, p.def, env, o)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	r := &running{reg: reg, began: time.Now()}
	go func() { done <- pr.Run(runCtx) }()
	r.stop = func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			return errors.New("the projector did not stop within 30s")
		}
	}
	return r, nil
}

// stats are what the projector's metrics say about a run.
type stats struct {
	events       map[string]float64 // by outcome
	batches      uint64
	batchSeconds float64
	held         float64 // messages held now: pending and in flight
}

func (r *running) stats() stats {
	st := stats{events: map[string]float64{}}
	mfs, err := r.reg.Gather()
	if err != nil {
		return st
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "readside_projector_held_messages":
			for _, m := range mf.GetMetric() {
				st.held += m.GetGauge().GetValue()
			}
		case "readside_projector_events_total":
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "outcome" {
						st.events[l.GetValue()] += m.GetCounter().GetValue()
					}
				}
			}
		case "readside_projector_batch_seconds":
			for _, m := range mf.GetMetric() {
				st.batches += m.GetHistogram().GetSampleCount()
				st.batchSeconds += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return st
}
