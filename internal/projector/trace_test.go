package projector_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/readside/readside/internal/backend"
	"github.com/readside/readside/internal/config"
	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/telemetry"
	"github.com/readside/readside/internal/testenv"
)

// One event published with a traceparent produces one trace: the id's
// project span is the child of the publisher's span, and under it are the
// fetch (with an HTTP client span, whose traceparent the source receives),
// the build, and the writes to both stores, each with the store client's own
// spans beneath.
func TestTraceparentIsContinued(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tracing := telemetry.NewWith(tp, tp.Shutdown)

	// The stores' clients traced the way the daemon's are.
	stores, err := backend.OpenStores(config.Backends{
		RedisAddrs: []string{testenv.RedisAddr()}, ElasticURLs: []string{testenv.ElasticURL()}, Tracing: tracing,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stores.Close() })
	env := projector.Env{
		JetStream: h.js, Streams: h.streams, Stores: stores, Log: testenv.Logger(t, "projector"),
		SourceRetryBudget: 300 * time.Millisecond, Tracing: tracing,
	}
	p, err := projector.ForDefinition(context.Background(), h.def, env, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Start(t, "projector", p.Run)

	h.api.Put("42", "traced shop")
	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		spanID  = "00f067aa0ba902b7"
	)
	msg := &nats.Msg{Subject: h.ns + ".shop.changed.42", Header: nats.Header{"traceparent": {"00-" + traceID + "-" + spanID + "-01"}}}
	if _, err := h.js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	h.waitConverged([]string{"42"}, 20*time.Second)

	// The project span ends once the event is settled.
	var spans []sdktrace.ReadOnlySpan
	deadline := time.Now().Add(10 * time.Second)
	for project := (sdktrace.ReadOnlySpan)(nil); project == nil; {
		spans = rec.Ended()
		project = find(spans, func(s sdktrace.ReadOnlySpan) bool { return s.Name() == "project "+h.def.Name })
		if project == nil && time.Now().After(deadline) {
			t.Fatalf("no project span ended; spans: %s", names(spans))
		}
		time.Sleep(20 * time.Millisecond)
	}
	tid, _ := trace.TraceIDFromHex(traceID)
	sid, _ := trace.SpanIDFromHex(spanID)
	var inTrace []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.SpanContext().TraceID() == tid {
			inTrace = append(inTrace, s)
		}
	}
	project := find(inTrace, func(s sdktrace.ReadOnlySpan) bool { return s.Name() == "project "+h.def.Name })
	if project == nil {
		t.Fatalf("no project span in trace %s; spans: %s", traceID, names(spans))
	}
	if project.Parent().SpanID() != sid || !project.Parent().IsRemote() {
		t.Errorf("project span's parent = %s, want the publisher's span %s", project.Parent().SpanID(), spanID)
	}
	if n := count(spans, func(s sdktrace.ReadOnlySpan) bool { return s.Name() == "project "+h.def.Name }); n != 1 {
		t.Errorf("%d project spans, want 1 (one event, one id)", n)
	}
	if got := attr(project, "readside.outcome"); got != "written" {
		t.Errorf("project span's readside.outcome = %q, want written", got)
	}
	childOf := func(parent sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
		t.Helper()
		s := find(inTrace, func(s sdktrace.ReadOnlySpan) bool {
			return s.Name() == name && s.Parent().SpanID() == parent.SpanContext().SpanID()
		})
		if s == nil {
			t.Fatalf("no span %q under %q in the trace; the trace has: %s", name, parent.Name(), names(inTrace))
		}
		return s
	}
	fetch := childOf(project, "fetch")
	childOf(project, "build")
	client := find(inTrace, func(s sdktrace.ReadOnlySpan) bool {
		return s.SpanKind() == trace.SpanKindClient && s.Parent().SpanID() == fetch.SpanContext().SpanID()
	})
	if client == nil {
		t.Errorf("no HTTP client span under the fetch; the trace has: %s", names(inTrace))
	}
	var sent bool
	for _, tp := range h.api.TraceParents() {
		sent = sent || strings.Contains(tp, traceID)
	}
	if !sent {
		t.Errorf("the source received no traceparent of trace %s (got %q)", traceID, h.api.TraceParents())
	}
	for _, store := range []string{"redis", "elasticsearch"} {
		w := childOf(project, "write "+store)
		if got := attr(w, "readside.batch.size"); got != "1" {
			t.Errorf("write %s: readside.batch.size = %q, want 1", store, got)
		}
		// The store client's own span (redisotel, go-elasticsearch's).
		if find(inTrace, func(s sdktrace.ReadOnlySpan) bool {
			return s.SpanKind() == trace.SpanKindClient && s.Parent().SpanID() == w.SpanContext().SpanID()
		}) == nil {
			t.Errorf("no %s client span under its write span; the trace has: %s", store, names(inTrace))
		}
	}
}

func find(spans []sdktrace.ReadOnlySpan, ok func(sdktrace.ReadOnlySpan) bool) sdktrace.ReadOnlySpan {
	for _, s := range spans {
		if ok(s) {
			return s
		}
	}
	return nil
}

func count(spans []sdktrace.ReadOnlySpan, ok func(sdktrace.ReadOnlySpan) bool) int {
	n := 0
	for _, s := range spans {
		if ok(s) {
			n++
		}
	}
	return n
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

func names(spans []sdktrace.ReadOnlySpan) string {
	var b strings.Builder
	for _, s := range spans {
		b.WriteString(s.Name() + " (" + s.SpanContext().SpanID().String() + " under " + s.Parent().SpanID().String() + "); ")
	}
	return b.String()
}
