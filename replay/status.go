package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/readside/readside/internal/stream"
)

// Status is one projection's freshness, as `replay status` shows it: the
// figures of the projector's status page, read from JetStream now.
type Status struct {
	Projection  string
	Consumers   []stream.ConsumerLag // live, reproject, replay, retry
	DeadLetters stream.DeadLetters
}

// Status reads the freshness of the projections named, or, when none is,
// of every projection with a live consumer on the events stream. A consumer
// or dead-letter count JetStream cannot answer for is reported in its Err,
// not as an error: the others are still worth seeing.
func (e *Env) Status(ctx context.Context, projections []string) ([]Status, error) {
	if len(projections) == 0 {
		var err error
		if projections, err = e.projections(ctx); err != nil {
			return nil, err
		}
	}
	dlq := stream.Attach(e.JetStream, stream.Config{Events: e.Events, Own: e.Own, DeadLetter: e.DeadLetter, DLQPrefix: e.DLQPrefix})
	out := make([]Status, 0, len(projections))
	for _, p := range projections {
		st := Status{Projection: p}
		for _, c := range stream.ConsumersOf(p) {
			name := e.events()
			if c.Own {
				name = e.own()
			}
			// An error is in lag.Err: the other consumers are still shown.
			lag, _ := stream.ReadLag(ctx, e.JetStream, name, c.Name)
			lag.Projection, lag.Kind = p, c.Kind
			st.Consumers = append(st.Consumers, lag)
		}
		st.DeadLetters, _ = dlq.ReadDeadLetters(ctx, p) // an error is in its Err
		out = append(out, st)
	}
	return out, nil
}

// projections lists the projections with a live consumer on the events
// stream: the durable consumers named readside_<projection>.
func (e *Env) projections(ctx context.Context) ([]string, error) {
	s, err := e.JetStream.Stream(ctx, e.events())
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("the events stream %s: %w (the projector creates it when it starts)", e.events(), ErrNoStream)
	} else if err != nil {
		return nil, fmt.Errorf("the events stream %s: %w", e.events(), err)
	}
	var names []string
	lister := s.ListConsumers(ctx)
	for info := range lister.Info() {
		if p, ok := stream.ProjectionOf(info.Name); ok {
			names = append(names, p)
		}
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("listing the consumers of %s: %w", e.events(), err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("the events stream %s has no projection's consumer: no projector has run on it yet", e.events())
	}
	slices.Sort(names)
	return names, nil
}

// WriteStatus writes statuses as text: a table of consumers per
// projection, then its dead letters.
func WriteStatus(w io.Writer, statuses []Status) {
	for i, st := range statuses {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "projection %s\n", st.Projection)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "  consumer\tpending\tack pending\tredelivered\tlag\t")
		for _, c := range st.Consumers {
			if c.Err != "" {
				fmt.Fprintf(tw, "  %s\t-\t-\t-\t-\t  unavailable: %s\n", c.Kind, c.Err)
				continue
			}
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%s\t\n", c.Kind, c.Pending, c.AckPending, c.Redelivered, lagText(c.Lag))
		}
		tw.Flush()
		d := st.DeadLetters
		switch {
		case d.Err != "":
			fmt.Fprintf(w, "  dead letters: unavailable: %s\n", d.Err)
		case d.Messages == 0:
			fmt.Fprintln(w, "  dead letters: none")
		default:
			fmt.Fprintf(w, "  dead letters: %d (replay dlq %s --list shows them)\n", d.Messages, st.Projection)
			for _, r := range d.Reasons {
				fmt.Fprintf(w, "    %6d  %s\n", r.Count, strings.TrimSpace(r.Reason))
			}
		}
	}
}

func lagText(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	return d.Round(100 * time.Millisecond).String()
}
