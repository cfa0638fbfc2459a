package query

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivelimiter"
)

// The guards every request passes: a request id, a bound on requests in
// flight, and an adaptive limit on list and search.
//
// Detail and multi-get are cheap (one store round trip) and pass only the
// bound on everything in flight. List and search cost a search engine query
// each, so they are what saturates a replica first; they pass an adaptive
// concurrency limit (failsafe-go's adaptivelimiter, a latency-gradient limit
// like Netflix's concurrency-limits): while their latency stays at its
// baseline the limit grows up to Options.SearchMaxInflight, when it climbs
// the limit falls, a short queue absorbs bursts, and what does not fit gets
// a fast 503 with Retry-After. So under overload cheap reads keep being
// served while expensive lists are shed, instead of every request queueing
// until all are late.

// class is what a request costs: a read of the doc store, or a search.
type class int

const (
	classRead   class = iota // detail, multi-get
	classSearch              // list, search
)

func (c class) String() string {
	if c == classSearch {
		return "search"
	}
	return "read"
}

// searchQueueShare is the longest a list or search waits for the adaptive
// limit before it is shed, as a share of the request deadline (1/8).
const searchQueueShare = 8

// newSearchLimiter is the adaptive limit on lists and searches in flight.
func newSearchLimiter(o Options) adaptivelimiter.AdaptiveLimiter[any] {
	// It starts at the ceiling: a replica that just started, or a burst
	// after a quiet spell, is not shed before the latency says it must be.
	// It never goes below half the ceiling: the latency-gradient alone
	// would shed a steady load whose latency merely grew from queueing in
	// the engine, long before any request is late (measured: a closed
	// loop of 64 connections got thousands of 503s with a floor of 4).
	ceiling := uint(o.SearchMaxInflight)
	return adaptivelimiter.NewBuilder[any]().
		WithLimits(max(1, ceiling/2), ceiling, ceiling).
		// Queue up to twice the limit before shedding some, four times
		// before shedding all: absorbs a burst without letting a queue
		// build up that makes every request late.
		WithQueueing(2, 4).
		Build()
}

// admitSearch takes a place under the search limit; release returns it,
// telling the limiter whether the search completed (its latency then
// counts). ok is false when the request was answered: shed with 503, or
// timed out while waiting.
func (s *Server) admitSearch(w http.ResponseWriter, r *http.Request) (release func(completed bool), ok bool) {
	wait := s.o.RequestTimeout / searchQueueShare
	permit, err := s.searchLimit.AcquirePermitWithMaxWait(r.Context(), wait)
	if err != nil {
		s.m.shed(classSearch)
		if r.Context().Err() != nil {
			timedOut(w, r)
		} else {
			overloaded(w, r, "too many lists and searches at once on this replica; detail and multi-get are still served")
		}
		return nil, false
	}
	return func(completed bool) {
		if completed {
			permit.Record()
		} else {
			permit.Drop()
		}
	}, true
}

// requestIDs makes request ids: a random prefix per process and a counter,
// unique across replicas without a random read per request.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	b := make([]byte, 6)
	rand.Read(b)
	return &requestIDs{prefix: requestIDPrefix(b)}
}

// requestIDPrefix starts with a letter so that no id reads as a number: hex
// digits alone could ("23161444881e-3" is 23161444881e-3, and clients or
// validators that guess types would take it for one).
func requestIDPrefix(random []byte) string {
	return "r" + hex.EncodeToString(random) + "-"
}

func (g *requestIDs) next() string {
	return g.prefix + strconv.FormatUint(g.n.Add(1), 36)
}

// requestID is the client's X-Request-Id when it is a safe token (so that a
// client can follow its request through a gateway), else a new one.
func (g *requestIDs) of(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 64 && safeToken(id) {
		return id
	}
	return g.next()
}

func safeToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

type ctxKey struct{}

// requestCtx is a request's context: its id and its deadline, without a
// timer of its own. Deadline reports the request's deadline and Err reports
// context.DeadlineExceeded once it has passed, but Done closes only when the
// client goes away, not at the deadline: a store read from the doc store,
// which has a timer of its own for its share of the time (see stored),
// needs no other, and most requests are answered by one. Everything that
// waits for more — a source, the search engine, a queue — waits on
// bounded(ctx), which has the timer.
type requestCtx struct {
	context.Context // the client's: Done when it goes away
	id              string
	deadline        time.Time
}

func (c *requestCtx) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *requestCtx) Err() error {
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *requestCtx) Value(key any) any {
	if key == (ctxKey{}) {
		return c.id
	}
	return c.Context.Value(key)
}

// bounded is ctx with a timer at the request's deadline, so that Done
// closes then: what waits on Done (a source, the search engine, a queue)
// must use it. ctx must be the request's own context (or any other, which
// is returned as it is).
func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if rc, ok := ctx.(*requestCtx); ok {
		return context.WithDeadline(rc, rc.deadline)
	}
	return ctx, func() {}
}

// RequestID is the id of the request ctx belongs to ("" outside one): the
// X-Request-Id of the answer and the requestId of a problem, for logs.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// retryAfterShed is what a shed request is told to wait.
const retryAfterShed = time.Second
