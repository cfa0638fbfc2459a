package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/testenv"
)

// TestRedisReloadsScript: when Redis has lost the script (a restart, a
// failover), Write loads it again and retries, without failing the batch.
func TestRedisReloadsScript(t *testing.T) {
	t.Parallel()
	c := testenv.Redis(t)
	ns := testenv.Namespace(t)
	r := New(c, Options{KeyPattern: ns + ":{id}"})
	t.Cleanup(func() { c.Del(context.Background(), r.Key("a"), r.Key("b")) })
	// A script of its own that Redis has never seen, and a sink that thinks
	// it loaded it: the state after a Redis restart.
	r.src = guardScript + "-- " + ns + "\n"
	r.sha = scriptSHA(r.src)
	r.loaded.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	docs := []sink.Doc{{ID: "a", Version: 2, Body: []byte(`{"a":2}`)}, {ID: "b", Version: 1, Deleted: true}}
	if err := r.Write(ctx, docs); err != nil {
		t.Fatalf("Write after the script was lost: %v", err)
	}
	if ok, err := c.ScriptExists(ctx, r.sha).Result(); err != nil || !ok[0] {
		t.Fatalf("script not loaded again: %v %v", ok, err)
	}
	if got, err := r.Get(ctx, "a"); err != nil || got.Version != 2 {
		t.Fatalf("Get(a) = %+v, %v", got, err)
	}
	if got, err := r.Get(ctx, "b"); err != nil || !got.Deleted {
		t.Fatalf("Get(b) = %+v, %v", got, err)
	}
}
