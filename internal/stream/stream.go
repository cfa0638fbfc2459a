// Package stream sets up JetStream for Readside, idempotently: the events
// stream (the domain's change events), the own stream (the events Readside
// publishes itself: re-project, replay, retry), the durable pull consumers of
// each projection, and the dead-letter stream; and it writes dead-letter
// entries.
package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	Events string // the events stream [READSIDE_EVENTS]
	// Own is Readside's own stream: the events Readside publishes itself
	// (re-project, replay, retry), kept apart so that they never slow the
	// consumers of the domain's events [READSIDE_OWN].
	Own        string
	DeadLetter string        // the dead-letter stream [READSIDE_DLQ]
	DLQPrefix  string        // dead-letter subjects: <prefix>.<projection> [readside.dlq]
	MaxAge     time.Duration // how long events are kept [7 days]
	// Replicas is how many servers of a NATS cluster keep each stream and
	// each durable consumer, 1 to MaxReplicas [1]. With 3, a stream survives
	// the loss of one server; with 1 it lives on one server only.
	Replicas    int
	DedupWindow time.Duration // Nats-Msg-Id duplicate window [2 minutes]
	// Log receives a WARN line for every change Ensure or a consumer call
	// makes to what exists: a stream's or a consumer's replicas. nil: none.
	Log *slog.Logger
}

// MaxReplicas is the most replicas JetStream keeps of a stream.
const MaxReplicas = 5

