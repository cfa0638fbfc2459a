// Command bench measures the projector end to end against the real Redis and
// Elasticsearch that `make testenv` starts and a JetStream server embedded in
// the process, next to baselines measured in the same run: JetStream
// consume+ack alone, and the two stores alone. The machine it runs on is
// shared and its figures move by up to 4× with stolen CPU, so the figures to
// read are the ratios to those baselines, not the absolute rates.
//
// With -backends embedded, the scenarios that write documents (stores, e2e,
// latency, dups) keep them in the embedded stores instead (bbolt ‖ bleve, as
// internal/backend opens them, in a fresh directory per scenario); the
// servers are then not needed. With -backends both, every round runs each
// of those scenarios on the servers, then embedded, and the table gives each
// embedded row its ratio to the servers row of the same round.
//
// Usage:
//
//	go run ./cmd/bench [flags]
//
// Scenarios, in the order they run (pick them with -scenarios):
//
//	js       1a. N zero-payload events published (async), then consumed by a
//	             pull consumer like the projector's, in batches, acked one by
//	             one; once over N distinct subjects, once over scenario 4's.
//	stores   1b. N shop documents written straight to Redis and Elasticsearch
//	             (both at once per batch) in batches of 256, 4 batches in flight.
//	e2e      2.  N events for N distinct ids, published before the projector
//	             starts; timed from Run until every event is acked.
//	latency  3.  the same with a slow source (-latency), once per
//	             -latency-fetch-concurrency value.
//	dups     4.  N events over N/10 ids, shuffled: all published up front,
//	             then published at a steady rate while the projector runs.
//	step     5.  N distinct ids up front, the source answering in 5 ms, then
//	             in 100 ms from a third of the fetches on, then in 5 ms again
//	             from two thirds: the requests at once in each phase show the
//	             adaptive source limit following the source.
//
// With the OTEL_* environment that turns the daemons' tracing on (README:
// Tracing), the projector, its source requests and the Redis and
// Elasticsearch clients are traced as in cmd/projector, and the report's
// header says so: run it with and without, alternately, to measure the cost.
//
// It prints a Markdown table on stdout and its progress on stderr, and
// deletes its Redis keys, Elasticsearch indices, embedded stores and
// JetStream store at the end. Redis and Elasticsearch are found at $READSIDE_TEST_REDIS_ADDR and
// $READSIDE_TEST_ES_URL (the defaults of `make testenv`).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/readside/readside/internal/benchkit"
)

func main() {
	os.Exit(benchkit.Main("bench", run, os.Args[1:], os.Stdout, os.Stderr))
}

// allScenarios are the scenario names in the order they run.
var allScenarios = []string{"js", "stores", "e2e", "latency", "dups", "step"}

type settings struct {
	benchkit.Flags
	events       int
	latency      time.Duration
	latencyFC    []int
	sourceMax    int
	dupFactor    int
	dupRate      int
	storeBatch   int
	storeWorkers int
	warmup       bool
	timeout      time.Duration
	verbose      bool
	backends     []storeSet // in the order a round runs them
	backendsFlag string     // -backends as given
	embeddedDir  string     // where the embedded stores' directories are made; "": the system's temp dir
}

