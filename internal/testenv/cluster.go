package testenv

// Clusters for fault tests: a Redis Cluster (3 masters + 3 replicas, node
// timeout 3 s) and a 2-node Elasticsearch cluster (node 1 master+data, node 2
// data only), both started by `make testenv` (scripts/testenv.sh) and shared by
// every test package that `go test ./...` runs in parallel.
//
// Sharing: RedisCluster and ElasticCluster hold a shared lock on their cluster
// for the rest of the test (ShareCluster for tests that make their own
// clients); the helpers that hurt a cluster (KillRedisNode, PauseRedis,
// StopElasticNode) take it exclusively (LockCluster), so they wait until no
// other test, in any process, is using that cluster, and nobody else starts
// using it until their test has ended and the cluster is whole again. A test
// may take the exclusive lock after the shared one (it is upgraded), and its
// subtests share whatever it holds.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/redis/go-redis/v9"
)

// Lock names for LockCluster and ShareCluster.
const (
	RedisClusterLock   = "redis-cluster"
	ElasticClusterLock = "es-cluster"
)

// StateDir is the test services' state dir: $READSIDE_TEST_STATE or /var/lib/readside.
func StateDir() string {
	if d := os.Getenv("READSIDE_TEST_STATE"); d != "" {
		return d
	}
	return "/var/lib/readside"
}

// ---------------------------------------------------------------- locks

// clusterLock is one cluster's lock in this process: readers and a writer
// among the tests here, and one flock (shared or exclusive) on a file under the
// state dir standing for all of them towards other processes.
type clusterLock struct {
	name    string
	mu      sync.Mutex
	cond    *sync.Cond
	f       *os.File
	mode    int            // 0, syscall.LOCK_SH or syscall.LOCK_EX: what f holds
	readers map[string]int // test name -> shared holds
	writer  string         // test holding it exclusively
	depth   int            // the writer's nested holds
}

var (
	locksMu sync.Mutex
	locks   = map[string]*clusterLock{}
)

// lockWait bounds the wait for another process's tests to let go of a cluster.
const lockWait = 8 * time.Minute

func lockFor(name string) *clusterLock {
	locksMu.Lock()
	defer locksMu.Unlock()
	l := locks[name]
	if l == nil {
		l = &clusterLock{name: name, readers: map[string]int{}}
		l.cond = sync.NewCond(&l.mu)
		locks[name] = l
	}
	return l
}

// related: the same test, or one is a subtest of the other.
func related(a, b string) bool {
	return a == b || strings.HasPrefix(a, b+"/") || strings.HasPrefix(b, a+"/")
}

