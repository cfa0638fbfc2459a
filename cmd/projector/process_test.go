package main

// Tests of the projector binary as a process: built once, run against an
// embedded JetStream, the test Redis and Elasticsearch, and a fake shop API.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/elasticindex"
	"github.com/readside/readside/internal/sink/redisstore"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
)

// binary is the projector built once for every test of the package run;
// TestMain removes it.
var binary = testenv.NewBinary("projector")

func projectorBinary(t *testing.T) string {
	t.Helper()
	return binary.Path(t)
}

// world is one projection's surroundings: an embedded JetStream, a fake shop
// API, the test Redis and Elasticsearch, and a definition file.
type world struct {
	t       *testing.T
	ns      string
	api     *testenv.ShopAPI
	js      *testenv.JetStream
	jsc     jetstream.JetStream
	streams *stream.Setup // the projector binary's default streams (-stream, -dlq-stream)
	def     *projections.Definition
	defFile string
	redis   *redisstore.Store
	es      *elasticsearch.Client
	logs    []string // log files of the processes started, in order
}

func newWorld(t *testing.T) *world {
	t.Helper()
	projectorBinary(t) // before any clock starts
	w := newWorldOn(t, testenv.StartJetStream(t))
	// The stream exists before the projector starts, so events can wait for it.
	var err error
	if w.streams, err = stream.Ensure(context.Background(), w.jsc, stream.Config{}, []string{w.ns + ".shop.changed.*", w.ns + ".shop.events"}); err != nil {
		t.Fatal(err)
	}
	return w
}

// newWorldOn is a world whose JetStream is js: its definition file, fake
// shop API, the test Redis and Elasticsearch; no stream yet.
func newWorldOn(t *testing.T, js *testenv.JetStream) *world {
	t.Helper()
	w := &world{t: t, ns: testenv.Namespace(t), api: testenv.NewShopAPI(), js: js}
	t.Logf("namespace %s", w.ns)
	t.Cleanup(w.api.Close)
	text := testenv.ShopDefinition(w.ns, w.api.URL, true)
	w.defFile = filepath.Join(t.TempDir(), w.ns+".yaml")
	if err := os.WriteFile(w.defFile, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var err error
	if w.def, err = projections.Parse(w.defFile, []byte(text), projections.Options{}); err != nil {
		t.Fatal(err)
	}
	_, w.jsc = w.js.Connect(t)
	rdb := testenv.Redis(t)
	testenv.CleanRedis(t, rdb, w.ns)
	w.redis = redisstore.New(rdb, redisstore.Options{KeyPattern: w.def.Redis.Key})
	w.es = testenv.Elastic(t, w.ns)
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("READSIDE_TEST_LOG") != "" {
			for _, f := range w.logs {
				t.Logf("last lines of %s:\n%s", filepath.Base(f), testenv.TailFile(f, 60))
			}
		}
	})
	return w
}

// publish sends the change events of ids, count(i) events for ids[i], every
// third one with the id in the body rather than in the subject.
func (w *world) publish(ids []string, count func(i int) int) int {
	w.t.Helper()
	n := 0
	for i, id := range ids {
		for range count(i) {
			var err error
			if n%3 == 2 {
				_, err = w.jsc.PublishAsync(w.ns+".shop.events", []byte(`{"shopId":"`+id+`"}`))
			} else {
				_, err = w.jsc.PublishAsync(w.ns+".shop.changed."+id, nil)
			}
			if err != nil {
				w.t.Fatal(err)
			}
			n++
		}
	}
	select {
	case <-w.jsc.PublishAsyncComplete():
	case <-time.After(10 * time.Second):
		w.t.Fatalf("publishing %d events took over 10s", n)
	}
	return n
}

// proc is one projector process. Its output goes to a log file.
type proc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // of Wait, once done is closed
}

