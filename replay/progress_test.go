package replay_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/replay"
)

// sampler is a Reporter that keeps what it saw of the Meter.
type sampler struct {
	mu      sync.Mutex
	label   string
	totals  []int64
	dones   []int64
	befores []int64
}

func (s *sampler) Report(m *replay.Meter, stop <-chan struct{}) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	sample := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		total, _ := m.Total()
		s.label = m.Label()
		s.totals, s.dones, s.befores = append(s.totals, total), append(s.dones, m.Done()), append(s.befores, m.Before())
	}
	for {
		sample()
		select {
		case <-stop:
			sample()
			return
		case <-t.C:
		}
	}
}

// A run shows its progress while it goes: the total when it is known, the
// count rising to it; the last sample is the end.
func TestProgressOfARun(t *testing.T) {
	r, _ := newShopRig(t)
	s := &sampler{}
	ids := replay.IDArgs(idSpan(1, 300))
	if _, err := r.env.IDs(rigCtx(t), r.def, ids, replay.Options{Rate: 1000, Progress: s}); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.label != "ids "+r.def.Name || s.totals[0] != 300 || s.dones[len(s.dones)-1] != 300 {
		t.Fatalf("label %q, totals %v, dones %v", s.label, s.totals, s.dones)
	}
	between := 0
	for i, d := range s.dones {
		if i > 0 && d < s.dones[i-1] {
			t.Fatalf("progress went back: %v", s.dones)
		}
		if d > 0 && d < 300 {
			between++
		}
	}
	if between == 0 {
		t.Errorf("no sample between start and end: %v", s.dones)
	}
}

// Without a terminal, progress is a plain line every interval, with the
// rate and, when the total is known, the time left.
func TestProgressLines(t *testing.T) {
	r, _ := newShopRig(t)
	var out testenv.Buffer
	ids := replay.IDArgs(idSpan(1, 200))
	if _, err := r.env.IDs(rigCtx(t), r.def, ids, replay.Options{Rate: 400, Progress: replay.Lines(&out, 100*time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 2 {
		t.Fatalf("%d lines in half a second, want a few:\n%s", len(lines), out.String())
	}
	complete := 0
	for _, l := range lines {
		if strings.Contains(l, "ids "+r.def.Name+": ") && strings.Contains(l, "/200 ids (") && strings.Contains(l, " ids/s, eta ") {
			complete++
		}
	}
	if complete == 0 {
		t.Errorf("no line has the count, the rate and the eta:\n%s", out.String())
	}
}

// On a terminal, a progress bar.
func TestProgressBar(t *testing.T) {
	r, _ := newShopRig(t)
	var out testenv.Buffer
	if _, err := r.env.IDs(rigCtx(t), r.def, replay.IDArgs(idSpan(1, 100)), replay.Options{Rate: -1, Progress: replay.Bar(&out)}); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "ids "+r.def.Name) || !strings.Contains(s, "100/100") || !strings.Contains(s, "100%") {
		t.Errorf("bar output %q", s)
	}
}
