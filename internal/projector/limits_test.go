package projector_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/readside/readside/internal/assemble"
	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/source"
	"github.com/readside/readside/internal/testenv"
)

// With the default options, a slow, healthy source gets more requests at
// once than the old fixed bound allowed (Workers 4 × FetchConcurrency 32 =
// 128): its adaptive limit grows under the burst. Every document converges,
// and the limit and in-flight requests are metrics on the registry given.
func TestAdaptiveSourceConcurrency(t *testing.T) {
	const oldBound = 4 * 32
	h := newHarness(t, true)
	h.api.SetLatency(50 * time.Millisecond)
	all := ids(4000)
	for _, id := range all {
		h.api.Put(id, "shop "+id)
	}
	ctx := context.Background()
	for _, id := range all {
		if _, err := h.js.PublishAsync(h.ns+".shop.changed."+id, nil); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-h.js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("publishing the events took over 30 s")
	}

	reg := prometheus.NewRegistry()
	env := projector.Env{
		JetStream: h.js, Streams: h.streams, Stores: h.stores, Log: testenv.Logger(t, "projector"),
		SourceLimits: assemble.NewLimits(source.LimiterOptions{}, reg),
		Metrics:      projector.NewMetrics(reg),
	}
	p, err := projector.ForDefinition(ctx, h.def, env, projector.Options{})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Start(t, "projector", p.Run)
	h.waitConverged(all, 2*time.Minute)
	h.waitDrained(30 * time.Second)
	if err := h.noDeadLetters(); err != nil {
		t.Error(err)
	}

	peak := h.api.PeakConcurrency()
	t.Logf("peak requests at once at the source: %d (old fixed bound %d); limit now %d",
		peak, oldBound, env.SourceLimits.Limiter(h.def.Name, "shop").Limit())
	if peak <= oldBound {
		t.Errorf("the source saw at most %d requests at once, want more than the old fixed %d", peak, oldBound)
	}
	if peak > int64(source.DefaultLimitMax) {
		t.Errorf("the source saw %d requests at once, over the ceiling %d", peak, source.DefaultLimitMax)
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			seen[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = true
		}
	}
	for _, name := range []string{
		"readside_source_concurrency_limit{projection=" + h.def.Name + ",source=shop}",
		"readside_source_inflight{projection=" + h.def.Name + ",source=shop}",
		"readside_source_request_seconds{projection=" + h.def.Name + ",result=ok,source=shop}",
		"readside_source_breaker_state{projection=" + h.def.Name + ",source=shop}",
		"readside_projector_write_seconds{projection=" + h.def.Name + ",store=redis}",
		"readside_projector_write_seconds{projection=" + h.def.Name + ",store=elasticsearch}",
	} {
		if !seen[name] {
			t.Errorf("no metric %s", name)
		}
	}
}
