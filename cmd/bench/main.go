// Command bench measures the projector end to end against the real Redis and
// Elasticsearch that `make testenv` starts and a JetStream server embedded in
// the process, next to baselines measured in the same run: JetStream
// consume+ack alone, and the two stores alone. The machine it runs on is
// shared and its figures move by up to 4× with stolen CPU, so the figures to
// read are the ratios to those baselines, not the absolute rates.
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
//
// It prints a Markdown table on stdout and its progress on stderr, and
// deletes its Redis keys, Elasticsearch indices and JetStream store at the
// end. Redis and Elasticsearch are found at $READSIDE_TEST_REDIS_ADDR and
// $READSIDE_TEST_ES_URL (the defaults of `make testenv`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/readside/readside/internal/testenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		os.Exit(1)
	}
}

// allScenarios are the scenario names in the order they run.
var allScenarios = []string{"js", "stores", "e2e", "latency", "dups"}

type settings struct {
	redisAddr    string
	esURL        string
	events       int
	scenarios    []string
	runs         int
	latency      time.Duration
	latencyFC    []int
	dupFactor    int
	dupRate      int
	storeBatch   int
	storeWorkers int
	warmup       bool
	timeout      time.Duration
	cpuProfile   string
	verbose      bool
}

func parse(args []string, out io.Writer) (*settings, error) {
	s := &settings{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: go run ./cmd/bench [flags]\n\n"+
			"Benchmarks the projector end to end against the test Redis and Elasticsearch\n"+
			"(start them with `make testenv`) and an embedded JetStream, with baselines\n"+
			"measured in the same run. Prints a Markdown table.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	scenarios := strings.Join(allScenarios, ",")
	latencyFC := "32,128"
	fs.StringVar(&s.redisAddr, "redis", testenv.RedisAddr(), "Redis address [$READSIDE_TEST_REDIS_ADDR]")
	fs.StringVar(&s.esURL, "es", testenv.ElasticURL(), "Elasticsearch URL [$READSIDE_TEST_ES_URL]")
	fs.IntVar(&s.events, "events", 20000, "events per scenario (documents for the store baseline)")
	fs.StringVar(&scenarios, "scenarios", scenarios, "comma-separated scenarios to run, of "+strings.Join(allScenarios, ","))
	fs.IntVar(&s.runs, "runs", 1, "rounds of every scenario; with more than one, the table shows medians")
	fs.DurationVar(&s.latency, "latency", 20*time.Millisecond, "source latency of the latency scenario")
	fs.StringVar(&latencyFC, "latency-fetch-concurrency", latencyFC, "comma-separated FetchConcurrency values the latency scenario tries (32 is the projector's default)")
	fs.IntVar(&s.dupFactor, "dup-factor", 10, "events per id in the duplicates scenario")
	fs.IntVar(&s.dupRate, "dup-rate", 4000, "events/s published while the projector runs, in the duplicates scenario")
	fs.IntVar(&s.storeBatch, "store-batch", 256, "documents per write in the store baseline (the projector's default Batch)")
	fs.IntVar(&s.storeWorkers, "store-workers", 4, "writes in flight in the store baseline (the projector's default Workers)")
	fs.BoolVar(&s.warmup, "warmup", true, "write a few thousand documents first, so Elasticsearch's JIT is warm for the first baseline")
	fs.DurationVar(&s.timeout, "timeout", 3*time.Minute, "longest one scenario may take before the run fails")
	fs.StringVar(&s.cpuProfile, "cpuprofile", "", "write a CPU profile of the run after the warm-up to this file (it covers this process: projector, JetStream server, fake source; not Redis or Elasticsearch); pick scenarios to profile one")
	fs.BoolVar(&s.verbose, "v", false, "log the projector at debug level")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q: every setting is a flag", fs.Args())
	}
	var errs []error
	for _, sc := range split(scenarios) {
		if !slices.Contains(allScenarios, sc) {
			errs = append(errs, fmt.Errorf("-scenarios: unknown scenario %q (have %s)", sc, strings.Join(allScenarios, ",")))
		} else if !slices.Contains(s.scenarios, sc) {
			s.scenarios = append(s.scenarios, sc)
		}
	}
	if len(s.scenarios) == 0 {
		errs = append(errs, errors.New("-scenarios: name at least one"))
	}
	for _, v := range split(latencyFC) {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("-latency-fetch-concurrency: %q is not a positive integer", v))
			continue
		}
		s.latencyFC = append(s.latencyFC, n)
	}
	if slices.Contains(s.scenarios, "latency") && len(s.latencyFC) == 0 {
		errs = append(errs, errors.New("-latency-fetch-concurrency: name at least one value"))
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"-events", s.events}, {"-runs", s.runs}, {"-dup-factor", s.dupFactor}, {"-dup-rate", s.dupRate}, {"-store-batch", s.storeBatch}, {"-store-workers", s.storeWorkers}} {
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

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
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

	if s.warmup {
		b.progress("warming up the stores")
		if err := b.warmup(ctx); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	if s.cpuProfile != "" {
		f, err := os.Create(s.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	var all []result
	began := time.Now()
	for round := 1; round <= s.runs; round++ {
		b.round = baselines{}
		for _, sc := range s.scenarios {
			rs, err := b.scenario(ctx, sc, round)
			if err != nil {
				return fmt.Errorf("scenario %s, round %d: %w", sc, round, err)
			}
			all = append(all, rs...)
		}
	}
	pprof.StopCPUProfile()
	b.progress("done in %s", time.Since(began).Round(time.Second))
	return writeReport(stdout, b.describe(), aggregate(all))
}
