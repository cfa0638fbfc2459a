package main

// Tests of the projector binary on a 3-server NATS cluster (embedded in the
// test process): stream replicas, loud failure when the stream's servers
// go, and the loss of the stream's leader while events flow.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
)

// newClusterWorld is newWorld on the cluster c. The streams do not exist
// yet: the projector creates them.
func newClusterWorld(t *testing.T, c *testenv.NATSCluster) *world {
	t.Helper()
	projectorBinary(t)
	return newWorldOn(t, &testenv.JetStream{URL: c.URLs()})
}

// useStreams sets w.streams to the streams the projector made, with their
// replicas, once it runs.
func (w *world) useStreams(replicas int) {
	w.t.Helper()
	var err error
	w.streams, err = stream.Ensure(context.Background(), w.jsc, stream.Config{Replicas: replicas}, w.def.AllSubjects())
	if err != nil {
		w.t.Fatal(err)
	}
}

// probe asks the admin server at addr for path, returning the status code
// and body (0 when nothing answers).
func probe(addr, path string) (int, string) {
	c := http.Client{Timeout: 3 * time.Second}
	res, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// readyz is the projector's /readyz body.
type readyz struct {
	Status  string            `json:"status"`
	Checks  map[string]string `json:"checks"`
	Reasons map[string]string `json:"reasons"`
}

func getReadyz(t *testing.T, addr string) (int, readyz) {
	t.Helper()
	code, body := probe(addr, "/readyz")
	var r readyz
	if code != 0 {
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("/readyz %d: %q is not its JSON: %v", code, body, err)
		}
	}
	return code, r
}

// waitReady waits until the projector p answers /readyz with 200.
func (w *world) waitReady(p *proc, addr string, d time.Duration) {
	w.t.Helper()
	w.waitFor(d, "the projector is ready", func() (bool, string) {
		if p.exited() {
			w.t.Fatalf("the projector exited: %v", p.err)
		}
		code, body := probe(addr, "/readyz")
		return code == 200, fmt.Sprintf("/readyz %d %s", code, body)
	})
}

