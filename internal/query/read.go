package query

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/propagation"

	"github.com/readside/readside/internal/assemble"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/projections"
)

// read returns the documents for ids: from Redis, and for what Redis lacks
// or cannot give, built from the sources. gone holds the ids that do not
// exist (a tombstone, or the source's 404). An id in neither could be given
// neither way; read logged and counted why (see sourceFailed).
func (s *Server) read(ctx context.Context, v *view, ids []string) (map[string]doc, map[string]bool) {
	stored, partial, rerr := s.readStore(ctx, v, ids)
	return s.complete(ctx, v, ids, stored, partial, rerr)
}

// readOne is read for one id. The common detail read, which the doc store
// answers, costs no maps.
func (s *Server) readOne(ctx context.Context, v *view, id string) (d doc, found, gone bool) {
	ids := []string{id}
	stored, partial, rerr := s.readStore(ctx, v, ids)
	if rerr == nil && partial == nil && stored[0] != nil {
		st := stored[0]
		if st.Deleted {
			return doc{}, false, true
		}
		return storedDoc(st), true, false
	}
	docs, goneIDs := s.complete(ctx, v, ids, stored, partial, rerr)
	d, found = docs[id]
	return d, found, goneIDs[id]
}

// complete makes read's answer from what the doc store gave (stored, or its
// failure), building what it lacks from the sources.
func (s *Server) complete(ctx context.Context, v *view, ids []string, stored []*sink.Stored, partial, rerr error) (map[string]doc, map[string]bool) {
	docs, gone := make(map[string]doc, len(ids)), map[string]bool{}
	if partial != nil && ctx.Err() == nil {
		v.partialWarn.Do(func() {
			s.log.Warn("redis could not give some documents; building them from the sources (logged at most every 5s)", "projection", v.Def.Name, "err", partial)
		})
	}
	var build []string
	for i, id := range ids {
		switch {
		case rerr != nil || stored[i] == nil:
			build = append(build, id)
		case stored[i].Deleted:
			gone[id] = true
		default:
			docs[id] = storedDoc(stored[i])
		}
	}
	if rerr != nil && ctx.Err() == nil && !errors.Is(rerr, gobreaker.ErrOpenState) && !errors.Is(rerr, gobreaker.ErrTooManyRequests) {
		s.m.failed(v.Def.Name, "docs")
		v.storeWarn.Do(func() {
			s.log.Warn("the doc store failed; building documents from the sources (logged at most every 5s)", "projection", v.Def.Name, "request", RequestID(ctx), "err", rerr)
		})
	}
	if len(build) == 0 {
		return docs, gone
	}
	ctx, cancel := bounded(ctx) // the sources are waited for
	defer cancel()
	if err := s.buildAll(ctx, v, build, docs, gone); err != nil && ctx.Err() == nil {
		s.sourceFailed(ctx, v, err)
	}
	return docs, gone
}

// storedDoc is the answer's document for one the doc store holds.
func storedDoc(st *sink.Stored) doc {
	return doc{body: st.Body, version: st.Version, builtAt: st.BuiltAt, fromStore: true, versioned: true}
}

// readStore reads ids from the doc store through its breaker. partial is
// set when some ids could not be read (a Redis Cluster node lost): the
// store still answers, and those ids are built.
func (s *Server) readStore(ctx context.Context, v *view, ids []string) (stored []*sink.Stored, partial, err error) {
	stored, err = v.redisCB.Execute(func() ([]*sink.Stored, error) {
		got, err := s.stored(ctx, v, ids)
		if be := (*sink.BatchError)(nil); errors.As(err, &be) {
			partial, err = err, nil
		}
		return got, err
	})
	return stored, partial, err
}

// buildAll builds the documents of ids from the sources into docs and gone,
// and returns the last failure of an id that could not be built.
func (s *Server) buildAll(ctx context.Context, v *view, ids []string, docs map[string]doc, gone map[string]bool) (err error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	var heal []string // ids the source has and the store could not give
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, berr := s.build(ctx, v, id)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case berr != nil:
				err = berr
			case r.Deleted:
				gone[id] = true
			case r.Err != nil:
				err = r.Err
			default:
				docs[id] = doc{body: r.Doc, version: r.Version, builtAt: time.Now(), versioned: v.Def.Versioned()}
				heal = append(heal, id)
			}
		}()
	}
	wg.Wait()
	// Only an id the source has is re-projected: a read of an id the source
	// does not know (a made-up one) must never make the projector write.
	s.reproject(ctx, v, heal)
	return err
}

