package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/readside/readside/replay"
)

func newStatusCmd(a *app) *cobra.Command {
	var output string
	cmd := &cobra.Command{
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
answer for is shown with the reason.`,
		Example: `  replay status
  replay status shopdisplay
  replay status --output json | jq '.[].consumers[] | select(.kind == "live") | .lag_seconds'`,
	}
	cmd.Flags().StringVar(&output, "output", "text", "text, or json")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if output != "text" && output != "json" {
			return fmt.Errorf("--output %q: use text or json", output)
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
		if output == "json" {
			enc := json.NewEncoder(a.env.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(statuses)
		}
		replay.WriteStatus(a.env.stdout, statuses)
		return nil
	}
	return cmd
}
