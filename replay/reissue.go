// Package replay is how operators repair read models: re-issue events for
// chosen ids, for every id, for the events of a time window, or for the
// dead-letter queue; rebuild an index with zero downtime; and find drift
// between the stores and the sources.
//
// Re-issuing is always safe with zero-payload events: every re-issued id is
// fetched fresh from its sources, and the write guard keeps only the newest
// state. Re-issued events travel on the projection's replay subject, read by
// a consumer of their own, so a replay never holds live events back, and a
// rate limit keeps it from flooding the source APIs.
package replay

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/readside/readside/projections"
)

// DefaultRate is the default of re-issued ids per second: enough to repair a
// million documents in under an hour, low enough for most source APIs.
const DefaultRate = 500

// Publisher is the part of jetstream.JetStream a Reissuer uses.
type Publisher interface {
	PublishAsync(subject string, data []byte, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
	PublishAsyncComplete() <-chan struct{}
}

// ReissueOptions tune a Reissuer.
type ReissueOptions struct {
	// Rate is the most ids re-issued per second [DefaultRate]; negative: no limit.
	Rate float64
	// DryRun counts what would be re-issued and publishes nothing.
	DryRun bool
	// RunID names the run in the events' Nats-Msg-Id, so JetStream drops an
	// id re-issued twice by one run within its duplicate window (a resumed
	// run may repeat the last ids before its checkpoint).
	RunID string
}

// Reissuer publishes re-issue events for one projection. Safe for use by one
// goroutine at a time.
type Reissuer struct {
	pub     Publisher
	subject string
	lim     *rate.Limiter
	o       ReissueOptions
	futures []jetstream.PubAckFuture
	done    atomic.Int64
}

// NewReissuer re-issues events for def through pub.
func NewReissuer(pub Publisher, def *projections.Definition, o ReissueOptions) *Reissuer {
	if o.Rate == 0 {
		o.Rate = DefaultRate
	}
	lim := rate.NewLimiter(rate.Inf, 0)
	if o.Rate > 0 {
		lim = rate.NewLimiter(rate.Limit(o.Rate), max(1, int(o.Rate/10)))
	}
	return &Reissuer{pub: pub, subject: def.ReplaySubject(), lim: lim, o: o}
}

// Reissue publishes one event per id, waiting for the rate limit, and
// returns when JetStream has stored them all (or ctx ends). An id that is
// not valid is an error: nothing can be projected for it.
func (r *Reissuer) Reissue(ctx context.Context, ids []string) error {
	for _, id := range ids {
		if err := projections.ValidateID(id); err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		if err := r.lim.Wait(ctx); err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			// The wait would outlast ctx's deadline: as good as reached.
			return fmt.Errorf("replay: %w (%v)", context.DeadlineExceeded, err)
		}
		if r.o.DryRun {
			r.done.Add(1)
			continue
		}
		f, err := r.pub.PublishAsync(r.subject, projections.EventBody(id), jetstream.WithMsgID("replay-"+r.o.RunID+"-"+id))
		if err != nil {
			return fmt.Errorf("replay: publishing %q: %w", id, err)
		}
		r.futures = append(r.futures, f)
		if len(r.futures) >= 512 {
			if err := r.wait(ctx); err != nil {
				return err
			}
		}
	}
	return r.wait(ctx)
}

// wait waits for every publish of this Reissuer to be stored.
func (r *Reissuer) wait(ctx context.Context) error {
	for _, f := range r.futures {
		select {
		case <-f.Ok():
			r.done.Add(1)
		case err := <-f.Err():
			return fmt.Errorf("replay: JetStream did not store a re-issued event: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.futures = r.futures[:0]
	return nil
}

// Done is how many ids have been re-issued (and stored by JetStream).
func (r *Reissuer) Done() int64 { return r.done.Load() }
