package main

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/readside/readside/replay"
)

func newStatusCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "status [PROJECTION...]",
		Short: "Show how fresh each projection is: its consumers' backlog and lag, and its dead letters",
		Long: `Show, for each projection, what the projector's status page shows: each durable
consumer (live, reproject, replay, retry) with its events pending (stored, not yet
delivered), ack pending (delivered, not yet acknowledged), redelivered, and its
lag — the age of the oldest event not yet acknowledged — and the dead-letter
entries with their most frequent reasons.

The figures come from JetStream now (the consumers' leaders), not from a
projector. Without a projection, every projection with a live consumer on the
events stream is shown; no definitions are needed. A consumer JetStream cannot
answer for is shown with the reason (and, in JSON, its error).`,
		Example: `  replay status
  replay status shopdisplay
  replay status -o json | jq '.projections[].consumers[] | select(.kind == "live") | .lag_seconds'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.checkOutput(); err != nil {
				return err
			}
			for _, p := range args {
				if a.definitions != "" {
					if _, err := a.definition(p); err != nil {
						return err
					}
				}
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			defer c.close()
			statuses, err := c.env.Status(cmd.Context(), args)
			if err != nil {
				return err
			}
			return a.write(statusReportOf(statuses), func(w io.Writer) { replay.WriteStatus(w, statuses) })
		},
	}
}

// statusReport is replay status's JSON document.
type statusReport struct {
	Command     string             `json:"command"` // "status"
	Status      string             `json:"status"`  // "completed"
	Projections []projectionStatus `json:"projections"`
}

type projectionStatus struct {
	Projection  string           `json:"projection"`
	Consumers   []consumerStatus `json:"consumers"`
	DeadLetters deadLetterStatus `json:"dead_letters"`
}

type consumerStatus struct {
	Kind        string  `json:"kind"` // live, reproject, replay, retry
	Name        string  `json:"name"`
	Stream      string  `json:"stream"`
	Pending     uint64  `json:"pending"`
	AckPending  int     `json:"ack_pending"`
	Redelivered int     `json:"redelivered"`
	Acked       uint64  `json:"acked"`       // the ack floor, a consumer sequence
	LagSeconds  float64 `json:"lag_seconds"` // the age of the oldest unacknowledged event
	Error       string  `json:"error,omitempty"`
}

type deadLetterStatus struct {
	Messages uint64         `json:"messages"`
	Reasons  []reasonStatus `json:"reasons"`
	Error    string         `json:"error,omitempty"`
}

type reasonStatus struct {
	Reason string `json:"reason"`
	Count  int    `json:"count"`
}

func statusReportOf(statuses []replay.Status) statusReport {
	r := statusReport{Command: "status", Status: statusCompleted, Projections: []projectionStatus{}}
	for _, st := range statuses {
		p := projectionStatus{Projection: st.Projection, Consumers: []consumerStatus{},
			DeadLetters: deadLetterStatus{Messages: st.DeadLetters.Messages, Reasons: []reasonStatus{}, Error: st.DeadLetters.Err}}
		for _, c := range st.Consumers {
			p.Consumers = append(p.Consumers, consumerStatus{
				Kind: c.Kind, Name: c.Name, Stream: c.Stream, Pending: c.Pending, AckPending: c.AckPending,
				Redelivered: c.Redelivered, Acked: c.Acked, LagSeconds: c.Lag.Seconds(), Error: c.Err,
			})
		}
		for _, rc := range st.DeadLetters.Reasons {
			p.DeadLetters.Reasons = append(p.DeadLetters.Reasons, reasonStatus{Reason: rc.Reason, Count: rc.Count})
		}
		r.Projections = append(r.Projections, p)
	}
	return r
}
