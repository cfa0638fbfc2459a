// Command projector consumes zero-payload change events from NATS JetStream,
// fetches the current state from the source APIs, and writes one flat
// document per entity to Redis and Elasticsearch, guarded by version.
//
// Usage:
//
//	projector -definitions DIR|FILE [flags]
//
// Every flag also reads an environment variable; run with -h for the list.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/readside/readside/internal/assemble"
	"github.com/readside/readside/internal/backend"
	"github.com/readside/readside/internal/config"
	"github.com/readside/readside/internal/health"
	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/query"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/source"
	"github.com/readside/readside/internal/statuspage"
	"github.com/readside/readside/internal/storeapi"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/telemetry"
	"github.com/readside/readside/internal/version"
	"github.com/readside/readside/projections"
)

func main() {
	os.Exit(config.Run("projector", func(ctx context.Context) error { return run(ctx, os.Args[1:], os.Stderr) }))
}

type settings struct {
	config.Common
	stream       string
	ownStream    string
	dlqStream    string
	replicas     int
	metricsAddr  string
	queryAddr    string
	stopDelay    time.Duration
	tombstoneTTL time.Duration
	retryBudget  time.Duration
	monitorEvery time.Duration
	sourceMax    int
	opts         projector.Options
	check        bool
	version      bool
}

func parse(args []string, out io.Writer) (*settings, error) {
	s := &settings{}
	d := projector.DefaultOptions()
	fs := config.NewFlagSet("projector", "projector -definitions DIR|FILE [flags]",
		"Consumes change events from JetStream and writes the projections' documents\nto Redis and Elasticsearch.\n", out)
	s.Common.Register(fs)
	fs.StringVar(&s.stream, "stream", config.Env("READSIDE_STREAM", "READSIDE_EVENTS"), "JetStream stream of change events [$READSIDE_STREAM]")
	fs.StringVar(&s.ownStream, "own-stream", config.Env("READSIDE_OWN_STREAM", "READSIDE_OWN"), "JetStream stream of Readside's own events: re-project, replay and retry requests [$READSIDE_OWN_STREAM]")
	fs.StringVar(&s.dlqStream, "dlq-stream", config.Env("READSIDE_DLQ_STREAM", "READSIDE_DLQ"), "JetStream dead-letter stream [$READSIDE_DLQ_STREAM]")
	fs.IntVar(&s.replicas, "stream-replicas", config.EnvInt("READSIDE_STREAM_REPLICAS", 1), "servers of the NATS cluster keeping the events and dead-letter streams and the durable consumers, 1 to 5; an existing stream is changed to it [$READSIDE_STREAM_REPLICAS]")
	fs.StringVar(&s.metricsAddr, "metrics-addr", config.Env("READSIDE_METRICS_ADDR", "127.0.0.1:9464"), "admin address serving /metrics, /livez, /readyz, /healthz (the old name of /readyz), the /status page and, with embedded stores, the store API /stores/v1/ (never expose it publicly); :9464 for Kubernetes' probes; empty disables [$READSIDE_METRICS_ADDR]")
	fs.StringVar(&s.queryAddr, "query-addr", config.Env("READSIDE_PROJECTOR_QUERY_ADDR", ""), "also serve the query API here, from this process, with its default settings: how a single machine on embedded stores serves reads (cmd/queryapi has every setting); empty: no [$READSIDE_PROJECTOR_QUERY_ADDR]")
	fs.DurationVar(&s.monitorEvery, "monitor-interval", config.EnvDuration("READSIDE_MONITOR_INTERVAL", 5*time.Second), "how often the projector asks JetStream for the stream, each durable consumer (availability, backlog, lag) and the dead-letter counts [$READSIDE_MONITOR_INTERVAL]")
	fs.DurationVar(&s.tombstoneTTL, "tombstone-ttl", config.EnvDuration("READSIDE_TOMBSTONE_TTL", sink.DefaultTombstoneTTL), "how long Redis keeps tombstones of deleted documents [$READSIDE_TOMBSTONE_TTL]")
	fs.DurationVar(&s.retryBudget, "source-retry-budget", config.EnvDuration("READSIDE_SOURCE_RETRY_BUDGET", assemble.DefaultRetryBudget), "retries of one source request before the id waits for a later retry [$READSIDE_SOURCE_RETRY_BUDGET]")
	fs.IntVar(&s.opts.Batch, "batch", config.EnvInt("READSIDE_BATCH", d.Batch), "ids per write batch [$READSIDE_BATCH]")
	fs.IntVar(&s.opts.Workers, "workers", config.EnvInt("READSIDE_WORKERS", d.Workers), "batches in flight at once [$READSIDE_WORKERS]")
	fs.IntVar(&s.sourceMax, "source-max-concurrency", config.EnvInt("READSIDE_SOURCE_MAX_CONCURRENCY", source.DefaultLimitMax), "ceiling of each source's adaptive concurrency limit: requests in flight to one source of a projection, across all batches; the limit starts at 32 and adapts to the source's latency and failures [$READSIDE_SOURCE_MAX_CONCURRENCY]")
	fs.IntVar(&s.opts.FetchConcurrency, "fetch-concurrency", config.EnvInt("READSIDE_FETCH_CONCURRENCY", 0), "source requests at once per batch, under each source's adaptive limit; 0: no bound of its own [$READSIDE_FETCH_CONCURRENCY]")
	fs.DurationVar(&s.opts.AckWait, "ack-wait", config.EnvDuration("READSIDE_ACK_WAIT", d.AckWait), "how long JetStream waits for an ack before redelivering, e.g. after a crash [$READSIDE_ACK_WAIT]")
	fs.DurationVar(&s.stopDelay, "shutdown-delay", config.EnvDuration("READSIDE_SHUTDOWN_DELAY", 0), "on SIGTERM, how long /readyz answers 503 while the projector goes on working, before it stops pulling and drains; 0: at once, since no Service routes traffic to a projector (set it, e.g. 5s, when -query-addr serves behind one) [$READSIDE_SHUTDOWN_DELAY]")
	fs.DurationVar(&s.opts.ShutdownGrace, "shutdown-grace", config.EnvDuration("READSIDE_SHUTDOWN_GRACE", d.ShutdownGrace), "how long in-flight work may finish on shutdown [$READSIDE_SHUTDOWN_GRACE]")
	fs.BoolVar(&s.check, "check", false, "load and validate the definitions, print every problem (or one OK line) and exit, connecting to nothing: for the CI of the definitions")
	fs.BoolVar(&s.version, "version", false, "print the version, commit and Go version, and exit")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if s.version {
		return s, nil
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q: every setting is a flag", fs.Args())
	}
	return s, s.validate()
}

