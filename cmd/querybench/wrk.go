package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/readside/readside/internal/benchkit"
)

// script is wrk's Lua script: a request() that draws each request's path at
// random, of the kind named by the script's first argument, in the same
// shapes as kinds (ids s000001…, the dataset's cities and word prefixes).
// Each thread seeds its generator with the run's seed and its number.
const script = `-- querybench: wrk -s this.lua URL -- KIND PATH SEED
local n = %d
local cities = {%s}
local prefixes = {%s}
local page = %d
local kind, path

local function id() return string.format("s%%06d", math.random(n)) end
local gen = {}
gen.detail = function() return path .. "/" .. id() end
gen.multiget = function()
  local seen, ids = {}, {}
  while #ids < page do
    local i = id()
    if not seen[i] then seen[i] = true; ids[#ids + 1] = i end
  end
  return path .. "?ids=" .. table.concat(ids, ",")
end
gen.list = function() return path .. "?city=" .. cities[math.random(#cities)] .. "&sort=-rating&limit=" .. page end
gen.search = function() return path .. "?q=" .. prefixes[math.random(#prefixes)] .. "&limit=" .. page end
gen.listsearch = function() if math.random(2) == 1 then return gen.list() end return gen.search() end

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

function init(args)
  kind, path = args[1], args[2]
  if gen[kind] == nil then error("querybench: unknown kind " .. tostring(kind)) end
  math.randomseed(tonumber(args[3]) * 1000 + thread_number)
  for _ = 1, 10 do math.random() end
end

function request()
  return wrk.format("GET", gen[kind]())
end
`

// writeScript writes the Lua script of this run's documents to the work directory.
func (b *bench) writeScript() error {
	quote := func(xs []string) string {
		q := make([]string, len(xs))
		for i, x := range xs {
			q[i] = strconv.Quote(url.QueryEscape(x)) // ASCII: a Lua string too
		}
		return strings.Join(q, ",")
	}
	lua := fmt.Sprintf(script, b.data.n, quote(b.data.cities), quote(b.data.prefixes), pageSize)
	return os.WriteFile(filepath.Join(b.dir, "requests.lua"), []byte(lua), 0o644)
}

// wrkResult is what wrk printed of one run.
type wrkResult struct {
	requests int     // answers, whatever their status
	seconds  float64 // as wrk measured the run
	perSec   float64 // Requests/sec: requests ÷ seconds
	non2xx   int     // "Non-2xx or 3xx responses"
	socket   socketErrors
	// The latency distribution (--latency), of every answer.
	p50, p75, p90, p99 time.Duration
}

type socketErrors struct{ connect, read, write, timeout int }

func (s socketErrors) total() int { return s.connect + s.read + s.write + s.timeout }

func (s socketErrors) String() string {
	return fmt.Sprintf("connect %d, read %d, write %d, timeout %d", s.connect, s.read, s.write, s.timeout)
}

// ok is the answers with a 2xx or 3xx status.
func (w wrkResult) ok() int { return w.requests - w.non2xx }

var (
	wrkTotal   = regexp.MustCompile(`(?m)^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),`)
	wrkPerSec  = regexp.MustCompile(`(?m)^Requests/sec:\s+([\d.]+)`)
	wrkNon2xx  = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses: (\d+)`)
	wrkSocket  = regexp.MustCompile(`(?m)^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkLatency = regexp.MustCompile(`(?m)^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$`)
)

// parseWrk reads wrk's report (with --latency). The counts of non-2xx
// answers and socket errors are 0 when wrk leaves their lines out, as it
// does when there are none.
func parseWrk(out string) (wrkResult, error) {
	var w wrkResult
	m := wrkTotal.FindStringSubmatch(out)
	if m == nil {
		return w, fmt.Errorf("no \"N requests in T\" line in wrk's output:\n%s", out)
	}
	w.requests, _ = strconv.Atoi(m[1])
	w.seconds = wrkDuration(m[2], m[3]).Seconds()
	if m := wrkPerSec.FindStringSubmatch(out); m != nil {
		w.perSec, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		w.non2xx, _ = strconv.Atoi(m[1])
	}
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		n := make([]int, 4)
		for i := range n {
			n[i], _ = strconv.Atoi(m[i+1])
		}
		w.socket = socketErrors{connect: n[0], read: n[1], write: n[2], timeout: n[3]}
	}
	found := 0
	for _, m := range wrkLatency.FindAllStringSubmatch(out, -1) {
		d := wrkDuration(m[2], m[3])
		switch m[1] {
		case "50":
			w.p50 = d
		case "75":
			w.p75 = d
		case "90":
			w.p90 = d
		case "99":
			w.p99 = d
		}
		found++
	}
	if found != 4 && w.requests > 0 {
		return w, fmt.Errorf("no latency distribution in wrk's output (was it run with --latency?):\n%s", out)
	}
	return w, nil
}

// wrkDuration is a figure of wrk's with its unit, such as 1.90 and "ms".
func wrkDuration(figure, unit string) time.Duration {
	f, _ := strconv.ParseFloat(figure, 64)
	scale := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour}[unit]
	return time.Duration(f * float64(scale))
}

// load is one wrk run against a server, with the CPU it took.
type load struct {
	w   wrkResult
	cpu runCPU
}

// runCPU is the CPU spent during one run, in CPU-seconds: by the server
// measured, by wrk, by Redis and Elasticsearch, and by every other process.
type runCPU struct {
	server, wrk, redis, es, others float64
	steal                          float64 // share of the machine the hypervisor took
	ok, perProc                    bool    // as benchkit.CPUUse's OK and PerProc
}

// runWrk runs wrk against p for d with conns connections and requests of
// kind (a function of the Lua script), seeded with seed.
func (b *bench) runWrk(ctx context.Context, p *proc, kind string, d time.Duration, conns, seed int) (load, error) {
	path := "/v1/" + b.ns
	cmd := exec.CommandContext(ctx, b.wrk, "-t", strconv.Itoa(min(b.s.threads, conns)), "-c", strconv.Itoa(conns),
		"-d", fmt.Sprintf("%ds", int(d/time.Second)), "--latency", "--timeout", "10s",
		"-s", filepath.Join(b.dir, "requests.lua"), p.url+path, "--", kind, path, strconv.Itoa(seed))
	sample := benchkit.SampleCPU(b.stores.PIDs)
	server := benchkit.ProcessCPU(p.pid())
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return load{}, ctx.Err()
		}
		return load{}, fmt.Errorf("wrk: %w:\n%s", err, out)
	}
	use := sample.Since()
	var l load
	l.cpu = runCPU{
		server: (benchkit.ProcessCPU(p.pid()) - server).Seconds(),
		wrk:    (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds(),
		redis:  use.Redis, es: use.Elastic, steal: use.Steal, ok: use.OK, perProc: use.PerProc,
	}
	// use.Other is all but this process, Redis and Elasticsearch: wrk and
	// the server are in it.
	l.cpu.others = max(0, use.Other-l.cpu.server-l.cpu.wrk)
	if l.w, err = parseWrk(string(out)); err != nil {
		return l, err
	}
	if err := p.alive(); err != nil {
		return l, err
	}
	return l, nil
}
