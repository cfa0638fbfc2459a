package benchkit

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of /proc/stat: 100 ticks a second on every Linux
// architecture Go supports.
const userHZ = 100

// PIDs are the process ids of Redis and Elasticsearch when they run on this
// machine (both report theirs), so that their CPU time is told apart from the
// noise of whatever else runs here; 0 when unknown.
type PIDs struct{ Redis, Elastic int }

// CPUSample is the CPU time spent so far: by this process (the benchmark and
// whatever it embeds: servers under test, load generators, fakes), by Redis
// and Elasticsearch, by the whole machine, and stolen by the hypervisor.
// Take one with SampleCPU before the timed part, and call Since after it.
type CPUSample struct {
	pids        PIDs
	self        time.Duration
	redis, es   uint64 // ticks; 0 when the pid is unknown
	busy, steal uint64 // ticks of all CPUs
	total       uint64
	ok          bool // /proc/stat was read
}

// CPUUse is the CPU spent between two samples, in CPU-seconds. Its zero value
// is no use at all, and the identity of Add.
type CPUUse struct {
	Self    float64 // this process
	Redis   float64 // 0 unless PerProc
	Elastic float64 // 0 unless PerProc
	Other   float64 // every other process: noise from whatever shares the machine
	Steal   float64 // fraction of the machine's CPU time the hypervisor took, 0..1
	OK      bool    // /proc/stat was read: without it, only Self is known
	PerProc bool    // Redis and Elasticsearch were told apart; if not, they are in Other

	ticks float64 // of all CPUs in the period, busy or not: the weight of Steal in Add
}

// SampleCPU samples the CPU time spent so far by this process, by the
// processes of pids, and by the machine. Whatever cannot be read (no /proc
// on this system, a process gone) is left out, never an error: the figures
// it feeds are context for a benchmark's rates, not the rates themselves.
func SampleCPU(pids PIDs) CPUSample {
	s := CPUSample{pids: pids}
	s.redis = procTicks(pids.Redis)
	s.es = procTicks(pids.Elastic)
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	f, err := os.Open("/proc/stat")
	if err != nil {
		return s
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return s
	}
	// cpu user nice system idle iowait irq softirq steal guest guest_nice
	fields := strings.Fields(sc.Text())
	if len(fields) < 9 || fields[0] != "cpu" {
		return s
	}
	var v [8]uint64
	for i := range v {
		n, err := strconv.ParseUint(fields[i+1], 10, 64)
		if err != nil {
			return s
		}
		v[i] = n
	}
	s.busy = v[0] + v[1] + v[2] + v[5] + v[6]
	s.steal = v[7]
	for _, n := range v {
		s.total += n
	}
	s.ok = true
	return s
}

// ProcessCPU is the user and system CPU time process pid has spent so far,
// such as a server under test that runs as a process of its own; 0 when pid
// is 0 or /proc cannot tell (the process is gone, or there is no /proc). Its
// resolution is /proc's tick, 10 ms.
func ProcessCPU(pid int) time.Duration {
	return time.Duration(procTicks(pid)) * (time.Second / userHZ)
}

// procTicks is the user and system CPU time of process pid, in ticks; 0 when
// pid is 0 or its stat cannot be read.
func procTicks(pid int) uint64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// pid (comm) state ppid ... utime stime: fields 14 and 15; comm may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return ut + st
}

// Since is the CPU spent from s until now.
func (s CPUSample) Since() CPUUse {
	now := SampleCPU(s.pids)
	u := CPUUse{Self: (now.self - s.self).Seconds(), OK: s.ok && now.ok}
	if !u.OK {
		return u
	}
	u.PerProc = s.redis > 0 && now.redis > 0 && s.es > 0 && now.es > 0
	if u.PerProc {
		u.Redis = float64(now.redis-s.redis) / userHZ
		u.Elastic = float64(now.es-s.es) / userHZ
	}
	busy := float64(now.busy-s.busy) / userHZ
	u.Other = max(0, busy-u.Self-u.Redis-u.Elastic)
	if total := now.total - s.total; total > 0 {
		u.Steal = float64(now.steal-s.steal) / float64(total)
		u.ticks = float64(total)
	}
	return u
}

// Add sums the uses of two disjoint periods, such as the turns one row is
// measured in; Steal becomes their mean weighted by the length of each.
func (u CPUUse) Add(v CPUUse) CPUUse {
	if u == (CPUUse{}) {
		return v
	}
	steal := u.Steal
	if u.ticks+v.ticks > 0 {
		steal = (u.Steal*u.ticks + v.Steal*v.ticks) / (u.ticks + v.ticks)
	}
	return CPUUse{
		Self: u.Self + v.Self, Redis: u.Redis + v.Redis, Elastic: u.Elastic + v.Elastic, Other: u.Other + v.Other,
		Steal: steal, ticks: u.ticks + v.ticks, OK: u.OK && v.OK, PerProc: u.PerProc && v.PerProc,
	}
}

// OthersShare is the share of the machine (CPUs × seconds) that other
// processes took in a period of that many seconds; 0 when not known.
func (u CPUUse) OthersShare(seconds float64) float64 {
	if !u.OK || seconds == 0 {
		return 0
	}
	return u.Other / (float64(runtime.NumCPU()) * seconds)
}

// MeasureIdle is the CPU spent in the second from now, before a run starts:
// what other processes take then is noise that no baseline of the run will
// see coming. It returns early with ctx's error when ctx ends.
func MeasureIdle(ctx context.Context, pids PIDs) (CPUUse, error) {
	s := SampleCPU(pids)
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return CPUUse{}, ctx.Err()
	case <-t.C:
	}
	return s.Since(), nil
}

// Machine is the first lines of a report's header: when and with which Go
// it ran, on how many CPUs of which host, and how busy other processes kept
// the machine in the second before the run (idle, from MeasureIdle).
func Machine(idle CPUUse) []string {
	host, _ := os.Hostname()
	busy := "not measured (no /proc/stat)"
	if idle.OK {
		busy = fmt.Sprintf("%.2f of %d CPUs busy with other processes, %.0f%% stolen", idle.Other, runtime.NumCPU(), 100*idle.Steal)
	}
	return []string{
		fmt.Sprintf("%s, %s, %d CPUs (GOMAXPROCS %d), host %s", time.Now().Format("2006-01-02 15:04"), runtime.Version(), runtime.NumCPU(), runtime.GOMAXPROCS(0), host),
		"in the second before the run: " + busy,
	}
}

// Noise adds up what other processes took of the machine while a run's rows
// were timed. The zero value is ready to use.
type Noise struct {
	other    float64 // CPU-seconds
	capacity float64 // CPUs × seconds
}

// Add counts a period of that many seconds in which u was spent. A use
// without /proc/stat figures adds nothing.
func (n *Noise) Add(u CPUUse, seconds float64) {
	if u.OK {
		n.other += u.Other
		n.capacity += float64(runtime.NumCPU()) * seconds
	}
}

// Share is the share of the machine other processes took over every period
// added; 0 when none was.
func (n Noise) Share() float64 {
	if n.capacity == 0 {
		return 0
	}
	return n.other / n.capacity
}

// Noisy reports whether other processes took more than a quarter of the
// machine: then every figure of the run is low, and even its ratios are only
// roughly comparable with another run's.
func (n Noise) Noisy() bool { return n.Share() > 0.25 }