// start runs the projector binary with the world's backends and extra flags;
// the process is killed when the test ends.
func (w *world) start(name string, extra ...string) *proc {
	w.t.Helper()
	bin := projectorBinary(w.t)
	logFile := filepath.Join(w.t.TempDir(), name+".log")
	f, err := os.Create(logFile)
	if err != nil {
		w.t.Fatal(err)
	}
	defer f.Close() // the child has its own descriptor
	args := append([]string{
		"-definitions", w.defFile, "-nats-url", w.js.URL, "-redis-addr", testenv.RedisAddr(),
		"-es-urls", testenv.ElasticURL(), "-log-level", "debug", "-ack-wait", "5s",
	}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = cleanEnv()
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: logFile, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	w.logs = append(w.logs, logFile)
	w.t.Cleanup(p.kill)
	return p
}

// cleanEnv is the test's environment without READSIDE_ settings, so that
// only the flags configure the process.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "READSIDE_") {
			env = append(env, kv)
		}
	}
	return env
}

// kill ends the process with SIGKILL, at once, and waits for it.
func (p *proc) kill() {
	p.cmd.Process.Kill() // an error: it has already exited
	<-p.done
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) logText() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// stored counts the ids whose document is in Redis.
func (w *world) stored(ids []string) int {
	w.t.Helper()
	got, err := w.redis.GetMany(context.Background(), ids)
	if err != nil {
		w.t.Fatal(err)
	}
	n := 0
	for _, s := range got {
		if s != nil {
			n++
		}
	}
	return n
}

// converged reports whether both Redis and Elasticsearch hold, for every id,
// the document built from the API's current state with its version, or a
// tombstone when the API has no such shop; why describes the first miss and
// how many ids miss.
func (w *world) converged(ids []string) (ok bool, why string) {
	w.t.Helper()
	ctx := context.Background()
	fromRedis, err := w.redis.GetMany(ctx, ids)
	if err != nil {
		return false, err.Error()
	}
	fromES, err := w.esGetMany(ctx, ids)
	if err != nil {
		return false, err.Error()
	}
	var first string
	misses := 0
	for i, id := range ids {
		for _, got := range []struct {
			store string
			s     *sink.Stored
		}{{"redis", fromRedis[i]}, {"elasticsearch", fromES[i]}} {
			if miss := w.mismatch(id, got.s); miss != "" {
				if misses == 0 {
					first = got.store + " " + id + ": " + miss
				}
				misses++
			}
		}
	}
	if misses > 0 {
		return false, fmt.Sprintf("%d misses; first: %s", misses, first)
	}
	return true, ""
}

// mismatch says how s differs from what the API's current state of id makes.
func (w *world) mismatch(id string, s *sink.Stored) string {
	shop, exists := w.api.Get(id)
	switch {
	case s == nil && exists:
		return "missing"
	case s == nil:
		return "missing, want a tombstone"
	case !exists && !s.Deleted:
		return fmt.Sprintf("version %d %s, want a tombstone", s.Version, s.Body)
	case !exists:
		return ""
	case s.Deleted:
		return fmt.Sprintf("tombstone %d, want version %d", s.Version, shop.Version)
	}
	want, err := w.def.Build(id, map[string][]byte{"shop": w.api.Body(id)})
	if err != nil {
		w.t.Fatal(err)
	}
	if s.Version != shop.Version || !bytes.Equal(bytes.TrimSpace(s.Body), bytes.TrimSpace(want)) {
		return fmt.Sprintf("version %d %s, want version %d %s", s.Version, s.Body, shop.Version, want)
	}
	return ""
}

