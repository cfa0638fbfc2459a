package projector_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
)

// A durable consumer deleted under a running projector (an operator's
// mistake, a stream re-created) ends Run with an error naming it, and every
// part of the projector stops: the process exits and its restart creates the
// consumer again. It never spins on the missing consumer in silence.
func TestDeletedConsumerEndsRun(t *testing.T) {
	for _, tc := range []struct {
		name     string
		consumer func(string) string
	}{{"live", stream.ConsumerName}, {"replay", stream.ReplayConsumerName}, {"retry", stream.RetryConsumerName}} {
		consumer := tc.consumer
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, false)
			env := projector.Env{
				JetStream: h.js, Streams: h.streams, Stores: h.stores, Log: testenv.Logger(t, "projector"), SourceRetryBudget: 300 * time.Millisecond,
			}
			p, err := projector.ForDefinition(context.Background(), h.def, env, testOptions())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			h.api.Put("1", "before")
			h.changed("1")
			h.waitConverged([]string{"1"}, 20*time.Second)

			gone := consumer(h.def.Name)
			if err := h.js.DeleteConsumer(context.Background(), h.streams.StreamOf(gone), gone); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), gone) {
					t.Fatalf("Run returned %v, want an error naming consumer %s", err, gone)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("Run still runs 30s after consumer %s was deleted", gone)
			}
		})
	}
}
