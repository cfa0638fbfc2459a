package clustertest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/readside/readside/internal/backend"
	"github.com/readside/readside/internal/config"
	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/query"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/elasticindex"
	"github.com/readside/readside/internal/sink/redisstore"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
)

// world is one projection on the test clusters: the source (a fake shop API),
// embedded JetStream, the Redis Cluster and the Elasticsearch cluster. The
// test reads the stores back through clients of its own, never through the
// product's (whose slot map is what a failover test is about).
type world struct {
	t       *testing.T
	ns      string
	api     *testenv.ShopAPI
	def     *projections.Definition
	js      jetstream.JetStream
	streams *stream.Setup
	rc      *redis.ClusterClient
	docs    *redisstore.Store
	index   *elasticindex.Index
	ids     []string
}

func newWorld(t *testing.T, versioned bool, n int) *world {
	t.Helper()
	ns := testenv.Namespace(t)
	api := testenv.NewShopAPI()
	t.Cleanup(api.Close)
	def, err := projections.Parse("test.yaml", []byte(testenv.ShopDefinition(ns, api.URL, versioned)), projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, js := testenv.StartJetStream(t).Connect(t)
	streams, err := stream.Ensure(context.Background(), js, stream.Config{}, def.AllSubjects())
	if err != nil {
		t.Fatal(err)
	}
	testenv.ShareCluster(t, testenv.RedisClusterLock)
	// The test's own client re-reads the slot map every 200 ms, so what it
	// reads back never depends on the product's way of noticing a failover.
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: testenv.RedisClusterAddrs(),
		ContextTimeoutEnabled: true, ClusterStateReloadInterval: 200 * time.Millisecond})
	t.Cleanup(func() { rc.Close() })
	testenv.CleanRedisCluster(t, rc, ns)
	es := testenv.ElasticCluster(t, ns)
	w := &world{
		t: t, ns: ns, api: api, def: def, js: js, streams: streams, rc: rc,
		docs:  redisstore.New(rc, redisstore.Options{KeyPattern: def.Redis.Key}),
		index: elasticindex.New(es, elasticindex.Options{Alias: def.Elasticsearch.Alias, Mapping: def.Mapping()}),
	}
	for i := range n {
		w.ids = append(w.ids, fmt.Sprint(i))
	}
	return w
}

// productStores are the stores as the projector and the query API open
// them: clients built by config.Backends from the cluster addresses.
func (w *world) productStores() *backend.Stores {
	w.t.Helper()
	b := config.Backends{RedisAddrs: testenv.RedisClusterAddrs(), ElasticURLs: testenv.ElasticClusterURLs()}
	es, err := b.Elastic()
	if err != nil {
		w.t.Fatal(err)
	}
	rdb := b.Redis()
	w.t.Cleanup(func() { rdb.Close() }) // after the projector using it stops (cleanups run last first)
	return &backend.Stores{Redis: rdb, Elastic: es}
}

// startReplica runs one more projector replica on the shared consumer, with
// clients of its own, until the test ends.
func (w *world) startReplica(name string) {
	w.t.Helper()
	env := projector.Env{
		JetStream: w.js, Streams: w.streams, Stores: w.productStores(), Log: testenv.Logger(w.t, name),
		SourceRetryBudget: 300 * time.Millisecond,
	}
	o := projector.Options{Batch: 64, Workers: 3, FetchConcurrency: 16, RetryInitial: 50 * time.Millisecond,
		RetryMax: 500 * time.Millisecond, ShutdownGrace: 5 * time.Second}
	p, err := projector.ForDefinition(context.Background(), w.def, env, o)
	if err != nil {
		w.t.Fatal(err)
	}
	testenv.Start(w.t, name, p.Run)
}

// publish announces that id changed.
func (w *world) publish(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := w.js.Publish(ctx, w.ns+".shop.changed."+id, nil)
	return err
}

// fill creates every shop and waits until both stores hold them.
func (w *world) fill() {
	w.t.Helper()
	for _, id := range w.ids {
		w.api.Put(id, "shop "+id)
		if err := w.publish(id); err != nil {
			w.t.Fatal(err)
		}
	}
	w.waitConverged(60 * time.Second)
}

