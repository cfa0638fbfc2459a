package query_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidwall/gjson"

	"github.com/readside/readside/internal/query"
	"github.com/readside/readside/internal/sink/redisstore"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
)

// The query API with its backends failing. Faults are made by a real TCP
// proxy (toxiproxy, in process) between the API and Redis or Elasticsearch;
// the world's own clients (w.redis, w.es) bypass it, so the tests compare
// the answers with what the projector really stored. The API reads the shop
// API through a countingShopAPI, so the tests see the API's own source
// traffic, apart from the world's projector's.

// countingShopAPI stands in front of a testenv.ShopAPI for the API under
// test: it passes GET /shops/{id} on, counting those requests (how many, per
// id, and at most how many at once), and serves a paged list endpoint,
// GET /shops?cursor=, over ids, pageSize ids a page, the cursor being the
// offset of the page.
type countingShopAPI struct {
	*httptest.Server
	api      *testenv.ShopAPI
	ids      []string
	pageSize int

	fetches atomic.Int64 // GET /shops/{id}
	lists   atomic.Int64 // GET /shops
	active  atomic.Int64
	peak    atomic.Int64
	mu      sync.Mutex
	perID   map[string]int
}

func newCountingShopAPI(t *testing.T, api *testenv.ShopAPI, ids []string, pageSize int) *countingShopAPI {
	t.Helper()
	c := &countingShopAPI{api: api, ids: ids, pageSize: pageSize, perID: map[string]int{}}
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /shops/{id}", func(w http.ResponseWriter, r *http.Request) {
		n := c.active.Add(1)
		defer c.active.Add(-1)
		for p := c.peak.Load(); n > p && !c.peak.CompareAndSwap(p, n); p = c.peak.Load() {
		}
		c.fetches.Add(1)
		c.mu.Lock()
		c.perID[r.PathValue("id")]++
		c.mu.Unlock()
		req, _ := http.NewRequestWithContext(r.Context(), "GET", api.URL+"/shops/"+url.PathEscape(r.PathValue("id")), nil)
		res, err := tr.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		w.Header().Set("Content-Type", res.Header.Get("Content-Type"))
		w.WriteHeader(res.StatusCode)
		io.Copy(w, res.Body)
	})
	mux.HandleFunc("GET /shops", func(w http.ResponseWriter, r *http.Request) {
		c.lists.Add(1)
		off := 0
		if cur := r.URL.Query().Get("cursor"); cur != "" {
			var err error
			if off, err = strconv.Atoi(cur); err != nil || off < 0 || off > len(c.ids) {
				http.Error(w, "bad cursor", http.StatusBadRequest)
				return
			}
		}
		end := min(off+c.pageSize, len(c.ids))
		items := make([]map[string]string, 0, end-off)
		for _, id := range c.ids[off:end] {
			items = append(items, map[string]string{"id": id})
		}
		var next any
		if end < len(c.ids) {
			next = strconv.Itoa(end)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"items": items, "next": next})
	})
	c.Server = httptest.NewServer(mux)
	t.Cleanup(func() { c.Close(); tr.CloseIdleConnections() })
	return c
}

func (c *countingShopAPI) fetchesOf(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.perID[id]
}

func (c *countingShopAPI) resetPeak() { c.peak.Store(c.active.Load()) }

// through is the world with its definition reading the shop API through c,
// and, with list, having c's list endpoint. The name, keys and alias stay
// the world's, so the API serves what the world's projector stored.
func (w *world) through(c *countingShopAPI, list bool) *world {
	w.t.Helper()
	src := testenv.ShopDefinition(w.ns, c.URL, true)
	if list {
		src = strings.Replace(src, "    timeout: 2s\n",
			"    timeout: 2s\n    list: {url: \""+c.URL+"/shops?cursor={cursor}\", ids: \"items.#.id\", next: next}\n", 1)
	}
	def, err := projections.Parse("shops.yaml", []byte(src), projections.Options{})
	if err != nil {
		w.t.Fatal(err)
	}
	if def.Listable() != list {
		w.t.Fatalf("definition through the counting API: listable %v, want %v", def.Listable(), list)
	}
	cp := *w
	cp.def = def
	return &cp
}

