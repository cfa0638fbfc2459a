package telemetry_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A read the store cannot answer is built from the source and re-projected:
// the re-project event carries the request's trace context, so the
// projector's work for it (which continues a traceparent, see
// internal/projector) is part of the request's trace.
func TestReprojectEventCarriesTheTrace(t *testing.T) {
	t.Parallel()
	w := newTracedAPI(t, true)
	def, js, streams, srv := w.def, w.js, w.streams, w.srv
	ctx := context.Background()
	w.api.Put("7", "seven") // at the source, not in the store

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
