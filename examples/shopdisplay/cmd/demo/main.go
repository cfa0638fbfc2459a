// Command demo runs the whole shop display example in one process, on
// embedded backends by default: NATS JetStream (nats-server), the doc store
// (bbolt) and the search index (bleve), their data under -data-dir; the
// sample source APIs with their change generator; the projector and the query
// API; the projector's metrics and probes on -metrics-addr. At first start
// it re-issues every shop, so the stores fill, printing how many documents
// are in every few seconds and one line when all are. Ctrl-C stops it
// cleanly (exit status 0), and starting it again keeps the data: the read
// model's and the sample APIs' changes, so the two still match.
//
// The projector and the query API are the same code the production commands
// run: -nats-url, -redis-addr and -es-urls point the demo at real backends
// instead (each flag on its own; the rest stay embedded).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/readside/readside/examples/shopdisplay/sampleapi"
	"github.com/readside/readside/internal/assemble"
	"github.com/readside/readside/internal/backend"
	"github.com/readside/readside/internal/config"
	"github.com/readside/readside/internal/health"
	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/query"
	"github.com/readside/readside/internal/source"
	"github.com/readside/readside/internal/statuspage"
	"github.com/readside/readside/internal/storeapi"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/projections"
)

func main() {
	os.Exit(config.Run("demo", func(ctx context.Context) error {
		return run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}))
}

// settings are the demo's flags.
type settings struct {
	backends      config.Backends
	shops         int
	rate          float64
	apiAddr       string
	queryAddr     string
	metricsAddr   string
	defFile       string
	logLevel      string
	progressEvery time.Duration
}