// metric returns the value of the series named exactly as line begins
// (name and labels) in the projector's /metrics, or -1.
func metric(addr, series string) float64 {
	_, body := probe(addr, "/metrics")
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// replicasOf reports how each stream and consumer is configured and held:
// "name: configured N, held by M servers" — from JetStream's info.
func (w *world) replicasOf(names []string, consumers []string) map[string]string {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := map[string]string{}
	held := func(c *jetstream.ClusterInfo) int {
		if c == nil || c.Leader == "" {
			return 0
		}
		return 1 + len(c.Replicas)
	}
	for _, n := range names {
		s, err := w.jsc.Stream(ctx, n)
		if err != nil {
			out[n] = err.Error()
			continue
		}
		out[n] = fmt.Sprintf("configured %d, held by %d", s.CachedInfo().Config.Replicas, held(s.CachedInfo().Cluster))
	}
	for _, n := range consumers {
		c, err := w.jsc.Consumer(ctx, w.streamOf(n), n)
		if err != nil {
			out[n] = err.Error()
			continue
		}
		out[n] = fmt.Sprintf("configured %d, held by %d", c.CachedInfo().Config.Replicas, held(c.CachedInfo().Cluster))
	}
	return out
}

// waitReplicas waits until the events and dead-letter streams and the
// projection's four consumers are configured with, and held by, n servers.
func (w *world) waitReplicas(n int) {
	w.t.Helper()
	names := []string{"READSIDE_EVENTS", "READSIDE_OWN", "READSIDE_DLQ"}
	consumers := w.consumers()
	want := fmt.Sprintf("configured %d, held by %d", n, n)
	w.waitFor(30*time.Second, fmt.Sprintf("streams and consumers on %d servers", n), func() (bool, string) {
		got := w.replicasOf(names, consumers)
		for name, s := range got {
			if s != want {
				return false, fmt.Sprintf("%s: %s, want %s (all: %v)", name, s, want, got)
			}
		}
		return true, ""
	})
}

// consumers are the projection's four durable consumers.
func (w *world) consumers() []string {
	return []string{stream.ConsumerName(w.def.Name), stream.ReprojectConsumerName(w.def.Name), stream.ReplayConsumerName(w.def.Name), stream.RetryConsumerName(w.def.Name)}
}

// streamOf is the stream of one of the projection's durable consumers under
// the projector's default streams: the live one on the events stream, the
// others on the own stream.
func (w *world) streamOf(consumer string) string {
	if consumer == stream.ConsumerName(w.def.Name) {
		return "READSIDE_EVENTS"
	}
	return "READSIDE_OWN"
}

// jszReplicas reads server i's /jsz and returns, for each stream and
// consumer it holds, its configured replicas.
func jszReplicas(t *testing.T, c *testenv.NATSCluster, i int) map[string]int {
	t.Helper()
	res, err := http.Get(c.MonitorURL(i) + "/jsz?streams=true&consumers=true&config=true")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var info server.JSInfo
	if err := json.NewDecoder(res.Body).Decode(&info); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, acc := range info.AccountDetails {
		for _, sd := range acc.Streams {
			if sd.Config != nil {
				out[sd.Name] = sd.Config.Replicas
			}
			for _, ci := range sd.Consumer {
				if ci.Config != nil {
					out[ci.Name] = ci.Config.Replicas
				}
			}
		}
	}
	return out
}

// -stream-replicas 3 on a 3-server cluster creates the events and
// dead-letter streams, the own stream and the four consumers on every server, as JetStream
// and every server's /jsz show. Started again with 1, the projector changes
// them and logs it; with 5, more than the servers, it refuses to start and
// says how to go on, leaving the streams as they are.
func TestStreamReplicasOnCluster(t *testing.T) {
	t.Parallel()
	c := testenv.StartNATSCluster(t, 3)
	w := newClusterWorld(t, c)
	consumers := w.consumers()

	admin := freeAddr(t)
	p := w.start("r3", "-stream-replicas", "3", "-metrics-addr", admin)
	w.waitReady(p, admin, 60*time.Second)
	w.waitReplicas(3)
	for i := range 3 {
		got := jszReplicas(t, c, i)
		for _, name := range append([]string{"READSIDE_EVENTS", "READSIDE_OWN", "READSIDE_DLQ"}, consumers...) {
			if got[name] != 3 {
				t.Errorf("n%d /jsz: %s has %d replicas, want 3 (all: %v)", i, name, got[name], got)
			}
		}
	}
	t.Logf("n0 /jsz: %v", jszReplicas(t, c, 0))
	if log := p.logText(); strings.Contains(log, "level=WARN") || !strings.Contains(log, "replicas=3") {
		t.Errorf("creating the streams: want no WARN line and the replicas in the start line:\n%s", log)
	}
	p.cmd.Process.Signal(os.Interrupt)
	<-p.done

	p = w.start("r1", "-stream-replicas", "1", "-metrics-addr", admin)
	w.waitReady(p, admin, 60*time.Second)
	w.waitReplicas(1)
	log := p.logText()
	for _, name := range []string{"READSIDE_EVENTS", "READSIDE_OWN", "READSIDE_DLQ"} {
		if !regexp.MustCompile(`level=WARN msg="stream replicas changed[^"]*" stream=` + name + ` from=3 to=1`).MatchString(log) {
			t.Errorf("no WARN line for %s from 3 to 1 replicas:\n%s", name, log)
		}
	}
	for _, name := range consumers {
		if !regexp.MustCompile(`level=WARN msg="consumer replicas changed" consumer=` + name + ` stream=` + w.streamOf(name) + ` from=3 to=1`).MatchString(log) {
			t.Errorf("no WARN line for consumer %s from 3 to 1 replicas:\n%s", name, log)
		}
	}
	p.cmd.Process.Signal(os.Interrupt)
	<-p.done

	p = w.start("r5", "-stream-replicas", "5", "-metrics-addr", admin)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatal("with -stream-replicas 5 on 3 servers, the projector still runs after 60s")
	}
	if p.err == nil {
		t.Errorf("with -stream-replicas 5 on 3 servers, the projector exited with code 0")
	}
	log = p.logText()
	for _, want := range []string{"READSIDE_EVENTS has 1 replica(s) and 5 are wanted", "no suitable peers for placement",
		"-stream-replicas 1", "nats stream edit READSIDE_EVENTS --replicas 5"} {
		if !strings.Contains(log, want) {
			t.Errorf("the refusal does not mention %q:\n%s", want, log)
		}
	}
	w.waitReplicas(1)
}

