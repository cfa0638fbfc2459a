package query_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/readside/readside/internal/assemble"
	"github.com/readside/readside/internal/backend"
	"github.com/readside/readside/internal/query"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
)

// What a hostile public client can send: requests that must neither hang
// the API, nor trip it for everyone, nor get internal details back.

// Range filters at the edges of what numbers, integers and dates can hold
// answer correctly within the deadline on both search engines, and leave no
// goroutine working after the answer.
func TestEdgeOfRangeFiltersBounded(t *testing.T) {
	t.Parallel()
	for _, emb := range []embedded{false, true} {
		name := map[embedded]string{false: "elasticsearch", true: "embedded"}[emb]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			label := labelGoroutines(t)
			const n, deadline = 20, 2 * time.Second
			w := newWorldOn(t, n, richDefinition, emb)
			srv := w.serveStores(query.Options{RequestTimeout: deadline})
			a := &shopsAPI{w: w, base: srv.URL + "/v1/" + w.ns}
			shops := a.shops(n)
			all := func(testenv.Shop) bool { return true }
			none := func(testenv.Shop) bool { return false }
			hasSeats := func(s testenv.Shop) bool { return s.Seats != nil }
			hasPrice := func(s testenv.Shop) bool { return s.Price != nil }
			c := testClient(t)
			for _, tc := range []struct {
				query string
				keep  func(testenv.Shop) bool
			}{
				{"rating.lte=-1.7976931348623157e%2B308", none},
				{"rating.lt=-1.7976931348623157e%2B308", none},
				{"rating.gte=1.7976931348623157e%2B308", none},
				{"rating.gt=1.7976931348623157e%2B308", none},
				{"rating=-1.7976931348623157e%2B308", none},
				{"rating.gte=-1.7976931348623157e%2B308", all},
				{"rating.gt=-1.7976931348623157e%2B308", all},
				{"rating.lte=1.7976931348623157e%2B308", all},
				{"rating.lt=1.7976931348623157e%2B308", all},
				{"rating.gt=-5e-324", all},
				{"rating.lt=5e-324", func(s testenv.Shop) bool { return s.Rating <= 0 }},
				{"price.lte=-1.7976931348623157e%2B308", none},
				{"price.gte=-1.7976931348623157e%2B308", hasPrice},
				{"seats.lte=-9223372036854775808", none},
				{"seats.lt=-9223372036854775808", none},
				{"seats.gte=-9223372036854775808", hasSeats},
				{"seats.gte=9223372036854775807", none},
				{"seats.gt=9223372036854775807", none},
				{"seats.lte=9223372036854775807", hasSeats},
				{"serial.gt=9223372036854775807", none},
				{"serial.gte=-9223372036854775808", all},
				{"opened.lte=0001-01-01", none},
				{"opened.gte=9999-12-31T23:59:59Z", none},
				{"opened.gte=0001-01-01", all},
			} {
				got := timedGet(c, a.base+"?limit=100&"+tc.query)
				if got.took > deadline+time.Second {
					t.Errorf("?%s: answered after %s, deadline %s", tc.query, got.took.Round(time.Millisecond), deadline)
				}
				var p page
				if got.status != http.StatusOK || json.Unmarshal(got.body, &p) != nil {
					t.Errorf("?%s: %v, want 200", tc.query, got)
					continue
				}
				want := idsOf(filtered(shops, tc.keep))
				ids := p.ids(t)
				slices.Sort(ids)
				slices.Sort(want)
				if !slices.Equal(ids, want) {
					t.Errorf("?%s: %d ids %v, want %d %v", tc.query, len(ids), ids, len(want), want)
				}
			}
			if !eventually(2*time.Second, func() bool { return busyGoroutines(label) == 0 }) {
				t.Errorf("%d goroutines still busy in the API 2s after the last answer", busyGoroutines(label))
			}
		})
	}
}

// slowSearch is a sink.Searcher that takes its time before asking the real
// one, and never looks at ctx while it waits: an engine stuck on one query.
type slowSearch struct {
	sink.Searcher
	delay time.Duration
}

func (s slowSearch) Search(ctx context.Context, q sink.Query) (sink.Page, error) {
	time.Sleep(s.delay)
	return s.Searcher.Search(ctx, q)
}

