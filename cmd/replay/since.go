package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/readside/readside/projections"
	"github.com/readside/readside/replay"
)

func newSinceCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "since PROJECTION DURATION|TIME",
		Short: "Re-issue the ids of the events since a time",
		Long: `Re-issue the ids of the projection's events stored in the events stream since a
time: ` + replay.SinceForms + `.

The events are read in order, filtered to the projection's trigger subjects, up to
the last event stored when the command started (later ones are the projector's);
each id is re-issued once. A lookup event (a trigger with lookup:, such as
"owner 7 changed") is resolved to the documents that use that entity now,
through the reverse lookups the projector keeps in Redis, and those are
re-issued. Events without a valid id are skipped and listed.

Use it after a store, or a source, answered wrongly for a while: everything that
changed in that window is fetched again.

Interrupted, the run keeps a checkpoint (the window, and the last event done);
the same command continues there, for the same window.`,
		Example: `  replay since shopdisplay 2h
  replay since shopdisplay 2026-11-21T10:00:00Z
  replay since shopdisplay 1d12h --rate 1000 --dry-run`,
		Args: projectionArgs(1, 1),
	}
	rf := a.addRunFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if _, err := replay.ParseSince(args[1], time.Now()); err != nil {
			return err // before connecting: a typo fails at once
		}
		return a.reissue(cmd.Context(), "since", args[0], rf, func(ctx context.Context, e *replay.Env, def *projections.Definition, o replay.Options) (*replay.Result, error) {
			return e.Since(ctx, def, args[1], o)
		})
	}
	return cmd
}
