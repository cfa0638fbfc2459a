// Command querybench load-tests the query API (internal/query) against the
// real Redis and Elasticsearch that `make testenv` starts, next to baseline
// servers measured in the same run, so that the figures to read are the
// ratios: the machine is shared and its absolute rates move by up to 4×.
//
// Usage:
//
//	go run ./cmd/querybench [flags]
//
// It writes -docs shop documents (about 1 KB each, built by the shop
// projection's definition from varied fake shops) to Redis and Elasticsearch
// under a namespace of its own. Then, for each scenario, it runs a closed-loop
// load of -conns keep-alive connections against the scenario's baseline
// server and against the API: -warmup each (not counted), then -duration
// each, measured in -slices turns that alternate between the servers, so
// that both see the same drift of a shared machine's load:
//
//	detail      GET /v1/{p}/{id}, a random id. Baseline: one go-redis GET,
//	            the value written after its header, nothing else.
//	multiget    GET /v1/{p}?ids=… of 25 random ids. Baseline: 25 pipelined
//	            GETs spliced raw into {"items":[…]}.
//	list        GET /v1/{p}?city=…&sort=-rating&limit=25, a random city.
//	            Baseline: one Elasticsearch query of the same meaning (ids
//	            only) and 25 pipelined GETs spliced raw.
//	search      GET /v1/{p}?q=…&limit=25, q a random word prefix. Baseline:
//	            as list, with the API's multi_match query.
//
// With -access-log (the default), detail also measures the API behind
// cmd/queryapi's access log (written to a temporary file), as a third server
// in the turns. With -runs N every scenario is measured N times and the table
// shows medians.
//
// The API runs as cmd/queryapi runs it with -access-log=false: the same
// Redis and Elasticsearch client settings and http.Server settings, which
// the baselines share. Servers and load generator run in this one process on
// 127.0.0.1, so the generator's CPU is part of every figure, baseline and API
// alike. The report is a Markdown table on stdout; progress goes to stderr.
// Every key and index of the run is deleted at the end.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/readside/readside/internal/benchkit"
)

func main() {
	os.Exit(benchkit.Main("querybench", run, os.Args[1:], os.Stdout, os.Stderr))
}

// allScenarios are the scenario names in the order they run.
var allScenarios = []string{"detail", "multiget", "list", "search"}

type settings struct {
	benchkit.Flags
	docs      int
	conns     int
	duration  time.Duration
	warmup    time.Duration
	slices    int
	accessLog bool
	args      []string // as given, for the report
}

func parse(args []string, out io.Writer) (*settings, error) {
	s := &settings{args: args}
	fs := benchkit.NewFlagSet("querybench", "Load-tests the query API against the test Redis and Elasticsearch (start them with\n"+
		"`make testenv`), next to baseline servers measured in the same run. Prints a Markdown table.\n", out)
	s.Register(fs, allScenarios, "write a CPU profile of the rounds (warm-ups included) to this file; it covers this process: load generator, baselines and API, not Redis or Elasticsearch")
	fs.IntVar(&s.docs, "docs", 30000, "documents written to Redis and Elasticsearch")
	fs.IntVar(&s.conns, "conns", 48, "concurrent keep-alive connections of the closed-loop load generator")
	fs.DurationVar(&s.duration, "duration", 8*time.Second, "measured time of each row (each server of a scenario)")
	fs.DurationVar(&s.warmup, "warmup", 2*time.Second, "load of each server before it is measured, not counted (and once more before the first round)")
	fs.IntVar(&s.slices, "slices", 8, "turns each row's -duration is measured in, alternating between baseline and API")
	fs.BoolVar(&s.accessLog, "access-log", true, "also measure detail with cmd/queryapi's access log on")
	errs, err := s.Parse(fs, args)
	if err != nil {
		return nil, err
	}
	// Run them in the documented order whatever the order given.
	slices.SortFunc(s.Scenarios, func(a, b string) int {
		return slices.Index(allScenarios, a) - slices.Index(allScenarios, b)
	})
	if s.docs < 1000 {
		errs = append(errs, fmt.Errorf("-docs must be at least 1000, not %d", s.docs))
	}
	if s.conns < 1 || s.conns > 512 {
		errs = append(errs, fmt.Errorf("-conns must be from 1 to 512, not %d", s.conns))
	}
	if s.slices < 1 {
		errs = append(errs, fmt.Errorf("-slices must be at least 1, not %d", s.slices))
	}
	if s.duration < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("-duration %v is too short", s.duration))
	}
	if s.warmup < 0 {
		errs = append(errs, fmt.Errorf("-warmup must not be negative, not %v", s.warmup))
	}
	return s, errors.Join(errs...)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	s, err := parse(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := start(ctx, s, log, stderr)
	if err != nil {
		return err
	}
	defer b.close()

	began := time.Now()
	b.progress("writing %d documents to Redis and Elasticsearch under %s", s.docs, b.ns)
	if err := b.load(ctx); err != nil {
		return fmt.Errorf("writing the documents: %w", err)
	}
	b.progress("written in %s (mean document %d bytes)", time.Since(began).Round(100*time.Millisecond), b.data.meanSize)
	if err := b.serve(); err != nil {
		return err
	}
	if err := b.check(ctx); err != nil {
		return err
	}
	if err := b.warm(ctx); err != nil {
		return err
	}
	stopProfile, err := s.StartCPUProfile()
	if err != nil {
		return err
	}
	defer stopProfile()
	var all []result
	for round := 1; round <= s.Runs; round++ {
		rs, err := b.round(ctx, round)
		if err != nil {
			return fmt.Errorf("round %d: %w", round, err)
		}
		all = append(all, rs...)
	}
	stopProfile()
	b.progress("done in %s", time.Since(began).Round(time.Second))
	return writeReport(stdout, b.describe(), all)
}