func parse(args []string, out io.Writer) (*settings, error) {
	s := &settings{}
	fs := benchkit.NewFlagSet("bench", "Benchmarks the projector end to end against the test Redis and Elasticsearch\n"+
		"(start them with `make testenv`) and an embedded JetStream, with baselines\n"+
		"measured in the same run. Prints a Markdown table.\n", out)
	s.Register(fs, allScenarios, "write a CPU profile of the run after the warm-up to this file (it covers this process: projector, JetStream server, fake source; not Redis or Elasticsearch); pick scenarios to profile one")
	latencyFC := "0,32,128"
	fs.IntVar(&s.events, "events", 20000, "events per scenario (documents for the store baseline)")
	fs.DurationVar(&s.latency, "latency", 20*time.Millisecond, "source latency of the latency scenario")
	fs.StringVar(&latencyFC, "latency-fetch-concurrency", latencyFC, "comma-separated FetchConcurrency values the latency scenario tries, each under the source's adaptive limit (0, no per-batch bound, is the projector's default)")
	fs.IntVar(&s.sourceMax, "source-max-concurrency", defaultSourceMax, "ceiling of each source's adaptive concurrency limit, as the projector's flag")
	fs.IntVar(&s.dupFactor, "dup-factor", 10, "events per id in the duplicates scenario")
	fs.IntVar(&s.dupRate, "dup-rate", 4000, "events/s published while the projector runs, in the duplicates scenario")
	fs.IntVar(&s.storeBatch, "store-batch", 256, "documents per write in the store baseline (the projector's default Batch)")
	fs.IntVar(&s.storeWorkers, "store-workers", 4, "writes in flight in the store baseline (the projector's default Workers)")
	fs.BoolVar(&s.warmup, "warmup", true, "write a few thousand documents first, so Elasticsearch's JIT is warm for the first baseline")
	fs.DurationVar(&s.timeout, "timeout", 3*time.Minute, "longest one scenario may take before the run fails")
	fs.BoolVar(&s.verbose, "v", false, "log the projector at debug level")
	fs.StringVar(&s.backendsFlag, "backends", "servers", "where the stores, e2e, latency and dups scenarios keep documents: servers (Redis ‖ Elasticsearch), "+
		"embedded (bbolt ‖ bleve in a fresh directory per scenario; no servers needed), or both (in every round, servers then embedded, "+
		"with each embedded row's ratio to its servers row)")
	fs.StringVar(&s.embeddedDir, "embedded-dir", "", "directory under which each scenario's embedded stores are made and deleted (default: the system's temp dir)")
	errs, err := s.Parse(fs, args)
	if err != nil {
		return nil, err
	}
	if s.backends, err = parseBackends(s.backendsFlag); err != nil {
		errs = append(errs, err)
	}
	for _, v := range benchkit.List(latencyFC) {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("-latency-fetch-concurrency: %q is not an integer of 0 or more", v))
			continue
		}
		s.latencyFC = append(s.latencyFC, n)
	}
	if slices.Contains(s.Scenarios, "latency") && len(s.latencyFC) == 0 {
		errs = append(errs, errors.New("-latency-fetch-concurrency: name at least one value"))
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"-events", s.events}, {"-source-max-concurrency", s.sourceMax}, {"-dup-factor", s.dupFactor}, {"-dup-rate", s.dupRate}, {"-store-batch", s.storeBatch}, {"-store-workers", s.storeWorkers}} {
		if f.v < 1 {
			errs = append(errs, fmt.Errorf("%s must be at least 1, not %d", f.name, f.v))
		}
	}
	if s.events < s.dupFactor {
		errs = append(errs, fmt.Errorf("-events %d is fewer than -dup-factor %d: the duplicates scenario would have no id", s.events, s.dupFactor))
	}
	if s.latency <= 0 {
		errs = append(errs, fmt.Errorf("-latency must be positive, not %v", s.latency))
	}
	if s.timeout <= 0 {
		errs = append(errs, fmt.Errorf("-timeout must be positive, not %v", s.timeout))
	}
	return s, errors.Join(errs...)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	s, err := parse(args, stderr)
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	if s.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	b, err := start(ctx, s, log, stderr)
	if err != nil {
		return err
	}
	defer b.close()

	if s.warmup && b.stores != nil {
		b.progress("warming up the stores")
		if err := b.warmup(ctx); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	stopProfile, err := s.StartCPUProfile()
	if err != nil {
		return err
	}
	defer stopProfile()

	var all []result
	began := time.Now()
	for round := 1; round <= s.Runs; round++ {
		b.round = newBaselines()
		for _, sc := range s.Scenarios {
			rs, err := b.onEachBackend(ctx, sc, round)
			if err != nil {
				return fmt.Errorf("scenario %s, round %d: %w", sc, round, err)
			}
			all = append(all, rs...)
		}
	}
	stopProfile()
	b.progress("done in %s", time.Since(began).Round(time.Second))
	return writeReport(stdout, b.describe(), all)
}
