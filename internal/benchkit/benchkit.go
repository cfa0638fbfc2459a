// Package benchkit measures and reports the benchmarks of Readside's
// commands (cmd/bench, cmd/querybench): the CPU time that this process, the
// Redis and Elasticsearch under load and every other process spend while a
// scenario is timed; the Markdown table of the medians of several rounds;
// the stores a benchmark runs against, checked before and cleaned after by
// namespace; and the command line the benchmarks share.
//
// The machine the benchmarks run on is shared, and its absolute figures move
// by up to 4× with stolen CPU. So every figure here comes with how much of the
// machine other processes took, and tables compare each row with a baseline
// measured in the same round.
package benchkit

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"
)

// Command is a benchmark's body: it parses args, writes its report to stdout
// and its progress to stderr, and stops when ctx ends.
type Command func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// Main runs the benchmark cmd/name with a context that SIGINT and SIGTERM
// cancel (the run then cleans up, as after an error), and returns the exit
// status for main: 0, or 1 when run failed. A failure is written to stderr
// after the name, except flag.ErrHelp: the flag set has shown the usage.
func Main(name string, run Command, args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, args, stdout, stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, name+":", err)
		}
		return 1
	}
	return 0
}
