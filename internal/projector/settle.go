package projector

import (
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

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
