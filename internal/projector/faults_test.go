package projector_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/testenv"
)

// Faults are made by a real TCP proxy (toxiproxy, in process) between the
// projector and a store: down closes the listener and cuts every connection,
// up listens again on the same address, and toxics slow the traffic. The
// harness's own clients (h.redis, h.elastic) bypass the proxy, so the tests
// look at the stores directly.

// faultProxy is a toxiproxy proxy in front of one upstream. Its address stays
// the same across down and up, so the clients behind it reconnect to it.
type faultProxy struct {
	t    *testing.T
	p    *toxiproxy.Proxy
	addr string // host:port the clients dial
}

// startProxy starts a proxy in front of upstream (host:port) on a free local
// port; it is stopped when the test ends.
func startProxy(t *testing.T, upstream string) *faultProxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, t.Name(), "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("fault proxy in front of %s: %v", upstream, err)
	}
	t.Cleanup(p.Stop)
	// Start has returned, so the listening goroutine has set Listen to the
	// port it got; later Starts listen on that address again.
	return &faultProxy{t: t, p: p, addr: p.Listen}
}

// down closes the listener and every connection through the proxy: the
// upstream is unreachable (connection refused) until up.
func (f *faultProxy) down() { f.p.Stop() }

// up listens again on the same address. It may be called from any goroutine;
// it reports a failure with t.Errorf and returns false.
func (f *faultProxy) up() bool {
	// The port was free a moment ago; should another process take it
	// meanwhile, try again briefly rather than fail at once.
	var err error
	for range 50 {
		if err = f.p.Start(); err == nil || errors.Is(err, toxiproxy.ErrProxyAlreadyStarted) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.t.Errorf("fault proxy: listening again on %s: %v", f.addr, err)
	return false
}

// latency delays every answer from the upstream by d.
func (f *faultProxy) latency(d time.Duration) {
	f.t.Helper()
	toxic := fmt.Sprintf(`{"name": "latency", "type": "latency", "stream": "downstream", "attributes": {"latency": %d}}`, d.Milliseconds())
	if _, err := f.p.Toxics.AddToxicJson(strings.NewReader(toxic)); err != nil {
		f.t.Fatalf("fault proxy: adding a latency toxic: %v", err)
	}
}

// elasticHost is host:port of the test Elasticsearch.
func elasticHost(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(testenv.ElasticURL())
	if err != nil || u.Host == "" {
		t.Fatalf("test Elasticsearch URL %q: want http://host:port (%v)", testenv.ElasticURL(), err)
	}
	return u.Host
}

// noDeadLetters fails the test when any event was dead-lettered.
func noDeadLetters(t *testing.T, h *harness, when string) {
	t.Helper()
	if err := h.noDeadLetters(); err != nil {
		t.Errorf("%s: %v", when, err)
	}
}

// publishChanges publishes 1 to 3 events for every id, with the source's
// state changing between them, and returns how many it published.
func publishChanges(h *harness, all []string) int {
	n := 0
	for round := range 3 {
		for i, id := range all {
			if i%3 < round {
				continue
			}
			h.api.Put(id, fmt.Sprintf("shop %s round %d", id, round))
			h.changed(id)
			n++
		}
	}
	return n
}

type getter interface {
	Get(context.Context, string) (sink.Stored, error)
}

// storeDownThenBack takes a store away while events arrive: nothing may be
// written to it, acked or dead-lettered; once it is back, every id converges
// and every event is acked.
func storeDownThenBack(t *testing.T, h *harness, proxy *faultProxy, direct getter, name string) {
	all := ids(50)
	proxy.down()
	events := publishChanges(h, all)

	// Wait until every id has been tried and retried against the missing
	// store (each try fetches the source once), so the projector had every
	// chance to give up on an event; stop early when it did.
	waitFor(t, 30*time.Second, "every id to be retried while "+name+" is down", func() bool {
		if pending, unacked := h.pendingEvents(); pending+uint64(unacked) < uint64(events) || h.noDeadLetters() != nil {
			return true
		}
		for _, id := range all {
			if h.api.FetchesOf(id) < 3 {
				return false
			}
		}
		return true
	})
	noDeadLetters(t, h, name+" down")
	for _, id := range all {
		got, err := direct.Get(context.Background(), id)
		if !errors.Is(err, sink.ErrNotFound) {
			t.Fatalf("%s down: %s holds %s: %+v (err %v), want nothing", name, name, id, got, err)
		}
	}
	if pending, unacked := h.pendingEvents(); pending+uint64(unacked) != uint64(events) {
		t.Fatalf("%s down: %d events pending and %d unacked, want all %d not acked", name, pending, unacked, events)
	}

	if !proxy.up() {
		t.FailNow()
	}
	h.waitConverged(all, 60*time.Second)
	h.waitDrained(30 * time.Second)
	noDeadLetters(t, h, name+" back")
}

// Elasticsearch unreachable for a while: events wait, unacked and not
// dead-lettered, and every id converges once it is back.
func TestElasticsearchDownThenBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	es := startProxy(t, elasticHost(t))
	// The proxy is up at start: ForDefinition ensures the index and alias.
	h.start(testenv.Redis(t), testenv.ElasticAt(t, "http://"+es.addr))
	storeDownThenBack(t, h, es, h.elastic, "elasticsearch")
}