// A search engine that ignores the request's deadline cannot hold a request
// past it: the API answers 504 at the deadline, and stopping the server is
// not held up either.
func TestSearchThatIgnoresTheDeadline(t *testing.T) {
	t.Parallel()
	const deadline = 300 * time.Millisecond
	w := newWorldOn(t, 5, richDefinition, false)
	api := query.New([]query.View{{
		Def: w.def, Docs: w.docs(), Search: slowSearch{elasticIndex(w.es, w.def), 3 * time.Second},
		Sources: assemble.Clients(w.def, nil, 200*time.Millisecond),
	}}, nil, logger(), nil, query.Options{RequestTimeout: deadline})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- query.Serve(ctx, ln, api, deadline, logger()) }()
	c := testClient(t)
	a := timedGet(c, "http://"+ln.Addr().String()+"/v1/"+w.ns+"?q=pizza")
	wantProblem(t, "a search the engine sits on", a, http.StatusGatewayTimeout)
	if a.took > deadline+500*time.Millisecond {
		t.Errorf("a search the engine sits on for 3s answered after %s; the deadline is %s", a.took.Round(time.Millisecond), deadline)
	}
	// Another one in flight while the server stops.
	go timedGet(c, "http://"+ln.Addr().String()+"/v1/"+w.ns+"?q=sushi")
	time.Sleep(50 * time.Millisecond)
	began := time.Now()
	stop()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
		if took := time.Since(began); took > deadline+time.Second {
			t.Errorf("stopping took %s with a search in flight; the request deadline is %s", took.Round(time.Millisecond), deadline)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return 10s after its context ended, with a search in flight")
	}
}

// Searches that run out of time because they are slow are not the engine
// failing: a burst of them leaves search working for the next client. An
// engine that does not answer at all is found out by a probe, the breaker
// opens and says so, and closes again soon after the engine is back.
func TestSearchBreakerTellsSlowFromDown(t *testing.T) {
	t.Parallel()
	const deadline = 400 * time.Millisecond
	w := newWorld(t, 20)
	base, es, reg := w.serveSearchThroughProxy(query.Options{RequestTimeout: deadline})
	c := testClient(t)
	state := func() float64 {
		return testutil.ToFloat64(mustGauge(t, reg, "readside_query_breaker_state", "store", "search"))
	}
	if a := timedGet(c, base+"?q=pizza"); a.status != http.StatusOK {
		t.Fatalf("search before anything: %v", a)
	}

	// 32 searches at once that each outlive the deadline (every answer of
	// the engine comes 600ms late), as a burst of expensive queries would.
	es.Latency(600 * time.Millisecond)
	burst := getAll(c, slices.Repeat([]string{base + "?q=pizza"}, 32))
	for i, a := range burst {
		if a.status != http.StatusGatewayTimeout && a.status != http.StatusServiceUnavailable {
			t.Errorf("slow search %d: %v, want 504 (or 503 shed)", i, a)
		}
	}
	es.Heal()
	time.Sleep(1200 * time.Millisecond) // the probes, answered in 600ms, are done
	if a := timedGet(c, base+"?q=sushi"); a.status != http.StatusOK {
		t.Errorf("a cheap search right after a burst of slow ones: %v, want 200 (the breaker must not count timeouts as failures)", a)
	}
	if s := state(); s != 0 {
		t.Errorf("breaker state %v after slow searches, want 0 (closed)", s)
	}

	// The engine gone: requests time out, the probe finds it down, the
	// breaker opens and the answer says why.
	es.Blackhole()
	down := time.Now()
	var last answer
	if !eventually(5*time.Second, func() bool {
		last = timedGet(c, base+"?q=pizza")
		return state() == 2
	}) {
		t.Fatalf("the breaker did not open within 5s of the engine going silent; last answer %v", last)
	}
	t.Logf("breaker open %s after the engine went silent", time.Since(down).Round(time.Millisecond))
	a := timedGet(c, base+"?q=pizza")
	p := wantProblem(t, "search with the breaker open", a, http.StatusServiceUnavailable)
	if !strings.Contains(p.Detail, "circuit breaker open") || a.took > 100*time.Millisecond {
		t.Errorf("search with the breaker open: %v in %s, want a fast 503 that says the breaker is open", p, a.took)
	}
	if d := timedGet(c, base+"/001"); d.status != http.StatusOK {
		t.Errorf("detail with search down: %v, want 200", d)
	}

	es.Heal()
	back := time.Now()
	if !eventually(6*time.Second, func() bool {
		last = timedGet(c, base+"?q=pizza")
		return last.status == http.StatusOK
	}) {
		t.Fatalf("6s after the engine came back, search still answers %v", last)
	}
	t.Logf("search served again %s after the engine came back", time.Since(back).Round(time.Millisecond))
}

