package projector

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/readside/readside/projections"
)

// fanOut handles lookup events ("owner 7 changed"): it publishes a re-project
// event for every document that uses the entity, and acknowledges the lookup
// event once JetStream has stored them all. The re-project events are
// processed like any other, coalesced with the rest. When Redis or JetStream
// fails, the lookup event is redelivered later; re-publishing twice costs a
// spare re-projection, never a wrong document.
func (p *Projector) fanOut(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case msg := <-p.fanout:
					p.nak(msg)
				default:
					return
				}
			}
		case msg := <-p.fanout:
			n, err := p.reproject(context.WithoutCancel(ctx), msg)
			if err != nil {
				p.log.Warn("fanning out failed; the event will be redelivered", "subject", msg.Subject(), "err", err)
				p.nakDelay(msg, 2*time.Second)
				continue
			}
			p.log.Debug("fanned out", "subject", msg.Subject(), "documents", n)
			p.m.Events.WithLabelValues(p.label, "fanned_out").Inc()
			p.ackMsg(msg)
		}
	}
}

func (p *Projector) reproject(ctx context.Context, msg jetstream.Msg) (int, error) {
	ev, err := p.def.Route(msg.Subject(), msg.Data())
	if err != nil {
		return 0, err
	}
	if p.refs == nil || p.pub == nil {
		return 0, fmt.Errorf("projector %s: no reverse lookup store", p.def.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	subject := p.def.ReprojectSubject()
	n := 0
	err = p.refs.Users(ctx, ev.Lookup, ev.ID, func(ids []string) error {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(64)
		for _, id := range ids {
			body := projections.EventBody(id)
			g.Go(func() error {
				_, err := p.pub.Publish(gctx, subject, body)
				return err
			})
		}
		n += len(ids)
		return g.Wait()
	})
	return n, err
}
