// Package stream sets up JetStream for Readside, idempotently: the events
// stream, one durable pull consumer per projection, and the dead-letter
// stream; and it writes dead-letter entries.
package stream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/readside/readside/projections"
)

// Dead-letter entry headers. The entry's data is the original event body.
const (
	HeaderReason     = "Readside-Reason"        // why the event was dead-lettered
	HeaderProjection = "Readside-Projection"    // the projection that gave up on it
	HeaderSubject    = "Readside-Subject"       // the original subject
	HeaderStream     = "Readside-Stream"        // the original stream
	HeaderSequence   = "Readside-Sequence"      // the original stream sequence
	HeaderDeliveries = "Readside-Deliveries"    // how many times it had been delivered
	HeaderID         = "Readside-Id"            // the entity id, when it could be read
	HeaderTime       = "Readside-Dead-Lettered" // when, RFC 3339
)

// Config names the streams. Zero values take the defaults in brackets.
type Config struct {
	Events      string        // the events stream [READSIDE_EVENTS]
	DeadLetter  string        // the dead-letter stream [READSIDE_DLQ]
	DLQPrefix   string        // dead-letter subjects: <prefix>.<projection> [readside.dlq]
	MaxAge      time.Duration // how long events are kept [7 days]
	Replicas    int           // stream replicas [1]
	DedupWindow time.Duration // Nats-Msg-Id duplicate window [2 minutes]
}

func (c *Config) defaults() {
	if c.Events == "" {
		c.Events = "READSIDE_EVENTS"
	}
	if c.DeadLetter == "" {
		c.DeadLetter = "READSIDE_DLQ"
	}
	if c.DLQPrefix == "" {
		c.DLQPrefix = "readside.dlq"
	}
	if c.MaxAge == 0 {
		c.MaxAge = 7 * 24 * time.Hour
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = 2 * time.Minute
	}
}

// Setup holds the streams once they exist.
type Setup struct {
	cfg Config
	js  jetstream.JetStream
}

// Ensure creates or updates the events stream so that it captures subjects
// (keeping any subject it already had: other teams may publish there too),
// and creates the dead-letter stream. It is idempotent and safe when several
// processes run it at once.
func Ensure(ctx context.Context, js jetstream.JetStream, cfg Config, subjects []string) (*Setup, error) {
	cfg.defaults()
	if err := ensureStream(ctx, js, jetstream.StreamConfig{
		Name: cfg.Events, Subjects: subjects, Storage: jetstream.FileStorage, MaxAge: cfg.MaxAge,
		Replicas: cfg.Replicas, Duplicates: cfg.DedupWindow, Discard: jetstream.DiscardOld,
		Description: "Readside zero-payload change events",
	}); err != nil {
		return nil, err
	}
	if err := ensureStream(ctx, js, jetstream.StreamConfig{
		Name: cfg.DeadLetter, Subjects: []string{cfg.DLQPrefix + ".>"}, Storage: jetstream.FileStorage,
		Replicas: cfg.Replicas, Duplicates: cfg.DedupWindow,
		Description: "Readside dead-letter entries: events a projection could not process",
	}); err != nil {
		return nil, err
	}
	return &Setup{cfg: cfg, js: js}, nil
}