// churn changes random shops at about perSecond until ctx ends: an update,
// a deletion (three in ten of the live ones) or a re-creation, each announced.
// It returns the number of changes once ctx ended.
func (w *world) churn(ctx context.Context, perSecond int) (wait func() int) {
	var n atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			id := w.ids[rng.IntN(len(w.ids))]
			if _, live := w.api.Get(id); live && rng.IntN(10) < 3 {
				w.api.Delete(id)
			} else {
				w.api.Put(id, fmt.Sprintf("shop %s %d", id, rng.IntN(1000)))
			}
			if err := w.publish(id); err != nil {
				w.t.Errorf("publishing: %v", err)
				return
			}
			n.Add(1)
		}
	}()
	return func() int { <-done; return int(n.Load()) }
}

// converged reports whether both stores hold the source's state of every id
// (a tombstone where the source has none), and describes the first miss.
func (w *world) converged() (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, id := range w.ids {
		shop, live := w.api.Get(id)
		for _, st := range []struct {
			name string
			get  func(context.Context, string) (sink.Stored, error)
		}{{"redis", w.docs.Get}, {"elasticsearch", w.index.Get}} {
			got, err := st.get(ctx, id)
			switch {
			case err != nil && !errors.Is(err, sink.ErrNotFound):
				return false, fmt.Sprintf("%s %s: %v", st.name, id, err)
			case !live:
				if err != nil || !got.Deleted {
					return false, fmt.Sprintf("%s %s: the source deleted it, the store has version %d deleted=%v %s (err %v)", st.name, id, got.Version, got.Deleted, got.Body, err)
				}
			case err != nil:
				return false, fmt.Sprintf("%s %s: missing, the source has version %d", st.name, id, shop.Version)
			case got.Deleted:
				return false, fmt.Sprintf("%s %s: a tombstone of version %d, the source has version %d", st.name, id, got.Version, shop.Version)
			case !sameJSON(got.Body, w.want(id)):
				return false, fmt.Sprintf("%s %s: %s, the source's is %s", st.name, id, got.Body, w.want(id))
			}
		}
	}
	return true, ""
}

