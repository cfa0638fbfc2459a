package testenv_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readside/readside/internal/testenv"
)

func TestRedisClusterAnswersAndPipelinesAcrossSlots(t *testing.T) {
	c := testenv.RedisCluster(t)
	ns := testenv.Namespace(t)
	testenv.CleanRedisCluster(t, c, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	info, err := c.ClusterInfo(ctx).Result()
	if err != nil || !strings.Contains(info, "cluster_state:ok") {
		t.Fatalf("CLUSTER INFO: %v %q", err, info)
	}

	// 200 keys land on all three masters; one pipeline writes them, another reads them.
	const n = 200
	slots := map[int]bool{}
	masters := map[string]bool{}
	pipe := c.Pipeline()
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("%s:k%d", ns, i)
		slots[testenv.KeySlot(key)] = true
		pipe.Set(ctx, key, i, time.Minute)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 37 {
		key := fmt.Sprintf("%s:k%d", ns, i)
		masters[testenv.RedisClusterMaster(t, c, key)] = true
		if got := c.ClusterKeySlot(ctx, key).Val(); got != int64(testenv.KeySlot(key)) {
			t.Errorf("KeySlot(%q) = %d, CLUSTER KEYSLOT says %d", key, testenv.KeySlot(key), got)
		}
	}
	if len(masters) < 2 {
		t.Errorf("keys over %d slots reached only masters %v", len(slots), masters)
	}
	pipe = c.Pipeline()
	gets := make([]*redis.StringCmd, n)
	for i := range gets {
		gets[i] = pipe.Get(ctx, fmt.Sprintf("%s:k%d", ns, i))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for i, g := range gets {
		if v, _ := g.Int(); v != i {
			t.Fatalf("key %d: got %q", i, g.Val())
		}
	}
	t.Logf("%d keys over %d slots on masters %v", n, len(slots), masters)
}

func TestRedisClusterKillMasterFailsOver(t *testing.T) {
	testenv.LockCluster(t, testenv.RedisClusterLock)
	c := testenv.RedisCluster(t)
	ns := testenv.Namespace(t)
	testenv.CleanRedisCluster(t, c, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	key := ns + ":scratch"
	if err := c.Set(ctx, key, "before", 0).Err(); err != nil {
		t.Fatal(err)
	}
	old := testenv.RedisClusterMaster(t, c, key)
	// Wait for the replica to have the key, so it survives the failover.
	if err := c.Do(ctx, "WAIT", 1, 2000).Err(); err != nil {
		t.Log("WAIT:", err)
	}
	testenv.KillRedisNode(t, old)
	took := testenv.WaitRedisFailover(t, c, key, old, 30*time.Second)
	now := testenv.RedisClusterMaster(t, c, key)
	t.Logf("failover of %s to %s took %.1fs", old, now, took.Seconds())
	if now == old {
		t.Fatalf("master of %q is still %s", key, old)
	}

	// The client gets there too, once it has reloaded its slot map.
	var got string
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		if got, err = c.Get(ctx, key).Result(); err == nil || time.Now().After(deadline) {
			break
		}
		c.ReloadState(ctx)
		time.Sleep(200 * time.Millisecond)
	}
	if got != "before" {
		t.Errorf("after the failover GET %q = %q", key, got)
	}
	if err := c.Set(ctx, key, "after", 0).Err(); err != nil {
		t.Errorf("SET after the failover: %v", err)
	}
	// The cleanup restarts old, waits for a whole cluster; the next test checks it is.
}

func TestRedisClusterWholeAfterKill(t *testing.T) {
	// Runs after TestRedisClusterKillMasterFailsOver: RedisCluster insists on a
	// healthy cluster of 6 (every master with a replica).
	c := testenv.RedisCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	var masters []string
	err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		mu.Lock()
		masters = append(masters, m.Options().Addr)
		mu.Unlock()
		return nil
	})
	if err != nil || len(masters) != 3 {
		t.Fatalf("masters %v, %v", masters, err)
	}
}