// stored reads ids from Redis, giving it half of the time the request has
// left, so that a Redis that is slow or does not answer still leaves time to
// build the documents from the sources. The error wraps
// context.DeadlineExceeded when Redis took too long, and context.Canceled
// when the caller went away (not Redis's fault).
func (s *Server) stored(ctx context.Context, v *view, ids []string) ([]*sink.Stored, error) {
	budget := s.o.RequestTimeout / 2
	if d, ok := ctx.Deadline(); ok {
		budget = time.Until(d) / 2
	}
	deadline := time.Now().Add(budget)
	docs, err := readDocs(ctx, v, ids, deadline)
	if err != nil && !time.Now().Before(deadline) && ctx.Err() == nil {
		return nil, fmt.Errorf("query: redis did not answer within %s: %w", budget.Round(time.Millisecond), err)
	}
	return docs, err
}

// readDocs reads ids from the doc store by deadline. A read of one id goes
// with the reads of other requests (see coalescer), unless the joint read
// failed for it; any other read is one of its own.
func readDocs(ctx context.Context, v *view, ids []string, deadline time.Time) ([]*sink.Stored, error) {
	if v.coalesce != nil && len(ids) == 1 {
		if st, ok, err := v.coalesce.one(ctx, ids[0], deadline); ok {
			if err != nil {
				return nil, err
			}
			return []*sink.Stored{st}, nil
		}
		// A joint read failed for it: its own read says how.
	}
	// A context of its own, with a timer, not only an earlier deadline:
	// go-redis bounds socket reads by the deadline, but its dials, retries
	// and a Redis Cluster's redirects wait on Done (measured: with a
	// deadline alone, a multi-get during a master's failover ran into the
	// request's deadline, 504, instead of building the lost master's ids).
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	// The Redis client must honour deadlines (go-redis ContextTimeoutEnabled,
	// as config.Backends sets it): then a slow Redis costs at most budget.
	return v.Docs.GetMany(rctx, ids)
}

// build builds one document from the sources. Concurrent builds of one id
// share one: the first caller's build runs detached from its request, bounded
// by the request timeout, so a client hanging up does not fail the others.
func (s *Server) build(ctx context.Context, v *view, id string) (assemble.Result, error) {
	ch := v.builds.DoChan(id, func() (any, error) {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.RequestTimeout)
		defer cancel()
		return v.asm.Assemble(bctx, []string{id})[0], nil
	})
	select {
	case <-ctx.Done():
		return assemble.Result{}, ctx.Err()
	case res := <-ch:
		return res.Val.(assemble.Result), nil
	}
}

// reproject asks the projector to project ids again, so the store heals.
// Events for one id within ten seconds are de-duplicated by JetStream.
//
// With tracing on, each event carries the request's trace context, which the
// projector continues.
func (s *Server) reproject(ctx context.Context, v *view, ids []string) {
	if s.pub == nil {
		return
	}
	bucket := time.Now().Unix() / 10
	for _, id := range ids {
		msgID := fmt.Sprintf("reproject-%s-%s-%d", v.Def.Name, id, bucket)
		msg := &nats.Msg{Subject: v.Def.ReprojectSubject(), Data: projections.EventBody(id)}
		if s.o.Propagator != nil {
			msg.Header = nats.Header{}
			s.o.Propagator.Inject(ctx, propagation.HeaderCarrier(msg.Header))
		}
		// A NATS outage must not slow a read: wait at most a millisecond.
		_, err := s.pub.PublishMsgAsync(msg, jetstream.WithMsgID(msgID), jetstream.WithStallWait(time.Millisecond))
		if err != nil {
			v.m.reprojectErr.Inc()
			s.log.Debug("publishing a re-project event failed", "projection", v.Def.Name, "id", id, "err", err)
			continue
		}
		v.m.reprojectOK.Inc()
	}
}

// limitedFetcher bounds the requests at once to one source across every
// request of the process, so that a store outage cannot flood the source.
type limitedFetcher struct {
	f   assemble.Fetcher
	sem chan struct{}
}

// errSaturated is the answer when a source has no free slot before the deadline.
var errSaturated = errors.New("query: source saturated: too many fallback requests at once")

func (l *limitedFetcher) Get(ctx context.Context, url string) ([]byte, error) {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w (%w)", errSaturated, ctx.Err())
	}
	defer func() { <-l.sem }()
	return l.f.Get(ctx, url)
}

func randomKey() []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}
