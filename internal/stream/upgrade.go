package stream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The layout before the own stream kept Readside's own subjects (re-project,
// replay, retry) on the events stream, read by the projection's consumers
// there: the live one (triggers and re-project) and the replay and retry
// ones. Ensure upgrades such a deployment in place, losing no event:
//
//  1. it notes, for each own subject, where the consumers reading it had
//     acknowledged everything (their ack floor);
//  2. it takes the own subjects off the events stream (the events stored
//     there stay) and creates the own stream, which captures them from then
//     on: a publish in between fails and is retried by its publisher;
//  3. it copies to the own stream every event stored on those subjects past
//     the ack floor (some that were acknowledged out of order come again,
//     which is harmless), with a Nats-Msg-Id that makes a repeated copy a
//     duplicate within the window;
//  4. it deletes the consumers that read only own subjects and narrows the
//     others (the live one) to the rest of their filters.
//
// Every step is idempotent, so a process stopped half-way, or two starting
// at once, leave a correct result; the consumers on the events stream that
// still read own subjects are what marks an upgrade as unfinished. Replicas
// of an older version still running keep working until they are replaced,
// except for reading re-issued events: roll the upgrade out to every replica.

// upgrade is what an events stream of the old layout holds.
type upgrade struct {
	subjects  []string          // own subjects the events stream captures
	from      map[string]uint64 // own subject → the first sequence to copy
	consumers []jetstream.ConsumerConfig
}

// ownSubjectsOnEvents finds what an events stream of the old layout holds,
// or nil when there is nothing to upgrade.
func (s *Setup) ownSubjectsOnEvents(ctx context.Context) (*upgrade, error) {
	st, err := s.js.Stream(ctx, s.cfg.Events)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stream: look up %s: %w", s.cfg.Events, err)
	}
	u := &upgrade{from: map[string]uint64{}}
	for _, sub := range st.CachedInfo().Config.Subjects {
		if isOwn(sub) {
			u.subjects = append(u.subjects, sub)
		}
	}
	list := st.ListConsumers(ctx)
	for info := range list.Info() {
		if !strings.HasPrefix(info.Name, "readside_") {
			continue // not Readside's
		}
		own := false
		for _, f := range filters(info.Config) {
			if isOwn(f) {
				own = true
				if from, ok := u.from[f]; !ok || info.AckFloor.Stream+1 < from {
					u.from[f] = info.AckFloor.Stream + 1
				}
			}
		}
		if own {
			u.consumers = append(u.consumers, info.Config)
		}
	}
	if err := list.Err(); err != nil {
		return nil, fmt.Errorf("stream: list the consumers of %s: %w", s.cfg.Events, err)
	}
	if len(u.subjects) == 0 && len(u.consumers) == 0 {
		return nil, nil
	}
	return u, nil
}

func filters(c jetstream.ConsumerConfig) []string {
	out := slices.Clone(c.FilterSubjects)
	if c.FilterSubject != "" {
		out = append(out, c.FilterSubject)
	}
	return out
}

// moveOwnSubjects takes the own subjects off the events stream.
func (s *Setup) moveOwnSubjects(ctx context.Context, u *upgrade) error {
	if len(u.subjects) == 0 {
		return nil
	}
	st, err := s.js.Stream(ctx, s.cfg.Events)
	if err != nil {
		return fmt.Errorf("stream: look up %s: %w", s.cfg.Events, err)
	}
	cfg := st.CachedInfo().Config
	cfg.Subjects = slices.DeleteFunc(slices.Clone(cfg.Subjects), isOwn)
	if _, err := s.js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("stream: upgrading, take %v off %s: %w", u.subjects, s.cfg.Events, err)
	}
	s.warn("upgrading: Readside's own subjects leave the events stream for a stream of their own",
		"from", s.cfg.Events, "to", s.cfg.Own, "subjects", strings.Join(u.subjects, ","))
	return nil
}