// flock sets the file lock to how (LOCK_SH, LOCK_EX or LOCK_UN). l.mu is held.
func (l *clusterLock) flock(how int) error {
	if how == syscall.LOCK_UN {
		if l.f != nil {
			l.f.Close() // closing drops the lock
			l.f = nil
		}
		l.mode = 0
		return nil
	}
	if l.f == nil {
		if err := os.MkdirAll(StateDir(), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(filepath.Join(StateDir(), ".lock-"+l.name), os.O_RDWR|os.O_CREATE, 0o666)
		if err != nil {
			return err
		}
		l.f = f
	}
	start := time.Now()
	next := start.Add(30 * time.Second)
	for {
		err := syscall.Flock(int(l.f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			l.mode = how
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		if time.Since(start) > lockWait {
			return fmt.Errorf("another test process held the %s lock (%s) for %v", l.name, l.f.Name(), lockWait)
		}
		if time.Now().After(next) {
			fmt.Fprintf(os.Stderr, "testenv: still waiting for the %s lock (another test process is using the cluster)\n", l.name)
			next = next.Add(30 * time.Second)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (l *clusterLock) unrelatedReaders(me string) bool {
	for r := range l.readers {
		if !related(r, me) {
			return true
		}
	}
	return false
}

// ShareCluster holds the named cluster in shared mode until the test ends:
// any number of tests may share it, while fault tests (LockCluster) wait for
// them. RedisCluster and ElasticCluster call it; call it yourself when a test
// reaches a cluster through clients of its own (RedisClusterAddrs, ElasticClusterURLs).
func ShareCluster(t testing.TB, name string) {
	t.Helper()
	l, me := lockFor(name), t.Name()
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.writer != "" && !related(me, l.writer) {
		l.cond.Wait()
	}
	if l.mode == 0 {
		if err := l.flock(syscall.LOCK_SH); err != nil {
			t.Fatalf("lock %s: %v", name, err)
		}
	}
	l.readers[me]++
	t.Cleanup(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.readers[me]--; l.readers[me] <= 0 {
			delete(l.readers, me)
		}
		if l.writer == "" && len(l.readers) == 0 {
			l.flock(syscall.LOCK_UN)
		}
		l.cond.Broadcast()
	})
}

// LockCluster holds the named cluster (RedisClusterLock, ElasticClusterLock)
// exclusively until the test ends, across every test process sharing the state
// dir: call it first in a test that kills, stops or pauses nodes of a shared
// cluster (the helpers that do call it too). It waits for the tests using the
// cluster to end. Nested and repeated calls from the test or its subtests are
// free; the cleanups that restore the cluster run before it is released.
func LockCluster(t testing.TB, name string) {
	t.Helper()
	l, me := lockFor(name), t.Name()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.writer != "" && related(me, l.writer) {
		l.depth++
		t.Cleanup(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.depth--
		})
		return
	}
	for l.writer != "" || l.unrelatedReaders(me) {
		l.cond.Wait()
	}
	if err := l.flock(syscall.LOCK_EX); err != nil {
		t.Fatalf("lock %s: %v", name, err)
	}
	l.writer, l.depth = me, 1
	t.Cleanup(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.depth--; l.depth > 0 {
			return
		}
		l.writer = ""
		if len(l.readers) > 0 { // the test's own shared holds outlive this one
			if err := l.flock(syscall.LOCK_SH); err != nil {
				t.Errorf("lock %s: %v", name, err)
				l.flock(syscall.LOCK_UN)
			}
		} else {
			l.flock(syscall.LOCK_UN)
		}
		l.cond.Broadcast()
	})
}

func holdsExclusive(t testing.TB, name string) bool {
	l := lockFor(name)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.writer != "" && related(t.Name(), l.writer)
}

// ---------------------------------------------------------------- Redis Cluster

// RedisClusterAddrs are the test Redis Cluster's nodes: $READSIDE_TEST_REDIS_CLUSTER
// (comma-separated), or 6 ports on 127.0.0.1 from $READSIDE_TEST_REDIS_CLUSTER_PORT
// (7101 to 7106 by default).
func RedisClusterAddrs() []string {
	if s := os.Getenv("READSIDE_TEST_REDIS_CLUSTER"); s != "" {
		return splitList(s)
	}
	addrs := make([]string, 6)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", portEnv("READSIDE_TEST_REDIS_CLUSTER_PORT", 7101)+i)
	}
	return addrs
}

func portEnv(name string, def int) int {
	if p, err := strconv.Atoi(os.Getenv(name)); err == nil && p > 0 {
		return p
	}
	return def
}

// RedisCluster returns a client for the test Redis Cluster, closed when the
// test ends, and shares the cluster with other tests until then (ShareCluster).
// It fails the test, saying how to start the cluster, when the cluster does not
// answer or is not healthy (cluster_state:ok with every slot served, every node
// connected; it allows 20 s for a cluster that is healing).
func RedisCluster(t testing.TB) *redis.ClusterClient {
	t.Helper()
	ShareCluster(t, RedisClusterLock)
	addrs := RedisClusterAddrs()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	if holdsExclusive(t, RedisClusterLock) { // the test may have hurt it already
		if !anyAnswers(addrs) {
			t.Fatalf("no node of the Redis Cluster %s answers: %s", strings.Join(addrs, ","), howToStart)
		}
		return c
	}
	if err := waitRedisCluster(addrs, 20*time.Second); err != nil {
		t.Fatalf("Redis Cluster %s: %v: %s", strings.Join(addrs, ","), err, howToStart)
	}
	return c
}

// CleanRedisCluster deletes, when the test ends, the keys of namespace ns from
// every master of c's cluster: those starting with ns or "readside:"+ns (as
// CleanRedis does), or with a hash tag "{"+ns or "readside:{"+ns. Call it after
// c is made. It asks the cluster afresh who the masters are, so it works after
// a failover too.
func CleanRedisCluster(t testing.TB, c *redis.ClusterClient, ns string) {
	t.Helper()
	addrs := c.Options().Addrs
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		fresh := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true})
		defer fresh.Close()
		err := fresh.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			for _, pattern := range []string{ns + "*", "readside:" + ns + "*", "{" + ns + "*", "readside:{" + ns + "*"} {
				iter := m.Scan(ctx, 0, pattern, 1000).Iterator()
				for iter.Next(ctx) {
					if err := m.Unlink(ctx, iter.Val()).Err(); err != nil {
						return err
					}
				}
				if err := iter.Err(); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Logf("cleaning %s* from the Redis Cluster: %v", ns, err)
		}
	})
}

