// Command queryapi serves the read API over every loaded projection: detail,
// multi-get, list and search, with fallback to the source APIs.
//
// Usage:
//
//	queryapi -definitions DIR|FILE [flags]
//
// Every flag also reads an environment variable; run with -h for the list.
package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/readside/readside/internal/backend"
	"github.com/readside/readside/internal/config"
	"github.com/readside/readside/internal/health"
	"github.com/readside/readside/internal/query"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/telemetry"
	"github.com/readside/readside/internal/version"
)

func main() {
	os.Exit(config.Run("queryapi", func(ctx context.Context) error { return run(ctx, os.Args[1:], os.Stderr, nil) }))
}

type settings struct {
	config.Common
	addr        string
	ownStream   string
	noPublish   bool
	cursorKey   config.Secret
	retryBudget time.Duration
	accessLog   bool
	metricsAddr string
	stopDelay   time.Duration
	coalesce    int // -coalesce-reads
	opts        query.Options
	version     bool
}

func parse(args []string, out io.Writer) (*settings, error) {
	s := &settings{}
	fs := config.NewFlagSet("queryapi", "queryapi -definitions DIR|FILE [flags]",
		"Serves detail, multi-get, list and search over the projections, falling back to the\nsource APIs when a store misses or fails.\n", out)
	s.Common.Register(fs)
	fs.StringVar(&s.addr, "addr", config.Env("READSIDE_QUERY_ADDR", "127.0.0.1:8080"), "address to serve on [$READSIDE_QUERY_ADDR]")
	fs.StringVar(&s.ownStream, "own-stream", config.Env("READSIDE_OWN_STREAM", "READSIDE_OWN"), "JetStream stream of Readside's own events, where re-project events go: the admin /readyz reports its availability as stream, the public one as nats [$READSIDE_OWN_STREAM]")
	fs.DurationVar(&s.opts.RequestTimeout, "request-timeout", config.EnvDuration("READSIDE_REQUEST_TIMEOUT", query.DefaultRequestTimeout), "deadline of one request; every backend call gets what remains [$READSIDE_REQUEST_TIMEOUT]")
	fs.IntVar(&s.opts.SourceConcurrency, "source-concurrency", config.EnvInt("READSIDE_SOURCE_CONCURRENCY", 16), "fallback requests at once to each source API [$READSIDE_SOURCE_CONCURRENCY]")
	fs.IntVar(&s.opts.MaxLimit, "max-limit", config.EnvInt("READSIDE_MAX_LIMIT", 100), "largest page of list and search [$READSIDE_MAX_LIMIT]")
	fs.IntVar(&s.opts.MaxIDs, "max-ids", config.EnvInt("READSIDE_MAX_IDS", 100), "most ids of one multi-get [$READSIDE_MAX_IDS]")
	fs.DurationVar(&s.retryBudget, "source-retry-budget", config.EnvDuration("READSIDE_SOURCE_RETRY_BUDGET", query.DefaultRetryBudget), "retries of one fallback request to a source [$READSIDE_SOURCE_RETRY_BUDGET]")
	s.cursorKey = config.Secret(config.Env("READSIDE_CURSOR_KEY", ""))
	fs.Func("cursor-key", "base64 key signing list cursors; give every replica the same one [$READSIDE_CURSOR_KEY] (default: random per process)", func(v string) error { s.cursorKey = config.Secret(v); return nil })
	fs.BoolVar(&s.noPublish, "no-reproject", config.EnvBool("READSIDE_NO_REPROJECT", false), "do not publish re-project events for documents built from the sources [$READSIDE_NO_REPROJECT=true]")
	fs.IntVar(&s.opts.MaxInflight, "max-inflight", config.EnvInt("READSIDE_MAX_INFLIGHT", 2048), "requests answered at once; beyond, a request gets 503 with Retry-After at once [$READSIDE_MAX_INFLIGHT]")
	fs.IntVar(&s.coalesce, "coalesce-reads", config.EnvInt("READSIDE_COALESCE_READS", query.DefaultCoalesceReads()), "doc-store reads of detail requests in flight at once per projection; the detail reads that come meanwhile wait and go together as one read (an MGET) in the next; 0: every detail read is a GET of its own [$READSIDE_COALESCE_READS]")
	fs.IntVar(&s.opts.SearchMaxInflight, "search-max-inflight", config.EnvInt("READSIDE_SEARCH_MAX_INFLIGHT", 64), "ceiling of the adaptive limit on lists and searches answered at once; beyond the limit, they queue briefly, then get 503 with Retry-After, while detail and multi-get are still served [$READSIDE_SEARCH_MAX_INFLIGHT]")
	fs.StringVar(&s.metricsAddr, "metrics-addr", config.Env("READSIDE_METRICS_ADDR", "127.0.0.1:9465"), "admin address serving /metrics (Prometheus), /livez and /readyz, apart from the public API; :9465 for Kubernetes' probes; empty disables [$READSIDE_METRICS_ADDR]")
	fs.DurationVar(&s.stopDelay, "shutdown-delay", config.EnvDuration("READSIDE_SHUTDOWN_DELAY", 5*time.Second), "on SIGTERM, how long the admin /readyz answers 503 while the API goes on serving, so that load balancers stop sending requests, before the server drains [$READSIDE_SHUTDOWN_DELAY]")
	fs.BoolVar(&s.accessLog, "access-log", config.EnvBool("READSIDE_ACCESS_LOG", true), "log every request [$READSIDE_ACCESS_LOG]")
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
	errs := []error{s.Common.Validate(), config.CheckEnv(
		[]string{"READSIDE_SOURCE_CONCURRENCY", "READSIDE_MAX_LIMIT", "READSIDE_MAX_IDS", "READSIDE_MAX_INFLIGHT", "READSIDE_SEARCH_MAX_INFLIGHT", "READSIDE_COALESCE_READS"},
		[]string{"READSIDE_REQUEST_TIMEOUT", "READSIDE_SOURCE_RETRY_BUDGET", "READSIDE_SHUTDOWN_DELAY"}),
		config.CheckEnvBools("READSIDE_NO_REPROJECT", "READSIDE_ACCESS_LOG")}
	if s.opts.RequestTimeout < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("-request-timeout %s is too short", s.opts.RequestTimeout))
	}
	if s.stopDelay < 0 {
		errs = append(errs, fmt.Errorf("-shutdown-delay must be 0 or more, not %s", s.stopDelay))
	}
	for name, v := range map[string]int{"-source-concurrency": s.opts.SourceConcurrency, "-max-limit": s.opts.MaxLimit, "-max-ids": s.opts.MaxIDs,
		"-max-inflight": s.opts.MaxInflight, "-search-max-inflight": s.opts.SearchMaxInflight} {
		if v < 1 {
			errs = append(errs, fmt.Errorf("%s must be at least 1, not %d", name, v))
		}
	}
	switch {
	case s.coalesce < 0:
		errs = append(errs, fmt.Errorf("-coalesce-reads must be 0 (off) or more, not %d", s.coalesce))
	case s.coalesce == 0:
		s.opts.CoalesceReads = -1
	default:
		s.opts.CoalesceReads = s.coalesce
	}
	if s.cursorKey != "" {
		key, err := base64.StdEncoding.DecodeString(string(s.cursorKey))
		if err != nil || len(key) < 16 {
			errs = append(errs, errors.New("-cursor-key must be base64 of at least 16 bytes (e.g. `openssl rand -base64 32`)"))
		}
		s.opts.CursorKey = key
	}
	if s.Backends.EmbeddedNATS() && !s.noPublish {
		errs = append(errs, errors.New("-nats-url embedded: the query API publishes re-project events to the projector's NATS; give its URL (an embedded one listens on its -nats-listen address), or -no-reproject"))
	}
	return s, errors.Join(errs...)
}