// idsUpTo is the world's ids 1..n as newWorld spells them.
func idsUpTo(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = itoa(i + 1)
	}
	return out
}

// storedWorld is newWorld of n shops, with their ids and what the projector
// stored for each (docsInRedis).
func storedWorld(t *testing.T, n int) (w *world, ids []string, stored map[string][]byte) {
	t.Helper()
	w = newWorld(t, n)
	ids = idsUpTo(n)
	return w, ids, docsInRedis(t, w, ids)
}

// docsInRedis is what the projector stored for ids, read from Redis directly.
func docsInRedis(t *testing.T, w *world, ids []string) map[string][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := redisstore.New(w.redis, redisstore.Options{KeyPattern: w.def.Redis.Key}).GetMany(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for i, s := range got {
		if s == nil || s.Deleted {
			t.Fatalf("Redis holds no document for %s", ids[i])
		}
		out[ids[i]] = s.Body
	}
	return out
}

func sameJSON(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

// answer is one HTTP exchange with the API.
type answer struct {
	status int
	header http.Header
	body   []byte
	took   time.Duration
	err    error
}

func (a answer) String() string {
	if a.err != nil {
		return a.err.Error()
	}
	return fmt.Sprintf("%d in %s (source %q) %.300s", a.status, a.took.Round(time.Millisecond), a.header.Get("X-Readside-Source"), a.body)
}

// timedGet is a GET safe to call from any goroutine; a transport error is in err.
func timedGet(c *http.Client, url string) answer {
	begin := time.Now()
	res, err := c.Get(url)
	if err != nil {
		return answer{err: err, took: time.Since(begin)}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return answer{status: res.StatusCode, header: res.Header, body: b, took: time.Since(begin), err: err}
}

// getAll GETs every url at once and returns the answers in the same order.
func getAll(c *http.Client, urls []string) []answer {
	out := make([]answer, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Go(func() { out[i] = timedGet(c, u) })
	}
	wg.Wait()
	return out
}

// testClient keeps enough idle connections for the bursts of a test.
func testClient(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// wantDoc fails the test unless a is a 200 with the stored document from source.
func wantDoc(t *testing.T, what string, a answer, stored []byte, source string) {
	t.Helper()
	switch {
	case a.err != nil || a.status != http.StatusOK:
		t.Errorf("%s: %v, want 200", what, a)
	case a.header.Get("X-Readside-Source") != source:
		t.Errorf("%s: X-Readside-Source %q, want %q", what, a.header.Get("X-Readside-Source"), source)
	case !sameJSON(a.body, stored):
		t.Errorf("%s: answered\n%s\nwant what the projector stored\n%s", what, a.body, stored)
	}
}

// wantProblem fails the test unless a is a problem+json answer with one of statuses.
func wantProblem(t *testing.T, what string, a answer, statuses ...int) query.Problem {
	t.Helper()
	var p query.Problem
	switch {
	case a.err != nil || !slices.Contains(statuses, a.status):
		t.Errorf("%s: %v, want status %v", what, a, statuses)
	case a.header.Get("Content-Type") != "application/problem+json":
		t.Errorf("%s: Content-Type %q, want application/problem+json", what, a.header.Get("Content-Type"))
	case json.Unmarshal(a.body, &p) != nil || p.Status != a.status || p.Type == "":
		t.Errorf("%s: body %s is not a problem of status %d", what, a.body, a.status)
	}
	return p
}

// items is a multi-get, list or search answer.
type items struct {
	Items   []json.RawMessage `json:"items"`
	Missing []string          `json:"missing"`
	Next    *string           `json:"next"`
}

// reprojected waits (at most within) until every id in want has had a
// re-project event, and returns the ids that had none.
// reprojected reads the re-project events until each id of want had one or
// within passed, and returns the ids of want that had none and every id seen.
func reprojected(t *testing.T, w *world, want []string, within time.Duration) (missing []string, seen map[string]bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	subject := w.def.ReprojectSubject()
	name, err := w.js.StreamNameBySubject(ctx, subject)
	if err != nil {
		t.Fatalf("the stream of %s: %v", subject, err)
	}
	c, err := w.js.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	left := map[string]bool{}
	seen = map[string]bool{}
	for _, id := range want {
		left[id] = true
	}
	for len(left) > 0 && ctx.Err() == nil {
		batch, err := c.Fetch(1000, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			continue
		}
		for m := range batch.Messages() {
			id := gjson.GetBytes(m.Data(), "id")
			if id.Type != gjson.String || m.Subject() != subject {
				t.Errorf("re-project event %s %s: want {\"id\": ...} on %s", m.Subject(), m.Data(), subject)
				continue
			}
			delete(left, id.Str)
			seen[id.Str] = true
		}
	}
	for id := range left {
		missing = append(missing, id)
	}
	slices.Sort(missing)
	return missing, seen
}

// labelGoroutines labels the calling goroutine, and so every goroutine it
// starts from now on (servers, their connections, the builds they start),
// for busyGoroutines.
func labelGoroutines(t *testing.T) string {
	v := testenv.Namespace(t)
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("readside-faults", v)))
	t.Cleanup(func() { pprof.SetGoroutineLabels(context.Background()) })
	return v
}

// busyGoroutines is how many goroutines labelled label are running code of
// the API (query, assemble, source, sink): requests being answered and
// builds or reads in flight. Idle connections do not count.
func busyGoroutines(label string) int {
	var b bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&b, 1)
	n := 0
	for group := range strings.SplitSeq(b.String(), "\n\n") {
		if !strings.Contains(group, `"readside-faults":"`+label+`"`) {
			continue
		}
		busy := false
		for _, pkg := range []string{"query", "assemble", "source", "sink"} {
			busy = busy || strings.Contains(group, "github.com/readside/readside/internal/"+pkg+".")
		}
		if !busy {
			continue
		}
		count, _, _ := strings.Cut(group, " ")
		k, err := strconv.Atoi(count)
		if err != nil {
			k = 1
		}
		n += k
	}
	return n
}

// eventually polls cond every 20ms until it holds or within has passed.
func eventually(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Redis unreachable: detail, multi-get and list answer from the sources,
// with the documents the projector stored; a burst of misses never puts more
// than SourceConcurrency requests at once on the source; concurrent requests
// for one id cost one source request; every built id gets a re-project event.
func TestRedisUnreachableServesFromSources(t *testing.T) {
	t.Parallel()
	const n, limit = 200, 4
	w, all, stored := storedWorld(t, n)
	api := newCountingShopAPI(t, w.api, all, 10)
	fw := w.through(api, false)
	rd := testenv.StartProxy(t, testenv.RedisAddr())
	rd.Down()
	srv := fw.serve(testenv.RedisAt(t, rd.Addr), w.es, query.Options{SourceConcurrency: limit, RequestTimeout: 10 * time.Second})
	base := srv.URL + "/v1/" + w.ns
	c := testClient(t)

	t.Run("detail", func(t *testing.T) {
		wantDoc(t, "GET /001", timedGet(c, base+"/001"), stored["001"], "source")
		a := timedGet(c, base+"/999")
		if p := wantProblem(t, "GET /999 (no such shop)", a, http.StatusNotFound); p.Type != query.ProblemNotFound {
			t.Errorf("GET /999: problem type %q, want %q", p.Type, query.ProblemNotFound)
		}
	})

	t.Run("multi-get", func(t *testing.T) {
		a := timedGet(c, base+"?ids=002,999,003")
		var got items
		if a.status != http.StatusOK || json.Unmarshal(a.body, &got) != nil {
			t.Fatalf("multi-get: %v", a)
		}
		if src := a.header.Get("X-Readside-Source"); src != "source" {
			t.Errorf("multi-get: X-Readside-Source %q, want source", src)
		}
		if len(got.Items) != 2 || !sameJSON(got.Items[0], stored["002"]) || !sameJSON(got.Items[1], stored["003"]) {
			t.Errorf("multi-get: items %s, want the stored 002 and 003", got.Items)
		}
		if !slices.Equal(got.Missing, []string{"999"}) {
			t.Errorf("multi-get: missing %v, want [999]", got.Missing)
		}
	})

	t.Run("list", func(t *testing.T) {
		a := timedGet(c, base+"?limit=7")
		var got items
		if a.status != http.StatusOK || json.Unmarshal(a.body, &got) != nil {
			t.Fatalf("list: %v", a)
		}
		if src := a.header.Get("X-Readside-Source"); src != "source" {
			t.Errorf("list: X-Readside-Source %q, want source", src)
		}
		if len(got.Items) != 7 || got.Next == nil {
			t.Fatalf("list: %d items, next %v; want 7 and a next page", len(got.Items), got.Next)
		}
		for i, it := range got.Items {
			id := gjson.GetBytes(it, "id").Str
			if id != all[i] || !sameJSON(it, stored[id]) {
				t.Errorf("list item %d: %s, want the stored %s", i, it, all[i])
			}
		}
	})

	t.Run("burst of distinct ids", func(t *testing.T) {
		w.api.SetLatency(20 * time.Millisecond)
		defer w.api.SetLatency(0)
		api.resetPeak()
		before := api.fetches.Load()
		urls := make([]string, n)
		for i, id := range all {
			urls[i] = base + "/" + id
		}
		begin := time.Now()
		got := getAll(c, urls)
		t.Logf("%d concurrent details took %s; the source saw at most %d requests at once", n, time.Since(begin).Round(time.Millisecond), api.peak.Load())
		for i, a := range got {
			wantDoc(t, "GET /"+all[i], a, stored[all[i]], "source")
		}
		if peak := api.peak.Load(); peak > limit || peak < 2 {
			t.Errorf("the source saw %d requests at once, want 2 to SourceConcurrency %d", peak, limit)
		}
		if f := api.fetches.Load() - before; f < n {
			t.Errorf("%d source requests for %d distinct ids", f, n)
		}
	})

	t.Run("one id at once", func(t *testing.T) {
		const id, callers = "042", 50
		w.api.SetLatency(500 * time.Millisecond)
		defer w.api.SetLatency(0)
		before := api.fetchesOf(id)
		got := getAll(c, slices.Repeat([]string{base + "/" + id}, callers))
		for i, a := range got {
			wantDoc(t, fmt.Sprintf("caller %d: GET /%s", i, id), a, stored[id], "source")
		}
		if f := api.fetchesOf(id) - before; f != 1 {
			t.Errorf("%d concurrent requests for %s made %d source requests, want 1", callers, id, f)
		}
	})

	t.Run("re-project events", func(t *testing.T) {
		missing, seen := reprojected(t, w, all, 15*time.Second)
		if len(missing) > 0 {
			t.Errorf("no re-project event on %s for %d built ids: %v", w.def.ReprojectSubject(), len(missing), missing)
		}
		// 999 is unknown to the source: a read of it must never make the
		// projector write (a tombstone for any made-up id).
		if seen["999"] {
			t.Errorf("a re-project event for 999, which the source does not have")
		}
	})
}

// Elasticsearch unreachable: a search, a filtered or sorted list, and a plain
// list of a projection without a list endpoint answer 503 with Retry-After;
// a plain list of a projection with one is served from it, marked degraded,
// and its cursor pages through every id once.
func TestElasticsearchUnreachable(t *testing.T) {
	t.Parallel()
	const n = 23
	w, all, stored := storedWorld(t, n)
	api := newCountingShopAPI(t, w.api, all, 7)
	es := testenv.StartProxy(t, testenv.ElasticHostPort(t))
	es.Down()
	esDown := testenv.ElasticAt(t, "http://"+es.Addr)
	reg := prometheus.NewRegistry()
	listing := w.through(api, true).serve(w.redis, esDown, query.Options{RequestTimeout: 5 * time.Second, Registerer: reg})
	plain := w.serve(w.redis, esDown, query.Options{RequestTimeout: 5 * time.Second})
	c := testClient(t)

	for _, tc := range []struct {
		name string
		url  string
	}{
		{"search", listing.URL + "/v1/" + w.ns + "?q=pizza"},
		{"filter", listing.URL + "/v1/" + w.ns + "?city=Seoul"},
		{"sort", listing.URL + "/v1/" + w.ns + "?sort=name"},
		{"near", listing.URL + "/v1/" + w.ns + "?near=52.5,13.4"},
		{"plain list without a list endpoint", plain.URL + "/v1/" + w.ns},
	} {
		a := timedGet(c, tc.url)
		p := wantProblem(t, tc.name, a, http.StatusServiceUnavailable)
		if p.Type != query.ProblemUnavailable {
			t.Errorf("%s: problem type %q, want %q", tc.name, p.Type, query.ProblemUnavailable)
		}
		if s, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || s < 1 {
			t.Errorf("%s: Retry-After %q, want whole seconds", tc.name, a.header.Get("Retry-After"))
		}
		if a.header.Get("X-Readside-Degraded") != "" {
			t.Errorf("%s: X-Readside-Degraded %q on an error", tc.name, a.header.Get("X-Readside-Degraded"))
		}
	}
	if api.lists.Load() != 0 {
		t.Errorf("the list endpoint was asked %d times for queries it cannot answer", api.lists.Load())
	}

	// A plain list pages through the list endpoint: 4 ids an answer out of
	// pages of 7, so cursors point into the middle of a page too.
	var seen []string
	pages := 0
	u := listing.URL + "/v1/" + w.ns + "?limit=4"
	for page := 0; ; page++ {
		if page > n {
			t.Fatalf("still paging after %d pages; seen %v", page, seen)
		}
		a := timedGet(c, u)
		var got items
		if a.status != http.StatusOK || json.Unmarshal(a.body, &got) != nil {
			t.Fatalf("degraded list page %d: %v", page, a)
		}
		pages++
		if d := a.header.Get("X-Readside-Degraded"); d != "list-endpoint" {
			t.Errorf("page %d: X-Readside-Degraded %q, want list-endpoint", page, d)
		}
		if s := a.header.Get("X-Readside-Source"); s != "store" {
			t.Errorf("page %d: X-Readside-Source %q, want store (Redis is up)", page, s)
		}
		if len(got.Missing) != 0 || len(got.Items) == 0 || len(got.Items) > 4 {
			t.Errorf("page %d: %d items, missing %v; want 1 to 4 items, none missing", page, len(got.Items), got.Missing)
		}
		for _, it := range got.Items {
			id := gjson.GetBytes(it, "id").Str
			if !sameJSON(it, stored[id]) {
				t.Errorf("page %d: item %s, want the stored %s", page, it, stored[id])
			}
			seen = append(seen, id)
		}
		if got.Next == nil {
			break
		}
		u = listing.URL + "/v1/" + w.ns + "?limit=4&cursor=" + url.QueryEscape(*got.Next)
	}
	if got := answerCount(t, reg, w.ns, "list", "degraded"); got != float64(pages) {
		t.Errorf("readside_query_answers_total{endpoint=list,from=degraded} = %v, want %d: one for each page", got, pages)
	}
	if !slices.Equal(seen, all) {
		t.Errorf("paging the degraded list gave\n%v\nwant every id once, in the list endpoint's order:\n%v", seen, all)
	}
}

// The source hanging with Redis down: a detail answers 504 (or 503 once the
// source's breaker is open) soon after the request deadline, and no build is
// left running after it.
func TestSlowSourceDeadlineHolds(t *testing.T) {
	t.Parallel()
	const deadline = 300 * time.Millisecond
	w := newWorld(t, 12)
	label := labelGoroutines(t)
	api := newCountingShopAPI(t, w.api, nil, 1)
	rd := testenv.StartProxy(t, testenv.RedisAddr())
	rd.Down()
	srv := w.through(api, false).serve(testenv.RedisAt(t, rd.Addr), w.es, query.Options{RequestTimeout: deadline})
	base := srv.URL + "/v1/" + w.ns
	c := testClient(t)
	w.api.SetLatency(5 * time.Second)
	t.Cleanup(func() { w.api.SetLatency(0) })

	check := func(what string, a answer) {
		t.Helper()
		wantProblem(t, what, a, http.StatusGatewayTimeout, http.StatusServiceUnavailable)
		if a.took > 2*time.Second {
			t.Errorf("%s: answered after %s with a request deadline of %s", what, a.took.Round(time.Millisecond), deadline)
		}
	}
	// A burst of distinct ids, one id asked by many, then one at a time: the
	// source's breaker opens along the way, which must not change the bound.
	urls := make([]string, 0, 20)
	for _, id := range idsUpTo(10) {
		urls = append(urls, base+"/"+id)
	}
	for range 10 {
		urls = append(urls, base+"/011")
	}
	// While they run, the API's goroutines are seen, so that seeing none
	// afterwards means something.
	var seenBusy atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			seenBusy.Store(max(seenBusy.Load(), int64(busyGoroutines(label))))
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	got := getAll(c, urls)
	close(stop)
	<-sampled
	for _, id := range []string{"012", "001", "002"} {
		got = append(got, timedGet(c, base+"/"+id))
	}
	var slowest time.Duration
	statuses := map[int]int{}
	for i, a := range got {
		check(fmt.Sprintf("request %d", i), a)
		slowest = max(slowest, a.took)
		statuses[a.status]++
	}
	t.Logf("statuses %v; the slowest answer took %s; at most %d goroutines ran API code at once", statuses, slowest.Round(time.Millisecond), seenBusy.Load())
	if seenBusy.Load() == 0 {
		t.Error("no goroutine of the API was seen while requests were in flight: busyGoroutines does not see them")
	}
	if api.fetches.Load() == 0 {
		t.Error("the source was never asked: the test did not exercise a build")
	}

	// The builds are bounded by the deadline too: well before the source's
	// own per-attempt timeout (2s) or its latency (5s), nothing is in flight.
	var busy int
	if !eventually(time.Second, func() bool {
		busy = busyGoroutines(label)
		return busy == 0 && api.active.Load() == 0
	}) {
		t.Errorf("a second after the answers, %d goroutines still run API code and %d requests are at the source", busy, api.active.Load())
	}
}

// Redis answering slower than the request deadline: every detail answers
// within about the deadline, from the sources or with 504; none waits for
// Redis.
func TestRedisSlowUsesDeadline(t *testing.T) {
	t.Parallel()
	const deadline = 500 * time.Millisecond
	w, _, stored := storedWorld(t, 10)
	rd := testenv.StartProxy(t, testenv.RedisAddr())
	rdb := testenv.RedisAt(t, rd.Addr)
	rd.Latency(2 * time.Second)
	srv := w.serve(rdb, w.es, query.Options{RequestTimeout: deadline})
	base := srv.URL + "/v1/" + w.ns
	c := testClient(t)

	statuses := map[int]int{}
	check := func(what string, a answer, ids ...string) {
		t.Helper()
		statuses[a.status]++
		if a.took > deadline+700*time.Millisecond {
			t.Errorf("%s: answered after %s with a request deadline of %s", what, a.took.Round(time.Millisecond), deadline)
		}
		switch {
		case a.status == http.StatusGatewayTimeout:
			wantProblem(t, what, a, http.StatusGatewayTimeout)
		case len(ids) == 1:
			wantDoc(t, what, a, stored[ids[0]], "source")
		default:
			var got items
			if a.status != http.StatusOK || json.Unmarshal(a.body, &got) != nil || len(got.Items) != len(ids) {
				t.Errorf("%s: %v, want %d items or 504", what, a, len(ids))
				return
			}
			for i, it := range got.Items {
				if !sameJSON(it, stored[ids[i]]) {
					t.Errorf("%s: item %s, want the stored %s", what, it, stored[ids[i]])
				}
			}
		}
	}
	for _, id := range []string{"001", "002", "003", "004", "005", "006", "007"} {
		check("GET /"+id, timedGet(c, base+"/"+id), id)
	}
	check("multi-get", timedGet(c, base+"?ids=008,009"), "008", "009")
	for i, a := range getAll(c, slices.Repeat([]string{base + "/010"}, 8)) {
		check(fmt.Sprintf("concurrent GET /010 #%d", i), a, "010")
	}
	t.Logf("statuses %v", statuses)
}

// Redis hanging: once a few requests have failed on it, the breaker opens
// and details cost about the source's time, not Redis's timeout; when Redis
// answers again, details come from the store again within a few seconds.
func TestBreakerOpensOnRedisOutage(t *testing.T) {
	t.Parallel()
	const (
		deadline = 2 * time.Second
		source   = 50 * time.Millisecond // the source's latency during the outage
	)
	w, all, stored := storedWorld(t, 20)
	rd := testenv.StartProxy(t, testenv.RedisAddr())
	srv := w.serve(testenv.RedisAt(t, rd.Addr), w.es, query.Options{RequestTimeout: deadline})
	base := srv.URL + "/v1/" + w.ns
	c := testClient(t)
	wantDoc(t, "before the outage", timedGet(c, base+"/001"), stored["001"], "store")

	rd.Blackhole()
	w.api.SetLatency(source)
	defer w.api.SetLatency(0)
	// The first requests each wait on Redis before falling back; they trip
	// the breaker (5 failures in a row).
	var trip []string
	for _, id := range all[:6] {
		trip = append(trip, base+"/"+id)
	}
	for i, a := range getAll(c, trip) {
		if a.status != http.StatusOK && a.status != http.StatusGatewayTimeout {
			t.Errorf("tripping request %d: %v, want 200 from the source or 504", i, a)
		}
		if a.took > deadline+time.Second {
			t.Errorf("tripping request %d: answered after %s with a request deadline of %s", i, a.took.Round(time.Millisecond), deadline)
		}
		t.Logf("tripping request %d: %d in %s", i, a.status, a.took.Round(time.Millisecond))
	}
	// Now Redis is skipped: a detail costs about the source's latency. The
	// bound is loose, but well under what one wait on Redis costs.
	const bound = source + 450*time.Millisecond
	for _, id := range all[6:11] {
		a := timedGet(c, base+"/"+id)
		wantDoc(t, "GET /"+id+" with the breaker open", a, stored[id], "source")
		if a.took > bound {
			t.Errorf("GET /%s with Redis down after the breaker tripped took %s, want under %s (the source takes %s)", id, a.took.Round(time.Millisecond), bound, source)
		}
		t.Logf("with the breaker open: GET /%s in %s", id, a.took.Round(time.Millisecond))
	}

	rd.Heal()
	back := time.Now()
	var last answer
	if !eventually(10*time.Second, func() bool {
		last = timedGet(c, base+"/001")
		return last.header.Get("X-Readside-Source") == "store"
	}) {
		t.Fatalf("10s after Redis answered again, details still do not come from the store: %v", last)
	}
	t.Logf("details came from the store again %s after Redis did", time.Since(back).Round(time.Millisecond))
	for _, id := range all[11:] {
		wantDoc(t, "GET /"+id+" after the outage", timedGet(c, base+"/"+id), stored[id], "store")
	}
}