func (s *settings) validate() error {
	errs := []error{s.Common.Validate(), config.CheckEnv(
		[]string{"READSIDE_BATCH", "READSIDE_WORKERS", "READSIDE_FETCH_CONCURRENCY", "READSIDE_SOURCE_MAX_CONCURRENCY", "READSIDE_STREAM_REPLICAS"},
		[]string{"READSIDE_TOMBSTONE_TTL", "READSIDE_SOURCE_RETRY_BUDGET", "READSIDE_ACK_WAIT", "READSIDE_SHUTDOWN_GRACE", "READSIDE_SHUTDOWN_DELAY", "READSIDE_MONITOR_INTERVAL"})}
	if s.opts.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("-ack-wait must be at least 1s, not %s", s.opts.AckWait))
	}
	if s.stopDelay < 0 {
		errs = append(errs, fmt.Errorf("-shutdown-delay must be 0 or more, not %s", s.stopDelay))
	}
	if s.monitorEvery < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("-monitor-interval must be at least 100ms, not %s", s.monitorEvery))
	}
	if s.replicas < 1 || s.replicas > stream.MaxReplicas {
		errs = append(errs, fmt.Errorf("-stream-replicas must be 1 to %d (servers of the NATS cluster keeping each stream), not %d", stream.MaxReplicas, s.replicas))
	} else if s.replicas > 1 && s.Backends.EmbeddedNATS() {
		errs = append(errs, fmt.Errorf("-stream-replicas %d: the embedded NATS is one server, which keeps 1 replica", s.replicas))
	}
	for name, v := range map[string]int{"-batch": s.opts.Batch, "-workers": s.opts.Workers, "-source-max-concurrency": s.sourceMax} {
		if v < 1 {
			errs = append(errs, fmt.Errorf("%s must be at least 1, not %d", name, v))
		}
	}
	if s.opts.FetchConcurrency < 0 {
		errs = append(errs, fmt.Errorf("-fetch-concurrency must be at least 0 (0: no bound of its own), not %d", s.opts.FetchConcurrency))
	}
	return errors.Join(errs...)
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	s, err := parse(args, stderr)
	if err != nil {
		return err
	}
	if s.version {
		_, err := fmt.Fprintln(os.Stdout, version.Get().Line("projector"))
		return err
	}
	if s.check {
		return check(s.Definitions, stderr)
	}
	log, defs, err := s.Common.Start(stderr)
	if err != nil {
		return err
	}
	tracing, err := telemetry.New(ctx, "readside-projector", log)
	if err != nil {
		return err
	}
	defer tracing.Flush(log)
	s.Backends.Tracing = tracing

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), version.Get().Collector())
	metrics := projector.NewMetrics(reg)

	// The admin server comes first, answering /readyz "starting" while
	// the projector sets up, and closes last, after the drain.
	probes := health.New(log)
	var monitored atomic.Pointer[projector.Monitor] // for the status page, once made
	status := statuspage.Handler(statuspage.Source{
		Freshness: func() projector.Freshness {
			if m := monitored.Load(); m != nil {
				return m.Freshness()
			}
			return projector.Freshness{}
		},
		Ready: probes.Check,
	})
	// Embedded stores belong to this process: operators' tools (replay)
	// reach them through it, with the store API on the admin address,
	// once backend.Open has opened them.
	var opened atomic.Pointer[backend.Stores]
	var storeAPI http.Handler
	if s.Backends.EmbeddedDocs() || s.Backends.EmbeddedSearch() {
		storeAPI = storeapi.Handler(ownStores(defs, &opened), log)
	}
	if s.metricsAddr != "" {
		stopAdmin, err := health.ListenAdmin(s.metricsAddr, adminMux(reg, probes, status, storeAPI), log)
		if err != nil {
			return err
		}
		defer stopAdmin()
	}
	// ctx ends at SIGTERM, when /readyz turns 503; the work stops
	// -shutdown-delay later.
	ctx, cancelWork := probes.ShutdownAfter(ctx, s.stopDelay)
	defer cancelWork()

	conn, err := backend.Open(ctx, s.Backends, "readside-projector", log)
	if err != nil {
		return err
	}
	nc := conn.NATS
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "readside_nats_connected", Help: "1 while the projector is connected to a NATS server, 0 while not.",
	}, func() float64 {
		if nc.IsConnected() {
			return 1
		}
		return 0
	}))
	defer func() {
		// Drain flushes the acks of the last batches before closing.
		if err := nc.Drain(); err == nil {
			for nc.IsDraining() {
				time.Sleep(10 * time.Millisecond)
			}
		}
		opened.Store(nil) // the store API answers 503 from now
		conn.Close()
	}()
	conn.Stores.TombstoneTTL = s.tombstoneTTL
	opened.Store(conn.Stores)
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}

	setupCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var subjects []string
	for _, d := range defs {
		subjects = append(subjects, d.AllSubjects()...)
	}
	streams, err := stream.Ensure(setupCtx, js, stream.Config{Events: s.stream, Own: s.ownStream, DeadLetter: s.dlqStream, Replicas: s.replicas, Log: log}, subjects)
	if err != nil {
		return err
	}
	env := projector.Env{
		JetStream: js, Streams: streams, Stores: conn.Stores, Log: log, Metrics: metrics,
		SourceRetryBudget: s.retryBudget,
		SourceLimits:      assemble.NewLimits(source.LimiterOptions{Max: s.sourceMax}, reg),
		Tracing:           tracing,
	}
	g, gctx := errgroup.WithContext(ctx)
	var names []string
	for _, d := range defs {
		p, err := projector.ForDefinition(setupCtx, d, env, s.opts)
		if err != nil {
			return err
		}
		names = append(names, d.Name)
		g.Go(func() error { return p.Run(gctx) })
	}
	// The Monitor watches every consumer of the projections it is given.
	monitor := projector.NewMonitor(js, s.stream, nil, log, reg, projector.MonitorOptions{
		Interval: s.monitorEvery, StreamOf: streams.StreamOf, Projections: names, DeadLetters: streams,
	})
	g.Go(func() error { return monitor.Run(gctx) })
	monitored.Store(monitor)
	probes.SetCheck(projector.Readiness{NATS: nc, Monitor: monitor, Stores: conn.Stores.Check}.Check)
	if s.queryAddr != "" {
		if err := serveQuery(gctx, g, s.queryAddr, defs, conn.Stores, js, reg, log, tracing); err != nil {
			return err
		}
	}
	log.Info("projector running", "projections", strings.Join(names, ","), "stream", s.stream, "replicas", s.replicas,
		"nats", s.Backends.NATSURL, "redis", strings.Join(s.Backends.RedisAddrs, ","),
		"elasticsearch", strings.Join(s.Backends.ElasticURLs, ","), "metrics", s.metricsAddr)
	err = g.Wait()
	if err != nil {
		// The one place a part's failure is logged (a consumer gone, a
		// server that cannot listen): the parts return it.
		log.Error("projector stopped", "err", err)
		return err
	}
	log.Info("projector stopped", "err", err)
	return nil
}

