package statuspage

import (
	"fmt"
	"math"
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
	Empty         bool // no history yet
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
	window := projector.HistoryWindow
	from := now.Add(-window)
	var top time.Duration
	any := false
	for _, cv := range consumers {
		for _, h := range history[cv.Name] {
			if h.At.Before(from) || h.Err != "" {
				continue
			}
			any = true
			top = max(top, h.Lag)
		}
	}
	if !any {
		c.Empty = true
		return c
	}
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
	for m := 0; m <= int(window.Minutes()); m += 5 {
		t := from.Add(time.Duration(m) * time.Minute)
		label := fmt.Sprintf("−%d min", int(window.Minutes())-m)
		if m == int(window.Minutes()) {
			label = "now"
		}
		c.XTicks = append(c.XTicks, tick{Pos: x(t), Label: label})
	}
	return c
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
	if s == math.Trunc(s) {
		return fmt.Sprintf("%.0f s", s)
	}
	return fmt.Sprintf("%.1f s", s)
}

func legendText(cv consumerView) string {
	if cv.Err != "" {
		return "unavailable"
	}
	return cv.LagText
}
