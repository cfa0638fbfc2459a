package assemble_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/readside/readside/internal/assemble"
	"github.com/readside/readside/internal/source"
)

// The clients of one Limits share one limiter per source: concurrent
// Assemble calls, each allowed many requests at once, together stay within
// the source's limit; the limit, the requests in flight and the requests'
// times are metrics labelled by projection and source.
func TestLimits(t *testing.T) {
	var active, peak atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := active.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(10 * time.Millisecond)
		active.Add(-1) // before answering: the answer frees the permit
		id := strings.TrimPrefix(r.URL.Path, "/shops/")
		fmt.Fprintf(w, `{"name":"shop %s","rating":4}`, id)
	}))
	t.Cleanup(srv.Close)
	def := parse(t, primaryOnly, srv.URL)

	reg := prometheus.NewRegistry()
	limits := assemble.NewLimits(source.LimiterOptions{Initial: 4, Max: 6}, reg)
	if limits.Max() != 6 {
		t.Fatalf("Max %d, want 6", limits.Max())
	}
	var ids []string
	for i := range 40 {
		ids = append(ids, strconv.Itoa(i))
	}
	var wg sync.WaitGroup
	for range 3 { // three Assemblers, as the live, replay and retry consumers have
		asm := assemble.New(def, limits.Clients(def, nil, 0), assemble.Options{Concurrency: 32})
		wg.Go(func() {
			for _, r := range asm.Assemble(testCtx(t), ids) {
				if r.Err != nil || r.Doc == nil {
					t.Errorf("%s: Err %v, Doc %s", r.ID, r.Err, r.Doc)
				}
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > 6 {
		t.Errorf("the source saw %d requests at once; its limit is at most 6", p)
	}
	if limits.Limiter("shops", "shop") != limits.Limiter("shops", "shop") || limits.Limiter("shops", "shop") == limits.Limiter("other", "shop") {
		t.Error("want one limiter per projection and source")
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{} // a gauge's value, a histogram's count
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := []string{}
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := m.GetGauge().GetValue()
			if h := m.GetHistogram(); h != nil {
				v = float64(h.GetSampleCount())
			}
			got[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	for _, want := range []struct {
		name     string
		min, max float64
	}{
		{"readside_source_concurrency_limit{projection=shops,source=shop}", 1, 6},
		{"readside_source_inflight{projection=shops,source=shop}", 0, 0},
		{"readside_source_request_seconds{projection=shops,result=ok,source=shop}", 120, 120},
	} {
		if v, ok := got[want.name]; !ok || v < want.min || v > want.max {
			t.Errorf("%s = %v (present: %v), want %v to %v", want.name, v, ok, want.min, want.max)
		}
	}
}

// The state of each source's circuit breaker is a metric: 0 while the
// source answers, 2 once it failed 5 times in a row.
func TestLimitsReportBreakerState(t *testing.T) {
	var down atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, `{"name":"a shop","rating":4}`)
	}))
	t.Cleanup(srv.Close)
	def := parse(t, primaryOnly, srv.URL)
	reg := prometheus.NewRegistry()
	limits := assemble.NewLimits(source.LimiterOptions{}, reg)
	asm := assemble.New(def, limits.Clients(def, nil, time.Millisecond), assemble.Options{Concurrency: 1})
	state := func() float64 {
		t.Helper()
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() == "readside_source_breaker_state" {
				for _, m := range f.GetMetric() {
					return m.GetGauge().GetValue()
				}
			}
		}
		t.Fatal("no readside_source_breaker_state")
		return -1
	}
	asm.Assemble(testCtx(t), []string{"1"})
	if s := state(); s != 0 {
		t.Errorf("breaker state %v while the source answers, want 0 (closed)", s)
	}
	down.Store(true)
	for i := range 6 {
		asm.Assemble(testCtx(t), []string{strconv.Itoa(i)})
	}
	if s := state(); s != 2 {
		t.Errorf("breaker state %v after the source failed 6 times, want 2 (open)", s)
	}
}
