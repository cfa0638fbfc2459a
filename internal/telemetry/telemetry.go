// Package telemetry sets up OpenTelemetry tracing from the standard OTEL_*
// environment variables and hands the instrumentation of the clients and
// servers that the commands build: the source APIs' HTTP client (otelhttp),
// the query API's server (otelhttp), Redis (redisotel) and Elasticsearch (its
// own instrumentation).
//
// Tracing is off unless the environment asks for it; off, every method
// returns what it was given (no wrapper, no hook) and the projector creates
// no span, so tracing costs nothing. Nothing here sets OpenTelemetry's
// global tracer provider or propagator: the provider is passed to each
// instrumentation explicitly.
package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/elastic/elastic-transport-go/v8/elastictransport"
	"github.com/elastic/go-elasticsearch/v8"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"
)

// Tracing is a process's tracing: off, or a tracer provider exporting
// spans. A nil *Tracing is off. Its methods are safe for concurrent use.
type Tracing struct {
	provider trace.TracerProvider
	prop     propagation.TextMapPropagator
	shutdown func(context.Context) error
}

// Enabled reports whether the environment (looked up with getenv) asks for
// traces: OTEL_TRACES_EXPORTER set to an exporter other than "none", or an
// OTLP endpoint given (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); never when OTEL_SDK_DISABLED is true.
func Enabled(getenv func(string) string) bool {
	if disabled, _ := strconv.ParseBool(getenv("OTEL_SDK_DISABLED")); disabled {
		return false
	}
	switch exp := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exp {
	case "none":
		return false
	case "":
		return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	default:
		return true
	}
}

// New sets tracing up as the process's environment says (see Enabled);
// service is the service.name unless OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES name one. Off, it returns a Tracing that is off.
// On, spans go through a batch span processor (OTEL_BSP_*) to the exporter
// OTEL_TRACES_EXPORTER names (otlp by default, over
// OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL, http/protobuf by default; console
// prints them), sampled as OTEL_TRACES_SAMPLER[_ARG] say (parent-based
// always-on by default), and W3C trace context and baggage propagate.
//
// Export errors go to log at WARN, at most one a minute: the only way to
// hear them is OpenTelemetry's global error handler, which New sets.
// Call Shutdown before exiting, so the last spans are exported.
func New(ctx context.Context, service string, log *slog.Logger) (*Tracing, error) {
	if !Enabled(os.Getenv) {
		return nil, nil
	}
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing (OTEL_TRACES_EXPORTER): %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(service)))
	if err == nil { // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
		res, err = resource.Merge(res, resource.Environment())
	}
	if err != nil {
		return nil, fmt.Errorf("tracing (OTEL_RESOURCE_ATTRIBUTES): %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	if log != nil {
		warn := rate.Sometimes{Interval: time.Minute}
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			warn.Do(func() {
				log.Warn("tracing: exporting spans failed; spans are being dropped (logged at most once a minute)", "err", err)
			})
		}))
	}
	return NewWith(tp, tp.Shutdown), nil
}

// NewWith is tracing on with a given provider, e.g. one recording spans in
// memory for a test; shutdown, if not nil, is what Shutdown calls.
func NewWith(tp trace.TracerProvider, shutdown func(context.Context) error) *Tracing {
	return &Tracing{
		provider: tp,
		prop:     propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		shutdown: shutdown,
	}
}

// On reports whether tracing is on.
func (t *Tracing) On() bool { return t != nil }

// Provider is the tracer provider; nil when tracing is off.
func (t *Tracing) Provider() trace.TracerProvider {
	if t == nil {
		return nil
	}
	return t.provider
}

// Propagator reads and writes the trace context (W3C traceparent,
// tracestate and baggage) in headers; nil when tracing is off.
func (t *Tracing) Propagator() propagation.TextMapPropagator {
	if t == nil {
		return nil
	}
	return t.prop
}

// Flush exports the spans still buffered and stops the exporter, within 5
// s, logging a failure on log: what a daemon defers once tracing is set up.
func (t *Tracing) Flush(log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.Shutdown(ctx); err != nil {
		log.Warn("tracing: exporting the last spans failed", "err", err)
	}
}

// Shutdown exports the spans still buffered and stops the exporter, within
// ctx's deadline. Off, it does nothing.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// Transport returns next (never nil: the given one or
// http.DefaultTransport) wrapped to make a client span of every request and
// send its trace context to the server in a traceparent header. Off, it
// returns next unchanged.
func (t *Tracing) Transport(next http.RoundTripper) http.RoundTripper {
	if t == nil {
		return next
	}
	if next == nil {
		next = http.DefaultTransport
	}
	return otelhttp.NewTransport(next, t.httpOptions()...)
}

// Handler returns h wrapped to continue the trace context of each request
// (its traceparent header) in a server span named by route: the pattern of
// the route the request takes, "GET /v1/{projection}/{id}", never its path
// (which holds ids). Off, it returns h unchanged.
func (t *Tracing) Handler(h http.Handler, route func(*http.Request) string) http.Handler {
	if t == nil {
		return h
	}
	name := func(_ string, r *http.Request) string {
		p := route(r)
		if p == "" {
			return r.Method
		}
		if !strings.Contains(p, " ") { // a pattern without a method
			p = r.Method + " " + p
		}
		return p
	}
	return otelhttp.NewHandler(h, "http.server", append(t.httpOptions(), otelhttp.WithSpanNameFormatter(name))...)
}

func (t *Tracing) httpOptions() []otelhttp.Option {
	return []otelhttp.Option{
		otelhttp.WithTracerProvider(t.provider),
		otelhttp.WithPropagators(t.prop),
		// Metrics are Prometheus's (the process's registry), not OpenTelemetry's.
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
	}
}

// InstrumentRedis adds a hook to c that makes a client span of every command
// and pipeline, without the commands' arguments (they hold whole documents).
// Off, it does nothing.
func (t *Tracing) InstrumentRedis(c redis.UniversalClient) error {
	if t == nil {
		return nil
	}
	if err := redisotel.InstrumentTracing(c, redisotel.WithTracerProvider(t.provider), redisotel.WithDBStatement(false)); err != nil {
		return fmt.Errorf("tracing redis: %w", err)
	}
	return nil
}

// ElasticInstrumentation is the Elasticsearch client's own instrumentation
// (a client span per API call, search bodies not recorded); nil when off.
func (t *Tracing) ElasticInstrumentation() elastictransport.Instrumentation {
	if t == nil {
		return nil
	}
	return elasticsearch.NewOpenTelemetryInstrumentation(t.provider, false)
}
