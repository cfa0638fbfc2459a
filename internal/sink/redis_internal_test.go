package sink

import (
	"context"
	"testing"
	"time"

	"github.com/readside/readside/internal/testenv"
)

// TestRedisReloadsScript: when Redis has lost the script (a restart, a
// failover), Write loads it again and retries, without failing the batch.
func TestRedisReloadsScript(t *testing.T) {
	t.Parallel()
	c := testenv.Redis(t)
	ns := testenv.Namespace(t)
	r := NewRedis(c, RedisOptions{KeyPattern: ns + ":{id}"})
	t.Cleanup(func() { c.Del(context.Background(), r.Key("a"), r.Key("b")) })
	// A script of its own that Redis has never seen, and a sink that thinks
	// it loaded it: the state after a Redis restart.
	r.src = guardScript + "-- " + ns + "\n"
	r.sha = scriptSHA(r.src)
	r.loaded.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	docs := []Doc{{ID: "a", Version: 2, Body: []byte(`{"a":2}`)}, {ID: "b", Version: 1, Deleted: true}}
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

func TestValueWithBuildTime(t *testing.T) {
	at := time.UnixMilli(1795255200123)
	for _, d := range []Doc{
		{ID: "a", Version: 42, Body: []byte(`{"x":1}`), BuiltAt: at},
		{ID: "a", Version: 7, Deleted: true, BuiltAt: at},
		{ID: "a", Version: 9, Body: []byte(`{}`)},
	} {
		v := appendValue(nil, &d)
		got, err := DecodeValue(v)
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		if got.Version != d.Version || got.Deleted != d.Deleted || !got.BuiltAt.Equal(d.BuiltAt) || (!d.Deleted && string(got.Body) != string(d.Body)) {
			t.Errorf("%s decoded to %+v, want %+v", v, got, d)
		}
	}
	for _, bad := range []string{"00000000000000000001D12", "00000000000000000001Dabcdefghijklm{}", "00000000000000000001T1795255200123{}"} {
		if _, err := DecodeValue([]byte(bad)); err == nil {
			t.Errorf("DecodeValue(%q): no error", bad)
		}
	}
}
