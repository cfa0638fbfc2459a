// Command querybench load-tests the query API (internal/query, served by
// cmd/queryapi) against the real Redis and Elasticsearch that `make testenv`
// starts, next to a baseline server measured in the same run, so that the
// figures to read are the ratios: the machine is shared and its absolute
// rates move by up to 4×.
//
// Usage:
//
//	go run ./cmd/querybench [flags]
//
// Run it from the repository: it builds cmd/queryapi (or takes the binary
// -queryapi names, such as one built from another commit) and
// cmd/querybench/baseline from the working tree into a temporary directory
// and runs each as a process of its own on 127.0.0.1, against the same
// Redis and Elasticsearch. The load generator is wrk, a process of its own
// too (Debian package wrk; `make querybench` installs it), with -conns
// connections on -threads threads and a Lua request() hook that draws a
// random id, city or word per request. Nothing is pinned: wrk, the server
// measured, Redis and Elasticsearch share the machine's CPUs.
//
// It writes -docs shop documents (about 1 KB each, built by the shop
// projection's definition from varied fake shops) to Redis and Elasticsearch
// under a namespace of its own, checks that the API and the baseline answer
// the same requests alike, loads every server for -warmup, and then measures
// -rounds rounds. In each round every endpoint is measured for -duration on
// the baseline and on the API, one right after the other, in turns (baseline
// first in odd rounds, the API first in even ones), so that both see the
// same drift of the machine's load:
//
//	detail      GET /v1/{p}/{id}, a random id. Baseline: one go-redis GET,
//	            the value written after its header, nothing else.
//	multiget    GET /v1/{p}?ids=… of 25 random ids. Baseline: one MGET of
//	            the 25 keys, the values spliced raw into {"items":[…]}.
//	list        GET /v1/{p}?city=…&sort=-rating&limit=25, a random city.
//	            Baseline: one Elasticsearch query of the same meaning (ids
//	            only) and one MGET of the 25 ids, spliced raw.
//	search      GET /v1/{p}?q=…&limit=25, q a random word prefix. Baseline:
//	            as list, with the API's multi_match query.
//
// The table shows, per row, the medians of the rounds with their range, and
// each round's ratio of the API to the baseline measured next to it: 2xx
// answers per second and p99 latency. With -access-log, detail is also
// measured on a second API process that writes cmd/queryapi's access log,
// and with -uncoalesced on one with -coalesce-reads 0, whose every detail
// read is a GET of its own as the baseline's (by default, cmd/queryapi
// joins the doc-store reads of concurrent detail requests into MGETs).
//
// The overload scenario measures the API's capacity for a mix of list and
// search (wrk, closed loop, with -capacity-conns connections: a closed loop
// of more than the API's limit on list and search at once turns into a
// stream of shed answers, and measures how fast it sheds), then offers
// -overload-factor times that rate with an open-loop generator in this
// process (a request is sent at its time whether or not the earlier ones
// were answered), together with a steady -detail-rate of detail reads, for
// -overload-duration. Its table shows the detail reads served per second
// with their latency and errors, and how many list and search requests were
// served and how many shed (429, or 503 with Retry-After), with the latency
// of each. It is also run with detail reads only, and against the baseline,
// which sheds nothing. cmd/queryapi's -max-inflight and -search-max-inflight
// are passed when its -help lists them.
//
// The report is Markdown on stdout; progress goes to stderr. Every key and
// index of the run is deleted at the end, and the servers stopped.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/readside/readside/internal/benchkit"
	"github.com/readside/readside/internal/fixture"
)

func main() {
	os.Exit(benchkit.Main("querybench", run, os.Args[1:], os.Stdout, os.Stderr))
}

// endpoints are the scenarios compared with the baseline, in the order they
// run; overload comes after them.
var endpoints = []string{"detail", "multiget", "list", "search"}

var allScenarios = append(slices.Clone(endpoints), "overload")

type settings struct {
	redisAddr, elasticURL string
	scenarios             []string
	rounds                int
	docs                  int
	conns, threads        int
	duration, warmup      time.Duration
	seed                  int
	accessLog             bool
	uncoalesced           bool
	wrk                   string
	queryapi              string // a binary to measure instead of building the working tree's
	keep                  bool

	overload          time.Duration // -overload-duration
	capacityConns     int
	factor            float64
	detailRate        float64
	overloadBaseline  bool
	maxInflight       int
	searchMaxInflight int

	args []string // as given, for the report
}