// waitConverged fails the test when the stores have not converged within d,
// and returns how long it took.
func (w *world) waitConverged(d time.Duration) time.Duration {
	w.t.Helper()
	start := time.Now()
	for {
		ok, why := w.converged()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > d {
			w.t.Fatalf("not converged after %s: %s", d, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// want is the document the projection builds from the source's current state.
func (w *world) want(id string) []byte {
	doc, err := w.def.Build(id, map[string][]byte{"shop": w.api.Body(id)})
	if err != nil {
		w.t.Fatal(err)
	}
	return doc
}

// noDeadLetters fails the test when anything was dead-lettered.
func (w *world) noDeadLetters() {
	w.t.Helper()
	if err := testenv.NoDeadLetters(w.t, w.js, w.streams.Config().DeadLetter); err != nil {
		w.t.Error(err)
	}
}

// watchTombstones samples Redis until ctx ends and reports every tombstone
// that hides a live entity: a tombstone of version T while the source holds
// the entity at version V < T. A correct tombstone is "deleted after version
// T-1", and a re-creation takes a version of at least T, so this never
// happens, not even for a moment; the old tombstone (newest stored + 1, read
// after a re-creation was stored) did it.
func (w *world) watchTombstones(ctx context.Context) (wait func() []string) {
	var bad []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			got, err := w.docs.GetMany(rctx, w.ids)
			cancel()
			var be *sink.BatchError
			if err != nil && !errors.As(err, &be) {
				time.Sleep(50 * time.Millisecond)
				continue // a node stalled or lost; the next sample sees it
			}
			for i, s := range got {
				if s == nil || !s.Deleted {
					continue
				}
				// Read the source after the store: its version only grows.
				if shop, live := w.api.Get(w.ids[i]); live && shop.Version < s.Version {
					bad = append(bad, fmt.Sprintf("%s: tombstone %d over live version %d", w.ids[i], s.Version, shop.Version))
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return func() []string { <-done; return bad }
}

// masters are the addresses of the Redis Cluster's masters now.
func (w *world) masters() []string {
	w.t.Helper()
	var addrs []string
	seen := map[string]bool{}
	for _, id := range w.ids {
		a := testenv.RedisClusterMaster(w.t, w.rc, w.docs.Key(id))
		if !seen[a] {
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	slices.Sort(addrs)
	return addrs
}

func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return string(ja) == string(jb)
}

// Two and three replicas, churn that deletes and re-creates shops, and Redis
// masters stalling for a moment now and then (CLIENT PAUSE): no tombstone
// ever hides a live shop, and every shop ends as the source has it.
func TestReplicasChurnWhileRedisStalls(t *testing.T) {
	for _, tc := range []struct {
		replicas  int
		versioned bool
	}{{2, true}, {3, true}, {2, false}} {
		t.Run(fmt.Sprintf("replicas=%d/versioned=%v", tc.replicas, tc.versioned), func(t *testing.T) {
			w := newWorld(t, tc.versioned, 120)
			for i := range tc.replicas {
				w.startReplica(fmt.Sprintf("replica-%d", i+1))
			}
			w.fill()
			masters := w.masters()

			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer cancel()
			bad := func() []string { return nil }
			if tc.versioned { // a sequence-versioned tombstone has no source version to compare
				bad = w.watchTombstones(ctx)
			}
			changes := w.churn(ctx, 300)
			rng := rand.New(rand.NewPCG(1, 2))
			pauses := 0
			for ctx.Err() == nil {
				testenv.PauseRedis(t, masters[rng.IntN(len(masters))], time.Duration(50+rng.IntN(150))*time.Millisecond)
				pauses++
				time.Sleep(250 * time.Millisecond)
			}
			n := changes()
			took := w.waitConverged(60 * time.Second)
			t.Logf("%d replicas: %d changes over %d ids with %d Redis stalls; converged %.1fs after the churn stopped",
				tc.replicas, n, len(w.ids), pauses, took.Seconds())
			if b := bad(); len(b) > 0 {
				t.Errorf("%d samples saw a tombstone over a live shop, e.g. %s", len(b), b[0])
			}
			w.noDeadLetters()
		})
	}
}

// A Redis master is SIGKILLed while shops change: its replica takes over in
// seconds, the projectors notice it within seconds (not at their next
// periodic slot-map reload), and every shop converges within 10 s of the
// failover, with nothing dead-lettered.
func TestRedisMasterKilledDuringChurn(t *testing.T) {
	w := newWorld(t, true, 150)
	w.startReplica("replica-1")
	w.startReplica("replica-2")
	w.fill()
	testenv.LockCluster(t, testenv.RedisClusterLock)
	watch := testenv.RedisCluster(t) // the test's own view of the failover

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := w.churn(ctx, 200)
	time.Sleep(2 * time.Second)
	key := w.docs.Key("0")
	victim := testenv.RedisClusterMaster(t, watch, key)
	testenv.KillRedisNode(t, victim)
	killed := time.Now()
	failover := testenv.WaitRedisFailover(t, watch, key, victim, 30*time.Second)
	cancel()
	n := changes()
	took := w.waitConverged(60 * time.Second)
	t.Logf("killed master %s: replica promoted %.1fs after the kill; %d changes; every shop converged %.1fs after the promotion (%.1fs after the kill)",
		victim, failover.Seconds(), n, took.Seconds(), time.Since(killed).Seconds())
	if took > 10*time.Second {
		t.Errorf("converged %.1fs after the failover, want within 10s: the projector kept writing to the lost master", took.Seconds())
	}
	w.noDeadLetters()
}

// An Elasticsearch data node stops while shops change and comes back: the
// writes that failed meanwhile are retried, nothing is lost or dead-lettered.
func TestElasticNodeLostDuringChurn(t *testing.T) {
	w := newWorld(t, true, 120)
	w.startReplica("replica-1")
	w.startReplica("replica-2")
	w.fill()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := w.churn(ctx, 200)
	time.Sleep(2 * time.Second)
	testenv.StopElasticNode(t, 2)
	time.Sleep(4 * time.Second)
	cancel()
	n := changes()
	took := w.waitConverged(90 * time.Second)
	t.Logf("Elasticsearch node 2 stopped during %d changes: converged %.1fs after the churn stopped, with the node still down", n, took.Seconds())
	testenv.StartElasticNode(t, 2)
	w.noDeadLetters()
}

// The query API on the clusters: detail, a multi-get across hash slots, a
// list and a search; then, while a Redis master dies and its replica takes
// over, every detail and multi-get still answers the source's state (from the
// store, or built from the source for the lost master's keys), and soon after
// the failover every answer comes from the store again. Bursts of concurrent
// details on one lane go to Redis together (pipelines across the masters):
// they answer the source's state throughout too.
func TestQueryAPIOnClusters(t *testing.T) {
	w := newWorld(t, true, 100)
	w.startReplica("replica-1")
	w.fill()
	stores := w.productStores()
	views, err := query.Views(context.Background(), []*projections.Definition{w.def}, stores, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	api := query.New(views, w.js, testenv.Logger(t, "queryapi"), stores.Ready, query.Options{CoalesceReads: 1})
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	base := srv.URL + "/v1/" + w.def.Name

	// Every id in one multi-get: the keys spread over every master.
	if slots := len(w.masters()); slots < 3 {
		t.Fatalf("the ids fall on %d masters, want all 3", slots)
	}
	all := base + "?ids=" + strings.Join(w.ids, ",")
	// check reads every id in one multi-get and one id alone, and says where
	// the multi-get came from, or why it is wrong.
	check := func() (source string, err error) {
		var got struct {
			Items   []json.RawMessage `json:"items"`
			Missing []string          `json:"missing"`
		}
		res, err := getJSON(all, &got)
		if err != nil {
			return "", err
		}
		if res.StatusCode != 200 || len(got.Items) != len(w.ids) || len(got.Missing) != 0 {
			return "", fmt.Errorf("multi-get answered %s with %d items, %d missing; want 200 with %d", res.Status, len(got.Items), len(got.Missing), len(w.ids))
		}
		for i, it := range got.Items {
			if !sameJSON(it, w.want(w.ids[i])) {
				return "", fmt.Errorf("multi-get item %d = %s, want the source's %s", i, it, w.want(w.ids[i]))
			}
		}
		var one json.RawMessage
		if res, err := getJSON(base+"/7", &one); err != nil || res.StatusCode != 200 || !sameJSON(one, w.want("7")) {
			return "", fmt.Errorf("detail of 7 answered %v %s (%v)", res.Status, one, err)
		}
		burst := w.ids[:30]
		errs := make([]error, len(burst))
		var wg sync.WaitGroup
		for i, id := range burst {
			wg.Go(func() {
				var doc json.RawMessage
				switch res, err := getJSON(base+"/"+id, &doc); {
				case err != nil:
					errs[i] = err
				case res.StatusCode != 200 || !sameJSON(doc, w.want(id)):
					errs[i] = fmt.Errorf("detail of %s in a burst answered %s %s, want the source's %s", id, res.Status, doc, w.want(id))
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return "", err
		}
		return res.Header.Get("X-Readside-Source"), nil
	}
	if src, err := check(); err != nil || src != "store" {
		t.Fatalf("steady: the multi-get came from %q (%v), want the store", src, err)
	}
	// A list and a search, once Elasticsearch has refreshed.
	for _, q := range []struct {
		url  string
		want int
	}{{base + "?sort=name&limit=5", 5}, {base + "?q=shop+42", 1}} {
		var list struct {
			Items []json.RawMessage `json:"items"`
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			res, err := getJSON(q.url, &list)
			if err == nil && res.StatusCode == 200 && len(list.Items) >= q.want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d items (%v), want at least %d", q.url, len(list.Items), err, q.want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	testenv.LockCluster(t, testenv.RedisClusterLock)
	watch := testenv.RedisCluster(t)
	key := w.docs.Key("0")
	victim := testenv.RedisClusterMaster(t, watch, key)

	// Read all the time while the master dies, its replica takes over and
	// ten seconds more.
	type sample struct {
		at     time.Time
		source string
	}
	var samples []sample
	stop := make(chan struct{})
	reading := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				reading <- nil
				return
			case <-time.After(50 * time.Millisecond):
			}
			src, err := check()
			if err != nil {
				reading <- err
				return
			}
			samples = append(samples, sample{time.Now(), src})
		}
	}()
	testenv.KillRedisNode(t, victim)
	failover := testenv.WaitRedisFailover(t, watch, key, victim, 30*time.Second)
	promoted := time.Now()
	time.Sleep(10 * time.Second)
	close(stop)
	if err := <-reading; err != nil {
		t.Fatalf("during the failover: %v", err)
	}
	sources := map[string]int{}
	var lastNotStore time.Time
	for _, s := range samples {
		sources[s.source]++
		if s.source != "store" {
			lastNotStore = s.at
		}
	}
	back := lastNotStore.Sub(promoted)
	t.Logf("master %s killed: promoted after %.1fs; %d multi-gets of %d ids by origin %v, all right; every answer from the store again %.1fs after the promotion",
		victim, failover.Seconds(), len(samples), len(w.ids), sources, max(back, 0).Seconds())
	// go-redis alone re-reads the slot map every 60 s (and this client every
	// 10 s): only noticing the failure makes it this quick.
	if back > 8*time.Second {
		t.Errorf("answers were still built from the sources %.1fs after the failover: the query API's Redis client kept the lost master", back.Seconds())
	}
}

func getJSON(url string, into any) (*http.Response, error) {
	res, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(into); err != nil {
		return res, fmt.Errorf("GET %s: %s: %w", url, res.Status, err)
	}
	return res, nil
}
