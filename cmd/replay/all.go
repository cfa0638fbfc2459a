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
  docs           the doc store (alias: redis): Redis keys by SCAN MATCH on the
                 key pattern, each node of a cluster in turn; the embedded docs
                 in id order. Tombstones skipped. The default without a list
                 endpoint
  index          the search index (aliases: elasticsearch, es): Elasticsearch
                 behind the alias sorted by id; the embedded index in id order.
                 Tombstones skipped
The total is known when the store can count (Elasticsearch, the embedded
stores). With embedded stores, replay reads them through the projector that
holds them (--projector-url). The output says which origin it uses.

Use it after a store lost data, after adding a field to a definition (to fill
it now rather than as documents change), or to repair drift.

Interrupted, the run keeps a checkpoint (the page it was on); the same command
continues there.`,
		Example: `  replay all shopdisplay
  replay all shopdisplay --rate 2000
  replay all shopdisplay --from index --dry-run`,
		Args: projectionArgs(0, 0),
	}
	cmd.Flags().StringVar(&from, "from", "auto", "where the ids come from: auto, list, docs (redis) or index (elasticsearch)")
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