func (c *Config) defaults() {
	if c.Events == "" {
		c.Events = "READSIDE_EVENTS"
	}
	if c.Own == "" {
		c.Own = "READSIDE_OWN"
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
	// replicasBefore is what each stream had before Ensure: the replicas of
	// its consumers that inherit the stream's.
	replicasBefore map[string]int

	mu        sync.Mutex
	consumers map[string]string // durable → the stream it was made on
	// consumerReplicasBefore: the replicas of the consumers of a stream
	// whose replicas Ensure changed, read before the change.
	consumerReplicasBefore map[string]int
	dlq                    jetstream.Stream // the dead-letter stream's handle, once looked up (see dlqInfo)
}

// Attach is a Setup for streams a projector made, for reading them (dead
// letters, consumer names) without creating or changing anything; cfg's
// zero values take the defaults, as with Ensure.
func Attach(js jetstream.JetStream, cfg Config) *Setup {
	cfg.defaults()
	return &Setup{cfg: cfg, js: js, consumers: map[string]string{}}
}

// Ensure creates or updates the events stream so that it captures subjects
// (keeping any subject it already had: other teams may publish there too),
// and creates the dead-letter stream, both with cfg.Replicas replicas. It is
// idempotent and safe when several processes run it at once.
//
// A stream that exists with other replicas is changed to cfg.Replicas (NATS
// does that on a live stream in a cluster), logged at WARN on cfg.Log. When
// NATS refuses, such as a server outside a cluster or fewer servers than
// replicas, Ensure returns a *ReplicasError saying how to go on.
func Ensure(ctx context.Context, js jetstream.JetStream, cfg Config, subjects []string) (*Setup, error) {
	cfg.defaults()
	if cfg.Replicas < 1 || cfg.Replicas > MaxReplicas {
		return nil, fmt.Errorf("stream: %d replicas: JetStream keeps 1 to %d", cfg.Replicas, MaxReplicas)
	}
	s := &Setup{cfg: cfg, js: js, replicasBefore: map[string]int{}, consumers: map[string]string{}, consumerReplicasBefore: map[string]int{}}
	var domain, own []string
	for _, sub := range subjects {
		if isOwn(sub) {
			own = append(own, sub)
		} else {
			domain = append(domain, sub)
		}
	}
	upgrade, err := s.ownSubjectsOnEvents(ctx)
	if err != nil {
		return nil, err
	}
	for _, want := range []jetstream.StreamConfig{{
		Name: cfg.Events, Subjects: domain, Storage: jetstream.FileStorage, MaxAge: cfg.MaxAge,
		Replicas: cfg.Replicas, Duplicates: cfg.DedupWindow, Discard: jetstream.DiscardOld,
		Description: "Readside zero-payload change events",
	}, {
		Name: cfg.Own, Subjects: own, Storage: jetstream.FileStorage, MaxAge: cfg.MaxAge,
		Replicas: cfg.Replicas, Duplicates: cfg.DedupWindow, Discard: jetstream.DiscardOld,
		Description: "Readside's own events: re-project, replay and retry requests",
	}, {
		Name: cfg.DeadLetter, Subjects: []string{cfg.DLQPrefix + ".>"}, Storage: jetstream.FileStorage,
		Replicas: cfg.Replicas, Duplicates: cfg.DedupWindow,
		Description: "Readside dead-letter entries: events a projection could not process",
	}} {
		if want.Name == cfg.Own && upgrade != nil {
			if err := s.moveOwnSubjects(ctx, upgrade); err != nil {
				return nil, err
			}
		}
		if s.replicasBefore[want.Name], err = s.ensureStream(ctx, want); err != nil {
			return nil, err
		}
		if want.Name == cfg.Own && upgrade != nil {
			if err := s.copyOwnEvents(ctx, upgrade); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// isOwn reports whether subject is one of the events Readside publishes
// itself (re-project, replay, retry), which the own stream captures, one
// subject per projection, as the events stream captures the triggers.
func isOwn(subject string) bool {
	for _, prefix := range []string{projections.ReprojectPrefix, projections.ReplayPrefix, projections.RetryPrefix} {
		if strings.HasPrefix(subject, prefix) {
			return true
		}
	}
	return false
}

// ensureStream creates the stream or brings an existing one to want's
// subjects and replicas. It returns the replicas the stream had before.
func (s *Setup) ensureStream(ctx context.Context, want jetstream.StreamConfig) (before int, err error) {
	for attempt := 0; ; attempt++ {
		st, err := s.js.Stream(ctx, want.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			_, err = s.js.CreateStream(ctx, want)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) && attempt == 0 {
				continue // another process created it first
			}
			if err != nil {
				if hint := replicasHint(err, want.Replicas); hint != "" {
					return 0, fmt.Errorf("stream: create %s with %d replicas: %w: %s; lower -stream-replicas [$READSIDE_STREAM_REPLICAS]", want.Name, want.Replicas, err, hint)
				}
				return 0, fmt.Errorf("stream: create %s: %w", want.Name, err)
			}
			return want.Replicas, nil
		}
		if err != nil {
			return 0, fmt.Errorf("stream: look up %s: %w", want.Name, err)
		}
		cur := st.CachedInfo().Config
		before = max(cur.Replicas, 1)
		missing := uncovered(cur.Subjects, want.Subjects)
		if len(missing) == 0 && before == want.Replicas {
			return before, nil
		}
		if before != want.Replicas {
			// NATS may bring the consumers down with the stream by itself:
			// what they had is read now, for consumer's log line.
			s.recordConsumerReplicas(ctx, st, before)
		}
		cur.Subjects = append(cur.Subjects, missing...)
		cur.Replicas = want.Replicas
		if _, err := s.js.UpdateStream(ctx, cur); err != nil {
			if before != want.Replicas {
				return 0, &ReplicasError{Stream: want.Name, Have: before, Want: want.Replicas, Err: err}
			}
			return 0, fmt.Errorf("stream: add subjects %v to %s: %w", missing, want.Name, err)
		}
		if before != want.Replicas && s.cfg.Log != nil {
			s.cfg.Log.Warn("stream replicas changed: NATS now copies the stream to the new servers, or removes the extra copies",
				"stream", want.Name, "from", before, "to", want.Replicas)
		}
		return before, nil
	}
}

// recordConsumerReplicas notes the replicas each consumer of st has now
// (streamReplicas for one that inherits the stream's). A consumer it cannot
// list is looked up again when it is made, as before.
func (s *Setup) recordConsumerReplicas(ctx context.Context, st jetstream.Stream, streamReplicas int) {
	lister := st.ListConsumers(ctx)
	for info := range lister.Info() {
		r := info.Config.Replicas
		if r == 0 {
			r = streamReplicas
		}
		s.mu.Lock()
		s.consumerReplicasBefore[info.Name] = r
		s.mu.Unlock()
	}
}

// ReplicasError is NATS refusing to change the replicas of an existing
// stream. Its message names the stream, both counts and the ways out.
type ReplicasError struct {
	Stream     string
	Have, Want int
	Err        error // NATS's answer
}

func (e *ReplicasError) Error() string {
	why := replicasHint(e.Err, e.Want)
	if why != "" {
		why = " (" + why + ")"
	}
	return fmt.Sprintf("stream: %s has %d replica(s) and %d are wanted, but NATS refused the change: %v%s; "+
		"start with -stream-replicas %d [$READSIDE_STREAM_REPLICAS] to keep the stream as it is, "+
		"or change it where NATS can hold %d replicas: nats stream edit %s --replicas %d",
		e.Stream, e.Have, e.Want, e.Err, why, e.Have, e.Want, e.Stream, e.Want)
}

func (e *ReplicasError) Unwrap() error { return e.Err }

// JetStream API error codes that refuse a number of replicas (nats-server's
// JSStreamReplicasNotSupportedErr, JSClusterNoPeersErrF, JSInsufficientResourcesErr).
const (
	errCodeReplicasNotSupported jetstream.ErrorCode = 10074
	errCodeNoPeers              jetstream.ErrorCode = 10005
	errCodeInsufficient         jetstream.ErrorCode = 10023
	errCodeReplicasExceedStream jetstream.ErrorCode = 10126 // a consumer's replicas exceed its stream's
)

// replicasHint explains an error NATS gives for a number of replicas it
// cannot keep; "" for any other error.
func replicasHint(err error, replicas int) string {
	var api *jetstream.APIError
	if !errors.As(err, &api) {
		return ""
	}
	switch api.ErrorCode {
	case errCodeReplicasNotSupported:
		return "this NATS server is not part of a cluster, and a single server keeps one replica"
	case errCodeNoPeers, errCodeInsufficient:
		return fmt.Sprintf("each of %d replicas needs a JetStream server of its own, and the cluster has fewer available", replicas)
	}
	return ""
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
// the events stream, filtered to its trigger subjects (and nothing else:
// nats-server serves a consumer with several filters over repeated
// subjects many times slower than one with a single filter, so Readside's
// own subjects have consumers of their own). Several processes
// calling it with the same name share one consumer and split its messages.
// Messages are redelivered without limit: a dependency being down must never
// drop an event, and bad events are dead-lettered explicitly instead.
func (s *Setup) Consumer(ctx context.Context, name string, subjects []string, cc ConsumerConfig) (jetstream.Consumer, error) {
	return s.consumer(ctx, s.cfg.Events, ConsumerName(name), "Readside projection "+name, subjects, cc)
}

// ReplayConsumer is Consumer for the projection's re-issued events, on the
// own stream.
func (s *Setup) ReplayConsumer(ctx context.Context, name, subject string, cc ConsumerConfig) (jetstream.Consumer, error) {
	return s.consumer(ctx, s.cfg.Own, ReplayConsumerName(name), "Readside replay of "+name, []string{subject}, cc)
}

// ReprojectConsumerName is the durable consumer of a projection's re-project
// events: the fan-out of joined entities' changes and the query API's heal
// requests.
func ReprojectConsumerName(projection string) string { return "readside_" + projection + "_reproject" }

// ReprojectConsumer is Consumer for the projection's re-project events, on
// the own stream.
func (s *Setup) ReprojectConsumer(ctx context.Context, name, subject string, cc ConsumerConfig) (jetstream.Consumer, error) {
	return s.consumer(ctx, s.cfg.Own, ReprojectConsumerName(name), "Readside re-project events of "+name, []string{subject}, cc)
}

// RetryConsumerName is the durable consumer of a projection's partial-document retries.
func RetryConsumerName(projection string) string { return "readside_" + projection + "_retry" }

// RetryConsumer is Consumer for the projection's partial-document retries,
// on the own stream.
func (s *Setup) RetryConsumer(ctx context.Context, name, subject string, cc ConsumerConfig) (jetstream.Consumer, error) {
	return s.consumer(ctx, s.cfg.Own, RetryConsumerName(name), "Readside retries of partial "+name+" documents", []string{subject}, cc)
}

// StreamOf is the stream s made the durable consumer on: the events stream
// for a projection's live consumer, the own stream for the others. The
// names alone cannot tell (the retry consumer of projection "p" and the
// live one of projection "p_retry" share a suffix), so s remembers. A
// consumer s did not make is looked for on the events stream.
func (s *Setup) StreamOf(durable string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.consumers[durable]; ok {
		return st
	}
	return s.cfg.Events
}

func (s *Setup) consumer(ctx context.Context, streamName, durable, description string, subjects []string, cc ConsumerConfig) (jetstream.Consumer, error) {
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
		Replicas:      s.cfg.Replicas,
	}
	if len(subjects) == 1 {
		cfg.FilterSubject = subjects[0]
	} else {
		cfg.FilterSubjects = subjects
	}
	s.mu.Lock()
	before, recorded := s.consumerReplicasBefore[durable]
	s.mu.Unlock()
	if !recorded {
		if c, err := s.js.Consumer(ctx, streamName, durable); err == nil {
			// 0: the stream's replicas, as they were before Ensure.
			if before = c.CachedInfo().Config.Replicas; before == 0 {
				before = s.replicasBefore[streamName]
			}
		}
	}
	for {
		c, err := s.js.CreateOrUpdateConsumer(ctx, streamName, cfg)
		var api *jetstream.APIError
		if errors.As(err, &api) && api.ErrorCode == errCodeReplicasExceedStream {
			// The stream is still gaining its new replicas: NATS takes the
			// consumer's once the stream has them.
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("stream: consumer %s on %s: %d replicas: the stream has not reached %d replicas yet (%w); see nats stream info %s",
					cfg.Durable, streamName, cfg.Replicas, cfg.Replicas, err, streamName)
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		if err != nil {
			if hint := replicasHint(err, cfg.Replicas); hint != "" {
				err = fmt.Errorf("%w: %s", err, hint)
			}
			return nil, fmt.Errorf("stream: consumer %s on %s: %w", cfg.Durable, streamName, err)
		}
		s.mu.Lock()
		s.consumers[durable] = streamName
		s.mu.Unlock()
		if before != 0 && before != cfg.Replicas && s.cfg.Log != nil {
			s.cfg.Log.Warn("consumer replicas changed", "consumer", cfg.Durable, "stream", streamName,
				"from", before, "to", cfg.Replicas)
		}
		return c, nil
	}
}

// ConsumerName is the durable consumer name of a projection.
func ConsumerName(projection string) string { return "readside_" + projection }

// ConsumerRef names one of a projection's durable consumers.
type ConsumerRef struct {
	Kind string // "live", "reproject", "replay" or "retry"
	Name string // the durable consumer's name
	Own  bool   // on the own stream; else on the events stream
}

// ConsumersOf are the durable consumers a projector makes for a projection,
// live first.
func ConsumersOf(projection string) []ConsumerRef {
	return []ConsumerRef{
		{Kind: "live", Name: ConsumerName(projection)},
		{Kind: "reproject", Name: ReprojectConsumerName(projection), Own: true},
		{Kind: "replay", Name: ReplayConsumerName(projection), Own: true},
		{Kind: "retry", Name: RetryConsumerName(projection), Own: true},
	}
}

// ProjectionOf is the projection whose live consumer, on the events stream,
// is named durable: false for a consumer Readside did not name.
func ProjectionOf(durable string) (string, bool) {
	p, ok := strings.CutPrefix(durable, "readside_")
	return p, ok && p != ""
}

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

// StreamInfoer is what Probe asks JetStream; jetstream.JetStream has it.
type StreamInfoer interface {
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
}

// Probe tells whether JetStream answers for a stream: a stream-info request
// answered within a short timeout. The answer is kept for a while, so a
// burst of readiness probes asks NATS once. Safe for concurrent use: callers
// arriving while a request is under way wait for its answer.
type Probe struct {
	js      StreamInfoer
	name    string
	timeout time.Duration
	ttl     time.Duration
	log     *slog.Logger

	mu   sync.Mutex
	at   time.Time // of the last answer; zero: none yet
	err  error     // the last answer
	seen bool
}

// NewProbe probes the stream called name, each request bounded by timeout
// [2s], each answer kept for ttl [2s]. A change of state is logged on log
// (WARN when the stream stops answering, INFO when it is back), when log is
// not nil.
func NewProbe(js StreamInfoer, name string, timeout, ttl time.Duration, log *slog.Logger) *Probe {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	if ttl <= 0 {
		ttl = 2 * time.Second
	}
	return &Probe{js: js, name: name, timeout: timeout, ttl: ttl, log: log}
}

// Check returns nil when the stream answered, at most ttl ago, and else why not.
func (p *Probe) Check(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen && time.Since(p.at) < p.ttl {
		return p.err
	}
	rctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	_, err := p.js.Stream(rctx, p.name)
	if ctx.Err() != nil {
		return ctx.Err() // the caller gave up: no answer to keep
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("stream %s: no answer within %s: it has no leader, or NATS is unreachable", p.name, p.timeout)
	} else if err != nil {
		err = fmt.Errorf("stream %s: %w", p.name, err)
	}
	switch {
	case p.log == nil:
	case err != nil && (p.err == nil || !p.seen):
		p.log.Warn("JetStream stream unavailable", "stream", p.name, "err", err)
	case err == nil && p.err != nil:
		p.log.Info("JetStream stream available again", "stream", p.name)
	}
	p.at, p.err, p.seen = time.Now(), err, true
	return err
}
