package projector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/readside/readside/internal/source"
	"github.com/readside/readside/projections"
)

// fate is what settle made of one item.
type fate int

const (
	settledWritten      fate = iota // written: its events acked (a partial one's newest redelivered later)
	settledRechecked                // written, racing another replica's write: fetched again
	settledDeadLettered             // a bad event, source answer or document: dead-lettered and terminated
	settledRetried                  // a dependency down: held, retried after a backoff
)

// settle maps one item's result to its JetStream calls, the outcome table of
// the package doc, and ends its flight in the schedule:
//   - written → Ack (see ack), and the events its fetch answers that came
//     meanwhile are acked too (coalesced);
//   - written but racing another replica's write → fetched again at once,
//     nothing acked, up to maxRechecks times in a row;
//   - permanent failure → dead-letter entry, then Term (see deadLetter);
//   - transient failure → held (kept alive by keepAlive) and retried after
//     a backoff, or after the source's Retry-After hint when that is longer
//     (see retryAfter).
func (p *Projector) settle(ctx context.Context, it item, r result) fate {
	switch {
	case r.err == nil && r.recheck && it.rechecks < maxRechecks:
		p.m.Events.WithLabelValues(p.label, "rechecked").Add(float64(len(it.msgs)))
		p.log.Debug("a write raced another replica's; fetching the id again", "id", it.id, "rechecks", it.rechecks+1)
		p.sched.recheck(it.job)
		return settledRechecked
	case r.err == nil:
		if r.recheck {
			p.log.Warn("an id raced other writes on every recheck; acking its events, the next event fetches it again", "id", it.id, "rechecks", it.rechecks)
		}
		var answers uint64
		if p.ack(ctx, it, r) {
			answers = it.answers
		}
		coalesced := p.sched.finish(it.job, answers)
		for _, m := range coalesced {
			p.ackMsg(m)
			p.m.Events.WithLabelValues(p.label, "coalesced").Inc()
		}
		p.observeStored(it.msgs, coalesced)
		return settledWritten
	case r.permanent:
		for _, m := range it.msgs {
			p.deadLetter(ctx, m, it.id, r.err.Error())
		}
		p.sched.finish(it.job, 0)
		return settledDeadLettered
	default:
		p.m.Events.WithLabelValues(p.label, "retried").Add(float64(len(it.msgs)))
		p.log.Debug("retrying later", "id", it.id, "tries", it.tries+1, "err", r.err)
		p.sched.retry(it.job, retryAfter(r.err))
		return settledRetried
	}
}

// maxRetryAfter bounds how long a source's Retry-After hint holds an id back:
// a hint of hours (or the "forever" of a huge value) must not keep its
// events held until shutdown.
const maxRetryAfter = 5 * time.Minute

// retryAfter is the Retry-After hint of a source that was unavailable (see
// source.UnavailableError), at most maxRetryAfter; 0 when err carries none.
// The id's retry waits at least that long, as the source asked.
func retryAfter(err error) time.Duration {
	var ue *source.UnavailableError
	if !errors.As(err, &ue) {
		return 0
	}
	return min(ue.RetryAfter, maxRetryAfter)
}