func parse(args []string, stderr io.Writer) (*settings, error) {
	s := &settings{}
	fs := config.NewFlagSet("demo", "demo [flags]",
		"Runs the shop display example: sample source APIs, projector and query API, on embedded backends unless told otherwise.\nThe data stays under -data-dir: a restart keeps it (rm -rf .demo starts afresh).", stderr)
	s.backends.Register(fs)
	// Embedded by default whatever the environment says: the demo must run
	// on a fresh machine; the flags point it elsewhere. -help shows these
	// defaults, not the daemons'.
	for _, d := range []struct{ name, value, usage string }{
		{"nats-url", config.Embedded, "NATS server URL(s), comma-separated, instead of the NATS JetStream embedded in the demo"},
		{"nats-listen", "127.0.0.1:4222", "the address the embedded NATS server listens on, for replay (printed at start); empty for none"},
		{"data-dir", ".demo", "where the demo keeps its data: the embedded backends', the sample APIs' changes, the fill's marker"},
		{"redis-addr", config.Embedded, "Redis address (several, comma-separated, for Redis Cluster) instead of the embedded doc store (bbolt)"},
		{"es-urls", config.Embedded, "Elasticsearch URL(s), comma-separated, instead of the embedded search index (bleve)"},
	} {
		f := fs.Lookup(d.name)
		if err := f.Value.Set(d.value); err != nil {
			return nil, err
		}
		f.DefValue, f.Usage = d.value, d.usage
	}
	fs.IntVar(&s.shops, "shops", sampleapi.DefaultShops, "number of shops (the sample APIs' data is kept under -data-dir for this number)")
	fs.Float64Var(&s.rate, "rate", 5, "random changes per second in the sample APIs; 0: none")
	fs.StringVar(&s.apiAddr, "api-addr", "127.0.0.1:8081", "address of the sample source APIs")
	fs.StringVar(&s.queryAddr, "query-addr", "127.0.0.1:8080", "address of the query API")
	fs.StringVar(&s.metricsAddr, "metrics-addr", "127.0.0.1:9464", "address of the projector's /metrics, /livez, /readyz and /status page; empty: none")
	fs.StringVar(&s.defFile, "definition", "examples/shopdisplay/shopdisplay.yaml", "the projection definition")
	fs.StringVar(&s.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&s.progressEvery, "progress-every", 5*time.Second, "how often the first fill prints how many documents are in")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q: every setting is a flag (see -help)", fs.Args())
	}
	var errs []error
	if s.shops < 1 {
		errs = append(errs, fmt.Errorf("-shops must be at least 1, not %d", s.shops))
	}
	if s.progressEvery <= 0 {
		errs = append(errs, fmt.Errorf("-progress-every must be above 0, not %s", s.progressEvery))
	}
	return s, errors.Join(append(errs, s.backends.Validate())...)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	s, err := parse(args, stderr)
	if err != nil {
		return err
	}
	log, err := config.Logger(stderr, s.logLevel, "text")
	if err != nil {
		return err
	}

	// The sample source APIs keep their changes under the data dir, so a
	// restarted demo's sources still match its read model.
	api, err := sampleapi.Open(filepath.Join(s.backends.DataDir, "sampleapi", "changes.jsonl"), sampleapi.Options{Shops: s.shops})
	if err != nil {
		return fmt.Errorf("%w (or start with -shops as before)", err)
	}
	defer api.Close()
	// They listen first: the definition needs their URL.
	ln, err := net.Listen("tcp", s.apiAddr)
	if err != nil {
		return fmt.Errorf("the sample APIs' address: %w (use -api-addr)", err)
	}
	apiURL := "http://" + ln.Addr().String()
	def, err := projections.Load(s.defFile, projections.Options{Lookup: func(n string) (string, bool) {
		if n == "SHOPDISPLAY_API" {
			return apiURL, true
		}
		return os.LookupEnv(n)
	}})
	if err != nil {
		ln.Close()
		return err
	}

	conn, err := backend.Open(ctx, s.backends, "readside-demo", log)
	if err != nil {
		ln.Close()
		return err
	}
	defer conn.Close()
	js, err := jetstream.New(conn.NATS)
	if err != nil {
		return err
	}
	publish := sampleapi.Retrying(js, log)
	mux := http.NewServeMux()
	mux.Handle("/", api)
	mux.Handle("POST /admin/change", sampleapi.ChangeHandler(api, publish))
	mux.Handle("POST /admin/down", sampleapi.DownHandler(api, log))

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	streams, err := stream.Ensure(ctx, js, stream.Config{Log: log}, def.AllSubjects())
	if err != nil {
		return err
	}
	env := projector.Env{
		JetStream: js, Streams: streams, Stores: conn.Stores, Log: log, Metrics: projector.NewMetrics(reg),
		SourceLimits: assemble.NewLimits(source.LimiterOptions{}, reg),
	}
	proj, err := projector.ForDefinition(ctx, def, env, projector.Options{})
	if err != nil {
		return err
	}
	monitor := projector.NewMonitor(js, streams.Config().Events, nil, log, reg, projector.MonitorOptions{
		StreamOf: streams.StreamOf, Projections: []string{def.Name}, DeadLetters: streams,
	})
	views, err := query.Views(ctx, []*projections.Definition{def}, conn.Stores, query.DefaultRetryBudget)
	if err != nil {
		return err
	}
	qln, err := net.Listen("tcp", s.queryAddr)
	if err != nil {
		return fmt.Errorf("the query API's address: %w (use -query-addr)", err)
	}
	var mln net.Listener
	if s.metricsAddr != "" {
		if mln, err = net.Listen("tcp", s.metricsAddr); err != nil {
			qln.Close()
			return fmt.Errorf("the projector's metrics address: %w (use -metrics-addr)", err)
		}
	}
	qo := query.Options{RequestTimeout: query.DefaultRequestTimeout, Registerer: reg}
	qapi := query.New(views, js, log, conn.Stores.Ready, qo)

	g, gctx := errgroup.WithContext(ctx)
	// The sample APIs stop after the projector, whose last batches still
	// fetch from them.
	apiCtx, stopAPI := context.WithCancel(context.WithoutCancel(ctx))
	g.Go(func() error { return query.Serve(apiCtx, ln, mux, qo.RequestTimeout, log) })
	g.Go(func() error { return query.Serve(gctx, qln, qapi, qo.RequestTimeout, log) })
	g.Go(func() error { defer stopAPI(); return proj.Run(gctx) })
	g.Go(func() error { return monitor.Run(gctx) })
	if mln != nil {
		probes := health.New(log)
		probes.SetCheck(projector.Readiness{NATS: conn.NATS, Monitor: monitor, Stores: conn.Stores.Check}.Check)
		stores := storeapi.Handler(storeapi.ByName([]*projections.Definition{def}, conn.Stores.Read), log)
		g.Go(func() error {
			return query.Serve(gctx, mln, adminMux(reg, probes, monitor, stores), qo.RequestTimeout, log)
		})
	}
	if s.rate > 0 {
		// A change made is announced even when Ctrl-C comes between the
		// two: the sample APIs keep it, so the read model must get it too.
		announce := func(ctx context.Context, subject string) error {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			return publish(ctx, subject)
		}
		changer := sampleapi.NewChanger(api, s.rate, announce, uint64(time.Now().UnixNano()))
		g.Go(func() error { return changer.Run(gctx) })
	}

	natsURL := s.backends.NATSURL
	if conn.NATSServer != nil {
		natsURL = conn.NATSServer.ClientURL() // the port it took
	}
	admin := ""
	if mln != nil {
		admin = "http://" + mln.Addr().String()
	}
	banner(stdout, bannerFacts{
		s: s, backends: describe(s.backends), query: "http://" + qln.Addr().String(), api: apiURL,
		admin: admin, nats: natsURL, projection: def.Name, owner: 4, ownerShops: api.ShopsOf(4),
	})
	// After the banner, so its lines come after the curl lines.
	fill := &filler{
		js: js, def: def, docs: views[0].Docs, out: stdout, every: s.progressEvery,
		marker: filepath.Join(s.backends.DataDir, "filled"),
		replayConsumer: func(ctx context.Context) (jetstream.Consumer, error) {
			name := stream.ReplayConsumerName(def.Name)
			return js.Consumer(ctx, streams.StreamOf(name), name)
		},
	}
	g.Go(func() error { return fill.run(gctx) })
	err = g.Wait()
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		log.Info("demo stopped")
		return nil
	}
	return err
}