// run serves until ctx ends. When ready is not nil, it receives the address
// served on once the server listens.
func run(ctx context.Context, args []string, stderr io.Writer, ready chan<- string) error {
	s, err := parse(args, stderr)
	if err != nil {
		return err
	}
	if s.version {
		_, err := fmt.Fprintln(os.Stdout, version.Get().Line("queryapi"))
		return err
	}
	log, defs, err := s.Common.Start(stderr)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), version.Get().Collector())
	s.opts.Registerer = reg
	// The admin server comes first, answering /readyz "starting" while
	// the API sets up, and closes last, after the drain.
	probes := health.New(log)
	if s.metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		probes.Register(mux)
		stopAdmin, err := health.ListenAdmin(s.metricsAddr, mux, log)
		if err != nil {
			return err
		}
		defer stopAdmin()
	}
	// ctx ends at SIGTERM, when the admin /readyz turns 503; the server
	// drains -shutdown-delay later.
	ctx, cancelWork := probes.ShutdownAfter(ctx, s.stopDelay)
	defer cancelWork()

	tracing, err := telemetry.New(ctx, "readside-queryapi", log)
	if err != nil {
		return err
	}
	defer tracing.Flush(log)
	s.Backends.Tracing = tracing
	stores, err := backend.OpenStores(s.Backends, log)
	if err != nil {
		return err
	}
	defer stores.Close()
	readiness := query.Readiness{Stores: stores.Check}
	var pub query.Publisher
	if !s.noPublish {
		// NATS is only for re-project events: the API serves without it.
		nc, err := s.Backends.NATS("readside-queryapi", log, nats.RetryOnFailedConnect(true))
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
		if err != nil {
			return err
		}
		pub = js
		// A connection is not enough: re-project events need the own
		// stream, which may have lost its servers while the connection
		// stays up.
		readiness.NATS = nc
		readiness.Stream = stream.NewProbe(js, s.ownStream, 2*time.Second, 2*time.Second, log)
	}
	views, err := query.Views(ctx, defs, stores, s.retryBudget)
	if err != nil {
		return err
	}
	s.opts.Propagator = tracing.Propagator() // nil when tracing is off
	api := query.New(views, pub, log, readiness.Public, s.opts)
	var handler http.Handler = api
	if s.accessLog {
		// One line a request, in the same format, through a buffer: a
		// write system call a request would cost a third of the rate.
		buf := query.NewLogBuffer(stderr, 200*time.Millisecond)
		defer buf.Close()
		access, err := s.Common.Logger(buf)
		if err != nil {
			return err
		}
		handler = query.AccessLog(access, handler)
	}
	handler = tracing.Handler(handler, api.Route)
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return err
	}
	probes.SetCheck(readiness.Check)
	names := make([]string, len(defs))
	for i, d := range defs {
		names[i] = d.Name
	}
	log.Info("query API serving", "addr", ln.Addr().String(), "projections", strings.Join(names, ","),
		"redis", strings.Join(s.Backends.RedisAddrs, ","), "elasticsearch", strings.Join(s.Backends.ElasticURLs, ","), "metrics", s.metricsAddr)
	if ready != nil {
		ready <- ln.Addr().String()
	}
	err = query.Serve(ctx, ln, handler, s.opts.RequestTimeout, log)
	log.Info("query API stopped", "err", err)
	return err
}
