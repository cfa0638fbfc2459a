package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/readside/readside/projections"
	"github.com/readside/readside/replay"
)

func newAllCmd(a *app) *cobra.Command {
	var from string
	cmd := &cobra.Command{
		Use:   "all PROJECTION",
		Short: "Re-issue events for every id of a projection",
		Long: `Re-issue one event for every id of the projection, at most --rate per second.

Where the ids come from (--from):
  list           the primary source's list endpoint (sources[0].list), page by
                 page: every entity the source knows, so it also restores the
                 documents a store lost (the default when the definition has one)
  redis          the projection's Redis keys (SCAN MATCH on its key pattern;
                 tombstones skipped): the default without a list endpoint
  elasticsearch  the index behind the alias, sorted by id (search_after;
                 tombstones skipped); the only origin with a known total
The output says which one it uses.

Use it after a store lost data, after adding a field to a definition (to fill
it now rather than as documents change), or to repair drift.

Interrupted, the run keeps a checkpoint (the page it was on); the same command
continues there.`,
		Example: `  replay all shopdisplay
  replay all shopdisplay --rate 2000
  replay all shopdisplay --from elasticsearch --dry-run`,
		Args: projectionArgs(0, 0),
	}
	cmd.Flags().StringVar(&from, "from", "auto", "where the ids come from: auto, list, redis or elasticsearch")
	rf := a.addRunFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		origin, err := replay.ParseOrigin(from)
		if err != nil {
			return err
		}
		def, err := a.definition(args[0])
		if err != nil {
			return err
		}
		if origin == replay.FromList || (origin == replay.FromAuto && def.Listable()) {
			if err := a.needsSources(def, "replay all from the list endpoint"); err != nil {
				return err
			}
		}
		return a.reissue(cmd.Context(), "all", args[0], rf, func(ctx context.Context, e *replay.Env, def *projections.Definition, o replay.Options) (*replay.Result, error) {
			return e.All(ctx, def, origin, o)
		})
	}
	return cmd
}
