package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
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
	log    *slog.Logger
	out    io.Writer // progress
	ns     string    // namespace of this run, such as "qbench3f9a1c"; also the projection's name
	def    *projections.Definition
	stores *benchkit.Stores // with the settings of cmd/queryapi (internal/config.Backends)
	data   dataset
	srv    servers
	idle   benchkit.CPUUse // one second before the run
}

// start checks the stores and makes the namespace. Close the bench when
// done: it deletes everything the run made.
func start(ctx context.Context, s *settings, log *slog.Logger, out io.Writer) (*bench, error) {
	ns, err := benchkit.Namespace("qbench")
	if err != nil {
		return nil, err
	}
	b := &bench{s: s, log: log, out: out, ns: ns}
	b.stores, err = benchkit.Connect(ctx, benchkit.StoresConfig{RedisAddr: s.RedisAddr, ElasticURL: s.ElasticURL, HowToStart: howToStart})
	if err != nil {
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

// close stops the servers and deletes every Redis key and Elasticsearch
// index of the run.
func (b *bench) close() {
	b.srv.close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.stores.Clean(ctx, b.ns); err != nil {
		b.progress("%v", err)
	}
	b.stores.Close()
}

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(b.out, "querybench: "+format+"\n", args...)
}

// describe is the report's header: where and how the figures were taken.
func (b *bench) describe() []string {
	cmd := "go run ./cmd/querybench"
	if len(b.s.args) > 0 {
		cmd += " " + strings.Join(b.s.args, " ")
	}
	return append(benchkit.Machine(b.idle), b.stores.Describe(),
		fmt.Sprintf("`%s`: %d documents (mean %d bytes), %d connections, %s measured per row in %d turns alternating between the servers, after %s of warm-up",
			cmd, b.data.n, b.data.meanSize, b.s.conns, b.s.duration, b.s.slices, b.s.warmup),
	)
}
