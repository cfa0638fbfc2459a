package replay

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
)

// Meter is the progress of one run, updated by the run and read by a
// Reporter. Safe for concurrent use.
type Meter struct {
	label  string
	unit   string
	start  time.Time
	before int64 // done by earlier processes of the run (a resumed run)
	total  atomic.Int64
	done   atomic.Int64 // by this process
}

func newMeter(label, unit string, before int64) *Meter {
	m := &Meter{label: label, unit: unit, start: time.Now(), before: before}
	m.total.Store(-1)
	return m
}

// Label says what the run does, e.g. "all shopdisplay".
func (m *Meter) Label() string { return m.label }

// Unit is what is counted: "ids", or "entries" for the dead-letter queue.
func (m *Meter) Unit() string { return m.unit }

// Done is how many are done over the whole run, earlier processes included.
func (m *Meter) Done() int64 { return m.before + m.done.Load() }

// Before is how many were done by earlier processes of a resumed run.
func (m *Meter) Before() int64 { return m.before }

// Total is how many the run has in all, when known.
func (m *Meter) Total() (int64, bool) {
	t := m.total.Load()
	return t, t >= 0
}

// Elapsed is how long this process has been running the run.
func (m *Meter) Elapsed() time.Duration { return time.Since(m.start) }

// Rate is how many per second this process does.
func (m *Meter) Rate() float64 {
	s := m.Elapsed().Seconds()
	if s <= 0 {
		return 0
	}
	return float64(m.done.Load()) / s
}

// ETA is how long the rest will take at the current rate, when the total is known.
func (m *Meter) ETA() (time.Duration, bool) {
	total, ok := m.Total()
	rate := m.Rate()
	if !ok || rate <= 0 {
		return 0, false
	}
	left := max(total-m.Done(), 0)
	return time.Duration(float64(left) / rate * float64(time.Second)), true
}

func (m *Meter) setTotal(n int64) { m.total.Store(n) }
func (m *Meter) add(n int64)      { m.done.Add(n) }

// A Reporter shows a run's progress while it runs.
type Reporter interface {
	// Report shows m until stop is closed, shows it a last time, and returns.
	Report(m *Meter, stop <-chan struct{})
}

// Bar is a Reporter for a terminal: a progress bar with the rate and the
// time left when the total is known, a count and the rate when it is not.
func Bar(w io.Writer) Reporter { return barReporter{w} }

type barReporter struct{ w io.Writer }

func (b barReporter) Report(m *Meter, stop <-chan struct{}) {
	total, known := m.Total()
	n := int64(-1)
	if known {
		n = total - m.Before()
	}
	desc := m.Label()
	if m.Before() > 0 {
		desc += fmt.Sprintf(" (resumed after %d)", m.Before())
	}
	bar := progressbar.NewOptions64(n,
		progressbar.OptionSetWriter(b.w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetItsString(m.Unit()),
		progressbar.OptionShowIts(),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionSetWidth(30),
	)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if total, ok := m.Total(); ok && total-m.Before() != bar.GetMax64() {
			bar.ChangeMax64(total - m.Before())
		}
		bar.Set64(m.Done() - m.Before())
		select {
		case <-stop:
			bar.Set64(m.Done() - m.Before())
			bar.Exit() // leaves the bar as it stands, then a new line
			fmt.Fprintln(b.w)
			return
		case <-t.C:
		}
	}
}

// Lines is a Reporter for logs: a plain line every interval (5 s when 0),
// with how many are done, the rate and, when the total is known, the time left.
func Lines(w io.Writer, every time.Duration) Reporter {
	if every <= 0 {
		every = 5 * time.Second
	}
	return linesReporter{w, every}
}

type linesReporter struct {
	w     io.Writer
	every time.Duration
}

func (l linesReporter) Report(m *Meter, stop <-chan struct{}) {
	t := time.NewTicker(l.every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return // the summary follows
		case <-t.C:
			fmt.Fprintln(l.w, ProgressLine(m))
		}
	}
}

// ProgressLine describes m in one line:
//
//	2026-11-22T10:00:05Z all shopdisplay: 2500/10000 ids (25%), 498 ids/s, eta 15s
func ProgressLine(m *Meter) string {
	s := fmt.Sprintf("%s %s: %d", time.Now().UTC().Format(time.RFC3339), m.Label(), m.Done())
	if total, ok := m.Total(); ok {
		pct := 100.0
		if total > 0 {
			pct = 100 * float64(m.Done()) / float64(total)
		}
		s += fmt.Sprintf("/%d %s (%.0f%%)", total, m.Unit(), pct)
	} else {
		s += " " + m.Unit()
	}
	s += fmt.Sprintf(", %.0f %s/s", m.Rate(), m.Unit())
	if eta, ok := m.ETA(); ok {
		s += ", eta " + eta.Round(time.Second).String()
	}
	return s
}
