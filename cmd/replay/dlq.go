package main

import (
	"context"
	"errors"
	"io"

	"github.com/spf13/cobra"

	"github.com/readside/readside/projections"
	"github.com/readside/readside/replay"
)

func newDLQCmd(a *app) *cobra.Command {
	var (
		reason string
		purge  bool
		list   bool
	)
	cmd := &cobra.Command{
		Use:   "dlq [PROJECTION]",
		Short: "Re-issue, or list, the dead-letter entries of a projection",
		Long: `Re-issue the projection's dead-letter entries (subject readside.dlq.<projection>
of the dead-letter stream), then delete each from the dead-letter stream once
JetStream has stored its re-issue. Fix what made them fail first: a re-issued
event that fails again is dead-lettered again.

An entry is re-issued by its Readside-Id header, or else by reading the id from
its original subject and body; a lookup event is resolved to the documents that
use its entity. An entry that yields no valid id cannot be re-issued: it is kept
and listed, unless --purge deletes it. --reason keeps only the entries whose
reason contains the text (ignoring case).

With --list, nothing is re-issued or deleted: the entries are shown grouped by
projection and reason, with their count, first and last time, and a few example
ids. Without a projection, --list shows every projection's entries.`,
		Example: `  replay dlq --list
  replay dlq shopdisplay --list
  replay dlq shopdisplay --reason "status 400" --dry-run
  replay dlq shopdisplay
  replay dlq shopdisplay --purge`,
		Args: cobra.MaximumNArgs(1),
	}
	cmd.Flags().StringVar(&reason, "reason", "", "only the entries whose reason contains this text (ignoring case)")
	cmd.Flags().BoolVar(&purge, "purge", false, "also delete the entries that cannot be re-issued (no valid id)")
	cmd.Flags().BoolVar(&list, "list", false, "show the entries grouped by reason; change nothing")
	rf := a.addRunFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if list {
			return a.listDLQ(cmd.Context(), args)
		}
		if len(args) == 0 {
			return errors.New("name the projection whose entries to re-issue (or use --list to see them all)")
		}
		return a.reissue(cmd.Context(), "dlq", args[0], rf, func(ctx context.Context, e *replay.Env, def *projections.Definition, o replay.Options) (*replay.Result, error) {
			return e.DLQ(ctx, def, replay.DLQOptions{Reason: reason, Purge: purge}, o)
		})
	}
	return cmd
}

// listDLQ shows the dead-letter entries of one projection, or of all. It
// needs no definitions, but checks the name against them when they are given.
func (a *app) listDLQ(ctx context.Context, args []string) error {
	projection := ""
	if len(args) == 1 {
		projection = args[0]
		if a.definitions != "" {
			if _, err := a.definition(projection); err != nil {
				return err
			}
		}
	}
	c, err := a.connect()
	if err != nil {
		return err
	}
	defer c.close()
	groups, err := c.env.ListDLQ(ctx, projection)
	if err != nil {
		return err
	}
	return a.write(newDLQListReport(projection, groups), func(w io.Writer) { replay.WriteDLQGroups(w, groups) })
}