// serveSearchThroughProxy serves the world with Elasticsearch behind a
// fault proxy (the search probe too) and the API's metrics on reg; base is
// the projection's URL.
func (w *world) serveSearchThroughProxy(o query.Options) (base string, es *testenv.Proxy, reg *prometheus.Registry) {
	es = testenv.StartProxy(w.t, testenv.ElasticHostPort(w.t))
	esc := testenv.ElasticAt(w.t, "http://"+es.Addr)
	reg = prometheus.NewRegistry()
	o.Registerer = reg
	api := query.New([]query.View{{
		Def: w.def, Docs: w.docs(), Search: elasticIndex(esc, w.def),
		Sources: assemble.Clients(w.def, nil, 200*time.Millisecond), SearchProbe: backend.ElasticProbe(esc),
	}}, nil, logger(), nil, o)
	srv := httptest.NewServer(api)
	w.t.Cleanup(srv.Close)
	return srv.URL + "/v1/" + w.ns, es, reg
}

// mustGauge finds the series of a gauge or counter vector whose label has value.
func mustGauge(t *testing.T, reg *prometheus.Registry, name, label, value string) prometheus.Collector {
	t.Helper()
	return gaugeFrom{reg: reg, name: name, label: label, value: value}
}

// gaugeFrom is one series (a gauge's or a counter's) of a registry, as a
// Collector testutil reads.
type gaugeFrom struct {
	reg                *prometheus.Registry
	name, label, value string
}

func (g gaugeFrom) Describe(ch chan<- *prometheus.Desc) {}
func (g gaugeFrom) Collect(ch chan<- prometheus.Metric) {
	mfs, _ := g.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != g.name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == g.label && l.GetValue() == g.value {
					v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
					ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(g.name, "", nil, nil), prometheus.GaugeValue, v)
					return
				}
			}
		}
	}
}

// Over the adaptive limit, lists and searches get a fast 503 with
// Retry-After, while detail reads keep being served.
func TestSearchShedWhileDetailsServed(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 20)
	base, es, reg := w.serveSearchThroughProxy(query.Options{RequestTimeout: 2 * time.Second, SearchMaxInflight: 4})
	c := testClient(t)
	es.Latency(300 * time.Millisecond) // each search holds its place 300ms

	var wg sync.WaitGroup
	searches := make([]answer, 60)
	for i := range searches {
		wg.Go(func() { searches[i] = timedGet(c, base+"?q=pizza") })
	}
	var details []answer
	for i := range 20 {
		details = append(details, timedGet(c, base+"/"+itoa(i%20+1)))
	}
	wg.Wait()
	served, shed := 0, 0
	for i, a := range searches {
		switch a.status {
		case http.StatusOK:
			served++
		case http.StatusServiceUnavailable:
			shed++
			p := wantProblem(t, fmt.Sprintf("shed search %d", i), a, http.StatusServiceUnavailable)
			if p.Type != query.ProblemOverloaded || a.header.Get("Retry-After") == "" {
				t.Errorf("shed search %d: type %q, Retry-After %q; want %s with Retry-After", i, p.Type, a.header.Get("Retry-After"), query.ProblemOverloaded)
			}
			if a.took > time.Second {
				t.Errorf("shed search %d answered after %s; shedding must be fast", i, a.took.Round(time.Millisecond))
			}
		default:
			t.Errorf("search %d: %v, want 200 or 503", i, a)
		}
	}
	if shed == 0 || served == 0 {
		t.Errorf("60 searches at once over a limit of 4: %d served, %d shed; want both", served, shed)
	}
	for i, a := range details {
		if a.status != http.StatusOK {
			t.Errorf("detail %d during the search burst: %v", i, a)
		}
	}
	if got := testutil.ToFloat64(mustGauge(t, reg, "readside_query_shed_total", "class", "search")); got != float64(shed) {
		t.Errorf("readside_query_shed_total{class=search} %v, want the %d shed", got, shed)
	}
	t.Logf("60 searches over a limit of 4: %d served, %d shed; 20 details all served", served, shed)
}

