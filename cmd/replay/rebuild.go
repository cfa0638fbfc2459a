package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/readside/readside/internal/sink/elasticindex"
	"github.com/readside/readside/replay"
)

func newRebuildCmd(a *app) *cobra.Command {
	var (
		keepOld, deleteOld, dryRun bool
		rate, tolerance            float64
	)
	cmd := &cobra.Command{
		Use:   "rebuild PROJECTION",
		Short: "Rebuild a projection's search index with zero downtime (also rolls out a mapping change)",
		Long: fmt.Sprintf(`Build a new search index for the projection while the old one keeps serving,
then put it in its place in one atomic step. This is also how a changed
mapping (a field's type, its searchability) is rolled out.

On the embedded search index (-data-dir; replay reaches it through the
projector's admin address, --projector-url), the index re-indexes the
documents it holds into a new generation and swaps it in, while it serves:
nothing is re-issued and no source is called. It uses the fields of the
definition the projector runs, not --definitions: to roll out a new
definition there, restart the projector with it (it re-indexes at start).

On Elasticsearch, the steps, printed as they happen:
%s

To change a mapping on Elasticsearch: run the rebuild with the NEW definition (--definitions)
while the projectors still run the old one; deploy the new definition to the
projectors once the alias has swapped. A projector checks the mapping of the
index behind the alias only, so old projectors keep running during the rebuild,
and new ones start after the swap. The new index is filled by the projectors,
with the definition they run: a change of the documents' shape (new fields,
other values) reaches them as they are projected again — run replay all after
the deployment. A type change works when the values the running definition
writes fit the new type (integer → float, keyword → text); otherwise a
projector keeps retrying the documents the new index rejects, and the rebuild
does not finish: add a field under a new name instead.`, fmt.Sprintf(replay.RebuildSteps, elasticindex.RebuildSettle)),
		Example: `  replay rebuild shopdisplay
  replay rebuild shopdisplay --definitions ./next/shopdisplay.yaml --delete-old
  replay rebuild shopdisplay --rate 2000 --tolerance 0.01
  replay rebuild shopdisplay --dry-run`,
		Args: projectionArgs(0, 0),
	}
	f := cmd.Flags()
	f.BoolVar(&keepOld, "keep-old", false, "keep the old index after the swap, without an alias (the default)")
	f.BoolVar(&deleteOld, "delete-old", false, "delete the old index after the swap")
	f.Float64Var(&rate, "rate", replay.DefaultRate, "most ids re-issued per second; 0: the default; -1: no limit")
	f.Float64Var(&tolerance, "tolerance", replay.DefaultTolerance, "share of the old index's live documents the new one may lack and still take the alias")
	f.BoolVar(&dryRun, "dry-run", false, "say what would be done; create, re-issue, swap and delete nothing")
	cmd.MarkFlagsMutuallyExclusive("keep-old", "delete-old")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if rate < 0 && rate != -1 {
			return fmt.Errorf("--rate %g: use a positive number of ids per second, 0 for the default (%d), or -1 for no limit", rate, replay.DefaultRate)
		}
		if tolerance < 0 || tolerance >= 1 {
			return fmt.Errorf("--tolerance %g: use a share from 0 (no document may be missing) to below 1, such as 0.001", tolerance)
		}
		def, err := a.definition(args[0])
		if err != nil {
			return err
		}
		if def.Listable() {
			if err := a.needsSources(def, "replay rebuild (it re-issues the ids of the list endpoint)"); err != nil {
				return err
			}
		}
		c, err := a.connect()
		if err != nil {
			return err
		}
		defer c.close()
		o := replay.RebuildOptions{
			Rate: rate, Tolerance: tolerance, DeleteOld: deleteOld, DryRun: dryRun,
			Out: a.env.stdout, Progress: replay.Lines(a.env.stderr, 5*time.Second),
		}
		if a.output == outputJSON {
			o.Out = a.env.stderr // the steps as they happen; the report at the end
		}
		if a.env.stderrTerminal {
			o.Progress = replay.Bar(a.env.stderr)
		}
		ctx := cmd.Context()
		start := time.Now()
		res, err := c.env.Rebuild(ctx, def, o)
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("replay: rebuild %s: %w (%w): run the same command again to continue; alias %s has not moved",
				def.Name, replay.ErrInterrupted, ctx.Err(), def.Elasticsearch.Alias)
		}
		a.write(newRebuildReport(ctx, def.Name, res, time.Since(start), err), nil) // text: the steps said it all
		return err
	}
	return cmd
}
