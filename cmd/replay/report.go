package main

import (
	"context"
	"errors"
	"time"

	"github.com/readside/readside/replay"
)

// The JSON reports of --output json. Their field names are snake_case and
// stable: a script may rely on them (README, "Reports as JSON"). Every
// field is always present unless its comment says otherwise; lists are []
// rather than null.

// Statuses of a run.
const (
	statusCompleted   = "completed"   // it did all it was asked
	statusInterrupted = "interrupted" // SIGINT, SIGTERM: run the same command again to continue
	statusFailed      = "failed"      // see error
)

// status names how a run ended.
func status(ctx context.Context, err error) string {
	switch {
	case err == nil:
		return statusCompleted
	case errors.Is(err, replay.ErrInterrupted) || ctx.Err() != nil:
		return statusInterrupted
	}
	return statusFailed
}

// orEmpty is s, or an empty slice for nil: [] in JSON, not null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func errorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// countsReport are a run's counts (see replay.Counts), zeros included.
type countsReport struct {
	Reissued   int64 `json:"reissued"`
	Invalid    int64 `json:"invalid"`
	Duplicates int64 `json:"duplicates"`
	Tombstones int64 `json:"tombstones"`
	Events     int64 `json:"events"`
	Lookups    int64 `json:"lookups"`
	Deleted    int64 `json:"deleted"`
	Kept       int64 `json:"kept"`
}

func countsOf(c replay.Counts) countsReport { return countsReport(c) }

// problemReport is one input a run skipped.
type problemReport struct {
	Where string `json:"where"`
	Input string `json:"input"`
	Why   string `json:"why"`
}

// runReport is the report of a re-issuing command: ids, all, since, dlq.
type runReport struct {
	Command    string `json:"command"`
	Projection string `json:"projection"`
	Status     string `json:"status"`
	DryRun     bool   `json:"dry_run"`
	// Resumed: the run continued an interrupted one; Counts include the
	// earlier processes' (Before).
	Resumed bool         `json:"resumed"`
	Counts  countsReport `json:"counts"`
	Before  countsReport `json:"before"`
	// Source says where the ids came from (all; "" otherwise).
	Source string `json:"source"`
	// Problems are the first 100 inputs skipped; counts.invalid has them all.
	Problems       []problemReport `json:"problems"`
	ElapsedSeconds float64         `json:"elapsed_seconds"`
	// IDsPerSecond is the rate of this process's re-issues.
	IDsPerSecond float64 `json:"ids_per_second"`
	// Checkpoint is the checkpoint file of a run that stopped before its
	// end; omitted when it finished.
	Checkpoint string `json:"checkpoint,omitempty"`
	// Error says why the run stopped; omitted when it completed.
	Error string `json:"error,omitempty"`
}

func newRunReport(ctx context.Context, command, projection string, res *replay.Result, err error) runReport {
	r := runReport{
		Command: command, Projection: projection, Status: status(ctx, err),
		DryRun: res.DryRun, Resumed: res.Resumed, Counts: countsOf(res.Counts), Before: countsOf(res.Before),
		Source: res.Source, Problems: []problemReport{}, ElapsedSeconds: res.Elapsed.Seconds(), IDsPerSecond: res.Rate(),
		Checkpoint: res.Checkpoint, Error: errorText(err),
	}
	for _, p := range res.Problems {
		r.Problems = append(r.Problems, problemReport(p))
	}
	return r
}

// driftReport are the ids with one kind of drift: all of them, and those
// of each store.
type driftReport struct {
	IDs   []string `json:"ids"`
	Docs  []string `json:"docs"`
	Index []string `json:"index"`
}

// verifyReport is the report of verify. Status is completed only when no
// drift was found and every id was checked; else failed (or interrupted),
// with error saying which.
type verifyReport struct {
	Command    string `json:"command"`
	Projection string `json:"projection"`
	Status     string `json:"status"`
	Scope      string `json:"scope"`
	Checked    int    `json:"checked"`
	// Stores name the doc store and the search index compared ("redis",
	// "elasticsearch", "embedded-docs", "embedded-search").
	Stores map[string]string `json:"stores"`
	// Drift has every kind (missing, stale, extra, partial), each with
	// every id found (the text report shows the first 20).
	Drift map[replay.Drift]driftReport `json:"drift"`
	// Drifted are the distinct ids with any drift, sorted.
	Drifted []string `json:"drifted"`
	// Unverified are the ids that could not be checked; UnverifiedReason
	// the first reason.
	Unverified       []string `json:"unverified"`
	UnverifiedReason string   `json:"unverified_reason"`
	// Fixed is how many drifted ids --fix re-issued.
	Fixed          int64   `json:"fixed"`
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	Error          string  `json:"error,omitempty"`
}