func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) error {
	for attempt := 0; ; attempt++ {
		s, err := js.Stream(ctx, want.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			_, err = js.CreateStream(ctx, want)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) && attempt == 0 {
				continue // another process created it first
			}
			if err != nil {
				return fmt.Errorf("stream: create %s: %w", want.Name, err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("stream: look up %s: %w", want.Name, err)
		}
		cur := s.CachedInfo().Config
		missing := uncovered(cur.Subjects, want.Subjects)
		if len(missing) == 0 {
			return nil
		}
		cur.Subjects = append(cur.Subjects, missing...)
		if _, err := js.UpdateStream(ctx, cur); err != nil {
			return fmt.Errorf("stream: add subjects %v to %s: %w", missing, want.Name, err)
		}
		return nil
	}
}

// uncovered returns the subjects of want that no subject of have already captures.
func uncovered(have, want []string) []string {
	var out []string
	for _, w := range want {
		if !slices.ContainsFunc(have, func(h string) bool { return projections.Covers(h, w) }) && !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	return out
}

// ConsumerConfig tunes a projection's durable consumer.
type ConsumerConfig struct {
	AckWait       time.Duration // [30s] held messages are kept alive with InProgress
	MaxAckPending int           // [20000] across all processes sharing the consumer
}

// Consumer creates or updates the durable pull consumer of a projection on
// the events stream, filtered to its trigger subjects. Several processes
// calling it with the same name share one consumer and split its messages.
// Messages are redelivered without limit: a dependency being down must never
// drop an event, and bad events are dead-lettered explicitly instead.
func (s *Setup) Consumer(ctx context.Context, name string, subjects []string, cc ConsumerConfig) (jetstream.Consumer, error) {
	return s.consumer(ctx, ConsumerName(name), "Readside projection "+name, subjects, cc)
}

// ReplayConsumer is Consumer for the projection's re-issued events.
func (s *Setup) ReplayConsumer(ctx context.Context, name, subject string, cc ConsumerConfig) (jetstream.Consumer, error) {
	return s.consumer(ctx, ReplayConsumerName(name), "Readside replay of "+name, []string{subject}, cc)
}

// RetryConsumerName is the durable consumer of a projection's partial-document retries.
func RetryConsumerName(projection string) string { return "readside_" + projection + "_retry" }

// RetryConsumer is Consumer for the projection's partial-document retries.
func (s *Setup) RetryConsumer(ctx context.Context, name, subject string, cc ConsumerConfig) (jetstream.Consumer, error) {
	return s.consumer(ctx, RetryConsumerName(name), "Readside retries of partial "+name+" documents", []string{subject}, cc)
}

func (s *Setup) consumer(ctx context.Context, durable, description string, subjects []string, cc ConsumerConfig) (jetstream.Consumer, error) {
	if cc.AckWait == 0 {
		cc.AckWait = 30 * time.Second
	}
	if cc.MaxAckPending == 0 {
		cc.MaxAckPending = 20000
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   description,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cc.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: cc.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if len(subjects) == 1 {
		cfg.FilterSubject = subjects[0]
	} else {
		cfg.FilterSubjects = subjects
	}
	c, err := s.js.CreateOrUpdateConsumer(ctx, s.cfg.Events, cfg)
	if err != nil {
		return nil, fmt.Errorf("stream: consumer %s on %s: %w", cfg.Durable, s.cfg.Events, err)
	}
	return c, nil
}

// ConsumerName is the durable consumer name of a projection.
func ConsumerName(projection string) string { return "readside_" + projection }

// ReplayConsumerName is the durable consumer of a projection's re-issued events.
func ReplayConsumerName(projection string) string { return "readside_" + projection + "_replay" }

// DeadLetterSubject is the subject of a projection's dead-letter entries.
func (s *Setup) DeadLetterSubject(projection string) string {
	return s.cfg.DLQPrefix + "." + projection
}

// Config returns the configuration in force, defaults filled in.
func (s *Setup) Config() Config { return s.cfg }

// DeadLetter publishes msg to the projection's dead-letter subject with the
// reason and the original subject, stream, sequence and delivery count, and
// waits for JetStream to store it. It is idempotent per original message:
// the entry's Nats-Msg-Id is derived from the original stream sequence, so a
// redelivered bad event is dead-lettered once within the duplicate window.
// The caller terminates msg only after DeadLetter succeeds.
func (s *Setup) DeadLetter(ctx context.Context, projection string, msg jetstream.Msg, id, reason string) error {
	out := nats.NewMsg(s.DeadLetterSubject(projection))
	out.Data = msg.Data()
	out.Header.Set(HeaderReason, reason)
	out.Header.Set(HeaderProjection, projection)
	out.Header.Set(HeaderSubject, msg.Subject())
	out.Header.Set(HeaderTime, time.Now().UTC().Format(time.RFC3339Nano))
	if id != "" {
		out.Header.Set(HeaderID, id)
	}
	if md, err := msg.Metadata(); err == nil {
		out.Header.Set(HeaderStream, md.Stream)
		out.Header.Set(HeaderSequence, strconv.FormatUint(md.Sequence.Stream, 10))
		out.Header.Set(HeaderDeliveries, strconv.FormatUint(md.NumDelivered, 10))
		out.Header.Set(nats.MsgIdHdr, fmt.Sprintf("%s-%d-%s", md.Stream, md.Sequence.Stream, projection))
	}
	if _, err := s.js.PublishMsg(ctx, out); err != nil {
		return fmt.Errorf("stream: dead-letter to %s: %w", out.Subject, err)
	}
	return nil
}