// Redis unreachable for a while: the same as for Elasticsearch.
func TestRedisDownThenBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	rd := startProxy(t, testenv.RedisAddr())
	h.start(testenv.RedisAt(t, rd.addr), testenv.Elastic(t, ""))
	storeDownThenBack(t, h, rd, h.redis, "redis")
}

// Elasticsearch answering slowly while events flow: everything converges,
// nothing is dead-lettered.
func TestSlowElasticsearch(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	es := startProxy(t, elasticHost(t))
	h.start(testenv.Redis(t), testenv.ElasticAt(t, "http://"+es.addr))
	const slow = 300 * time.Millisecond
	es.latency(slow)

	// The toxic is in effect: a request through the proxy takes that long.
	c := testenv.ElasticAt(t, "http://"+es.addr)
	begin := time.Now()
	res, err := c.Ping()
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if took := time.Since(begin); took < slow {
		t.Fatalf("a request through the slow proxy took %s, want at least %s", took, slow)
	}

	all := ids(150)
	publishChanges(h, all)
	h.waitConverged(all, 60*time.Second)
	h.waitDrained(30 * time.Second)
	noDeadLetters(t, h, "slow elasticsearch")
}

// Connections to Redis, then to Elasticsearch, cut again and again while a
// steady stream of events for 200 ids flows and the source's state keeps
// changing: everything converges to the source's last state, nothing is
// dead-lettered.
func TestConnectionsCutMidBatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	rd := startProxy(t, testenv.RedisAddr())
	es := startProxy(t, elasticHost(t))
	h.start(testenv.RedisAt(t, rd.addr), testenv.ElasticAt(t, "http://"+es.addr))
	// Slower writes are more often in flight when a connection is cut.
	rd.latency(20 * time.Millisecond)
	es.latency(20 * time.Millisecond)

	all := ids(200)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The clients retry on their own for a while, so short cuts are
		// mostly hidden from the projector; the longer ones reach it.
		for _, cut := range []struct {
			p    *faultProxy
			down time.Duration
		}{
			{rd, 500 * time.Millisecond}, {rd, 500 * time.Millisecond}, {rd, 2500 * time.Millisecond},
			{es, 500 * time.Millisecond}, {es, 500 * time.Millisecond}, {es, 2500 * time.Millisecond},
		} {
			time.Sleep(time.Second)
			cut.p.down()
			time.Sleep(cut.down)
			if !cut.p.up() {
				return
			}
		}
	}()
	events := 0
	for stop := false; !stop; events++ {
		select {
		case <-done:
			stop = true
		default:
		}
		id := all[events%len(all)]
		h.api.Put(id, fmt.Sprintf("shop %s event %d", id, events))
		h.changed(id)
		time.Sleep(2 * time.Millisecond)
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d events published while connections were cut", events)
	if err := h.noDeadLetters(); err != nil {
		t.Fatalf("connections cut: %v", err)
	}
	h.waitConverged(all, 60*time.Second)
	h.waitDrained(30 * time.Second)
	noDeadLetters(t, h, "connections cut")
}

// A projector stopped while it holds events for a failing source returns
// within the shutdown grace period and Naks them: a second projector gets
// them at once, not after the ack wait, and converges.
func TestShutdownNaksHeldMessages(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	all := ids(40)
	events := publishChanges(h, all)
	h.api.FailAll(500)
	stop := h.startDefault()
	waitFor(t, 20*time.Second, "every event to be held by the first projector", func() bool {
		pending, unacked := h.pendingEvents()
		return pending == 0 && unacked == events && h.api.Fetches() > 0
	})

	begin := time.Now()
	stop()
	grace := testOptions().ShutdownGrace
	if took := time.Since(begin); took > grace+time.Second {
		t.Errorf("stopping took %s, want at most the grace period %s", took, grace)
	}
	if t.Failed() {
		t.FailNow()
	}

	// The held messages were kept alive with InProgress, so without a Nak
	// JetStream would redeliver them only after the ack wait (30s by
	// default) from the last one; converging well within it shows the Nak.
	h.api.FailAll(0)
	begin = time.Now()
	h.startDefault()
	h.waitConverged(all, 15*time.Second)
	h.waitDrained(15 * time.Second)
	t.Logf("the second projector converged %s after it started", time.Since(begin).Round(time.Millisecond))
	noDeadLetters(t, h, "after shutdown")
}
