package query

import (
	"context"

	"github.com/readside/readside/internal/health"
)

// Readiness is the query API's readiness: its stores, and, when it
// publishes re-project events, its NATS connection and the own stream
// those events go to.
//
// The API is ready while it can answer reads: while any store answers, or
// when it has none to ask. With Redis down it builds documents from the
// source APIs; with Elasticsearch down it serves details, multi-gets and
// plain lists; without NATS it only cannot ask the projector to heal a
// store, which the next change event does anyway. So NATS, the own stream
// and all but one store being down make it "degraded" (200 with the
// reasons), not unready: the stores and NATS are shared by every replica,
// and failing readiness for them would take every replica out of its
// Service at once, turning a degraded read API into no read API.
type Readiness struct {
	// Stores asks each store whether it answers (backend.Stores.Check).
	Stores func(ctx context.Context) map[string]error
	// NATS and Stream are nil when the API publishes no re-project
	// events; Stream checks the own stream (stream.Probe).
	NATS   health.Conn
	Stream interface {
		Check(ctx context.Context) error
	}
}

// Check reports the state of each store, "nats" and "stream" (the own
// stream, asked only while NATS is connected), with the reason of each one
// not up; ready as explained on Readiness. Safe for concurrent use.
func (r Readiness) Check(ctx context.Context) health.Status {
	s := health.NewStatus()
	var stores []error
	if r.Stores != nil {
		for name, err := range r.Stores(ctx) {
			s.Set(name, err)
			stores = append(stores, err)
		}
	}
	if r.NATS != nil {
		err := health.NATSCheck(r.NATS)
		s.Set("nats", err)
		switch {
		case r.Stream == nil:
		case err != nil:
			s.SetUnknown("stream", "not checked: NATS is not connected")
		default:
			s.Set("stream", r.Stream.Check(ctx))
		}
	}
	s.Ready = readsWork(stores)
	return s
}

// Public is the state the public /readyz reports, as it always has: each
// store "up" or "down", and "nats" "up" only while NATS is connected and the
// own stream answers.
func (r Readiness) Public(ctx context.Context) map[string]string {
	s := r.Check(ctx)
	state := map[string]string{}
	for name, v := range s.Checks {
		if name == "stream" {
			continue
		}
		if v != health.Up {
			v = health.Down
		}
		state[name] = v
	}
	if s.Checks["nats"] == health.Up && s.Checks["stream"] != "" && s.Checks["stream"] != health.Up {
		state["nats"] = health.Down
	}
	return state
}

// readsWork is the rule of readiness: reads work while any store answers
// (nil), or when there is no store to ask.
func readsWork(stores []error) bool {
	for _, err := range stores {
		if err == nil {
			return true
		}
	}
	return len(stores) == 0
}
