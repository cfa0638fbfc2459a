// Command replay is the operator tool that repairs Readside's read models by
// re-issuing events: for chosen ids, for every id, for the events of a time
// window, or for the dead-letter queue. Re-issued events go on the
// projection's replay subject, read by a consumer of their own, so a replay
// never holds live events back.
//
// Usage:
//
//	replay ids PROJECTION [ID...] | --file ids.txt | < ids.txt
//	replay all PROJECTION [--from list|redis|elasticsearch]
//	replay since PROJECTION 2h|2026-11-21T10:00:00Z
//	replay dlq PROJECTION [--reason SUBSTR] [--purge] | --list
//
// Every subcommand is rate-limited (--rate), can be dry-run (--dry-run) and
// resumed: interrupted, it saves a checkpoint, and the same command continues
// where it stopped. --output json writes each command's report as one JSON
// document on stdout (report.go holds its fields). Run replay --help, or
// replay COMMAND --help, for more.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/readside/readside/internal/version"
	"github.com/readside/readside/replay"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // a second signal stops the process at once
	e := &env{
		stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
		stdinTerminal:  term.IsTerminal(int(os.Stdin.Fd())),
		stderrTerminal: term.IsTerminal(int(os.Stderr.Fd())),
	}
	os.Exit(execute(ctx, e, os.Args[1:]))
}

// env is what the commands get from the process: its standard streams and
// whether they are terminals. Tests fill it with buffers.
type env struct {
	stdin          io.Reader
	stdout         io.Writer
	stderr         io.Writer
	stdinTerminal  bool // ids are not read from a terminal
	stderrTerminal bool // a progress bar, rather than log lines
}

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1
	exitInterrupted = 130 // as a shell reports a process ended by SIGINT
)

// execute runs the command line args and returns the process's exit
// code, having written any error to stderr (and, with --output json, as a
// document to stdout when the command wrote no report).
func execute(ctx context.Context, e *env, args []string) int {
	a := newApp(e)
	root := newRoot(a)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "replay: ") {
		msg = "replay: " + msg
	}
	fmt.Fprintln(e.stderr, msg)
	command := strings.TrimPrefix(cmd.CommandPath(), "replay ")
	if errors.Is(err, replay.ErrInterrupted) || ctx.Err() != nil {
		a.writeError(command, statusInterrupted, err)
		return exitInterrupted
	}
	a.writeError(command, statusFailed, err)
	return exitFailed
}

// newRoot builds the replay command and its subcommands on a.
func newRoot(a *app) *cobra.Command {
	e := a.env
	root := &cobra.Command{
		Use:   "replay",
		Short: "Repair Readside read models by re-issuing events",
		Long: `replay repairs Readside's read models by re-issuing events: the projector fetches
every re-issued id fresh from its sources and writes it under the version guard,
so re-issuing is always safe. Re-issued events go on the projection's replay
subject (readside.replay.<projection>), read by a consumer of their own: a replay
never holds live events back, and --rate keeps it from flooding the source APIs.

Every re-issuing command can be interrupted (Ctrl-C, SIGTERM): it saves a
checkpoint under --state-dir, and the same command run again continues where it
stopped (--restart starts over). JetStream drops the few ids both runs re-issue.

Connections and definitions come from the same flags and environment variables
as the projector's (READSIDE_NATS_URL, READSIDE_REDIS_ADDR, READSIDE_ES_URLS,
READSIDE_DEFINITIONS, ...).

--output json writes the report of every command as one JSON document on
stdout (snake_case fields; errors as data: status, error), for scripts;
progress and notes stay on stderr.`,
		PersistentPreRunE: func(*cobra.Command, []string) error { return a.checkOutput() },
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.Version = version.Get().Line("replay") // --version
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	a.registerGlobal(root)

	root.AddCommand(newIDsCmd(a), newAllCmd(a), newSinceCmd(a), newDLQCmd(a), newRebuildCmd(a), newVerifyCmd(a), newStatusCmd(a), &cobra.Command{
		Use: "version", Short: "Print the version, commit and Go version", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), root.Version)
			return err
		},
	})

	return root
}