// With the events stream on one server of three (one replica, the default),
// losing that server is loud: the projector logs a WARN line naming the
// stream, its /readyz answers 503 with "stream":"down" and the reason
// naming the stream (and the gauge says so) while /livez stays 200; once the server is back, /readyz is 200 again.
func TestStreamLossIsLoud(t *testing.T) {
	t.Parallel()
	c := testenv.StartNATSCluster(t, 3)
	w := newClusterWorld(t, c)
	admin := freeAddr(t)
	p := w.start("projector", "-metrics-addr", admin)
	w.waitReady(p, admin, 60*time.Second)
	if code, r := getReadyz(t, admin); r.Status != "ready" || r.Checks["stream"] != "up" || r.Checks["consumers"] != "up" ||
		r.Checks["nats"] != "up" || r.Checks["redis"] != "up" || r.Checks["elasticsearch"] != "up" {
		t.Errorf("ready: /readyz %d %+v, want every check up", code, r)
	}
	if v := metric(admin, "readside_nats_connected"); v != 1 {
		t.Errorf("readside_nats_connected %v, want 1", v)
	}

	leader := c.StreamLeader(t, w.jsc, "READSIDE_EVENTS")
	t.Logf("the events stream lives on n%d; shutting it down", leader)
	c.Shutdown(leader)
	lost := time.Now()
	w.waitFor(30*time.Second, "/readyz reports the stream down", func() (bool, string) {
		code, r := getReadyz(t, admin)
		return code == http.StatusServiceUnavailable && r.Status == "not ready" && r.Checks["stream"] == "down" &&
				strings.Contains(r.Reasons["stream"], "stream READSIDE_EVENTS: "),
			fmt.Sprintf("/readyz %d %+v", code, r)
	})
	_, r := getReadyz(t, admin)
	t.Logf("/readyz: %+v", r)
	t.Logf("/readyz said 503 %s after the server went", time.Since(lost).Round(time.Millisecond))
	w.waitFor(10*time.Second, "a WARN line names the stream", func() (bool, string) {
		return regexp.MustCompile(`level=WARN msg="JetStream stream unavailable[^"]*" stream=READSIDE_EVENTS err=`).MatchString(p.logText()), "none yet"
	})
	if code, body := probe(admin, "/livez"); code != 200 {
		t.Errorf("/livez with the stream down: %d %s, want 200", code, body)
	}
	if code, _ := probe(admin, "/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz with the stream down: %d, want 503 as /readyz", code)
	}
	if v := metric(admin, `readside_jetstream_available{name="READSIDE_EVENTS",what="stream"}`); v != 0 {
		t.Errorf(`readside_jetstream_available{what="stream"} %v, want 0`, v)
	}
	if n := len(regexp.MustCompile(`msg="JetStream stream unavailable[^"]*" stream=READSIDE_EVENTS `).FindAllString(p.logText(), -1)); n != 1 {
		t.Errorf("%d WARN lines for the events stream, want 1 however many checks", n)
	}

	c.Restart(t, leader)
	back := time.Now()
	w.waitFor(60*time.Second, "/readyz is 200 again", func() (bool, string) {
		code, r := getReadyz(t, admin)
		return code == 200, fmt.Sprintf("/readyz %d %+v", code, r)
	})
	t.Logf("/readyz said 200 %s after the server came back", time.Since(back).Round(time.Millisecond))
	if !strings.Contains(p.logText(), `level=INFO msg="JetStream stream available again" stream=READSIDE_EVENTS`) {
		t.Errorf("no INFO line for the stream's return")
	}
	if v := metric(admin, `readside_jetstream_available{name="READSIDE_EVENTS",what="stream"}`); v != 1 {
		t.Errorf(`readside_jetstream_available{what="stream"} %v, want 1`, v)
	}

	// The stream works again: an event becomes a document.
	w.useStreams(1)
	w.api.Put("1", "shop one")
	w.publish([]string{"1"}, func(int) int { return 1 })
	w.waitFor(30*time.Second, "the event after the return is projected", func() (bool, string) { return w.converged([]string{"1"}) })
}

// Losing the server that leads the 3-replica events stream while events
// flow loses nothing: every id converges in Redis and Elasticsearch and
// nothing is dead-lettered. The test measures the pause: from the loss
// until the consumer's ack floor moves again, the longest wait of a
// publisher, and the time until every id has converged. The server goes
// either as nats-server shuts down (SIGTERM: it hands its leaderships over
// first) or as it crashes (SIGKILL of a nats-server process: its peers must
// notice and elect).
func TestStreamLeaderLossWhileEventsFlow(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"shutdown", "crash"} {
		t.Run(how, func(t *testing.T) { testLeaderLoss(t, how) })
	}
}