func newVerifyReport(ctx context.Context, r *replay.VerifyReport, err error) verifyReport {
	v := verifyReport{
		Command: "verify", Projection: r.Projection, Status: status(ctx, err), Scope: r.Scope, Checked: r.Checked,
		Stores: map[string]string{"docs": r.DocsName, "index": r.IndexName},
		Drift:  map[replay.Drift]driftReport{}, Drifted: orEmpty(r.Drifted()),
		Unverified: orEmpty(r.Unverified), UnverifiedReason: r.Why, Fixed: r.Fixed,
		ElapsedSeconds: r.Elapsed.Seconds(), Error: errorText(err),
	}
	for _, k := range replay.Drifts {
		got := r.Drift[k]
		if got == nil {
			got = &replay.DriftIDs{}
		}
		v.Drift[k] = driftReport{IDs: orEmpty(got.IDs), Docs: orEmpty(got.Docs), Index: orEmpty(got.Index)}
	}
	return v
}

// rebuildReport is the report of rebuild (see replay.RebuildResult). A
// rebuild that failed before it found the alias has only command,
// projection, status and error.
type rebuildReport struct {
	Command    string `json:"command"`
	Projection string `json:"projection"`
	Status     string `json:"status"`
	DryRun     bool   `json:"dry_run"`
	Alias      string `json:"alias"`
	// OldIndices are the indices the alias pointed at; NewIndex the one the
	// rebuild filled ("" when it stopped before creating it).
	OldIndices []string `json:"old_indices"`
	NewIndex   string   `json:"new_index"`
	Resumed    bool     `json:"resumed"`
	Reissued   int64    `json:"reissued"`
	Tombstones int64    `json:"tombstones"`
	// OldCount and NewCount are the live documents of the old indices and
	// the new one, once the replay consumer drained.
	OldCount   int64 `json:"old_count"`
	NewCount   int64 `json:"new_count"`
	Swapped    bool  `json:"swapped"`
	DeletedOld bool  `json:"deleted_old"`
	// Reindexed is how many documents an index that re-indexes itself
	// (the embedded one) copied.
	Reindexed      int64   `json:"reindexed"`
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	Error          string  `json:"error,omitempty"`
}

func newRebuildReport(ctx context.Context, projection string, r *replay.RebuildResult, elapsed time.Duration, err error) rebuildReport {
	if r == nil {
		r = &replay.RebuildResult{}
	}
	return rebuildReport{
		Command: "rebuild", Projection: projection, Status: status(ctx, err), DryRun: r.DryRun, Alias: r.Alias,
		OldIndices: orEmpty(r.Old), NewIndex: r.New, Resumed: r.Resumed, Reissued: r.Reissued, Tombstones: r.Tombstones,
		OldCount: r.OldCount, NewCount: r.NewCount, Swapped: r.Swapped, DeletedOld: r.DeletedOld, Reindexed: r.Reindexed,
		ElapsedSeconds: elapsed.Seconds(), Error: errorText(err),
	}
}

// dlqGroupReport is one group of dlq --list: the entries of one projection
// with one reason.
type dlqGroupReport struct {
	Projection string    `json:"projection"`
	Reason     string    `json:"reason"`
	Count      int       `json:"count"`
	First      time.Time `json:"first"` // RFC 3339
	Last       time.Time `json:"last"`
	Examples   []string  `json:"examples"`
}

// dlqListReport is the report of dlq --list.
type dlqListReport struct {
	Command string `json:"command"` // "dlq list"
	// Projection is the projection listed; "" for all.
	Projection string           `json:"projection"`
	Status     string           `json:"status"`
	Entries    int              `json:"entries"`
	Groups     []dlqGroupReport `json:"groups"`
}

func newDLQListReport(projection string, groups []replay.DLQGroup) dlqListReport {
	r := dlqListReport{Command: "dlq list", Projection: projection, Status: statusCompleted, Groups: []dlqGroupReport{}}
	for _, g := range groups {
		r.Entries += g.Count
		r.Groups = append(r.Groups, dlqGroupReport{Projection: g.Projection, Reason: g.Reason, Count: g.Count,
			First: g.First.UTC(), Last: g.Last.UTC(), Examples: orEmpty(g.Examples)})
	}
	return r
}
