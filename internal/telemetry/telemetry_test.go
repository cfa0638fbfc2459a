package telemetry_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/readside/readside/internal/backend"
	"github.com/readside/readside/internal/config"
	"github.com/readside/readside/internal/query"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/telemetry"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
)

var otelVars = []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"}

func TestEnabled(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, false},
		{map[string]string{"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, false},
		{map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, false},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{map[string]string{"OTEL_TRACES_EXPORTER": "console"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, false},
	} {
		got := telemetry.Enabled(func(k string) string { return c.env[k] })
		if got != c.want {
			t.Errorf("Enabled(%v) = %v, want %v", c.env, got, c.want)
		}
	}
}

// With no OTEL_* environment, tracing is off and installs nothing: every
// client and handler is the one given, unwrapped, and Redis gets no hook.
func TestOffByDefaultInstallsNothing(t *testing.T) {
	for _, k := range otelVars {
		t.Setenv(k, "")
	}
	tr, err := telemetry.New(context.Background(), "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if tr.On() || tr.Provider() != nil || tr.Propagator() != nil {
		t.Fatalf("tracing is on with no OTEL_* environment: %+v", tr)
	}
	rt := &http.Transport{}
	if got := tr.Transport(rt); got != rt {
		t.Errorf("Transport wrapped the transport: %T", got)
	}
	mux := http.NewServeMux()
	if got := tr.Handler(mux, func(*http.Request) string { return "" }); got != mux {
		t.Errorf("Handler wrapped the handler: %T", got)
	}
	if tr.ElasticInstrumentation() != nil {
		t.Error("ElasticInstrumentation is not nil")
	}
	// A hook would see this command; none must.
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	if err := tr.InstrumentRedis(c); err != nil {
		t.Fatal(err)
	}
	seen := false
	c.AddHook(probeHook{seen: &seen})
	c.Get(context.Background(), "k") // fails to connect: only the hooks matter
	if !seen {
		t.Fatal("the probe hook saw nothing")
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

// On, New builds an SDK provider from the environment and Shutdown flushes it.
func TestOnFromEnvironment(t *testing.T) {
	for _, k := range otelVars {
		t.Setenv(k, "")
	}
	got := make(chan string, 16)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got <- r.URL.Path
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	tr, err := telemetry.New(context.Background(), "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !tr.On() {
		t.Fatal("tracing is off with OTEL_EXPORTER_OTLP_ENDPOINT set")
	}
	if _, ok := tr.Provider().(*sdktrace.TracerProvider); !ok {
		t.Fatalf("provider %T, want the SDK's", tr.Provider())
	}
	_, span := tr.Provider().Tracer("test").Start(context.Background(), "one")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p != "/v1/traces" {
			t.Errorf("exported to %s, want /v1/traces", p)
		}
	default:
		t.Fatal("Shutdown exported nothing to the OTLP endpoint")
	}
}

type probeHook struct{ seen *bool }

func (h probeHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h probeHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		*h.seen = true
		if trace.SpanFromContext(ctx).SpanContext().IsValid() {
			panic("a span was started for a Redis command with tracing off")
		}
		return next(ctx, cmd)
	}
}
func (h probeHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// A query API request with a traceparent is served in a server span of
// that trace, named by its route, with the Redis, Elasticsearch and source
// requests as its children.
func TestQueryAPIRequestIsTraced(t *testing.T) {
	t.Parallel()
	w := newTracedAPI(t, false)
	api, rec, srv, ns := w.api, w.rec, w.srv, w.def.Name
	api.Put("7", "seven")

	get := func(path, traceID string) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, res.StatusCode, body)
		}
	}
	// server waits for the server span of traceID and returns the spans of the trace.
	server := func(traceID string) (sdktrace.ReadOnlySpan, []sdktrace.ReadOnlySpan) {
		t.Helper()
		tid, _ := trace.TraceIDFromHex(traceID)
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			var spans []sdktrace.ReadOnlySpan
			var srv sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				if s.SpanContext().TraceID() == tid {
					spans = append(spans, s)
					if s.SpanKind() == trace.SpanKindServer {
						srv = s
					}
				}
			}
			if srv != nil {
				if srv.Parent().SpanID().String() != "00f067aa0ba902b7" {
					t.Errorf("server span's parent %s, want the caller's span", srv.Parent().SpanID())
				}
				return srv, spans
			}
			if time.Now().After(deadline) {
				t.Fatalf("no server span in trace %s", traceID)
			}
		}
	}
	under := func(parent sdktrace.ReadOnlySpan, spans []sdktrace.ReadOnlySpan, ok func(sdktrace.ReadOnlySpan) bool) bool {
		for _, s := range spans {
			if s.Parent().SpanID() == parent.SpanContext().SpanID() && ok(s) {
				return true
			}
		}
		return false
	}
	hasAttr := func(key, value string) func(sdktrace.ReadOnlySpan) bool {
		return func(s sdktrace.ReadOnlySpan) bool {
			for _, kv := range s.Attributes() {
				if string(kv.Key) == key && kv.Value.Emit() == value {
					return true
				}
			}
			return false
		}
	}

	// A detail missing from Redis: Redis, then the source.
	const detailTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	get("/v1/"+ns+"/7", detailTrace)
	srvSpan, spans := server(detailTrace)
	if srvSpan.Name() != "GET /v1/{projection}/{id}" {
		t.Errorf("server span named %q, want the route GET /v1/{projection}/{id}", srvSpan.Name())
	}
	if !under(srvSpan, spans, hasAttr("db.system", "redis")) && !under(srvSpan, spans, hasAttr("db.system.name", "redis")) {
		t.Errorf("no Redis span under the server span; the trace has %d spans: %v", len(spans), spanNames(spans))
	}
	var fetched bool
	for _, f := range spans {
		if f.Name() == "fetch" && f.Parent().SpanID() == srvSpan.SpanContext().SpanID() {
			fetched = under(f, spans, func(s sdktrace.ReadOnlySpan) bool { return s.SpanKind() == trace.SpanKindClient })
		}
	}
	if !fetched {
		t.Errorf("no fetch span with an HTTP client span beneath under the server span: %v", spanNames(spans))
	}
	var sent bool
	for _, tp := range api.TraceParents() {
		sent = sent || strings.Contains(tp, detailTrace)
	}
	if !sent {
		t.Errorf("the source received no traceparent of the request's trace: %q", api.TraceParents())
	}

	// A list: Elasticsearch.
	const listTrace = "5bf92f3577b34da6a3ce929d0e0e4737"
	get("/v1/"+ns, listTrace)
	srvSpan, spans = server(listTrace)
	if srvSpan.Name() != "GET /v1/{projection}" {
		t.Errorf("server span named %q, want the route GET /v1/{projection}", srvSpan.Name())
	}
	if !under(srvSpan, spans, hasAttr("db.system", "elasticsearch")) && !under(srvSpan, spans, hasAttr("db.system.name", "elasticsearch")) {
		t.Errorf("no Elasticsearch span under the server span; the trace has: %v", spanNames(spans))
	}
}

