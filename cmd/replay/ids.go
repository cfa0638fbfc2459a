package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/readside/readside/projections"
	"github.com/readside/readside/replay"
)

func newIDsCmd(a *app) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "ids PROJECTION [ID...]",
		Short: "Re-issue events for chosen ids",
		Long: `Re-issue one event per id on the projection's replay subject: the projector
fetches each id fresh from its sources and writes the document again.

The ids are the arguments; or one per line in --file; or, with neither, one per
line on standard input. In a file or on stdin, blank lines and lines starting
with # are skipped. An id that is not valid (empty, whitespace, a NATS wildcard,
longer than 256 bytes, ...) is reported with its line number and skipped; it
never stops the others. A repeated id is re-issued once.

Interrupted, the run keeps a checkpoint; the same ids, run again, continue after
the last id JetStream stored.`,
		Example: `  replay ids shopdisplay 42 43 44
  replay ids shopdisplay --file broken-shops.txt --rate 100
  grep -o 'shop [0-9]*' errors.log | cut -d' ' -f2 | replay ids shopdisplay
  replay ids shopdisplay --file ids.txt --dry-run`,
		Args: projectionArgs(0, -1),
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "read the ids from this file, one per line (- for standard input)")
	rf := a.addRunFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		list, err := a.readIDs(args[1:], file)
		if err != nil {
			return err
		}
		return a.reissue(cmd.Context(), "ids", args[0], rf, func(ctx context.Context, e *replay.Env, def *projections.Definition, o replay.Options) (*replay.Result, error) {
			return e.IDs(ctx, def, list, o)
		})
	}
	return cmd
}

// readIDs reads the ids from the arguments, the file, or standard input.
// Input without a single line that could be an id is an error: an empty
// file or stdin is more likely a mistake than a request to do nothing.
func (a *app) readIDs(args []string, file string) (*replay.IDList, error) {
	list, err := a.readIDList(args, file)
	if err == nil && len(list.IDs) == 0 && len(list.Invalid) == 0 {
		return nil, fmt.Errorf("no ids in %s: one id per line, blank lines and # comments skipped", list.Name)
	}
	return list, err
}

func (a *app) readIDList(args []string, file string) (*replay.IDList, error) {
	switch {
	case len(args) > 0 && file != "":
		return nil, errors.New("give the ids either as arguments or with --file, not both")
	case len(args) > 0:
		return replay.IDArgs(args), nil
	case file == "-" || (file == "" && !a.env.stdinTerminal):
		return replay.ParseIDs("stdin", a.env.stdin)
	case file != "":
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("--file: %w", err)
		}
		defer f.Close()
		return replay.ParseIDs(file, f)
	}
	return nil, errors.New("no ids: give them as arguments, with --file, or on standard input (see replay ids --help)")
}
