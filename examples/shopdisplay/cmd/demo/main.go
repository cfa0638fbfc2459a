// Command demo runs the whole shop display example in one process, on
// embedded backends by default: NATS JetStream (nats-server), the doc store
// (bbolt) and the search index (bleve), their data under -data-dir; the
// sample source APIs with their change generator; the projector and the query
// API. At first start it re-issues every shop, so the stores fill; Ctrl-C
// stops it cleanly, and starting it again keeps the data.
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
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/readside/readside/examples/shopdisplay/sampleapi"
	"github.com/readside/readside/internal/backend"
	"github.com/readside/readside/internal/config"
	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/query"
	"github.com/readside/readside/internal/source"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/projections"
	"github.com/readside/readside/replay"
)

func main() {
	os.Exit(config.Run("demo", func(ctx context.Context) error {
		return run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}))
}

// settings are the demo's flags.
type settings struct {
	backends  config.Backends
	shops     int
	rate      float64
	apiAddr   string
	queryAddr string
	defFile   string
	logLevel  string
}

func parse(args []string, stderr io.Writer) (*settings, error) {
	s := &settings{}
	fs := config.NewFlagSet("demo", "demo [flags]",
		"Runs the shop display example: sample source APIs, projector and query API, on embedded backends unless told otherwise.", stderr)
	s.backends.Register(fs)
	// Embedded by default whatever the environment says: the demo must run
	// on a fresh machine; the flags point it elsewhere.
	s.backends.NATSURL, s.backends.RedisAddrs, s.backends.ElasticURLs = config.Embedded, []string{config.Embedded}, []string{config.Embedded}
	s.backends.DataDir, s.backends.NATSListen = ".demo", "127.0.0.1:4222"
	fs.IntVar(&s.shops, "shops", sampleapi.DefaultShops, "number of shops")
	fs.Float64Var(&s.rate, "rate", 5, "random changes per second in the sample APIs")
	fs.StringVar(&s.apiAddr, "api-addr", "127.0.0.1:8081", "address of the sample source APIs")
	fs.StringVar(&s.queryAddr, "query-addr", "127.0.0.1:8080", "address of the query API")
	fs.StringVar(&s.defFile, "definition", "examples/shopdisplay/shopdisplay.yaml", "the projection definition")
	fs.StringVar(&s.logLevel, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q: every setting is a flag (see -help)", fs.Args())
	}
	return s, s.backends.Validate()
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

	// The sample source APIs listen first: the definition needs their URL.
	api := sampleapi.New(sampleapi.Options{Shops: s.shops})
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

	streams, err := stream.Ensure(ctx, js, stream.Config{}, def.AllSubjects())
	if err != nil {
		return err
	}
	proj, err := projector.ForDefinition(ctx, def, projector.Env{JetStream: js, Streams: streams, Stores: conn.Stores, Log: log}, projector.Options{})
	if err != nil {
		return err
	}
	views, err := backend.Views(ctx, []*projections.Definition{def}, conn.Stores, 300*time.Millisecond)
	if err != nil {
		return err
	}
	qln, err := net.Listen("tcp", s.queryAddr)
	if err != nil {
		return fmt.Errorf("the query API's address: %w (use -query-addr)", err)
	}
	qo := query.Options{RequestTimeout: query.DefaultRequestTimeout}
	qapi := query.New(views, js, log, conn.Stores.Ready, qo)

	g, gctx := errgroup.WithContext(ctx)
	// The sample APIs stop after the projector, whose last batches still
	// fetch from them.
	apiCtx, stopAPI := context.WithCancel(context.WithoutCancel(ctx))
	g.Go(func() error { return query.Serve(apiCtx, ln, mux, qo.RequestTimeout, log) })
	g.Go(func() error { return query.Serve(gctx, qln, qapi, qo.RequestTimeout, log) })
	g.Go(func() error { defer stopAPI(); return proj.Run(gctx) })
	if s.rate > 0 {
		g.Go(func() error { return sampleapi.NewChanger(api, s.rate, publish, 0).Run(gctx) })
	}
	g.Go(func() error { return fill(gctx, js, def, filepath.Join(s.backends.DataDir, "filled"), log) })
	q := "http://" + qln.Addr().String() + "/v1/" + def.Name
	natsURL := s.backends.NATSURL
	if conn.NATSServer != nil {
		natsURL = conn.NATSServer.ClientURL() // the port it took
	}
	fmt.Fprintf(stdout, `
Readside demo: %d shops, changing at %g/s; backends: %s. Try:

  curl -i %s/42
  curl '%s?ids=1,2,3'
  curl '%s?near=52.52,13.40&within=5km&sort=distance&limit=5'
  curl '%s?q=piz&open=true&sort=-rating&limit=5'
  curl http://%s/openapi.json
  curl -X POST '%s/admin/change?kind=owner&id=4'    # owner 4's shops change name
  curl -X POST '%s/admin/down?source=ads&status=503' # ads down: partial documents

Operators (another terminal; replay talks to the demo's NATS):
  export READSIDE_NATS_URL=%s READSIDE_DEFINITIONS=%s SHOPDISPLAY_API=%s
  go run ./cmd/replay ids %s 42 43
  go run ./cmd/replay all %s          # every shop, from the sample API's list endpoint
  go run ./cmd/replay dlq %s --list

Ctrl-C stops it; the data stays in %s.
`, s.shops, s.rate, describe(s.backends), q, q, q, q, qln.Addr(), apiURL, apiURL,
		natsURL, s.defFile, apiURL, def.Name, def.Name, def.Name, s.backends.DataDir)
	err = g.Wait()
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		log.Info("demo stopped")
		return nil
	}
	return err
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

// fill re-issues every shop once, so the demo starts with a full read model;
// the marker file says it was done (later starts keep the data). A fill cut
// short by Ctrl-C starts over next time: re-issuing is harmless.
func fill(ctx context.Context, js jetstream.JetStream, def *projections.Definition, marker string, log *slog.Logger) error {
	if _, err := os.Stat(marker); err == nil {
		return nil
	}
	src := source.New(source.Options{})
	r := replay.NewReissuer(js, def, replay.ReissueOptions{Rate: -1, RunID: "demo-fill"})
	start, cursor := time.Now(), ""
	for {
		url, err := def.ListURL(cursor)
		if err != nil {
			return err
		}
		body, err := src.Get(ctx, url)
		if err != nil {
			return fmt.Errorf("listing shops: %w", err)
		}
		ids, next, err := def.ListPage(body)
		if err != nil {
			return err
		}
		if err := r.Reissue(ctx, ids); err != nil {
			return err
		}
		if cursor = next; cursor == "" {
			break
		}
	}
	if err := os.WriteFile(marker, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return fmt.Errorf("the fill's marker: %w", err)
	}
	log.Info("every shop re-issued; the projector fills the stores", "shops", strconv.FormatInt(r.Done(), 10),
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}
