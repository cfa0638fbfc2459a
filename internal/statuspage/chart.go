package statuspage

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/stream"
)

// chart is an inline SVG line chart of each consumer's lag in seconds over
// the Monitor's history window, drawn on the server: the page needs no
// script and no chart library.
type chart struct {
	Width, Height int
	Left, Top     int // the plot area's origin
	PlotW, PlotH  int
	Lines         []line
	YTicks        []tick
	XTicks        []tick
	Empty         bool   // no history yet
	Window        string // what the x axis spans, e.g. "4 min"
}

type line struct {
	Kind, Color string
	Points      string // "x,y x,y ..."
	Last        string // the last value, for the legend
}

type tick struct {
	Pos   float64 // in pixels, from the plot area's origin
	Label string
}

const (
	chartW, chartH = 720, 200
	padL, padR     = 56, 12
	padT, padB     = 10, 28
)

func lagChart(consumers []consumerView, history map[string][]stream.ConsumerLag, now time.Time) chart {
	c := chart{Width: chartW, Height: chartH, Left: padL, Top: padT, PlotW: chartW - padL - padR, PlotH: chartH - padT - padB}
	// The window is the history kept, or since the first round when that
	// is shorter (at least a minute): a process started a minute ago does
	// not draw its minute squeezed into the right fifteenth.
	window := projector.HistoryWindow
	from := now.Add(-window)
	var top time.Duration
	first := now
	for _, cv := range consumers {
		for _, h := range history[cv.Name] {
			if h.At.Before(from) || h.Err != "" {
				continue
			}
			if h.At.Before(first) {
				first = h.At
			}
			top = max(top, h.Lag)
		}
	}
	if first.Equal(now) {
		c.Empty = true
		return c
	}
	window = min(window, max(time.Minute, now.Sub(first)))
	window = niceWindow(window)
	from = now.Add(-window)
	c.Window = windowLabel(window)
	ymax := niceCeil(top.Seconds())
	x := func(t time.Time) float64 { return float64(c.PlotW) * t.Sub(from).Seconds() / window.Seconds() }
	y := func(s float64) float64 { return float64(c.PlotH) * (1 - s/ymax) }
	for _, cv := range consumers {
		var pts []string
		for _, h := range history[cv.Name] {
			if h.At.Before(from) || h.Err != "" {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(h.At), y(h.Lag.Seconds())))
		}
		if len(pts) == 1 { // a single round: a dot, drawn as a tiny segment
			pts = append(pts, pts[0])
		}
		if len(pts) > 0 {
			c.Lines = append(c.Lines, line{Kind: cv.Kind, Color: cv.Color, Points: strings.Join(pts, " "), Last: legendText(cv)})
		}
	}
	for i := 0; i <= 4; i++ {
		s := ymax * float64(i) / 4
		c.YTicks = append(c.YTicks, tick{Pos: y(s), Label: secondsLabel(s)})
	}
	n := 4
	if window%(4*time.Minute) != 0 && window > 4*time.Minute {
		n = 5 // 15 minutes: every 3
	}
	step := window / time.Duration(n)
	for i := 0; i <= n; i++ {
		t := from.Add(time.Duration(i) * step)
		label := "−" + windowLabel(window-time.Duration(i)*step)
		if i == n {
			label = "now"
		}
		c.XTicks = append(c.XTicks, tick{Pos: x(t), Label: label})
	}
	return c
}

// niceWindow rounds a window up to 1, 2, 4, 8 or 15 minutes: ticks then
// fall on whole seconds or minutes (quarters; fifths of 15).
func niceWindow(d time.Duration) time.Duration {
	for _, m := range []time.Duration{1, 2, 4, 8} {
		if d <= m*time.Minute {
			return m * time.Minute
		}
	}
	return projector.HistoryWindow
}

func windowLabel(d time.Duration) string {
	if d < time.Minute || d%time.Minute != 0 {
		return fmt.Sprintf("%.0f s", d.Seconds())
	}
	return fmt.Sprintf("%d min", int(d.Minutes()))
}

// niceCeil rounds s up to 1, 2 or 5 times a power of ten, at least 1 second.
func niceCeil(s float64) float64 {
	if s <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(s)))
	for _, m := range []float64{1, 2, 5, 10} {
		if s <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func secondsLabel(s float64) string {
	return strconv.FormatFloat(math.Round(s*100)/100, 'f', -1, 64) + " s"
}

func legendText(cv consumerView) string {
	if cv.Err != "" {
		return "unavailable"
	}
	return cv.LagText
}