// adminMux serves the metrics, the status page, the probes
// (health.Probes), and stores, the store API, when it is not nil. /livez
// answers 200 while the process serves, whatever its dependencies do:
// restarting the process would not bring NATS back. /readyz (and /healthz,
// its old name) answers 200 only while the projector can work: connected to
// NATS, the events stream and every durable consumer available, every store
// answering; else 503 with the reasons.
func adminMux(reg *prometheus.Registry, probes *health.Probes, status, stores http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /status", status)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	probes.Register(mux)
	mux.HandleFunc("GET /healthz", probes.Readyz)
	if stores != nil {
		mux.Handle("/stores/v1/", stores)
	}
	return mux
}

// ownStores opens, for the store API, the stores of the projector's own
// projections, to read: those of backend.Open, once stores holds them;
// until then, and from the shutdown on, they are unavailable.
func ownStores(defs []*projections.Definition, stores *atomic.Pointer[backend.Stores]) storeapi.Open {
	return storeapi.ByName(defs, func(ctx context.Context, def *projections.Definition) (sink.Stores, error) {
		st := stores.Load()
		if st == nil {
			return sink.Stores{}, fmt.Errorf("%w: the projector is starting or stopping", storeapi.ErrUnavailable)
		}
		return st.Read(ctx, def)
	})
}

// serveQuery serves the query API on addr in g until ctx ends, over the
// projector's own stores: with embedded stores, which belong to one
// process, this is how reads are served.
func serveQuery(ctx context.Context, g *errgroup.Group, addr string, defs []*projections.Definition, stores *backend.Stores, js jetstream.JetStream, reg prometheus.Registerer, log *slog.Logger, tracing *telemetry.Tracing) error {
	views, err := query.Views(ctx, defs, stores, query.DefaultRetryBudget)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("-query-addr: %w", err)
	}
	o := query.Options{RequestTimeout: query.DefaultRequestTimeout, Registerer: reg, Propagator: tracing.Propagator()}
	api := query.New(views, js, log, stores.Ready, o)
	log.Info("query API serving", "addr", ln.Addr().String())
	h := tracing.Handler(query.AccessLog(log, api), api.Route)
	g.Go(func() error { return query.Serve(ctx, ln, h, o.RequestTimeout, log) })
	return nil
}
