package testenv

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
)

// Proxy is a real TCP fault proxy (toxiproxy, in process) in front of one
// service. Down closes its listener and cuts every connection; Up listens
// again on the same address, so clients behind it reconnect; toxics slow or
// swallow the traffic.
type Proxy struct {
	t    testing.TB
	p    *toxiproxy.Proxy
	Addr string // host:port the clients dial
}

// StartProxy starts a proxy in front of upstream (host:port) on a free local
// port; it is stopped when the test ends.
func StartProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, t.Name(), "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("fault proxy in front of %s: %v", upstream, err)
	}
	t.Cleanup(p.Stop)
	// Start has returned, so the listening goroutine has set Listen to the
	// port it got; later Starts listen on that address again.
	return &Proxy{t: t, p: p, Addr: p.Listen}
}

// Down closes the listener and every connection through the proxy: the
// upstream is unreachable (connection refused) until Up.
func (f *Proxy) Down() { f.p.Stop() }

// Up listens again on the same address. It may be called from any goroutine;
// it reports a failure with t.Errorf and returns false.
func (f *Proxy) Up() bool {
	// The port was free a moment ago; should another process take it
	// meanwhile, try again briefly rather than fail at once.
	var err error
	for range 50 {
		if err = f.p.Start(); err == nil || errors.Is(err, toxiproxy.ErrProxyAlreadyStarted) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.t.Errorf("fault proxy: listening again on %s: %v", f.Addr, err)
	return false
}

// Latency delays every answer from the upstream by d, until Heal.
func (f *Proxy) Latency(d time.Duration) {
	f.toxic(fmt.Sprintf(`{"name": "latency", "type": "latency", "stream": "downstream", "attributes": {"latency": %d}}`, d.Milliseconds()))
}

// Blackhole makes the upstream accept connections and never answer, as a
// hung or partitioned server does, until Heal.
func (f *Proxy) Blackhole() {
	f.toxic(`{"name": "blackhole", "type": "timeout", "stream": "downstream", "attributes": {"timeout": 0}}`)
}

// Heal removes every toxic.
func (f *Proxy) Heal() { f.p.Toxics.ResetToxics(context.Background()) }

func (f *Proxy) toxic(spec string) {
	f.t.Helper()
	if _, err := f.p.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
		f.t.Fatalf("fault proxy: adding a toxic: %v", err)
	}
}

// ElasticHostPort is host:port of the test Elasticsearch, for a proxy.
func ElasticHostPort(t testing.TB) string {
	t.Helper()
	u, err := url.Parse(ElasticURL())
	if err != nil || u.Host == "" {
		t.Fatalf("test Elasticsearch URL %q: want http://host:port (%v)", ElasticURL(), err)
	}
	return u.Host
}