// esGetMany reads ids in real time through the projection's alias with one
// _mget, in the order of ids, nil where nothing is stored.
func (w *world) esGetMany(ctx context.Context, ids []string) ([]*sink.Stored, error) {
	body, err := json.Marshal(map[string][]string{"ids": ids})
	if err != nil {
		return nil, err
	}
	mget := w.es.Mget
	res, err := mget(bytes.NewReader(body), mget.WithContext(ctx), mget.WithIndex(w.def.Elasticsearch.Alias))
	if err != nil {
		return nil, fmt.Errorf("elasticsearch mget: %w", err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("elasticsearch mget: %w", err)
	}
	if res.IsError() {
		return nil, fmt.Errorf("elasticsearch mget: %s: %.300s", res.Status(), raw)
	}
	var resp struct {
		Docs []struct {
			ID      string          `json:"_id"`
			Found   bool            `json:"found"`
			Version int64           `json:"_version"`
			Source  json.RawMessage `json:"_source"`
			Error   json.RawMessage `json:"error"`
		} `json:"docs"`
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		return nil, fmt.Errorf("elasticsearch mget: %w", err)
	}
	if len(resp.Docs) != len(ids) {
		return nil, fmt.Errorf("elasticsearch mget: %d docs for %d ids", len(resp.Docs), len(ids))
	}
	out := make([]*sink.Stored, len(ids))
	for i, d := range resp.Docs {
		switch {
		case d.Error != nil:
			return nil, fmt.Errorf("elasticsearch mget %s: %s", d.ID, d.Error)
		case !d.Found:
			continue
		}
		var marker map[string]json.RawMessage
		if err := json.Unmarshal(d.Source, &marker); err != nil {
			return nil, fmt.Errorf("elasticsearch mget %s: %w", d.ID, err)
		}
		if string(marker[elasticindex.DeletedField]) == "true" {
			out[i] = &sink.Stored{Version: d.Version, Deleted: true}
		} else {
			out[i] = &sink.Stored{Version: d.Version, Body: d.Source}
		}
	}
	return out, nil
}

// waitFor polls cond until it holds, failing the test after d with why.
func (w *world) waitFor(d time.Duration, what string, cond func() (bool, string)) {
	w.t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: not after %s: %s", what, d, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// consumerState is how many events the projection's consumer has not
// delivered yet and how many it has delivered without an ack.
func (w *world) consumerState() (pending uint64, ackPending int) {
	w.t.Helper()
	return testenv.ConsumerState(w.t, w.jsc, w.streams.Config().Events, stream.ConsumerName(w.def.Name))
}

// waitDrained waits until the projection's consumer has every event acked.
func (w *world) waitDrained(d time.Duration) {
	w.t.Helper()
	testenv.WaitDrained(w.t, w.jsc, w.streams.Config().Events, stream.ConsumerName(w.def.Name), d)
}

// checkNoDeadLetters fails the test when the dead-letter stream holds an entry.
func (w *world) checkNoDeadLetters() {
	w.t.Helper()
	if err := testenv.NoDeadLetters(w.t, w.jsc, w.streams.Config().DeadLetter); err != nil {
		w.t.Error(err)
	}
}

func shopIDs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(10000 + i)
	}
	return out
}