func testLeaderLoss(t *testing.T, how string) {
	var c *testenv.NATSCluster
	if how == "crash" {
		c = testenv.StartNATSClusterProcesses(t, 3)
	} else {
		c = testenv.StartNATSCluster(t, 3)
	}
	w := newClusterWorld(t, c)
	admin := freeAddr(t)
	p := w.start("projector", "-stream-replicas", "3", "-metrics-addr", admin)
	w.waitReady(p, admin, 60*time.Second)
	w.useStreams(3)

	const nIDs, nEvents, rate = 300, 4000, 500 // events per second
	ids := shopIDs(nIDs)
	for _, id := range ids {
		w.api.Put(id, "shop "+id)
	}
	_, pubJS := c.Connect(t)
	_, watchJS := c.Connect(t)
	consumer := stream.ConsumerName(w.def.Name)

	// The publisher changes a shop, then announces it, retrying until
	// JetStream acknowledges the event (a lost ack may store it twice:
	// harmless, the projector coalesces).
	var (
		mu        sync.Mutex
		lastPub   time.Time
		pubGap    time.Duration // the longest wait between two stored events
		published atomic.Int64
	)
	pubDone := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		defer close(pubDone)
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		for k := range nEvents {
			<-tick.C
			id := ids[(k*7)%nIDs]
			w.api.Put(id, fmt.Sprintf("shop %s change %d", id, k))
			for {
				pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
				_, err := pubJS.Publish(pctx, w.ns+".shop.changed."+id, nil)
				pcancel()
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			now := time.Now()
			mu.Lock()
			if !lastPub.IsZero() && now.Sub(lastPub) > pubGap {
				pubGap = now.Sub(lastPub)
			}
			lastPub = now
			mu.Unlock()
			published.Add(1)
		}
	}()

	// The watcher samples the consumer's ack floor every 50ms.
	type sample struct {
		at    time.Time
		floor uint64
	}
	var (
		smu     sync.Mutex
		samples []sample
	)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for ctx.Err() == nil {
			ictx, icancel := context.WithTimeout(ctx, time.Second)
			cons, err := watchJS.Consumer(ictx, "READSIDE_EVENTS", consumer)
			icancel()
			if err == nil {
				smu.Lock()
				samples = append(samples, sample{time.Now(), cons.CachedInfo().AckFloor.Stream})
				smu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	// Kill the stream's leader once events flow and are acked.
	w.waitFor(30*time.Second, "events are acked", func() (bool, string) {
		smu.Lock()
		defer smu.Unlock()
		return len(samples) > 0 && samples[len(samples)-1].floor > 200, "ack floor not past 200"
	})
	leader := c.StreamLeader(t, w.jsc, "READSIDE_EVENTS")
	smu.Lock()
	floorAtKill := samples[len(samples)-1].floor
	smu.Unlock()
	t.Logf("%s of n%d, the events stream's leader, after %d events published (ack floor %d)", how, leader, published.Load(), floorAtKill)
	killed := time.Now()
	if how == "crash" {
		c.Kill(t, leader)
	} else {
		c.Shutdown(leader)
	}
	gone := time.Since(killed)
	after := c.StreamLeader(t, watchJS, "READSIDE_EVENTS")
	leaderAgain := time.Since(killed)

	<-pubDone
	pubEnded := time.Now()
	if published.Load() != nEvents {
		t.Fatalf("published %d of %d events", published.Load(), nEvents)
	}
	pubDoneAt := time.Since(killed)
	w.waitFor(120*time.Second, "every id converged in Redis and Elasticsearch", func() (bool, string) {
		if p.exited() {
			t.Fatalf("the projector exited: %v", p.err)
		}
		return w.converged(ids)
	})
	converged := time.Since(killed)
	cancel()
	<-watchDone

	// The pause: the longest time the ack floor stood still while events
	// were published, from a second before the loss; events were stored
	// and acked many times a second otherwise.
	var stall time.Duration
	var stallEnd time.Time
	smu.Lock()
	var lastMove time.Time
	var lastFloor uint64
	for _, s := range samples {
		if s.at.Before(killed.Add(-time.Second)) || s.at.After(pubEnded) {
			continue
		}
		if lastMove.IsZero() || s.floor != lastFloor {
			if !lastMove.IsZero() && s.at.Sub(lastMove) > stall {
				stall, stallEnd = s.at.Sub(lastMove), s.at
			}
			lastMove, lastFloor = s.at, s.floor
		}
	}
	smu.Unlock()
	mu.Lock()
	gap := pubGap
	mu.Unlock()
	t.Logf("%s: the server was gone %s after the signal; n%d led the stream %s after it", how, gone.Round(time.Millisecond), after, leaderAgain.Round(time.Millisecond))
	t.Logf("%s: the ack floor stood still for at most %s, moving again %s after it; the longest wait between two stored publishes was %s",
		how, stall.Round(time.Millisecond), stallEnd.Sub(killed).Round(time.Millisecond), gap.Round(time.Millisecond))
	t.Logf("%s: %d events over %d ids at %d/s: publishing ended %s and every id converged %s after it",
		how, nEvents, nIDs, rate, pubDoneAt.Round(time.Millisecond), converged.Round(time.Millisecond))
	if stallEnd.IsZero() {
		t.Errorf("the ack floor never moved after the %s", how)
	}
	w.waitDrained(30 * time.Second)
	w.checkNoDeadLetters()
	for line := range strings.SplitSeq(p.logText(), "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			t.Logf("%s: the projector logged: %s", how, line)
		}
	}
}
