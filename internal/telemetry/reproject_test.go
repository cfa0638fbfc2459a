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
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/readside/readside/internal/backend"
	"github.com/readside/readside/internal/config"
	"github.com/readside/readside/internal/query"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/telemetry"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
)

// A read the store cannot answer is built from the source and re-projected:
// the re-project event carries the request's trace context, so the
// projector's work for it (which continues a traceparent, see
// internal/projector) is part of the request's trace.
func TestReprojectEventCarriesTheTrace(t *testing.T) {
	t.Parallel()
	ns := testenv.Namespace(t)
	api := testenv.NewShopAPI()
	t.Cleanup(api.Close)
	def, err := projections.Parse("shops.yaml", []byte(testenv.ShopDefinition(ns, api.URL, true)), projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Elastic(t, ns)
	testenv.CleanRedis(t, testenv.Redis(t), ns)
	ctx := context.Background()
	_, js := testenv.StartJetStream(t).Connect(t)
	streams, err := stream.Ensure(ctx, js, stream.Config{}, def.AllSubjects())
	if err != nil {
		t.Fatal(err)
	}

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tracing := telemetry.NewWith(tp, tp.Shutdown)
	stores, err := backend.OpenStores(config.Backends{
		RedisAddrs: []string{testenv.RedisAddr()}, ElasticURLs: []string{testenv.ElasticURL()}, Tracing: tracing,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stores.Close() })
	if _, err := stores.For(ctx, def); err != nil {
		t.Fatal(err)
	}
	views, err := query.Views(ctx, []*projections.Definition{def}, stores, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	qapi := query.New(views, js, slog.New(slog.NewTextHandler(io.Discard, nil)), stores.Ready,
		query.Options{Propagator: tracing.Propagator()})
	srv := httptest.NewServer(tracing.Handler(qapi, qapi.Route))
	t.Cleanup(srv.Close)
	api.Put("7", "seven") // at the source, not in the store

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest("GET", srv.URL+"/v1/"+def.Name+"/7", nil)
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("X-Readside-Source") != "source" {
		t.Fatalf("GET: %d, source %q; want 200 built from the source", res.StatusCode, res.Header.Get("X-Readside-Source"))
	}
	own, err := js.Stream(ctx, streams.Config().Own)
	if err != nil {
		t.Fatal(err)
	}
	var msg *jetstream.RawStreamMsg
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if msg, err = own.GetLastMsgForSubject(ctx, def.ReprojectSubject()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no re-project event on %s: %v", def.ReprojectSubject(), err)
		}
	}
	parent := ""
	for k, v := range msg.Header {
		if strings.EqualFold(k, "traceparent") && len(v) > 0 {
			parent = v[0]
		}
	}
	if !strings.HasPrefix(parent, "00-"+traceID+"-") {
		t.Errorf("the re-project event's traceparent is %q, want one of trace %s (headers %v)", parent, traceID, msg.Header)
	}
}
