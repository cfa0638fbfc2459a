package projector

import (
	"context"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Spans of a batch, when tracing is on. A batch coalesces events and shares
// writes, so its spans follow the work, not the messages:
//
//	project <projection>   one per id, a consumer span: the child of the
//	                       trace context (traceparent) of the id's newest
//	                       event that has one, linked to the others'; a new
//	                       root when none has one
//	  fetch                the id's requests to the sources (assemble), with
//	                       an HTTP client span per request, whose traceparent
//	                       the source receives
//	  build                flattening the answers into the document
//	  write <store>        one per store: the batched write the id waited
//	                       for, readside.batch.size ids. The store client's
//	                       own spans (redis, elasticsearch) are under the
//	                       batch's first id's write span; the others link to
//	                       it.
const tracerName = "github.com/readside/readside/internal/projector"

// Attribute keys of the projector's spans.
const (
	attrProjection = attribute.Key("readside.projection")
	attrConsumer   = attribute.Key("readside.consumer")
	attrID         = attribute.Key("readside.id")
	attrEvents     = attribute.Key("readside.events")
	attrOutcome    = attribute.Key("readside.outcome")
	attrStore      = attribute.Key("readside.store")
	attrBatchSize  = attribute.Key("readside.batch.size")
)

// batchTrace holds the spans of one batch in flight; nil when tracing is off.
type batchTrace struct {
	tracer trace.Tracer
	spans  []trace.Span // one "project" span per item of the batch
}

// startTrace starts the "project" span of every item; nil when tracing is
// off, so that off, nothing is read from the messages and no span is made.
func (p *Projector) startTrace(ctx context.Context, batch []item) *batchTrace {
	if !p.tracing.On() {
		return nil
	}
	bt := &batchTrace{tracer: p.tracing.Provider().Tracer(tracerName), spans: make([]trace.Span, len(batch))}
	prop := p.tracing.Propagator()
	kind := p.kind
	for i, it := range batch {
		parent, links := eventContexts(ctx, prop, it.msgs)
		_, bt.spans[i] = bt.tracer.Start(parent, "project "+p.def.Name,
			trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(links...),
			trace.WithAttributes(attrProjection.String(p.def.Name), attrConsumer.String(kind), attrID.String(it.id),
				attrEvents.Int(len(it.msgs)), attribute.String("messaging.system", "nats")))
	}
	return bt
}

// eventContexts returns ctx carrying the trace context of the newest of msgs
// that has one (the parent of the id's span), and links to the others'.
func eventContexts(ctx context.Context, prop propagation.TextMapPropagator, msgs []jetstream.Msg) (context.Context, []trace.Link) {
	parent := ctx
	var newest uint64
	var found []trace.SpanContext
	for _, m := range msgs {
		h := m.Headers()
		if len(h) == 0 {
			continue
		}
		mctx := prop.Extract(ctx, headerCarrier(h))
		sc := trace.SpanContextFromContext(mctx)
		if !sc.IsValid() {
			continue
		}
		var seq uint64
		if md, err := m.Metadata(); err == nil {
			seq = md.Sequence.Stream
		}
		if len(found) == 0 || seq >= newest {
			parent, newest = mctx, seq
		}
		found = append(found, sc)
	}
	psc := trace.SpanContextFromContext(parent)
	var links []trace.Link
	for _, sc := range found {
		if !sc.Equal(psc) {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	return parent, links
}

// ctx is ctx carrying item i's span, under which its fetches go.
func (bt *batchTrace) ctx(ctx context.Context, i int) context.Context {
	return trace.ContextWithSpan(ctx, bt.spans[i])
}

// startWrites starts, for a write of the items idx to store, one
// "write <store>" span under each item's span, and returns ctx carrying the
// first (where the store client's spans go) and a function that ends them
// all with err.
func (bt *batchTrace) startWrites(ctx context.Context, store string, idx []int) (context.Context, func(err error)) {
	if bt == nil || len(idx) == 0 {
		return ctx, func(error) {}
	}
	attrs := trace.WithAttributes(attrStore.String(store), attrBatchSize.Int(len(idx)))
	spans := make([]trace.Span, len(idx))
	wctx, first := bt.tracer.Start(bt.ctx(ctx, idx[0]), "write "+store, trace.WithSpanKind(trace.SpanKindInternal), attrs)
	spans[0] = first
	link := trace.WithLinks(trace.Link{SpanContext: first.SpanContext()})
	for j, i := range idx[1:] {
		_, spans[j+1] = bt.tracer.Start(bt.ctx(ctx, i), "write "+store, attrs, link)
	}
	return wctx, func(err error) {
		for _, s := range spans {
			if err != nil {
				s.RecordError(err)
				s.SetStatus(codes.Error, "write failed")
			}
			s.End()
		}
	}
}

// end ends item i's span with what became of it.
func (bt *batchTrace) end(i int, f fate, err error) {
	if bt == nil {
		return
	}
	s := bt.spans[i]
	s.SetAttributes(attrOutcome.String(f.String()))
	if err != nil {
		s.RecordError(err)
		s.SetStatus(codes.Error, f.String())
	}
	s.End()
}

func (f fate) String() string {
	switch f {
	case settledWritten:
		return "written"
	case settledRechecked:
		return "rechecked"
	case settledDeadLettered:
		return "dead_lettered"
	case settledRetried:
		return "retried"
	}
	return "unknown"
}

// headerCarrier reads a trace context from a message's NATS headers, whose
// names keep the case the publisher gave them: "traceparent" is found
// whatever its case.
type headerCarrier nats.Header

func (c headerCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range c {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

func (c headerCarrier) Set(key, value string) { c[key] = []string{value} }

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