// RedisClusterMaster is the address of the master that serves key's slot now,
// as the masters themselves say (the one claiming the slot with the highest
// config epoch), not as c's cached slot map says.
func RedisClusterMaster(t testing.TB, c *redis.ClusterClient, key string) string {
	t.Helper()
	slot := KeySlot(key)
	var best string
	bestEpoch := int64(-1)
	for _, a := range c.Options().Addrs {
		self, err := redisSelf(a)
		if err != nil || !self.master || !self.serves(slot) {
			continue
		}
		if self.epoch > bestEpoch {
			best, bestEpoch = a, self.epoch
		}
	}
	if best == "" {
		t.Fatalf("no master of the Redis Cluster %s serves slot %d (key %q)", strings.Join(c.Options().Addrs, ","), slot, key)
	}
	return best
}

var (
	killedMu sync.Mutex
	killedAt = map[string]time.Time{}
)

// KillRedisNode SIGKILLs the redis-server of the test cluster listening on
// addr (taking the cluster exclusively first: LockCluster). When the test ends
// the cluster is restored: the node is started again from its nodes.conf
// (`scripts/testenv.sh up redis-cluster`), where it rejoins as a replica, and the cleanup
// waits, up to 60 s, for a healthy 6-node cluster (cluster_state:ok everywhere,
// every node connected, every master with a replica).
func KillRedisNode(t testing.TB, addr string) {
	t.Helper()
	LockCluster(t, RedisClusterLock)
	port := portOf(addr)
	pidfile := filepath.Join(StateDir(), "redis-cluster", port, "redis.pid")
	pid, err := livePid(pidfile, "redis-server", ":"+port)
	if err != nil {
		t.Fatalf("kill Redis %s: %v", addr, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill Redis %s (pid %d): %v", addr, pid, err)
	}
	killedMu.Lock()
	killedAt[addr] = time.Now()
	killedMu.Unlock()
	t.Cleanup(func() { restoreRedisCluster(t) })
	if !waitGone(pid, "redis-server", 5*time.Second) {
		t.Fatalf("Redis %s (pid %d) still runs after SIGKILL", addr, pid)
	}
}

func restoreRedisCluster(t testing.TB) {
	t.Helper()
	start := time.Now()
	if err := testenvUp("redis-cluster"); err != nil {
		t.Errorf("restoring the Redis Cluster: %v", err)
		return
	}
	if err := waitRedisCluster(RedisClusterAddrs(), 60*time.Second); err != nil {
		t.Errorf("the Redis Cluster is not whole again 60 s after restarting its killed node: %v", err)
		return
	}
	t.Logf("Redis Cluster whole again after %.1fs", time.Since(start).Seconds())
}

// WaitRedisFailover waits until a node other than old serves key's slot as
// master, as that node itself says (asking the survivors afresh, not c's cached
// map), and returns how long the failover took: since KillRedisNode(old) when it
// killed old, otherwise since the call. It fails the test after within. It then
// asks c to reload its slot map.
func WaitRedisFailover(t testing.TB, c *redis.ClusterClient, key, old string, within time.Duration) time.Duration {
	t.Helper()
	slot := KeySlot(key)
	start := time.Now()
	killedMu.Lock()
	if k, ok := killedAt[old]; ok {
		start = k
	}
	killedMu.Unlock()
	deadline := time.Now().Add(within)
	for {
		for _, a := range c.Options().Addrs {
			if a == old {
				continue
			}
			if self, err := redisSelf(a); err == nil && self.master && self.serves(slot) {
				took := time.Since(start)
				c.ReloadState(context.Background())
				return took
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no node but %s serves slot %d (key %q) as master within %v", old, slot, key, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// PauseRedis delays every client's commands to the Redis at addr for d
// (CLIENT PAUSE ms ALL), to widen race windows; it is lifted when the test ends
// if still on. A node of the test cluster is paused under LockCluster; pausing
// the single test Redis delays every test using it.
func PauseRedis(t testing.TB, addr string, d time.Duration) {
	t.Helper()
	if contains(RedisClusterAddrs(), addr) {
		LockCluster(t, RedisClusterLock)
	}
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Do(ctx, "CLIENT", "PAUSE", d.Milliseconds(), "ALL").Err(); err != nil {
		c.Close()
		t.Fatalf("CLIENT PAUSE on %s: %v", addr, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Do(ctx, "CLIENT", "UNPAUSE")
		c.Close()
	})
}

// KeySlot is the Redis Cluster hash slot of key (CRC16 of its hash tag, mod 16384).
func KeySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

// nodeSelf is what a Redis Cluster node says of itself in CLUSTER NODES.
type nodeSelf struct {
	master bool
	epoch  int64
	slots  [][2]int
}

func (n nodeSelf) serves(slot int) bool {
	for _, r := range n.slots {
		if slot >= r[0] && slot <= r[1] {
			return true
		}
	}
	return false
}

func redisDo(addr string, f func(ctx context.Context, c *redis.Client) error) error {
	c := redis.NewClient(&redis.Options{
		Addr: addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		MaxRetries: -1, ContextTimeoutEnabled: true, Protocol: 2,
	})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return f(ctx, c)
}

func clusterNodes(addr string) (string, error) {
	var out string
	err := redisDo(addr, func(ctx context.Context, c *redis.Client) (err error) {
		out, err = c.ClusterNodes(ctx).Result()
		return err
	})
	return out, err
}

func redisSelf(addr string) (nodeSelf, error) {
	out, err := clusterNodes(addr)
	if err != nil {
		return nodeSelf{}, err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !hasFlag(f[2], "myself") {
			continue
		}
		n := nodeSelf{master: hasFlag(f[2], "master")}
		n.epoch, _ = strconv.ParseInt(f[6], 10, 64)
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") { // a slot being migrated or imported
				continue
			}
			lo, hi, ok := strings.Cut(s, "-")
			if !ok {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 == nil && err2 == nil {
				n.slots = append(n.slots, [2]int{a, b})
			}
		}
		return n, nil
	}
	return nodeSelf{}, fmt.Errorf("%s: no myself line in CLUSTER NODES", addr)
}

func hasFlag(flags, flag string) bool {
	for _, f := range strings.Split(flags, ",") {
		if f == flag {
			return true
		}
	}
	return false
}

// redisClusterProblem says what keeps the cluster at addrs from being whole:
// every node answers, says cluster_state:ok with all slots ok, knows exactly
// these nodes, sees none failing and all connected, and every master serving
// slots has a replica.
func redisClusterProblem(addrs []string) error {
	for _, a := range addrs {
		var info, nodes string
		err := redisDo(a, func(ctx context.Context, c *redis.Client) (err error) {
			if info, err = c.ClusterInfo(ctx).Result(); err != nil {
				return err
			}
			nodes, err = c.ClusterNodes(ctx).Result()
			return err
		})
		if err != nil {
			return fmt.Errorf("%s: %w", a, err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("%s says cluster_state is not ok", a)
		}
		if !strings.Contains(info, "cluster_slots_ok:16384") {
			return fmt.Errorf("%s: not all 16384 slots ok", a)
		}
		n, replicas := 0, map[string]int{}
		var masters []string
		for _, line := range strings.Split(nodes, "\n") {
			f := strings.Fields(line)
			if len(f) < 8 {
				continue
			}
			n++
			for _, bad := range []string{"fail", "fail?", "handshake", "noaddr"} {
				if hasFlag(f[2], bad) {
					return fmt.Errorf("%s sees %s as %s", a, f[1], f[2])
				}
			}
			if f[7] != "connected" {
				return fmt.Errorf("%s sees %s %s", a, f[1], f[7])
			}
			if hasFlag(f[2], "master") && len(f) > 8 {
				masters = append(masters, f[0])
			}
			if hasFlag(f[2], "slave") {
				replicas[f[3]]++
			}
		}
		if n != len(addrs) {
			return fmt.Errorf("%s knows %d nodes, not %d", a, n, len(addrs))
		}
		for _, m := range masters {
			if replicas[m] == 0 {
				return fmt.Errorf("%s: master %s has no replica", a, m)
			}
		}
	}
	return nil
}

// waitRedisCluster waits for redisClusterProblem to clear; when no node
// answers at all it gives up at once.
func waitRedisCluster(addrs []string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		err := redisClusterProblem(addrs)
		if err == nil {
			return nil
		}
		if !anyAnswers(addrs) {
			return fmt.Errorf("no node answers (%v)", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not healthy within %v: %v", within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func anyAnswers(addrs []string) bool {
	for _, a := range addrs {
		if redisDo(a, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() }) == nil {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------- Elasticsearch cluster

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// ElasticClusterURLs are the test Elasticsearch cluster's nodes, node 1 first:
// $READSIDE_TEST_ES_CLUSTER (comma-separated), or 2 ports on 127.0.0.1 from
// $READSIDE_TEST_ES_CLUSTER_PORT (http://127.0.0.1:9261 and :9262 by default).
func ElasticClusterURLs() []string {
	if s := os.Getenv("READSIDE_TEST_ES_CLUSTER"); s != "" {
		return splitList(s)
	}
	p := portEnv("READSIDE_TEST_ES_CLUSTER_PORT", 9261)
	return []string{fmt.Sprintf("http://127.0.0.1:%d", p), fmt.Sprintf("http://127.0.0.1:%d", p+1)}
}

// ElasticCluster returns a client over both nodes of the test Elasticsearch
// cluster and shares the cluster with other tests until the test ends
// (ShareCluster). It fails the test, saying how to start the cluster, unless
// both nodes are in and it is yellow or green (it allows 30 s for that).
// Indices whose names start with prefix are deleted when the test ends, as
// Elastic does; an empty prefix deletes nothing.
func ElasticCluster(t testing.TB, prefix string) *elasticsearch.Client {
	t.Helper()
	ShareCluster(t, ElasticClusterLock)
	urls := ElasticClusterURLs()
	c, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses: urls,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, ResponseHeaderTimeout: 30 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	wait := 30 * time.Second
	if holdsExclusive(t, ElasticClusterLock) { // the test may have stopped a node already
		wait = 0
	}
	if h, err := esClusterHealth(c, wait); err != nil {
		t.Fatalf("Elasticsearch cluster %s: %v: %s", strings.Join(urls, ","), err, howToStart)
	} else if wait > 0 && (h.Nodes != len(urls) || h.Status == "red") {
		t.Fatalf("Elasticsearch cluster %s has %d node(s), status %s: %s", strings.Join(urls, ","), h.Nodes, h.Status, howToStart)
	}
	deleteIndicesAtCleanup(t, c, prefix, 20*time.Second)
	return c
}

type esHealth struct {
	Status string `json:"status"`
	Nodes  int    `json:"number_of_nodes"`
}

// esClusterHealth asks for the cluster's health, waiting up to wait for all
// nodes and yellow (wait 0: as it is now).
func esClusterHealth(c *elasticsearch.Client, wait time.Duration) (esHealth, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait+10*time.Second)
	defer cancel()
	opts := []func(*esapi.ClusterHealthRequest){c.Cluster.Health.WithContext(ctx)}
	if wait > 0 {
		opts = append(opts, c.Cluster.Health.WithWaitForNodes(strconv.Itoa(len(ElasticClusterURLs()))),
			c.Cluster.Health.WithWaitForStatus("yellow"), c.Cluster.Health.WithTimeout(wait))
	}
	res, err := c.Cluster.Health(opts...)
	if err != nil {
		return esHealth{}, fmt.Errorf("does not answer (%v)", err)
	}
	defer res.Body.Close()
	var h esHealth
	if err := json.NewDecoder(res.Body).Decode(&h); err != nil {
		return h, fmt.Errorf("health: %s: %v", res.Status(), err)
	}
	if res.IsError() && res.StatusCode != http.StatusRequestTimeout {
		return h, fmt.Errorf("health: %s", res.Status())
	}
	return h, nil
}

// StopElasticNode stops node i (1 or 2) of the test Elasticsearch cluster
// (SIGTERM, waiting for it to exit), taking the cluster exclusively first
// (LockCluster). Node 2 holds data only: with it stopped the cluster goes on
// serving from node 1 (yellow). Node 1 is the only master-eligible node: with
// it stopped the cluster is unavailable. When the test ends the node is started
// again (`scripts/testenv.sh up es-cluster`) and the cleanup waits for both nodes and
// yellow or green; StartElasticNode does that earlier.
func StopElasticNode(t testing.TB, i int) {
	t.Helper()
	LockCluster(t, ElasticClusterLock)
	if i < 1 || i > 2 {
		t.Fatalf("StopElasticNode(%d): the test cluster has nodes 1 and 2", i)
	}
	pidfile := filepath.Join(StateDir(), fmt.Sprintf("esc-%d", i), "es.pid")
	pid, err := livePid(pidfile, "org.elasticsearch.bootstrap.Elasticsearch", fmt.Sprintf("esc-%d/", i))
	if err != nil {
		t.Fatalf("stop Elasticsearch cluster node %d: %v", i, err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("stop Elasticsearch cluster node %d (pid %d): %v", i, pid, err)
	}
	t.Cleanup(func() {
		if err := startElasticCluster(); err != nil {
			t.Errorf("restarting Elasticsearch cluster node %d: %v", i, err)
		}
	})
	if !waitGone(pid, "org.elasticsearch.bootstrap.Elasticsearch", 90*time.Second) {
		t.Fatalf("Elasticsearch cluster node %d (pid %d) still runs 90 s after SIGTERM", i, pid)
	}
	if i == 2 { // node 1 has seen it leave
		url := ElasticClusterURLs()[0] + "/_cluster/health?wait_for_nodes=1&timeout=30s"
		if res, err := http.Get(url); err == nil {
			res.Body.Close()
		}
	}
}

// StartElasticNode starts the test Elasticsearch cluster's stopped node i
// again before the test ends, and waits for both nodes and yellow or green.
func StartElasticNode(t testing.TB, i int) {
	t.Helper()
	LockCluster(t, ElasticClusterLock)
	if err := startElasticCluster(); err != nil {
		t.Fatalf("starting Elasticsearch cluster node %d: %v", i, err)
	}
}

func startElasticCluster() error {
	if err := testenvUp("es-cluster"); err != nil {
		return err
	}
	c, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: ElasticClusterURLs()})
	if err != nil {
		return err
	}
	h, err := esClusterHealth(c, 60*time.Second)
	if err != nil {
		return err
	}
	if h.Nodes != len(ElasticClusterURLs()) || h.Status == "red" {
		return fmt.Errorf("the cluster has %d node(s), status %s", h.Nodes, h.Status)
	}
	return nil
}

// ---------------------------------------------------------------- processes

// livePid reads a pidfile and checks that the process lives and that its
// command line contains every one of want.
func livePid(pidfile string, want ...string) (int, error) {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s: no pid", pidfile)
	}
	cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	line := string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))
	for _, w := range want {
		if !strings.Contains(line, w) {
			return 0, fmt.Errorf("pid %d from %s is not a live %s (command line %q)", pid, pidfile, want[0], line)
		}
	}
	return pid, nil
}

// waitGone waits until pid no longer runs what (a zombie counts as gone: the
// daemons' parent may never reap them).
func waitGone(pid int, what string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for {
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.Contains(cmd, []byte(what)) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testenvUp runs `bash scripts/testenv.sh up PIECE...` of this repository
// (found by walking up from the working directory to go.mod), which starts
// what is down in those pieces and waits for it. Only the piece a test hurt is
// named: another process's fault test may be holding another piece down.
func testenvUp(pieces ...string) error {
	dir, err := os.Getwd()
	if err != nil {
		return err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return errors.New("no go.mod above the working directory: cannot find scripts/testenv.sh")
		}
		dir = parent
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(dir, "scripts", "testenv.sh"), "up"}, pieces...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("scripts/testenv.sh up %s: %v\n%s", strings.Join(pieces, " "), err, lastLines(out, 30))
	}
	return nil
}

func lastLines(b []byte, n int) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func portOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return addr[i+1:]
	}
	return addr
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