func TestRedisClusterPauseDelaysCommands(t *testing.T) {
	c := testenv.RedisCluster(t)
	ns := testenv.Namespace(t)
	testenv.CleanRedisCluster(t, c, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	key := ns + ":paused"
	if err := c.Set(ctx, key, "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	testenv.PauseRedis(t, testenv.RedisClusterMaster(t, c, key), 500*time.Millisecond)
	start := time.Now()
	if err := c.Get(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("GET during a 500 ms pause took only %v", d)
	}
}

func TestElasticClusterHasTwoNodes(t *testing.T) {
	c := testenv.ElasticCluster(t, "")
	res, err := c.Cat.Nodes(c.Cat.Nodes.WithFormat("json"), c.Cat.Nodes.WithH("name", "node.role", "master"))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var nodes []struct {
		Name   string `json:"name"`
		Role   string `json:"node.role"`
		Master string `json:"master"`
	}
	if err := json.NewDecoder(res.Body).Decode(&nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 {
		t.Fatalf("nodes: %+v", nodes)
	}
	for _, n := range nodes {
		t.Logf("%s roles %s master %s", n.Name, n.Role, n.Master)
		if n.Name == "readside-esc-1" && n.Master != "*" {
			t.Errorf("readside-esc-1 is not the master")
		}
	}
}

func TestElasticClusterServesWithNode2Stopped(t *testing.T) {
	testenv.LockCluster(t, testenv.ElasticClusterLock)
	ns := testenv.Namespace(t)
	c := testenv.ElasticCluster(t, ns)
	index := ns + "-docs"
	res, err := c.Index(index, strings.NewReader(`{"n":1}`), c.Index.WithDocumentID("1"), c.Index.WithRefresh("true"))
	if err != nil || res.IsError() {
		t.Fatalf("index: %v %v", err, res)
	}
	res.Body.Close()
	res, err = c.Cluster.Health(c.Cluster.Health.WithIndex(index), c.Cluster.Health.WithWaitForStatus("green"),
		c.Cluster.Health.WithTimeout(30*time.Second))
	if err != nil || res.IsError() {
		t.Fatalf("green: %v %v", err, res)
	}
	res.Body.Close()

	start := time.Now()
	testenv.StopElasticNode(t, 2)
	t.Logf("node 2 stopped in %.1fs", time.Since(start).Seconds())
	for i := 0; i < 4; i++ { // round-robin reaches the stopped node's URL too
		res, err := c.Get(index, "1")
		if err != nil || res.IsError() {
			t.Fatalf("GET with node 2 stopped: %v %v", err, res)
		}
		res.Body.Close()
	}
	start = time.Now()
	testenv.StartElasticNode(t, 2)
	t.Logf("node 2 back in %.1fs", time.Since(start).Seconds())
}

func TestClusterLockSharesUpgradesAndReleases(t *testing.T) {
	const name = "selftest"
	path := filepath.Join(testenv.StateDir(), ".lock-"+name)
	// other tries the lock through a file description of its own, as another process would.
	other := func(how int) bool {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		return syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB) == nil
	}
	t.Run("hold", func(t *testing.T) {
		testenv.ShareCluster(t, name)
		if !other(syscall.LOCK_SH) || other(syscall.LOCK_EX) {
			t.Error("shared: others should share it, not take it")
		}
		testenv.LockCluster(t, name) // upgraded: the test's own shared hold does not block it
		if other(syscall.LOCK_SH) {
			t.Error("exclusive: another process could share it")
		}
		t.Run("sub", func(t *testing.T) { // a subtest shares what its parent holds
			testenv.ShareCluster(t, name)
			testenv.LockCluster(t, name)
		})
		if other(syscall.LOCK_SH) {
			t.Error("exclusive after the subtest: another process could share it")
		}
	})
	if !other(syscall.LOCK_EX) {
		t.Error("still held after the test ended")
	}
}