// bannerFacts are what the banner names.
type bannerFacts struct {
	s                       *settings
	backends                string
	query, api, admin, nats string // base URLs; admin is empty without -metrics-addr
	projection              string
	owner                   int
	ownerShops              []int
}

// banner prints what to try, each line with what it shows.
func banner(w io.Writer, f bannerFacts) {
	q := f.query + "/v1/" + f.projection
	fmt.Fprintf(w, "\nReadside demo: %d shops, changing at %g/s; backends: %s.\n", f.s.shops, f.s.rate, f.backends)
	fmt.Fprintf(w, `
Read (the query API):
  curl -i %[1]s/42
      shop 42 as one flat document: the shop joined with its owner, menu and ads;
      X-Readside-Source: store once it is in, source (built on the fly) before
  curl '%[1]s?ids=1,2,3'
      shops 1, 2 and 3 at once, in that order
  curl '%[1]s?near=52.52,13.40&within=5km&sort=distance&limit=5'
      the 5 shops nearest to Berlin's centre, within 5 km, nearest first
  curl '%[1]s?q=piz&open=true&sort=-rating&limit=5'
      open shops with a word starting with "piz" in their name, owner or top dishes, best rated first
  curl %[2]s/openapi.json
      the query API's OpenAPI document
`, q, f.query)
	shops := ""
	if n := len(f.ownerShops); n > 0 {
		shops = fmt.Sprintf("%d–%d", f.ownerShops[0], f.ownerShops[n-1])
	}
	fmt.Fprintf(w, `
Change the sources (the sample APIs announce every change; the read model follows within a second):
  curl -X POST '%[1]s/admin/change?kind=owner&id=%[2]d'
      owner %[2]d gets a new business name: shops %[3]s show it as ownerName
  curl -X POST '%[1]s/admin/change?kind=shop&id=42'
      shop 42 opens or closes and gets 3 more ratings (open, ratingCount)
  curl -X POST '%[1]s/admin/change?kind=delete&id=43'
      shop 43 is deleted: its detail answers 404 and lists leave it out (kind=shop re-creates it)
  curl -X POST '%[1]s/admin/down?source=ads&status=503'
      the ads source answers 503: a document built meanwhile (change shop 42 again) is written
      after 3 s of retries with adRank null, marked "readside_partial": ["ads"], and built again
      until ads answers
  curl -X POST '%[1]s/admin/down?source=ads&status=0'
      brings the ads source back: the partial documents are completed at their next retry
      (5 s after the first, doubling, at most 5 min apart)
`, f.api, f.owner, shops)
	if f.admin != "" {
		fmt.Fprintf(w, `
Watch:
  %[1]s/status     the projector's status page
  curl %[1]s/metrics    its Prometheus metrics (readside_projector_events_total, ...)
`, f.admin)
	}
	fmt.Fprintf(w, `
Operators (another terminal; replay talks to the demo's NATS):
  export READSIDE_NATS_URL=%[1]s READSIDE_DEFINITIONS=%[2]s SHOPDISPLAY_API=%[3]s
  go run ./cmd/replay ids %[4]s 42 43     # shops 42 and 43 projected again
  go run ./cmd/replay all %[4]s           # every shop, from the sample APIs' list endpoint
  go run ./cmd/replay dlq %[4]s --list    # the dead-lettered events, with their reasons
%[6]s
Ctrl-C stops it; the data stays in %[5]s (the read model and the sample APIs' changes):
starting again goes on where it stopped; rm -rf %[5]s starts afresh.

`, f.nats, f.s.defFile, f.api, f.projection, f.s.backends.DataDir, verifyLines(f.admin, f.projection))
}

