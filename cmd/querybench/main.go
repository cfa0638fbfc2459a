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
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
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
			fmt.Fprintln(os.Stderr, "querybench:", err)
		}
		os.Exit(1)
	}
}

// allScenarios are the scenario names in the order they run.
var allScenarios = []string{"detail", "multiget", "list", "search"}

type settings struct {
	redisAddr  string
	esURL      string
	docs       int
	conns      int
	duration   time.Duration
	warmup     time.Duration
	slices     int
	runs       int
	accessLog  bool
	scenarios  []string
	cpuProfile string
	args       []string // as given, for the report
}

func parse(args []string, out io.Writer) (*settings, error) {
	s := &settings{args: args}
	fs := flag.NewFlagSet("querybench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: go run ./cmd/querybench [flags]\n\n"+
			"Load-tests the query API against the test Redis and Elasticsearch (start them with\n"+
			"`make testenv`), next to baseline servers measured in the same run. Prints a Markdown table.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	scenarios := strings.Join(allScenarios, ",")
	fs.StringVar(&s.redisAddr, "redis", testenv.RedisAddr(), "Redis address [$READSIDE_TEST_REDIS_ADDR]")
	fs.StringVar(&s.esURL, "es", testenv.ElasticURL(), "Elasticsearch URL [$READSIDE_TEST_ES_URL]")
	fs.IntVar(&s.docs, "docs", 30000, "documents written to Redis and Elasticsearch")
	fs.IntVar(&s.conns, "conns", 48, "concurrent keep-alive connections of the closed-loop load generator")
	fs.DurationVar(&s.duration, "duration", 8*time.Second, "measured time of each row (each server of a scenario)")
	fs.DurationVar(&s.warmup, "warmup", 2*time.Second, "load of each server before it is measured, not counted (and once more before the first round)")
	fs.IntVar(&s.slices, "slices", 8, "turns each row's -duration is measured in, alternating between baseline and API")
	fs.BoolVar(&s.accessLog, "access-log", true, "also measure detail with cmd/queryapi's access log on")
	fs.IntVar(&s.runs, "runs", 1, "rounds of every scenario; with more than one, the table shows medians")
	fs.StringVar(&scenarios, "scenarios", scenarios, "comma-separated scenarios to run, of "+strings.Join(allScenarios, ","))
	fs.StringVar(&s.cpuProfile, "cpuprofile", "", "write a CPU profile of the rounds (warm-ups included) to this file; it covers this process: load generator, baselines and API, not Redis or Elasticsearch")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q: every setting is a flag", fs.Args())
	}
	var errs []error
	for _, sc := range strings.Split(scenarios, ",") {
		sc = strings.TrimSpace(sc)
		switch {
		case sc == "":
		case !slices.Contains(allScenarios, sc):
			errs = append(errs, fmt.Errorf("-scenarios: unknown scenario %q (have %s)", sc, strings.Join(allScenarios, ",")))
		case !slices.Contains(s.scenarios, sc):
			s.scenarios = append(s.scenarios, sc)
		}
	}
	if len(s.scenarios) == 0 {
		errs = append(errs, errors.New("-scenarios: name at least one"))
	}
	// Run them in the documented order whatever the order given.
	slices.SortFunc(s.scenarios, func(a, b string) int {
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
	if s.runs < 1 {
		errs = append(errs, fmt.Errorf("-runs must be at least 1, not %d", s.runs))
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
	for round := 1; round <= s.runs; round++ {
		rs, err := b.round(ctx, round)
		if err != nil {
			return fmt.Errorf("round %d: %w", round, err)
		}
		all = append(all, rs...)
	}
	pprof.StopCPUProfile() // a no-op without -cpuprofile
	b.progress("done in %s", time.Since(began).Round(time.Second))
	return writeReport(stdout, b.describe(), aggregate(all))
}
