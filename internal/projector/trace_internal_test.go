package projector

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// A traceparent header is found whatever the case the publisher gave its
// name: NATS headers keep it as given.
func TestHeaderCarrierFindsTraceparentInAnyCase(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, name := range []string{"traceparent", "Traceparent", "TRACEPARENT"} {
		ctx := propagation.TraceContext{}.Extract(context.Background(), headerCarrier(nats.Header{name: {tp}}))
		if got := trace.SpanContextFromContext(ctx).TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
			t.Errorf("header %q: trace id %q, want the header's", name, got)
		}
	}
}