// An answer never carries internal hosts, URLs, upstream bodies or error
// chains; a problem carries the request id the client can quote.
func TestAnswersCarryNothingInternal(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 3)
	api := query.New([]query.View{{
		Def: w.def, Docs: downDocs{}, Search: closedSearch(t, w.def),
		Sources: assemble.Clients(w.def, nil, 100*time.Millisecond),
	}}, nil, logger(), nil, query.Options{RequestTimeout: 2 * time.Second})
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	base := srv.URL + "/v1/" + w.ns
	w.api.FailAll(http.StatusServiceUnavailable) // with the body "failing on purpose"
	c := testClient(t)
	// A multi-get answers 200 with the ids it could not give under missing.
	if a := timedGet(c, base+"?ids=001,002"); a.status != http.StatusOK || strings.Contains(string(a.body), "failing on purpose") || strings.Contains(string(a.body), "http://") {
		t.Errorf("multi-get with every backend down: %v, want 200 with the ids missing and nothing internal", a)
	}
	for _, u := range []string{base + "/001", base + "?q=pizza", base + "?city=Seoul", base} {
		a := timedGet(c, u)
		p := wantProblem(t, u, a, http.StatusServiceUnavailable)
		for _, leak := range []string{"http://", "127.0.0.1", "failing on purpose", "status 503", "/shops/", "dial tcp", "connection refused", "source:", "sink:"} {
			if strings.Contains(string(a.body), leak) {
				t.Errorf("GET %s: the answer carries %q: %s", u, leak, a.body)
			}
		}
		if id := a.header.Get("X-Request-Id"); id == "" || p.RequestID != id {
			t.Errorf("GET %s: X-Request-Id %q, problem requestId %q; want the same, not empty", u, id, p.RequestID)
		}
	}
	// A client's own request id is kept when it is a safe token.
	req, _ := http.NewRequest("GET", base+"/001", nil)
	req.Header.Set("X-Request-Id", "shop-app:7f3a")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got := res.Header.Get("X-Request-Id"); got != "shop-app:7f3a" {
		t.Errorf("X-Request-Id %q, want the client's shop-app:7f3a", got)
	}
}

// HTTP as a client expects it: 405 with Allow for another method, 414 and
// 431 as problems for what is too long.
func TestHTTPCorrectness(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 3)
	api := w.serve(w.redis, w.es, query.Options{})
	base := api.URL + "/v1/" + w.ns
	c := testClient(t)
	for _, method := range []string{"POST", "PUT", "DELETE", "PATCH"} {
		for _, u := range []string{base, base + "/001", api.URL + "/openapi.json"} {
			req, _ := http.NewRequest(method, u, strings.NewReader("{}"))
			res, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			a := answer{status: res.StatusCode, header: res.Header, body: body}
			p := wantProblem(t, method+" "+u, a, http.StatusMethodNotAllowed)
			if res.Header.Get("Allow") != "GET, HEAD" || p.Type != query.ProblemMethodNotAllowed {
				t.Errorf("%s %s: Allow %q, type %q", method, u, res.Header.Get("Allow"), p.Type)
			}
		}
	}
	if a := timedGet(c, api.URL+"/v2/nothing"); a.status != http.StatusNotFound {
		t.Errorf("GET /v2/nothing: %v, want 404", a)
	}
	// Through a real server (Serve's limits), over a raw connection.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	go query.Serve(ctx, ln, api.Config.Handler, 2*time.Second, logger())
	raw := func(target string, header string) (int, http.Header, []byte) {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n", target, header)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("GET (%d bytes): %v", len(target), err)
		}
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header, body
	}
	long := "/v1/" + w.ns + "?ids=" + strings.Repeat("a", 200<<10)
	code, h, body := raw(long, "")
	p := wantProblem(t, "a 200 KB request line", answer{status: code, header: h, body: body}, http.StatusRequestURITooLong)
	if p.Type != query.ProblemTooLarge || len(body) > 2048 {
		t.Errorf("a 200 KB request line: type %q, %d bytes of answer", p.Type, len(body))
	}
	code, h, body = raw("/v1/"+w.ns+"/001", "X-Big: "+strings.Repeat("b", 100<<10)+"\r\n")
	wantProblem(t, "100 KB of header fields", answer{status: code, header: h, body: body}, http.StatusRequestHeaderFieldsTooLarge)
	// The longest valid multi-get still fits: 100 ids of 256 bytes, every
	// byte percent-encoded.
	id := strings.Repeat("%C3%A9", projections.MaxIDLen/2)
	ids := strings.TrimSuffix(strings.Repeat(id+",", 100), ",")
	if code, _, body := raw("/v1/"+w.ns+"?ids="+ids, ""); code != http.StatusOK {
		t.Errorf("the longest valid multi-get (%d bytes): %d %.300s", len(ids), code, body)
	}
}
