// Command sampleapi serves the sample source APIs of the shop display example
// (see examples/shopdisplay/sampleapi) and, with -nats-url, announces changes
// on JetStream as the domain services of a live app would: -rate random
// changes a second, plus the ones asked for on the admin endpoints.
//
//	go run ./examples/shopdisplay/cmd/sampleapi -nats-url nats://127.0.0.1:4222
//	curl -X POST '127.0.0.1:8081/admin/change?kind=owner&id=7'    # change data, see it in the query API
//	curl -X POST '127.0.0.1:8081/admin/down?source=ads&status=503' # an optional source fails
//	curl -X POST '127.0.0.1:8081/admin/down?source=ads&status=0'   # and answers again
//
// The projector creates the events stream; until it exists, publishing is
// retried with backoff.
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
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/readside/readside/examples/shopdisplay/sampleapi"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "listen address")
	shops := flag.Int("shops", sampleapi.DefaultShops, "number of shops (ids 1..N)")
	seed := flag.Uint64("seed", 0, "data seed: another seed, other shops")
	natsURL := flag.String("nats-url", "", "NATS URL to publish change events to (empty: no events)")
	perSec := flag.Float64("rate", 5, "random changes per second (needs -nats-url; 0: none)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, *addr, *shops, *seed, *natsURL, *perSec); err != nil {
		log.Error("sampleapi stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, addr string, shops int, seed uint64, natsURL string, perSec float64) error {
	if shops <= 0 {
		return fmt.Errorf("-shops %d: must be at least 1", shops)
	}
	api := sampleapi.New(sampleapi.Options{Shops: shops, Seed: seed})

	var publish sampleapi.Publish
	if natsURL != "" {
		closed := make(chan struct{})
		nc, err := nats.Connect(natsURL, nats.Name("readside-sampleapi"), nats.MaxReconnects(-1),
			nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
		if err != nil {
			return fmt.Errorf("connecting to NATS at %s: %w", natsURL, err)
		}
		defer func() { // after the server and the changer have stopped
			if nc.Drain() == nil {
				select {
				case <-closed:
				case <-time.After(10 * time.Second):
				}
			}
			nc.Close()
		}()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		publish = sampleapi.Retrying(js, log)
	}

	mux := http.NewServeMux()
	mux.Handle("/", api)
	mux.Handle("POST /admin/change", sampleapi.ChangeHandler(api, publish))
	mux.Handle("POST /admin/down", sampleapi.DownHandler(api, log))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Info("serving the sample source APIs", "addr", ln.Addr().String(), "shops", shops, "seed", seed,
		"events", natsURL != "", "rate", perSec)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	if publish == nil {
		log.Info("no -nats-url: changes made on /admin/change are not announced, and nothing changes on its own")
	}
	if publish != nil && perSec > 0 {
		ch := sampleapi.NewChanger(api, perSec, publish, seed)
		ch.OnChange = func(subject string) { log.Debug("changed", "subject", subject) }
		g.Go(func() error { return ch.Run(gctx) })
	}
	return g.Wait()
}
