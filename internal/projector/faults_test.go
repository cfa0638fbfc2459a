package projector_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/testenv"
)

// Faults are made by a real TCP proxy (toxiproxy, in process) between the
// projector and a store: down closes the listener and cuts every connection,
// up listens again on the same address, and toxics slow the traffic. The
// harness's own clients (h.redis, h.elastic) bypass the proxy, so the tests
// look at the stores directly.

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
func storeDownThenBack(t *testing.T, h *harness, proxy *testenv.Proxy, direct getter, name string) {
	all := ids(50)
	proxy.Down()
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

	if !proxy.Up() {
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
	es := testenv.StartProxy(t, testenv.ElasticHostPort(t))
	// The proxy is up at start: ForDefinition ensures the index and alias.
	h.start(testenv.Redis(t), testenv.ElasticAt(t, "http://"+es.Addr))
	storeDownThenBack(t, h, es, h.elastic, "elasticsearch")
}

// Redis unreachable for a while: the same as for Elasticsearch.
func TestRedisDownThenBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	rd := testenv.StartProxy(t, testenv.RedisAddr())
	h.start(testenv.RedisAt(t, rd.Addr), testenv.Elastic(t, ""))
	storeDownThenBack(t, h, rd, h.redis, "redis")
}

// Elasticsearch answering slowly while events flow: everything converges,
// nothing is dead-lettered.
func TestSlowElasticsearch(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	es := testenv.StartProxy(t, testenv.ElasticHostPort(t))
	h.start(testenv.Redis(t), testenv.ElasticAt(t, "http://"+es.Addr))
	const slow = 300 * time.Millisecond
	es.Latency(slow)

	// The toxic is in effect: a request through the proxy takes that long.
	c := testenv.ElasticAt(t, "http://"+es.Addr)
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
	rd := testenv.StartProxy(t, testenv.RedisAddr())
	es := testenv.StartProxy(t, testenv.ElasticHostPort(t))
	h.start(testenv.RedisAt(t, rd.Addr), testenv.ElasticAt(t, "http://"+es.Addr))
	// Slower writes are more often in flight when a connection is cut.
	rd.Latency(20 * time.Millisecond)
	es.Latency(20 * time.Millisecond)

	all := ids(200)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The clients retry on their own for a while, so short cuts are
		// mostly hidden from the projector; the longer ones reach it.
		for _, cut := range []struct {
			p    *testenv.Proxy
			down time.Duration
		}{
			{rd, 500 * time.Millisecond}, {rd, 500 * time.Millisecond}, {rd, 2500 * time.Millisecond},
			{es, 500 * time.Millisecond}, {es, 500 * time.Millisecond}, {es, 2500 * time.Millisecond},
		} {
			time.Sleep(time.Second)
			cut.p.Down()
			time.Sleep(cut.down)
			if !cut.p.Up() {
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
