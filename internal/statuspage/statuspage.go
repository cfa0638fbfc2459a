// Package statuspage renders the projector's status page: one plain,
// server-rendered HTML page (no script, no build step) that answers an
// operator's question of the day, "how stale is my read model, and why?".
//
// For each projection it shows its durable consumers (live, reproject,
// replay, retry) with their backlog in messages and the age of the oldest
// unacknowledged event, the rate at which events are settled, a chart of the
// lag over the last minutes, the dead-letter depth with the most frequent
// reasons, and the state of each dependency. The page refreshes itself every
// few seconds.
//
// Every figure comes from the projector's Monitor (see projector.Freshness),
// which reads JetStream's consumer info from the consumers' leaders, so every
// replica shows the same figures.
package statuspage

import (
	"context"
	_ "embed"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/readside/readside/internal/health"
	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/stream"
)

// Source is where the page takes its facts from.
type Source struct {
	// Freshness is the Monitor's last view (projector.Monitor.Freshness).
	Freshness func() projector.Freshness
	// Ready is the projector's readiness, as /readyz answers it
	// (health.Probes.Check): its status, and each dependency's state with
	// the reason when it is not up.
	Ready func(ctx context.Context) health.Report
	// Refresh is how often the page reloads itself [5s].
	Refresh time.Duration
	// Now is the clock [time.Now]; tests set it.
	Now func() time.Time
}

//go:embed status.html.tmpl
var pageText string

var page = template.Must(template.New("status").Funcs(template.FuncMap{
	"seconds": func(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) },
}).Parse(pageText))

// Handler serves the page (GET; HEAD too). It reads the Monitor's last
// view, so it costs no request to JetStream: a page open in many browsers
// adds no load to NATS.
func Handler(src Source) http.Handler {
	if src.Refresh <= 0 {
		src.Refresh = 5 * time.Second
	}
	if src.Now == nil {
		src.Now = time.Now
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := build(r.Context(), src)
		var b strings.Builder
		if err := page.Execute(&b, v); err != nil {
			http.Error(w, "rendering the status page: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		// A page with no script needs no more than this.
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
		w.Write([]byte(b.String()))
	})
}

// view is what the template shows.
type view struct {
	Now         string
	Refresh     int    // seconds
	Ready       bool   // ready or degraded: /readyz answers 200
	Status      string // as /readyz says it: ready, degraded, not ready, starting, shutting down
	Checks      []check
	Projections []projectionView
	Observed    string // when the Monitor's last round ended
	NoRound     bool   // the Monitor has not finished a round yet
}

type check struct {
	Name, State, Reason string
	Up                  bool
}

type projectionView struct {
	Name        string
	Consumers   []consumerView
	Chart       chart
	DeadLetters uint64
	DLQErr      string
	Reasons     []stream.ReasonCount
	MaxLag      time.Duration
}

type consumerView struct {
	Kind, Name, Stream string
	Err                string
	Pending            uint64
	AckPending         int
	Redelivered        int
	Lag                time.Duration
	LagText            string
	Rate               string // events settled per second over the last minute; "" when unknown
	Color              string
}

// colors of the consumers' lines, by kind, and their order on the page.
var kinds = []string{"live", "reproject", "replay", "retry"}
var colors = map[string]string{"live": "#1f77b4", "reproject": "#9467bd", "replay": "#2ca02c", "retry": "#d62728"}

func build(ctx context.Context, src Source) view {
	now := src.Now()
	v := view{Now: now.UTC().Format(time.RFC3339), Refresh: int(math.Ceil(src.Refresh.Seconds()))}
	if src.Ready != nil {
		r := src.Ready(ctx)
		v.Status = r.Status
		v.Ready = r.Status == health.StatusReady || r.Status == health.StatusDegraded
		for name, state := range r.Checks {
			v.Checks = append(v.Checks, check{Name: name, State: state, Reason: r.Reasons[name], Up: state == health.Up})
		}
		slices.SortFunc(v.Checks, func(a, b check) int { return strings.Compare(a.Name, b.Name) })
	}
	var f projector.Freshness
	if src.Freshness != nil {
		f = src.Freshness()
	}
	if f.At.IsZero() {
		v.NoRound = true
	} else {
		v.Observed = f.At.UTC().Format(time.RFC3339) + " (" + ago(max(now.Sub(f.At), 0)) + " ago)"
	}
	byName := map[string]*projectionView{}
	var order []string
	projection := func(name string) *projectionView {
		p := byName[name]
		if p == nil {
			p = &projectionView{Name: name}
			byName[name] = p
			order = append(order, name)
		}
		return p
	}
	for _, c := range f.Consumers {
		p := projection(c.Projection)
		cv := consumerView{
			Kind: c.Kind, Name: c.Name, Stream: c.Stream, Err: c.Err,
			Pending: c.Pending, AckPending: c.AckPending, Redelivered: c.Redelivered,
			Lag: c.Lag, LagText: lagText(c.Lag), Color: colors[c.Kind],
			Rate: rate(f.History[c.Name], c.At),
		}
		if cv.Color == "" {
			cv.Color = "#7f7f7f"
		}
		p.Consumers = append(p.Consumers, cv)
		p.MaxLag = max(p.MaxLag, c.Lag)
	}
	for _, d := range f.DeadLetters {
		p := projection(d.Projection)
		p.DeadLetters, p.DLQErr, p.Reasons = d.Messages, d.Err, d.Reasons
	}
	slices.Sort(order)
	for _, name := range order {
		p := byName[name]
		slices.SortStableFunc(p.Consumers, func(a, b consumerView) int {
			return slices.Index(kinds, a.Kind) - slices.Index(kinds, b.Kind)
		})
		p.Chart = lagChart(p.Consumers, f.History, now)
		v.Projections = append(v.Projections, *p)
	}
	return v
}

// rate is the events settled per second over the last minute of history:
// the increase of the consumer's ack floor. Empty when the history is too
// short to tell.
func rate(history []stream.ConsumerLag, at time.Time) string {
	var first *stream.ConsumerLag
	for i := range history {
		h := &history[i]
		if h.Err == "" && at.Sub(h.At) <= time.Minute {
			first = h
			break
		}
	}
	if len(history) == 0 || first == nil {
		return ""
	}
	last := history[len(history)-1]
	dt := last.At.Sub(first.At).Seconds()
	if dt < 1 || last.Err != "" || last.Acked < first.Acked {
		return ""
	}
	return fmt.Sprintf("%.1f/s", float64(last.Acked-first.Acked)/dt)
}

func lagText(d time.Duration) string {
	switch {
	case d <= 0:
		return "0 s"
	case d < 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	default:
		return ago(d)
	}
}

func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.0f s", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%d min %02d s", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%d h %02d min", int(d.Hours()), int(d.Minutes())%60)
	}
}
