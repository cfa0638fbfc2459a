package assemble

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

const tracerName = "github.com/readside/readside/internal/assemble"

// attrDeleted marks a fetch that found the entity gone (404/410).
const attrDeleted = attribute.Key("readside.deleted")

type spansKey struct{}

// WithSpans returns ctx telling the next AssembleAt on it (with as many ids
// as spans) that the work for ids[i] belongs under spans[i]: its "fetch" and
// "build" spans are children of spans[i], and so are the client spans of its
// source requests. A batch request for several ids goes under the first
// one's. Without it, a recording span in ctx (the query API's server span)
// is every id's parent; with neither, AssembleAt makes no span.
func WithSpans(ctx context.Context, spans []trace.Span) context.Context {
	return context.WithValue(ctx, spansKey{}, spans)
}

// tracing is the parent span of each id of one AssembleAt call, and the
// "fetch" span of each while it is fetched; nil when nothing is traced.
type tracing struct {
	tracer  trace.Tracer
	parents []trace.Span
	fetches []trace.Span
}

func startTracing(ctx context.Context, n int) *tracing {
	parents, _ := ctx.Value(spansKey{}).([]trace.Span)
	if len(parents) != n {
		parent := trace.SpanFromContext(ctx)
		if !parent.IsRecording() {
			return nil
		}
		parents = make([]trace.Span, n)
		for i := range parents {
			parents[i] = parent
		}
	}
	if n == 0 {
		return nil
	}
	t := &tracing{tracer: parents[0].TracerProvider().Tracer(tracerName), parents: parents, fetches: make([]trace.Span, n)}
	for i, p := range parents {
		_, t.fetches[i] = t.tracer.Start(trace.ContextWithSpan(ctx, p), "fetch")
	}
	return t
}

// at is ctx carrying id i's fetch span; ctx itself when not tracing.
func (t *tracing) at(ctx context.Context, i int) context.Context {
	if t == nil {
		return ctx
	}
	return trace.ContextWithSpan(ctx, t.fetches[i])
}

// fetched ends every fetch span, marking the ids that failed.
func (t *tracing) fetched(out []Result) {
	if t == nil {
		return
	}
	for i, s := range t.fetches {
		if err := out[i].Err; err != nil {
			s.RecordError(err)
			s.SetStatus(codes.Error, "fetch failed")
		}
		if out[i].Deleted {
			s.SetAttributes(attrDeleted.Bool(true))
		}
		s.End()
	}
}

// build runs f, the flattening of id i, in a "build" span.
func (t *tracing) build(ctx context.Context, i int, f func() error) {
	if t == nil {
		f()
		return
	}
	_, s := t.tracer.Start(trace.ContextWithSpan(ctx, t.parents[i]), "build")
	if err := f(); err != nil {
		s.RecordError(err)
		s.SetStatus(codes.Error, "build failed")
	}
	s.End()
}