func spanNames(spans []sdktrace.ReadOnlySpan) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name()
		for _, kv := range s.Attributes() {
			if strings.HasPrefix(string(kv.Key), "db.") {
				out[i] += " " + string(kv.Key) + "=" + kv.Value.Emit()
			}
		}
	}
	return out
}

// tracedAPI is the query API over the test Redis and Elasticsearch, traced
// into an in-memory span recorder, for the shop projection of a fake shop
// API; with NATS, it publishes re-project events to a JetStream of its own.
type tracedAPI struct {
	def     *projections.Definition
	api     *testenv.ShopAPI
	rec     *tracetest.SpanRecorder
	srv     *httptest.Server
	js      jetstream.JetStream // nil without NATS
	streams *stream.Setup       // nil without NATS
}

// newTracedAPI starts a tracedAPI; withNATS, its re-project events carry the
// request's trace context (query.Options.Propagator).
func newTracedAPI(t *testing.T, withNATS bool) *tracedAPI {
	t.Helper()
	ns := testenv.Namespace(t)
	w := &tracedAPI{api: testenv.NewShopAPI()}
	t.Cleanup(w.api.Close)
	var err error
	if w.def, err = projections.Parse("shops.yaml", []byte(testenv.ShopDefinition(ns, w.api.URL, true)), projections.Options{}); err != nil {
		t.Fatal(err)
	}
	testenv.Elastic(t, ns) // deletes the test's indices at the end
	testenv.CleanRedis(t, testenv.Redis(t), ns)
	ctx := context.Background()

	w.rec = tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(w.rec))
	tracing := telemetry.NewWith(tp, tp.Shutdown)
	stores, err := backend.OpenStores(config.Backends{
		RedisAddrs: []string{testenv.RedisAddr()}, ElasticURLs: []string{testenv.ElasticURL()}, Tracing: tracing,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stores.Close() })
	if _, err := stores.For(ctx, w.def); err != nil { // creates the index
		t.Fatal(err)
	}
	views, err := query.Views(ctx, []*projections.Definition{w.def}, stores, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var pub query.Publisher
	var o query.Options
	if withNATS {
		_, w.js = testenv.StartJetStream(t).Connect(t)
		if w.streams, err = stream.Ensure(ctx, w.js, stream.Config{}, w.def.AllSubjects()); err != nil {
			t.Fatal(err)
		}
		pub, o.Propagator = w.js, tracing.Propagator()
	}
	qapi := query.New(views, pub, slog.New(slog.NewTextHandler(io.Discard, nil)), stores.Ready, o)
	w.srv = httptest.NewServer(tracing.Handler(qapi, qapi.Route))
	t.Cleanup(w.srv.Close)
	return w
}
