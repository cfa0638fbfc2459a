package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of /proc/stat: 100 ticks a second on every Linux
// architecture Go supports.
const userHZ = 100

// servicePIDs are the process ids of Redis and Elasticsearch when they run on
// this machine (both report theirs), so that their CPU time is told apart
// from the noise of whatever else runs here; 0 when unknown.
type servicePIDs struct{ redis, es int }

// cpuSample is the CPU time spent so far: by this process (load generator,
// baselines and API), by Redis and Elasticsearch, by the whole machine, and
// stolen by the hypervisor. (A copy of cmd/bench's, which is package main.)
type cpuSample struct {
	pids        servicePIDs
	self        time.Duration
	redis, es   uint64 // ticks; 0 when the pid is unknown
	busy, steal uint64 // ticks of all CPUs
	total       uint64
	ok          bool // /proc/stat was read
}

// cpuUse is the CPU spent between two samples, in CPU-seconds.
type cpuUse struct {
	self    float64 // this process
	redis   float64
	es      float64
	other   float64 // every other process: noise from whatever shares the machine
	steal   float64 // fraction of the machine's CPU time the hypervisor took, 0..1
	ticks   float64 // of all CPUs in the period, busy or not
	ok      bool    // /proc/stat was read
	perProc bool    // Redis and Elasticsearch were told apart
}

func sampleCPU(pids servicePIDs) cpuSample {
	s := cpuSample{pids: pids}
	s.redis = procTicks(pids.redis)
	s.es = procTicks(pids.es)
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

// since is the CPU spent from s until now.
func (s cpuSample) since() cpuUse {
	now := sampleCPU(s.pids)
	u := cpuUse{self: (now.self - s.self).Seconds(), ok: s.ok && now.ok}
	if !u.ok {
		return u
	}
	u.perProc = s.redis > 0 && now.redis > 0 && s.es > 0 && now.es > 0
	if u.perProc {
		u.redis = float64(now.redis-s.redis) / userHZ
		u.es = float64(now.es-s.es) / userHZ
	}
	busy := float64(now.busy-s.busy) / userHZ
	u.other = max(0, busy-u.self-u.redis-u.es)
	if total := now.total - s.total; total > 0 {
		u.steal = float64(now.steal-s.steal) / float64(total)
		u.ticks = float64(total)
	}
	return u
}

// add sums the uses of two disjoint periods; steal becomes their mean
// weighted by the length of each.
func (u cpuUse) add(v cpuUse) cpuUse {
	if u == (cpuUse{}) {
		return v
	}
	steal := u.steal
	if u.ticks+v.ticks > 0 {
		steal = (u.steal*u.ticks + v.steal*v.ticks) / (u.ticks + v.ticks)
	}
	return cpuUse{
		self: u.self + v.self, redis: u.redis + v.redis, es: u.es + v.es, other: u.other + v.other,
		steal: steal, ticks: u.ticks + v.ticks, ok: u.ok && v.ok, perProc: u.perProc && v.perProc,
	}
}
