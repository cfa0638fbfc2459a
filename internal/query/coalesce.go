package query

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/readside/readside/internal/sink"
)

// maxCoalesced is the most detail reads one doc-store read carries.
const maxCoalesced = 128

// coalescer joins the doc-store reads of concurrent detail requests (and
// any other read of one id: a multi-get or a page of one). A read starts at
// once while fewer than lanes are in flight, as a read of its own;
// otherwise it waits, and when a lane frees, the reads that waited meanwhile
// go to the store together as one GetMany (one MGET on a Redis, one
// pipeline on a Redis Cluster), run on the goroutine of the oldest of them.
// Under load one round trip then answers many requests, with fewer system
// calls in the API and in Redis than a GET a request (measured with
// cmd/querybench, see BENCHMARKS.md). A read that finds a free lane waits
// for nothing.
//
// A request gets what its own read would have given: a joint read that
// fails as a whole, or for its id (a value that does not decode, a Redis
// Cluster node lost), hands each request it carried back to a read of its
// own (one's ok is false), so that one id's failure is never another
// request's. A joint read has the earliest deadline of the requests it
// carries; a request waits for the read in flight on a lane, whose deadline
// is earlier than its own, then for its joint read, so it never waits past
// its own deadline.
//
// Written here because no library of the field joins calls this way:
// x/sync's singleflight shares one call of one key, not a call of many keys,
// and go-redis has no automatic pipelining.
type coalescer struct {
	get   func(ctx context.Context, ids []string) ([]*sink.Stored, error)
	lanes int
	sizes func(n float64) // observes the ids of every doc-store read it makes

	mu    sync.Mutex
	busy  int     // lanes in flight
	queue []*read // reads waiting for a lane, oldest first
}

// read is one request's read.
type read struct {
	ctx      context.Context // the request's: its values, for a trace
	id       string
	deadline time.Time
	done     chan struct{} // closed when answered, or when it is to lead
	lead     []*read       // set before done closes: the joint read to run
	st       *sink.Stored
	err      error
	alone    bool // the joint read failed for it: read it alone
}

func newCoalescer(get func(ctx context.Context, ids []string) ([]*sink.Stored, error), lanes int, sizes func(float64)) *coalescer {
	return &coalescer{get: get, lanes: lanes, sizes: sizes}
}

// one reads id from the doc store by deadline, with the reads that wait
// with it. ok is false when a joint read failed for id: the caller reads id
// alone, whose error (or document) is the request's.
func (c *coalescer) one(ctx context.Context, id string, deadline time.Time) (st *sink.Stored, ok bool, err error) {
	r := &read{ctx: ctx, id: id, deadline: deadline}
	c.mu.Lock()
	if c.busy < c.lanes {
		c.busy++
		c.mu.Unlock()
		c.run([]*read{r})
		return r.st, !r.alone, r.err
	}
	r.done = make(chan struct{})
	c.queue = append(c.queue, r)
	c.mu.Unlock()
	<-r.done
	if r.lead != nil {
		c.run(r.lead)
	}
	return r.st, !r.alone, r.err
}

// run reads batch (its first read is the caller's), answers each read of it,
// and hands the lane on to the reads that waited meanwhile, or frees it.
func (c *coalescer) run(batch []*read) {
	defer c.next(batch)
	dl := batch[0].deadline
	ids := make([]string, len(batch))
	for i, r := range batch {
		ids[i] = r.id
		if r.deadline.Before(dl) {
			dl = r.deadline
		}
	}
	if c.sizes != nil {
		c.sizes(float64(len(batch)))
	}
	// Detached from the first request's end, not from its values: the
	// others wait for this read too. The deadline, a timer, bounds it.
	ctx, cancel := context.WithDeadline(context.WithoutCancel(batch[0].ctx), dl)
	defer cancel()
	got, err := c.get(ctx, ids)
	if len(batch) == 1 {
		if batch[0].err = err; err == nil {
			batch[0].st = got[0]
		}
		return
	}
	var failed map[int]error
	if be := (*sink.BatchError)(nil); errors.As(err, &be) {
		failed, err = be.Items, nil
	}
	for i, r := range batch {
		if _, lost := failed[i]; lost || err != nil {
			r.alone = true
			continue
		}
		r.st = got[i]
	}
}

// next, deferred by run, answers the reads of batch other than the caller's
// and gives the lane to the reads waiting (the oldest of them runs them), or
// frees it. A panic of the store still answers and frees, then goes on.
func (c *coalescer) next(batch []*read) {
	if p := recover(); p != nil {
		for _, r := range batch {
			r.st, r.alone, r.err = nil, false, fmt.Errorf("query: the doc store's read panicked: %v", p)
		}
		defer panic(p)
	}
	c.mu.Lock()
	var lead []*read
	if n := min(len(c.queue), maxCoalesced); n > 0 {
		lead = make([]*read, n)
		copy(lead, c.queue)
		rest := copy(c.queue, c.queue[n:])
		clear(c.queue[rest:]) // no reference kept to reads on their way
		c.queue = c.queue[:rest]
	} else {
		c.busy--
	}
	c.mu.Unlock()
	for _, r := range batch[1:] {
		close(r.done)
	}
	if lead != nil {
		lead[0].lead = lead
		close(lead[0].done)
	}
}