func parse(args []string, out io.Writer) (*settings, error) {
	s := &settings{args: args}
	fs := benchkit.NewFlagSet("querybench", "Load-tests the query API (cmd/queryapi, a process of its own) with wrk against the test Redis and\n"+
		"Elasticsearch (start them with `make testenv`), next to a baseline server measured in the same run.\n"+
		"Prints Markdown tables.\n", out)
	scenarios := fs.String("scenarios", "detail,multiget,list,search,overload", "comma-separated scenarios to run, of detail,multiget,list,search,overload")
	fs.StringVar(&s.redisAddr, "redis", fixture.RedisAddr(), "Redis address [$READSIDE_TEST_REDIS_ADDR]")
	fs.StringVar(&s.elasticURL, "es", fixture.ElasticURL(), "Elasticsearch URL [$READSIDE_TEST_ES_URL]")
	fs.IntVar(&s.rounds, "rounds", 6, "rounds of every endpoint; the tables show medians and ranges")
	fs.IntVar(&s.docs, "docs", 30000, "documents written to Redis and Elasticsearch")
	fs.IntVar(&s.conns, "conns", 64, "wrk's connections (-c)")
	fs.IntVar(&s.threads, "threads", 2, "wrk's threads (-t)")
	fs.DurationVar(&s.duration, "duration", 5*time.Second, "one wrk run: one server, one endpoint, one round (whole seconds)")
	fs.DurationVar(&s.warmup, "warmup", 2*time.Second, "load of every server and endpoint before the first round, not counted (whole seconds; 0 for none)")
	fs.IntVar(&s.seed, "seed", 1, "seed of the random requests: wrk's Lua scripts and the open-loop generator")
	fs.BoolVar(&s.accessLog, "access-log", false, "also measure detail on an API process with its access log on (written to a file)")
	fs.BoolVar(&s.uncoalesced, "uncoalesced", false, "also measure detail on an API process with -coalesce-reads 0: every detail read a GET of its own, as the baseline's")
	fs.StringVar(&s.wrk, "wrk", "wrk", "the wrk binary")
	fs.StringVar(&s.queryapi, "queryapi", "", "a cmd/queryapi binary to measure, such as one built from another commit (default: build the working tree's)")
	fs.BoolVar(&s.keep, "keep", false, "keep the work directory (binaries, definitions, Lua script, server logs) and say where it is")
	fs.DurationVar(&s.overload, "overload-duration", 10*time.Second, "overload scenario: time of each of its phases")
	fs.IntVar(&s.capacityConns, "capacity-conns", 16, "overload scenario: wrk's connections measuring the API's capacity for list and search; "+
		"enough to keep Elasticsearch busy, few enough that the API sheds little of a closed loop")
	fs.Float64Var(&s.factor, "overload-factor", 2, "overload scenario: list and search offered at this many times the API's measured capacity")
	fs.Float64Var(&s.detailRate, "detail-rate", 200, "overload scenario: detail reads a second offered alongside")
	fs.BoolVar(&s.overloadBaseline, "overload-baseline", true, "overload scenario: also offer the same load to the baseline, which sheds nothing")
	fs.IntVar(&s.maxInflight, "max-inflight", 2048, "passed to cmd/queryapi when it has the flag; 0 passes nothing")
	fs.IntVar(&s.searchMaxInflight, "search-max-inflight", 64, "passed to cmd/queryapi when it has the flag; 0 passes nothing")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q: every setting is a flag", fs.Args()))
	}
	for _, sc := range benchkit.List(*scenarios) {
		if !slices.Contains(allScenarios, sc) {
			errs = append(errs, fmt.Errorf("-scenarios: unknown scenario %q", sc))
		} else if !slices.Contains(s.scenarios, sc) {
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
	if s.rounds < 1 {
		errs = append(errs, fmt.Errorf("-rounds must be at least 1, not %d", s.rounds))
	}
	if s.docs < 1000 {
		errs = append(errs, fmt.Errorf("-docs must be at least 1000, not %d", s.docs))
	}
	if s.conns < 1 || s.conns > 1024 {
		errs = append(errs, fmt.Errorf("-conns must be from 1 to 1024, not %d", s.conns))
	}
	if s.threads < 1 || s.threads > s.conns {
		errs = append(errs, fmt.Errorf("-threads must be from 1 to -conns, not %d", s.threads))
	}
	// wrk takes whole seconds.
	for name, d := range map[string]time.Duration{"-duration": s.duration, "-warmup": s.warmup} {
		if d < 0 || d%time.Second != 0 || (name == "-duration" && d == 0) {
			errs = append(errs, fmt.Errorf("%s must be whole seconds, such as 5s, not %v", name, d))
		}
	}
	if s.overload < time.Second {
		errs = append(errs, fmt.Errorf("-overload-duration %v is too short", s.overload))
	}
	if s.capacityConns < 1 || s.capacityConns > 1024 {
		errs = append(errs, fmt.Errorf("-capacity-conns must be from 1 to 1024, not %d", s.capacityConns))
	}
	if s.factor <= 0 {
		errs = append(errs, fmt.Errorf("-overload-factor must be positive, not %v", s.factor))
	}
	if s.detailRate <= 0 || s.detailRate > 10000 {
		errs = append(errs, fmt.Errorf("-detail-rate must be above 0 and at most 10000, not %v", s.detailRate))
	}
	if s.maxInflight < 0 || s.searchMaxInflight < 0 {
		errs = append(errs, errors.New("-max-inflight and -search-max-inflight must not be negative"))
	}
	return s, errors.Join(errs...)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	s, err := parse(args, stderr)
	if err != nil {
		return err
	}
	b, err := start(ctx, s, stderr)
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
	if err := b.serve(ctx); err != nil {
		return err
	}
	if err := b.check(ctx); err != nil {
		return err
	}
	if err := b.writeScript(); err != nil {
		return err
	}
	var compared []result
	if names := b.endpoints(); len(names) > 0 {
		if err := b.warm(ctx, names); err != nil {
			return err
		}
		for round := 1; round <= s.rounds; round++ {
			rs, err := b.round(ctx, names, round)
			if err != nil {
				return fmt.Errorf("round %d: %w", round, err)
			}
			compared = append(compared, rs...)
		}
		if err := writeReport(stdout, b.describe(), compared); err != nil {
			return err
		}
	}
	if slices.Contains(s.scenarios, "overload") {
		ov, err := b.overload(ctx)
		if err != nil {
			return fmt.Errorf("overload: %w", err)
		}
		if len(compared) > 0 {
			fmt.Fprintln(stdout)
		}
		if err := writeOverload(stdout, b.describeOverload(ov), ov); err != nil {
			return err
		}
	}
	b.progress("done in %s", time.Since(began).Round(time.Second))
	return nil
}
