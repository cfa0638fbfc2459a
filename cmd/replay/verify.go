package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/readside/readside/projections"
	"github.com/readside/readside/replay"
)

func newVerifyCmd(a *app) *cobra.Command {
	var (
		sample   int
		all, fix bool
		rate     float64
	)
	cmd := &cobra.Command{
		Use:   "verify PROJECTION",
		Short: "Compare stored documents with documents built now from the sources, and report drift",
		Long: `Build documents afresh from the sources (as the projector does) and compare
them with what Redis and Elasticsearch hold. Drift, by kind:
  missing  the source has the entity; the store has no document for it
  stale    the stored document differs from the fresh one (compared as JSON:
           key order and number spelling do not matter)
  extra    the store has a document for an id the source answers 404 for
  partial  the stored document lacks an optional source's part (readside_partial)

The ids: --sample N random ids of the stores (half from Redis, half from
Elasticsearch) and N of the list endpoint, when the definition has one; or
--all: every id of the list endpoint, Redis and Elasticsearch. An id found
drifted is checked again 2s later, and reported only if it still drifts: a
document may change while it is checked.

The output is a table of the drift per kind and store, and the first 20 ids of
each kind. The exit code is 1 when drift is found, or when some ids could not
be checked (a source failing); 0 otherwise. --fix re-issues the drifted ids, so
the projectors build them again; verify again once the replay consumer drained.
--rate bounds the ids fetched from the sources per second, and re-issued.`,
		Example: `  replay verify shopdisplay
  replay verify shopdisplay --sample 1000
  replay verify shopdisplay --all --rate 200
  replay verify shopdisplay --fix`,
		Args: projectionArgs(0, 0),
	}
	f := cmd.Flags()
	f.IntVar(&sample, "sample", replay.DefaultSample, "random ids taken from the stores, and as many from the list endpoint")
	f.BoolVar(&all, "all", false, "check every id, of the list endpoint and of the stores")
	f.BoolVar(&fix, "fix", false, "re-issue the drifted ids")
	f.Float64Var(&rate, "rate", replay.DefaultRate, "most ids fetched (and re-issued) per second; 0: the default; -1: no limit")
	cmd.MarkFlagsMutuallyExclusive("sample", "all")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if rate < 0 && rate != -1 {
			return fmt.Errorf("--rate %g: use a positive number of ids per second, 0 for the default (%d), or -1 for no limit", rate, replay.DefaultRate)
		}
		if sample <= 0 {
			return fmt.Errorf("--sample %d: use a positive number of ids", sample)
		}
		def, err := a.definition(args[0])
		if err != nil {
			return err
		}
		if unset := a.unsetFor(def); len(unset) > 0 {
			return fmt.Errorf("replay verify calls the source APIs, whose URLs in %s need environment variables that are not set: %s", def.File, strings.Join(unset, ", "))
		}
		c, err := a.connect()
		if err != nil {
			return err
		}
		defer c.close()
		ctx := cmd.Context()
		r, err := c.env.Verify(ctx, def, replay.VerifyOptions{Sample: sample, All: all, Fix: fix, Rate: rate, Notes: a.env.stderr})
		switch {
		case err != nil && ctx.Err() != nil:
			err = fmt.Errorf("replay: verify %s: %w (%w)", def.Name, replay.ErrInterrupted, ctx.Err())
		case err != nil:
		case len(r.Drifted()) > 0:
			err = fmt.Errorf("verify %s: drift in %d ids", def.Name, len(r.Drifted()))
		case len(r.Unverified) > 0:
			err = fmt.Errorf("verify %s: no drift found, but %d ids could not be checked", def.Name, len(r.Unverified))
		}
		if r != nil {
			a.write(newVerifyReport(ctx, r, err), r.Print)
		}
		return err
	}
	return cmd
}

// unsetFor lists the environment variables that are not set among those
// def's source URLs name.
func (a *app) unsetFor(def *projections.Definition) []string {
	var out []string
	for _, name := range a.unsetEnv {
		for _, s := range def.Sources {
			urls := s.URL
			if s.Batch != nil {
				urls += " " + s.Batch.URL
			}
			if s.List != nil {
				urls += " " + s.List.URL
			}
			if strings.Contains(urls, "${"+name+"}") {
				out = append(out, name)
				break
			}
		}
	}
	return out
}
