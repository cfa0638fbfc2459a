package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/readside/readside/internal/benchkit"
	"github.com/readside/readside/projections"
)

const howToStart = "start the test services with `make testenv` (or run `make querybench`, which does)"

// bench is what every scenario shares: the stores, the documents, the
// servers under test and the namespace of every key and index of the run.
type bench struct {
	s      *settings
	out    io.Writer // progress
	ns     string    // namespace of this run, such as "qbench3f9a1c"; also the projection's name
	def    *projections.Definition
	stores *benchkit.Stores
	data   dataset
	dir    string // the work directory: binaries, definition, Lua script, server logs
	wrk    string // the wrk binary, and its version for the report
	wrkVer string
	idle   benchkit.CPUUse // one second before the run

	baseline, api *proc
	// variants are more API processes measured on detail (-access-log,
	// -uncoalesced), each as a row of its own.
	variants []variant
	shedding []string // cmd/queryapi's load shedding flags as passed, such as "-max-inflight 2048"
	missing  []string // those it does not have
	extra    []string // other flags for cmd/queryapi, as it has them
	// coalescing is set when cmd/queryapi has -coalesce-reads.
	coalescing bool
}

// variant is an API process measured on detail as a row of its own.
type variant struct {
	row string
	p   *proc
}

// apis is every API process of the run: the API and its variants.
func (b *bench) apis() []*proc {
	out := []*proc{b.api}
	for _, v := range b.variants {
		out = append(out, v.p)
	}
	return out
}

// start checks wrk and the stores and makes the namespace and the work
// directory. Close the bench when done: it stops the servers and deletes
// everything the run made.
func start(ctx context.Context, s *settings, out io.Writer) (*bench, error) {
	b := &bench{s: s, out: out}
	var err error
	if b.wrk, err = exec.LookPath(s.wrk); err != nil {
		return nil, fmt.Errorf("wrk: %w: install it with `apt-get install -y wrk` (`make querybench` does), or give its path with -wrk", err)
	}
	// wrk -v prints its version and usage, and exits 1.
	v, _ := exec.CommandContext(ctx, b.wrk, "-v").CombinedOutput()
	b.wrkVer, _, _ = strings.Cut(string(v), " [")
	if b.ns, err = benchkit.Namespace("qbench"); err != nil {
		return nil, err
	}
	b.stores, err = benchkit.Connect(ctx, benchkit.StoresConfig{RedisAddr: s.redisAddr, ElasticURL: s.elasticURL, HowToStart: howToStart})
	if err != nil {
		return nil, err
	}
	if b.dir, err = os.MkdirTemp("", "querybench-"); err != nil {
		b.stores.Close()
		return nil, err
	}
	// How busy the machine is before we start: what other processes take is
	// noise that the baselines see as much as the API does.
	if b.idle, err = benchkit.MeasureIdle(ctx, b.stores.PIDs); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

// close stops the servers, deletes every Redis key and Elasticsearch index
// of the run, and the work directory unless -keep.
func (b *bench) close() {
	for _, p := range append(b.apis(), b.baseline) {
		if p != nil {
			if err := p.stop(); err != nil {
				b.progress("%s: %v (its log: %s)", p.name, err, p.logPath)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.stores.Clean(ctx, b.ns); err != nil {
		b.progress("%v", err)
	}
	b.stores.Close()
	if b.s.keep {
		b.progress("work directory kept: %s", b.dir)
	} else {
		os.RemoveAll(b.dir)
	}
}

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(b.out, "querybench: "+format+"\n", args...)
}

// command is how the run was started, for the reports.
func (b *bench) command() string {
	cmd := "go run ./cmd/querybench"
	if len(b.s.args) > 0 {
		cmd += " " + strings.Join(b.s.args, " ")
	}
	return cmd
}

// setup says how the servers ran, for the reports.
func (b *bench) setup() string {
	flags := "no load shedding flags (this cmd/queryapi has none)"
	if len(b.shedding) > 0 {
		flags = strings.Join(b.shedding, " ")
	}
	if len(b.missing) > 0 && len(b.shedding) > 0 {
		flags += " (it has no " + strings.Join(b.missing, ", ") + ")"
	}
	api := "cmd/queryapi"
	if b.s.queryapi != "" {
		api = "cmd/queryapi `" + b.s.queryapi + "`"
	}
	return fmt.Sprintf("Servers: %s (`-access-log=false -no-reproject`, %s) and cmd/querybench/baseline, each run as a process of its own on 127.0.0.1, "+
		"built from the working tree unless named; nothing pinned: load generator, servers, Redis and Elasticsearch share the CPUs", api, flags)
}

// describe is the comparison report's header: where and how the figures were taken.
func (b *bench) describe() []string {
	return append(benchkit.Machine(b.idle), b.stores.Describe(), b.setup(),
		fmt.Sprintf("`%s`: %d documents (mean %d bytes); %s `-t%d -c%d --latency`, a Lua request() drawing each request at random; "+
			"%s per server and round, baseline and API one after the other (their order alternating by round), after %s of warm-up",
			b.command(), b.data.n, b.data.meanSize, b.wrkVer, b.s.threads, b.s.conns, b.s.duration, b.s.warmup),
	)
}