// ack acknowledges the events a written document answers. A partial
// document is built again later, when its optional sources may answer: on
// the retry consumer its newest event is redelivered after a backoff;
// elsewhere a retry event is published first (falling back to the delayed
// redelivery when it cannot be). Either way the retry is durable.
//
// It reports whether the document is complete or its retry is on the retry
// consumer: then its fetch answers every event up to it.answers. A
// redelivery it asked for must not be taken for a duplicate.
func (p *Projector) ack(ctx context.Context, it item, r result) (answered bool) {
	msgs := it.msgs
	if len(r.partial) > 0 && !p.delays && p.pub != nil {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := p.pub.Publish(pctx, p.def.RetrySubject(), projections.EventBody(it.id),
			jetstream.WithMsgID(fmt.Sprintf("retry-%s-%s-%d", p.def.Name, it.id, r.version)))
		cancel()
		if err == nil {
			p.m.Events.WithLabelValues(p.label, "partial").Inc()
			r.partial = nil // the retry consumer has it now
		} else {
			p.log.Warn("publishing a partial document's retry failed; redelivering its event later instead", "id", it.id, "err", err)
		}
	}
	if len(r.partial) > 0 {
		newest := len(msgs) - 1
		for i, m := range msgs {
			if md, err := m.Metadata(); err == nil && md.Sequence.Stream == uint64(maxSeq(it)) {
				newest = i
			}
		}
		delay := p.o.PartialRetry
		if md, err := msgs[newest].Metadata(); err == nil && md.NumDelivered > 1 {
			delay <<= min(md.NumDelivered-1, 10)
		}
		p.nakDelay(msgs[newest], min(delay, 5*time.Minute))
		p.m.Events.WithLabelValues(p.label, "partial").Inc()
		msgs = append(msgs[:newest:newest], msgs[newest+1:]...)
	}
	for _, m := range msgs {
		p.ackMsg(m)
	}
	p.m.Events.WithLabelValues(p.label, "acked").Add(float64(len(msgs)))
	return len(r.partial) == 0
}

// observeStored observes the event-to-store delay of a written document:
// from the stream timestamp of the newest event it answers to now.
func (p *Projector) observeStored(msgs ...[]jetstream.Msg) {
	var newest time.Time
	for _, ms := range msgs {
		for _, m := range ms {
			if md, err := m.Metadata(); err == nil && md.Timestamp.After(newest) {
				newest = md.Timestamp
			}
		}
	}
	if newest.IsZero() {
		return
	}
	p.stored.Observe(max(time.Since(newest), 0).Seconds())
}

// nakHeld hands every message still held back to JetStream on shutdown.
func (p *Projector) nakHeld() {
	msgs := p.sched.stop()
	for _, m := range msgs {
		p.nak(m)
	}
	p.m.Events.WithLabelValues(p.label, "naked").Add(float64(len(msgs)))
}

// deadLetter stores a bad event with its reason and terminates it; when the
// dead-letter stream cannot take it, the event is Nak'ed to try again later.
func (p *Projector) deadLetter(ctx context.Context, msg jetstream.Msg, id, reason string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.dlq.DeadLetter(ctx, p.def.Name, msg, id, reason); err != nil {
		p.log.Error("dead-lettering failed; the event will be redelivered", "id", id, "reason", reason, "err", err)
		p.nakDelay(msg, 5*time.Second)
		return
	}
	p.log.Warn("event dead-lettered", "subject", msg.Subject(), "id", id, "reason", reason)
	p.m.Events.WithLabelValues(p.label, "dead_lettered").Inc()
	p.term(msg, reason)
}

// Every JetStream call that settles a message goes through these, so that a
// failure (NATS unreachable or the consumer's leader moving: the message is
// then redelivered after AckWait, which the write guard makes harmless) is
// counted and logged instead of dropped. The log line is spaced out (at most
// one every 5 s per consumer): a NATS outage fails every call at once.

func (p *Projector) ackMsg(m jetstream.Msg) { p.settled("ack", m.Ack()) }

func (p *Projector) nak(m jetstream.Msg) { p.settled("nak", m.Nak()) }

func (p *Projector) nakDelay(m jetstream.Msg, d time.Duration) {
	p.settled("nak", m.NakWithDelay(d))
}

func (p *Projector) inProgress(m jetstream.Msg) { p.settled("in_progress", m.InProgress()) }

func (p *Projector) term(m jetstream.Msg, reason string) {
	p.settled("term", m.TermWithReason(truncate(reason, 200)))
}

func (p *Projector) settled(op string, err error) {
	// Already acknowledged: a keep-alive racing the ack of the same message.
	if err == nil || errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		return
	}
	p.m.SettleErrors.WithLabelValues(p.label, op).Inc()
	p.settleWarn.Do(func() {
		p.log.Warn("telling JetStream what became of an event failed; it will be delivered again (logged at most every 5s)", "op", op, "err", err)
	})
}