// verifyLines are the demo's lines for the replay commands that read the
// stores, which go through the projector's admin address: none without one.
func verifyLines(admin, projection string) string {
	if admin == "" {
		return ""
	}
	return fmt.Sprintf(`  export READSIDE_REDIS_ADDR=embedded READSIDE_ES_URLS=embedded READSIDE_PROJECTOR_URL=%[1]s
  go run ./cmd/replay verify %[2]s --sample 1000   # compares the read model with the sample APIs (drift: exit 1)
  go run ./cmd/replay rebuild %[2]s                # re-indexes the search index while it serves
`, admin, projection)
}

// adminMux serves the projector's metrics, probes, status page and store
// API (for replay), as cmd/projector does (health.Probes: /livez answers 200 while the process
// serves; /readyz answers 200 only while the projector can work: NATS, the
// stream and its consumers, the stores).
func adminMux(reg *prometheus.Registry, probes *health.Probes, monitor *projector.Monitor, stores http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/stores/v1/", stores)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("GET /status", statuspage.Handler(statuspage.Source{Freshness: monitor.Freshness, Ready: probes.Check}))
	probes.Register(mux)
	return mux
}

// describe names the backends in use.
func describe(b config.Backends) string {
	name := func(embedded bool, what, real string) string {
		if embedded {
			return what + " embedded"
		}
		return real
	}
	return strings.Join([]string{
		name(b.EmbeddedNATS(), "NATS JetStream", "NATS at "+b.NATSURL),
		name(b.EmbeddedDocs(), "doc store (bbolt)", "Redis at "+strings.Join(b.RedisAddrs, ",")),
		name(b.EmbeddedSearch(), "search (bleve)", "Elasticsearch at "+strings.Join(b.ElasticURLs, ",")),
	}, ", ")
}
