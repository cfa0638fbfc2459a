package query_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/readside/readside/internal/query"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
)

// The API counts where each answer came from, and the re-project events
// it publishes: a store hit counts from="store"; a detail the store lacks
// is built from the source, counts from="source" and one re-project event
// published; a multi-get of both counts from="mixed".
func TestAnswersCounted(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 3)
	// Re-project events go to a JetStream of their own, so that the world's
	// projector does not heal the store while the test reads.
	_, own := testenv.StartJetStream(t).Connect(t)
	if _, err := stream.Ensure(context.Background(), own, stream.Config{}, w.def.AllSubjects()); err != nil {
		t.Fatal(err)
	}
	views, err := query.Views(context.Background(), []*projections.Definition{w.def}, w.stores, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv := httptest.NewServer(query.New(views, own, logger(), nil, query.Options{RequestTimeout: 5 * time.Second, Registerer: reg}))
	defer srv.Close()
	base := srv.URL + "/v1/" + w.ns
	w.api.Put("099", "Not projected yet") // the source has it; no event, so the store does not

	for _, tc := range []struct {
		path, endpoint, from string
	}{
		{"/001", "detail", "store"},
		{"/099", "detail", "source"},
		{"?ids=001,099", "multiget", "mixed"},
		{"?ids=002", "multiget", "store"},
	} {
		before := answerCount(t, reg, w.ns, tc.endpoint, tc.from)
		res, body := get(t, base+tc.path)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", tc.path, res.StatusCode, body)
		}
		if got := answerCount(t, reg, w.ns, tc.endpoint, tc.from); got != before+1 {
			t.Errorf("%s: readside_query_answers_total{endpoint=%q,from=%q} went from %v to %v, want +1 (X-Readside-Source %s)",
				tc.path, tc.endpoint, tc.from, before, got, res.Header.Get("X-Readside-Source"))
		}
	}
	if got := answerCount(t, reg, w.ns, "detail", "store"); got != 1 {
		t.Errorf("detail from store: %v, want 1", got)
	}
	// Both reads of 099 built it and published its re-project event
	// (JetStream drops the repeat: Nats-Msg-Id).
	if got := counterValue(t, reg, "readside_query_reproject_published_total", map[string]string{"projection": w.ns, "result": "ok"}); got != 2 {
		t.Errorf("re-project events published: %v, want 2", got)
	}
	elsewhere := *w
	elsewhere.js = own
	if missing, _ := reprojected(t, &elsewhere, []string{"099"}, 10*time.Second); len(missing) > 0 {
		t.Errorf("no re-project event for 099 on %s", w.def.ReprojectSubject())
	}
}

// A re-project event NATS refuses (the connection is closed) is counted
// as failed; the read is answered all the same.
func TestReprojectFailureCounted(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 1)
	nc, pub := testenv.StartJetStream(t).Connect(t)
	nc.Close()
	views, err := query.Views(context.Background(), []*projections.Definition{w.def}, w.stores, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv := httptest.NewServer(query.New(views, pub, logger(), nil, query.Options{RequestTimeout: 5 * time.Second, Registerer: reg}))
	defer srv.Close()
	w.api.Put("077", "Not projected yet")
	if res, body := get(t, srv.URL+"/v1/"+w.ns+"/077"); res.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	failed := counterValue(t, reg, "readside_query_reproject_published_total", map[string]string{"projection": w.ns, "result": "failed"})
	ok := counterValue(t, reg, "readside_query_reproject_published_total", map[string]string{"projection": w.ns, "result": "ok"})
	if failed != 1 || ok != 0 {
		t.Errorf("re-project events: failed %v, ok %v; want 1 failed, 0 ok", failed, ok)
	}
	if got := answerCount(t, reg, w.ns, "detail", "source"); got != 1 {
		t.Errorf("detail from source: %v, want 1", got)
	}
}

// answerCount is readside_query_answers_total of one series.
func answerCount(t *testing.T, reg *prometheus.Registry, projection, endpoint, from string) float64 {
	t.Helper()
	return counterValue(t, reg, "readside_query_answers_total", map[string]string{"projection": projection, "endpoint": endpoint, "from": from})
}

// counterValue is the value of the counter series name with exactly labels;
// a series that does not exist fails the test.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	return series(t, reg, name, labels).GetCounter().GetValue()
}

// series is the series name with exactly labels; one that does not exist
// fails the test.
func series(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if sameLabels(m.GetLabel(), labels) {
				return m
			}
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return nil
}

func sameLabels(got []*dto.LabelPair, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, l := range got {
		if want[l.GetName()] != l.GetValue() {
			return false
		}
	}
	return true
}
