// Command demo runs the whole shop display example in one process: NATS
// JetStream embedded (its data under -data), the sample source APIs with
// their change generator, the projector and the query API, on the project's
// own Redis and Elasticsearch (started by `make demo` through
// scripts/testenv.sh). At first start it re-issues every shop, so the stores
// fill; Ctrl-C stops it cleanly, and starting it again keeps the data.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/readside/readside/examples/shopdisplay/sampleapi"
	"github.com/readside/readside/internal/assemble"
	"github.com/readside/readside/internal/config"
	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/query"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/source"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/projections"
	"github.com/readside/readside/replay"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop)
	if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	data := flag.String("data", ".demo", "directory for JetStream's data")
	shops := flag.Int("shops", sampleapi.DefaultShops, "number of shops")
	rate := flag.Float64("rate", 5, "random changes per second in the sample APIs")
	apiAddr := flag.String("api-addr", "127.0.0.1:8081", "address of the sample source APIs")
	queryAddr := flag.String("query-addr", "127.0.0.1:8080", "address of the query API")
	natsPort := flag.Int("nats-port", 4222, "port of the embedded NATS server")
	defFile := flag.String("definition", "examples/shopdisplay/shopdisplay.yaml", "the projection definition")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	// NATS JetStream, embedded, keeping its data across restarts.
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: *natsPort, JetStream: true,
		StoreDir: filepath.Join(*data, "jetstream"), NoSigs: true, NoLog: true})
	if err != nil {
		return err
	}
	go ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		return fmt.Errorf("the embedded NATS server did not start on port %d (is it taken? use -nats-port)", *natsPort)
	}
	nc, err := nats.Connect(ns.ClientURL(), nats.Name("readside-demo"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}

	redisAddr := config.Env("READSIDE_TEST_REDIS_ADDR", "127.0.0.1:6391")
	esURL := config.Env("READSIDE_TEST_ES_URL", "http://127.0.0.1:9251")
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr, ContextTimeoutEnabled: true})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("Redis at %s does not answer (%v): run `make demo`, which starts it", redisAddr, err)
	}
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{esURL}})
	if err != nil {
		return err
	}

	// The sample source APIs.
	api := sampleapi.New(sampleapi.Options{Shops: *shops})
	ln, err := net.Listen("tcp", *apiAddr)
	if err != nil {
		return fmt.Errorf("the sample APIs' address: %w (use -api-addr)", err)
	}
	publish := sampleapi.Retrying(js, log)
	mux := http.NewServeMux()
	mux.Handle("/", api)
	mux.Handle("POST /admin/change", sampleapi.ChangeHandler(api, publish))
	mux.Handle("POST /admin/down", sampleapi.DownHandler(api, log))
	apiSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	apiURL := "http://" + ln.Addr().String()

	def, err := projections.Load(*defFile, projections.Options{Lookup: func(n string) (string, bool) {
		if n == "SHOPDISPLAY_API" {
			return apiURL, true
		}
		return os.LookupEnv(n)
	}})
	if err != nil {
		return err
	}
	streams, err := stream.Ensure(ctx, js, stream.Config{}, def.AllSubjects())
	if err != nil {
		return err
	}
	proj, err := projector.ForDefinition(ctx, def, projector.Env{JetStream: js, Streams: streams, Redis: rdb, Elastic: es, Log: log},
		projector.Options{})
	if err != nil {
		return err
	}
	qln, err := net.Listen("tcp", *queryAddr)
	if err != nil {
		return fmt.Errorf("the query API's address: %w (use -query-addr)", err)
	}
	qapi := query.New([]query.View{{
		Def: def, Docs: sink.NewRedis(rdb, sink.RedisOptions{KeyPattern: def.Redis.Key}), Elastic: es,
		Sources: assemble.Clients(def, nil, 300*time.Millisecond),
	}}, js, log, nil, query.Options{})
	qSrv := &http.Server{Handler: qapi, ReadHeaderTimeout: 5 * time.Second}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serve(gctx, apiSrv, ln) })
	g.Go(func() error { return serve(gctx, qSrv, qln) })
	g.Go(func() error { return proj.Run(gctx) })
	if *rate > 0 {
		g.Go(func() error { return sampleapi.NewChanger(api, *rate, publish, 0).Run(gctx) })
	}
	g.Go(func() error { return fill(gctx, js, rdb, def, log) })
	q := "http://" + qln.Addr().String() + "/v1/" + def.Name
	fmt.Printf(`
Readside demo: %d shops, changing at %g/s. Try:

  curl -i %s/42
  curl '%s?ids=1,2,3'
  curl '%s?near=52.52,13.40&within=5km&sort=distance&limit=5'
  curl '%s?q=piz&open=true&sort=-rating&limit=5'
  curl %s/../../openapi.json
  curl -X POST '%s/admin/change?kind=owner&id=4'    # owner 4's shops change name
  curl -X POST '%s/admin/down?source=ads&status=503' # ads down: partial documents

Operators:
  go run ./cmd/replay --help          (NATS at %s; definitions in %s)

Ctrl-C stops it; the data stays.
`, *shops, *rate, q, q, q, q, q, apiURL, apiURL, ns.ClientURL(), *defFile)
	err = g.Wait()
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		log.Info("demo stopped")
		return nil
	}
	return err
}

func serve(ctx context.Context, srv *http.Server, ln net.Listener) error {
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// fill re-issues every shop once, when the store is still empty, so the
// demo starts with a full read model (later starts keep it).
func fill(ctx context.Context, js jetstream.JetStream, rdb *redis.Client, def *projections.Definition, log *slog.Logger) error {
	if n, _ := rdb.Exists(ctx, sink.NewRedis(rdb, sink.RedisOptions{KeyPattern: def.Redis.Key}).Key("1")).Result(); n > 0 {
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
	log.Info("every shop re-issued; the projector fills the stores", "shops", strconv.FormatInt(r.Done(), 10),
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}
