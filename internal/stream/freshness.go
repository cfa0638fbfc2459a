package stream

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Freshness of the read model, as JetStream's consumer info tells it: the
// facts behind the lag metrics, the projector's status page and `replay
// status`. Every figure comes from the consumer's leader (the consumer info
// request), never from a replica's own view.

// ConsumerLag is one durable consumer's backlog at one moment.
type ConsumerLag struct {
	Projection string // the projection it feeds
	Kind       string // "live", "reproject", "replay" or "retry"
	Name       string // the durable consumer
	Stream     string // the stream it reads
	At         time.Time
	// Err is why the consumer info could not be read ("" when it was); the
	// figures below are then zero.
	Err string
	// Pending: stored in the stream, matching the consumer, not yet delivered.
	Pending uint64
	// AckPending: delivered, not yet acknowledged.
	AckPending int
	// Redelivered: delivered more than once, not yet acknowledged.
	Redelivered int
	// Acked is the consumer's ack floor (consumer sequence): its increase
	// over time is the rate of settled events.
	Acked uint64
	// Lag is the age of the oldest event not yet acknowledged (pending or
	// ack-pending), from its stream timestamp; 0 when there is none.
	Lag time.Duration
}

// DeadLetters is one projection's dead-letter backlog.
type DeadLetters struct {
	Projection string
	Messages   uint64
	// Reasons: the most frequent reasons among the newest entries (at most
	// a bounded number read), most frequent first, at most 5.
	Reasons []ReasonCount
	Err     string
}

// ReasonCount is how many dead-letter entries gave one reason.
type ReasonCount struct {
	Reason string
	Count  int
}

// ReadLag reads one durable consumer's backlog: the consumer info, and when
// anything is unacknowledged, the stream timestamp of the oldest such event.
func ReadLag(ctx context.Context, js jetstream.JetStream, streamName, durable string) (ConsumerLag, error) {
	return ConsumerLag{}, errors.New("stream: ReadLag: not implemented yet")
}

// ReadDeadLetters counts the dead-letter entries of a projection.
func (s *Setup) ReadDeadLetters(ctx context.Context, projection string) (DeadLetters, error) {
	return DeadLetters{}, errors.New("stream: ReadDeadLetters: not implemented yet")
}
