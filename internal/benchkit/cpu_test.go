package benchkit

import (
	"context"
	"errors"
	"math"
	"os"
	"runtime"
	"testing"
	"time"
)

func TestCPUUseAddWeighsStealByLength(t *testing.T) {
	a := CPUUse{Self: 1, Redis: 2, Elastic: 3, Other: 4, Steal: 0.1, OK: true, PerProc: true, ticks: 300}
	b := CPUUse{Self: 1, Redis: 1, Elastic: 1, Other: 1, Steal: 0.5, OK: true, PerProc: false, ticks: 100}
	got := a.Add(b)
	want := CPUUse{Self: 2, Redis: 3, Elastic: 4, Other: 5, Steal: 0.2, OK: true, PerProc: false, ticks: 400}
	if math.Abs(got.Steal-want.Steal) > 1e-9 {
		t.Errorf("Steal = %v, want %v", got.Steal, want.Steal)
	}
	got.Steal = want.Steal
	if got != want {
		t.Errorf("Add = %+v, want %+v", got, want)
	}
	if z := (CPUUse{}).Add(b); z != b {
		t.Errorf("the zero CPUUse is not the identity of Add: %+v", z)
	}
}

func TestOthersShare(t *testing.T) {
	cpus := float64(runtime.NumCPU())
	for _, tc := range []struct {
		name    string
		u       CPUUse
		seconds float64
		want    float64
	}{
		{"half the machine", CPUUse{Other: cpus, OK: true}, 2, 0.5},
		{"no /proc/stat", CPUUse{Other: cpus}, 2, 0},
		{"no time", CPUUse{Other: cpus, OK: true}, 0, 0},
	} {
		if got := tc.u.OthersShare(tc.seconds); got != tc.want {
			t.Errorf("%s: OthersShare = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestNoise(t *testing.T) {
	cpus := float64(runtime.NumCPU())
	var n Noise
	if n.Share() != 0 || n.Noisy() {
		t.Errorf("zero Noise: share %v, noisy %v", n.Share(), n.Noisy())
	}
	n.Add(CPUUse{Other: 0.2 * cpus, OK: true}, 1)
	n.Add(CPUUse{Other: 100 * cpus}, 1) // not measured: left out
	if got := n.Share(); math.Abs(got-0.2) > 1e-9 || n.Noisy() {
		t.Errorf("share %v (want 0.2), noisy %v", got, n.Noisy())
	}
	n.Add(CPUUse{Other: 0.4 * cpus, OK: true}, 1)
	if got := n.Share(); math.Abs(got-0.3) > 1e-9 || !n.Noisy() {
		t.Errorf("share %v (want 0.3), noisy %v", got, n.Noisy())
	}
}

func TestSampleCPUCountsThisProcess(t *testing.T) {
	s := SampleCPU(PIDs{Redis: os.Getpid()})
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
	}
	u := s.Since()
	if u.Self <= 0 {
		t.Errorf("Self = %v after 50 ms of spinning", u.Self)
	}
	if u.PerProc {
		t.Error("PerProc without an Elasticsearch pid")
	}
	if _, err := os.Stat("/proc/stat"); err == nil && !u.OK {
		t.Error("OK is false though /proc/stat is there")
	}
}

func TestMeasureIdleEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	began := time.Now()
	if _, err := MeasureIdle(ctx, PIDs{}); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(began); d > 500*time.Millisecond {
		t.Errorf("took %v after its context ended", d)
	}
}

func TestProcessCPU(t *testing.T) {
	if got := ProcessCPU(0); got != 0 {
		t.Errorf("ProcessCPU(0) = %v, want 0", got)
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Fatalf("ProcessCPU reads /proc/<pid>/stat (Linux), which this machine lacks: %v", err)
	}
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
	}
	if got := ProcessCPU(os.Getpid()); got <= 0 {
		t.Errorf("ProcessCPU(this process) = %v after 50 ms of spinning", got)
	}
}
