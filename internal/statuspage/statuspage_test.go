package statuspage

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/readside/readside/internal/health"
	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/stream"
)

// sample is a Monitor's view: the live consumer fell 40 s behind over the
// last minutes and is catching up; two dead letters.
func sample(now time.Time) projector.Freshness {
	f := projector.Freshness{At: now.Add(-2 * time.Second), History: map[string][]stream.ConsumerLag{}}
	for i, kind := range []string{"live", "reproject", "replay", "retry"} {
		name := "readside_shops"
		if kind != "live" {
			name += "_" + kind
		}
		st := "READSIDE_EVENTS"
		if kind != "live" {
			st = "READSIDE_OWN"
		}
		var hist []stream.ConsumerLag
		for r := 0; r < 60; r++ {
			at := now.Add(-time.Duration(60-r) * 10 * time.Second)
			lag := time.Duration(0)
			if kind == "live" && r > 30 {
				lag = time.Duration(min(r-30, 90-r)) * 1500 * time.Millisecond
			}
			hist = append(hist, stream.ConsumerLag{Projection: "shops", Kind: kind, Name: name, Stream: st, At: at,
				Pending: uint64(lag / time.Second * 10), Acked: uint64(r * 100 * (1 - i%2)), Lag: lag})
		}
		f.History[name] = hist
		last := hist[len(hist)-1]
		if kind == "retry" {
			last = stream.ConsumerLag{Projection: "shops", Kind: kind, Name: name, Stream: st, At: last.At, Err: "no answer within 2s: it has no leader, or NATS is unreachable"}
		}
		f.Consumers = append(f.Consumers, last)
	}
	f.DeadLetters = []stream.DeadLetters{{Projection: "shops", Messages: 2, Reasons: []stream.ReasonCount{{Reason: `source: status 400: "bad <id>"`, Count: 2}}}}
	return f
}

func render(t *testing.T, src Source) string {
	t.Helper()
	rec := httptest.NewRecorder()
	Handler(src).ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	return rec.Body.String()
}

func TestPageShowsFreshness(t *testing.T) {
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	src := Source{
		Freshness: func() projector.Freshness { return sample(now) },
		Ready: func(context.Context) health.Report {
			return health.Report{Status: health.StatusNotReady, Checks: map[string]string{"nats": "up", "redis": "up", "consumers": "down"},
				Reasons: map[string]string{"consumers": "consumer readside_shops_retry: no answer within 2s"}}
		},
		Now: func() time.Time { return now },
	}
	body := render(t, src)
	for _, want := range []string{
		`id="readiness">not ready`,
		`data-dependency="consumers"><td>consumers</td><td class="down">down</td><td class="reason">consumer readside_shops_retry: no answer within 2s`,
		`data-projection="shops"`,
		`data-kind="live" data-lag-seconds="43.500"`,
		`data-kind="reproject" data-lag-seconds="0.000"`,
		`unavailable: no answer within 2s`,
		`data-dead-letters="2"`,
		`source: status 400: &#34;bad &lt;id&gt;&#34;`, // escaped, never markup
		`class="lag-line" data-kind="live"`,
		`10.0/s`, // the live consumer's ack floor rose 100 per 10 s round
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(body, "ZgotmplZ") {
		t.Errorf("the template refused a value (ZgotmplZ):\n%s", body)
	}
}

func TestPageBeforeTheFirstRound(t *testing.T) {
	body := render(t, Source{Freshness: func() projector.Freshness { return projector.Freshness{} }})
	for _, want := range []string{"has not finished its first round", "No projection has been observed yet"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}