// A projector killed with SIGKILL in the middle of its batches loses nothing:
// restarted, it brings every document in Redis and Elasticsearch to the
// source's current state, including the changes made while it was down,
// drains its consumer and dead-letters nothing.
//
// Events the killed process had pulled but not acked are redelivered only
// when the consumer's AckWait (30s, which the binary does not let one change)
// runs out, so this test takes about that long.
func TestKilledMidBatchConverges(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.api.SetLatency(5 * time.Millisecond)
	const n = 2000
	ids := shopIDs(n)
	for _, id := range ids {
		w.api.Put(id, "shop "+id)
	}
	events := w.publish(ids, func(i int) int { return 1 + i%3 })
	// Small batches and few fetches at once stretch the work over about a second.
	flags := []string{"-metrics-addr", "", "-batch", "50", "-workers", "4", "-fetch-concurrency", "5"}

	start := time.Now()
	first := w.start("first", flags...)
	var have int
	for {
		if first.exited() {
			t.Fatalf("the projector exited early: %v", first.err)
		}
		if have = w.stored(ids); have >= n/10 {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("only %d of %d documents in Redis after 30s", have, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	first.kill()
	have = w.stored(ids)
	pending, ackPending := w.consumerState()
	t.Logf("killed after %s with %d of %d documents in Redis; %d events undelivered, %d delivered but not acked",
		time.Since(start).Round(time.Millisecond), have, n, pending, ackPending)
	if have == n {
		t.Fatalf("every document was written before the kill: slow the API down so the kill lands mid-batch")
	}
	if ackPending == 0 {
		t.Errorf("no event was in flight at the kill, want some")
	}

	// While it is down, shops change and some are deleted.
	var changed []string
	for i, id := range ids {
		switch {
		case i%97 == 0:
			w.api.Delete(id)
		case i%7 == 0:
			w.api.Put(id, "renamed "+id)
		default:
			continue
		}
		changed = append(changed, id)
	}
	events += w.publish(changed, func(int) int { return 1 })

	restart := time.Now()
	second := w.start("second", flags...)
	w.waitFor(60*time.Second, "every id converged in Redis and Elasticsearch", func() (bool, string) {
		if second.exited() {
			t.Fatalf("the restarted projector exited: %v", second.err)
		}
		return w.converged(ids)
	})
	t.Logf("%d events for %d ids (%d changed while down) converged %s after the restart",
		events, n, len(changed), time.Since(restart).Round(time.Millisecond))
	w.waitDrained(10 * time.Second)
	w.checkNoDeadLetters()
	if strings.Contains(second.logText(), "level=ERROR") {
		t.Errorf("the restarted projector logged an error")
	}
}

// SIGTERM stops the projector cleanly: exit code 0 within a few seconds, with
// "projector stopped" logged; everything it held goes back to JetStream, so a
// new process finishes the work at once rather than after AckWait.
func TestSIGTERMShutsDownCleanly(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.api.SetLatency(5 * time.Millisecond)
	const n = 1000
	ids := shopIDs(n)
	for _, id := range ids {
		w.api.Put(id, "shop "+id)
	}
	w.publish(ids, func(int) int { return 1 })
	metrics := freeAddr(t)
	flags := []string{"-batch", "50", "-workers", "2", "-fetch-concurrency", "4"}
	p := w.start("first", append(flags, "-metrics-addr", metrics)...)

	w.waitFor(20*time.Second, "the projector is healthy and has written a document", func() (bool, string) {
		if p.exited() {
			t.Fatalf("the projector exited early: %v", p.err)
		}
		if err := healthy(metrics); err != nil {
			return false, err.Error()
		}
		return w.stored(ids) > 0, "no document in Redis"
	})
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("the projector did not exit within 5s of SIGTERM")
	}
	took := time.Since(sent)
	have := w.stored(ids)
	t.Logf("exited %s after SIGTERM with %d of %d documents written", took.Round(time.Millisecond), have, n)
	var exit *exec.ExitError
	switch {
	case errors.As(p.err, &exit):
		t.Errorf("the projector exited with %v, want code 0", exit)
	case p.err != nil:
		t.Errorf("waiting for the projector: %v", p.err)
	}
	if !strings.Contains(p.logText(), `msg="projector stopped" err=<nil>`) {
		t.Errorf("the log has no clean \"projector stopped\" line")
	}
	if _, err := net.DialTimeout("tcp", metrics, time.Second); err == nil {
		t.Errorf("the metrics server still answers at %s", metrics)
	}

	// A second process needs no redelivery timeout to finish: what the
	// first held was acked or handed back.
	w.start("second", append(flags, "-metrics-addr", "")...)
	w.waitFor(15*time.Second, "every id converged after the restart", func() (bool, string) { return w.converged(ids) })
	w.waitDrained(10 * time.Second)
	w.checkNoDeadLetters()
}

func freeAddr(t *testing.T) string { return testenv.FreeAddr(t) }

func healthy(addr string) error {
	c := http.Client{Timeout: time.Second}
	res, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz: %s", res.Status)
	}
	return nil
}