// copyOwnEvents copies to the own stream the events on own subjects that the
// old consumers had not all acknowledged, then retires those consumers.
func (s *Setup) copyOwnEvents(ctx context.Context, u *upgrade) error {
	st, err := s.js.Stream(ctx, s.cfg.Events)
	if err != nil {
		return fmt.Errorf("stream: look up %s: %w", s.cfg.Events, err)
	}
	last := st.CachedInfo().State.LastSeq
	copied := 0
	for subject, from := range u.from {
		if from > last {
			continue
		}
		n, err := s.copyFrom(ctx, st, subject, from, last)
		copied += n
		if err != nil {
			return err
		}
	}
	for _, c := range u.consumers {
		var rest []string
		for _, f := range filters(c) {
			if !isOwn(f) {
				rest = append(rest, f)
			}
		}
		if len(rest) == 0 {
			err := s.js.DeleteConsumer(ctx, s.cfg.Events, c.Durable)
			if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return fmt.Errorf("stream: upgrading, delete consumer %s of %s: %w", c.Durable, s.cfg.Events, err)
			}
			continue
		}
		c.FilterSubject, c.FilterSubjects = "", rest
		if len(rest) == 1 {
			c.FilterSubject, c.FilterSubjects = rest[0], nil
		}
		if _, err := s.js.CreateOrUpdateConsumer(ctx, s.cfg.Events, c); err != nil {
			return fmt.Errorf("stream: upgrading, narrow consumer %s of %s to %v: %w", c.Durable, s.cfg.Events, rest, err)
		}
	}
	s.warn("upgrading: events on Readside's own subjects copied to the own stream; the old consumers retired",
		"from", s.cfg.Events, "to", s.cfg.Own, "copied", copied, "consumers", len(u.consumers))
	return nil
}

// copyFrom publishes to the own stream every message of st on subject from
// sequence from up to last, and returns how many it copied.
func (s *Setup) copyFrom(ctx context.Context, st jetstream.Stream, subject string, from, last uint64) (int, error) {
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from,
	})
	if err != nil {
		return 0, fmt.Errorf("stream: upgrading, read %s of %s: %w", subject, s.cfg.Events, err)
	}
	n, empty := 0, 0
	for {
		// What is there at once; when nothing is, wait a second once more.
		var batch jetstream.MessageBatch
		if empty == 0 {
			batch, err = c.FetchNoWait(500)
		} else {
			batch, err = c.Fetch(500, jetstream.FetchMaxWait(time.Second))
		}
		if err != nil {
			return n, fmt.Errorf("stream: upgrading, read %s of %s: %w", subject, s.cfg.Events, err)
		}
		got, done := 0, false
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return n, fmt.Errorf("stream: upgrading, read %s of %s: %w", subject, s.cfg.Events, err)
			}
			out := &nats.Msg{Subject: m.Subject(), Data: m.Data(), Header: m.Headers()}
			if out.Header == nil {
				out.Header = nats.Header{}
			}
			out.Header.Set(nats.MsgIdHdr, fmt.Sprintf("readside-upgrade-%s-%d", s.cfg.Events, md.Sequence.Stream))
			if _, err := s.js.PublishMsg(ctx, out); err != nil {
				return n, fmt.Errorf("stream: upgrading, copy %s #%d to %s: %w", subject, md.Sequence.Stream, s.cfg.Own, err)
			}
			n++
			done = md.Sequence.Stream >= last || md.NumPending == 0
		}
		if err := batch.Error(); err != nil {
			return n, fmt.Errorf("stream: upgrading, read %s of %s: %w", subject, s.cfg.Events, err)
		}
		if done || empty > 1 {
			return n, nil
		}
		if got == 0 {
			empty++
		}
	}
}

func (s *Setup) warn(msg string, args ...any) {
	if s.cfg.Log != nil {
		s.cfg.Log.Warn(msg, args...)
	}
}
