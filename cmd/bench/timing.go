package main

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// timer adds up how long calls of one kind took, as their caller saw them.
// It is safe for concurrent use.
type timer struct {
	n, ns atomic.Int64
}

func (t *timer) add(d time.Duration) {
	t.n.Add(1)
	t.ns.Add(int64(d))
}

// since adds the time from began until now.
func (t *timer) since(began time.Time) { t.add(time.Since(began)) }

func (t *timer) reset() {
	t.n.Store(0)
	t.ns.Store(0)
}

// mean is the mean duration of a call, 0 when there was none.
func (t *timer) mean() time.Duration {
	n := t.n.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(t.ns.Load() / n)
}

// timings are the calls the projector makes to its dependencies, timed on
// the clients the bench hands it: what each batch waits for.
type timings struct {
	source timer // GET of one entity
	docs   timer // the doc store's write of a batch: one Redis pipeline of guarded writes, or one bbolt Write
	index  timer // the index's write of a batch: one Elasticsearch _bulk request, or one bleve Write
}

func (t *timings) reset() {
	t.source.reset()
	t.docs.reset()
	t.index.reset()
}

// timedTransport times the requests of next whose path matches.
type timedTransport struct {
	next  http.RoundTripper
	t     *timer
	match func(*http.Request) bool
}

func (tt timedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if !tt.match(r) {
		return tt.next.RoundTrip(r)
	}
	began := time.Now()
	res, err := tt.next.RoundTrip(r)
	tt.t.add(time.Since(began)) // the bodies are small: headers are most of the wait
	return res, err
}

func isBulk(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/_bulk") }

func everyRequest(*http.Request) bool { return true }

// sourceTransport is the transport internal/source uses by default (keep-alives,
// MaxIdleConnsPerHost 512, proxy from the environment), timed.
func sourceTransport(t *timer) http.RoundTripper {
	return timedTransport{t: t, match: everyRequest, next: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}}
}

// pipelineHook times Redis pipelines.
type pipelineHook struct{ t *timer }

func (pipelineHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (pipelineHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h pipelineHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		began := time.Now()
		err := next(ctx, cmds)
		h.t.add(time.Since(began))
		return err
	}
}
