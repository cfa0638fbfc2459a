package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/redisstore"
	"github.com/readside/readside/internal/sink/sinktest"
	"github.com/readside/readside/internal/testenv"
)

// openRedis returns a Redis sink on the test Redis under a key pattern of its
// own, whose keys are deleted when the test ends.
func openRedis(t testing.TB, o redisstore.Options) (*redisstore.Store, *redis.Client) {
	t.Helper()
	c := testenv.Redis(t)
	ns := testenv.Namespace(t)
	t.Cleanup(func() { deleteKeys(t, c, ns+":*") })
	if o.KeyPattern == "" {
		o.KeyPattern = ns + ":doc:{id}"
	} else {
		o.KeyPattern = ns + ":" + o.KeyPattern
	}
	return redisstore.New(c, o), c
}

func deleteKeys(t testing.TB, c *redis.Client, match string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := c.Scan(ctx, 0, match, 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Logf("cleanup: scan %s: %v", match, err)
		return
	}
	for len(keys) > 0 {
		n := min(len(keys), 500)
		if err := c.Unlink(ctx, keys[:n]...).Err(); err != nil {
			t.Logf("cleanup: unlink: %v", err)
			return
		}
		keys = keys[n:]
	}
}

func TestRedisConformance(t *testing.T) {
	t.Parallel()
	sinktest.Run(t, func(t *testing.T) sinktest.Store {
		r, _ := openRedis(t, redisstore.Options{})
		return r
	})
}

func TestRedisScan(t *testing.T) {
	t.Parallel()
	sinktest.RunScan(t, func(t *testing.T) sinktest.ScanStore {
		r, _ := openRedis(t, redisstore.Options{})
		return r
	})
}

// TestRedisClusterScan scans the test Redis Cluster, whose keys are on
// every master.
func TestRedisClusterScan(t *testing.T) {
	t.Parallel()
	sinktest.RunScan(t, func(t *testing.T) sinktest.ScanStore {
		c := testenv.RedisCluster(t)
		ns := testenv.Namespace(t)
		testenv.CleanRedisCluster(t, c, ns)
		return redisstore.New(c, redisstore.Options{KeyPattern: ns + ":doc:{id}"})
	})
}

func TestRedisReader(t *testing.T) {
	t.Parallel()
	sinktest.RunReader(t, func(t *testing.T) sinktest.ReaderStore {
		r, _ := openRedis(t, redisstore.Options{})
		return r
	})
}

func TestRedisKey(t *testing.T) {
	r := redisstore.New(nil, redisstore.Options{KeyPattern: "shop:{id}:v1"})
	for id, want := range map[string]string{"42": "shop:42:v1", "{id}": "shop:{id}:v1", "a b": "shop:a b:v1", "": "shop::v1"} {
		if got := r.Key(id); got != want {
			t.Errorf("Key(%q) = %q, want %q", id, got, want)
		}
	}
}

func TestRedisOptionsValidate(t *testing.T) {
	tests := []struct {
		o       redisstore.Options
		wantErr []string
	}{
		{redisstore.Options{KeyPattern: "shop:{id}"}, nil},
		{redisstore.Options{KeyPattern: "{id}", TombstoneTTL: time.Hour}, nil},
		{redisstore.Options{KeyPattern: "shop:"}, []string{"no {id}"}},
		{redisstore.Options{KeyPattern: "", TombstoneTTL: -time.Second}, []string{"no {id}", "tombstone TTL"}},
		{redisstore.Options{KeyPattern: "s:{id}", TombstoneTTL: time.Microsecond}, []string{"at least 1ms"}},
	}
	for _, tt := range tests {
		err := tt.o.Validate()
		if (err != nil) != (tt.wantErr != nil) {
			t.Errorf("%+v: Validate() = %v, want errors %q", tt.o, err, tt.wantErr)
			continue
		}
		for _, w := range tt.wantErr {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: Validate() = %v, want it to mention %q", tt.o, err, w)
			}
		}
	}
	// An invalid sink says why on every call, before any I/O.
	r := redisstore.New(nil, redisstore.Options{KeyPattern: "nope"})
	if err := r.Write(context.Background(), []sink.Doc{sinktest.JSONDoc("a", 1)}); err == nil || !strings.Contains(err.Error(), "{id}") {
		t.Errorf("Write on an invalid sink = %v", err)
	}
	if _, err := r.Get(context.Background(), "a"); err == nil {
		t.Errorf("Get on an invalid sink succeeded")
	}
}

// TestRedisLayout pins the stored value layout that the query API splices.
func TestRedisLayout(t *testing.T) {
	t.Parallel()
	r, c := openRedis(t, redisstore.Options{KeyPattern: "shop:{id}"})
	ctx := sinktest.Context(t)
	if err := r.Write(ctx, []sink.Doc{
		{ID: "42", Version: 1234, Body: []byte(`{"name":"x"}`)},
		{ID: "43", Version: 7, Deleted: true, Body: []byte(`{"ignored":true}`)},
	}); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{
		"42": `00000000000000001234d{"name":"x"}`,
		"43": `00000000000000000007t`,
	} {
		got, err := c.Get(ctx, r.Key(id)).Result()
		if err != nil || got != want {
			t.Errorf("GET %s = %q, %v; want %q", r.Key(id), got, err, want)
		}
	}
}

func TestRedisTombstoneTTL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ttl, want time.Duration
	}{{0, sink.DefaultTombstoneTTL}, {time.Hour, time.Hour}} {
		r, c := openRedis(t, redisstore.Options{TombstoneTTL: tc.ttl})
		ctx := sinktest.Context(t)
		ttlOf := func(id string) time.Duration {
			t.Helper()
			d, err := c.PTTL(ctx, r.Key(id)).Result()
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
		// Both kinds of tombstone: without a build time, and with one, as
		// the projector writes them.
		if err := r.Write(ctx, []sink.Doc{sinktest.JSONDoc("doc", 1), {ID: "gone", Version: 2, Deleted: true},
			{ID: "gone-built", Version: 2, Deleted: true, BuiltAt: time.Now()}}); err != nil {
			t.Fatal(err)
		}
		if d := ttlOf("doc"); d != -1 {
			t.Errorf("TTL of a document = %v, want none (-1)", d)
		}
		for _, id := range []string{"gone", "gone-built"} {
			if d := ttlOf(id); d <= tc.want-time.Minute || d > tc.want {
				t.Errorf("TombstoneTTL %v: TTL of tombstone %s = %v, want about %v", tc.ttl, id, d, tc.want)
			}
		}
		// The document that re-creates the entity must not inherit the TTL.
		if err := r.Write(ctx, []sink.Doc{sinktest.JSONDoc("gone", 3)}); err != nil {
			t.Fatal(err)
		}
		if d := ttlOf("gone"); d != -1 {
			t.Errorf("TTL of a document replacing a tombstone = %v, want none (-1)", d)
		}
	}
}

func TestRedisTombstoneExpires(t *testing.T) {
	t.Parallel()
	r, _ := openRedis(t, redisstore.Options{TombstoneTTL: 50 * time.Millisecond})
	ctx := sinktest.Context(t)
	if err := r.Write(ctx, []sink.Doc{{ID: "a", Version: 5, Deleted: true}, {ID: "b", Version: 5, Deleted: true, BuiltAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	for _, id := range []string{"a", "b"} {
		if _, err := r.Get(ctx, id); !errors.Is(err, sink.ErrNotFound) {
			t.Fatalf("Get(%s) after the tombstone TTL = %v, want ErrNotFound", id, err)
		}
	}
}

func TestRedisDocs(t *testing.T) {
	t.Parallel()
	sinktest.RunDocs(t, func(t *testing.T) sinktest.DocStore {
		r, _ := openRedis(t, redisstore.Options{})
		return r
	})
}

// TestRedisCorruptValue: a value in another layout fails Get loudly, and a
// write replaces it (it carries no version to guard).
func TestRedisCorruptValue(t *testing.T) {
	t.Parallel()
	r, c := openRedis(t, redisstore.Options{})
	ctx := sinktest.Context(t)
	if err := c.Set(ctx, r.Key("a"), "99999999999999999999 not ours", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Get(ctx, "a"); err == nil || errors.Is(err, sink.ErrNotFound) {
		t.Fatalf("Get of a corrupt value = %v, want a decode error", err)
	}
	if _, err := r.GetMany(ctx, []string{"a"}); err == nil {
		t.Fatalf("GetMany of a corrupt value succeeded")
	}
	if err := c.Set(ctx, r.Key("b"), "garbage", 0).Err(); err != nil {
		t.Fatal(err)
	}
	d := sinktest.JSONDoc("b", 1)
	if err := r.Write(ctx, []sink.Doc{d}); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Get(ctx, "b"); err != nil || string(got.Body) != string(d.Body) {
		t.Fatalf("Get after overwriting garbage = %+v, %v", got, err)
	}
}

// TestRedisConcurrentGuard: many writers racing on one key leave the highest
// version written, with its own body.
func TestRedisConcurrentGuard(t *testing.T) {
	t.Parallel()
	r, _ := openRedis(t, redisstore.Options{})
	ctx := sinktest.Context(t)
	const writers, writes = 16, 40
	maxes := make([]int64, writers)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for range writes {
				v := rand.Int64N(1 << 62)
				d := sinktest.JSONDoc("hot", v)
				if rand.IntN(5) == 0 {
					d = sink.Doc{ID: "hot", Version: v, Deleted: true}
				}
				// Batch the hot key with a per-writer key, as a projector would.
				if err := r.Write(ctx, []sink.Doc{d, sinktest.JSONDoc(fmt.Sprint("w", w), v)}); err != nil {
					errs <- err
					return
				}
				maxes[w] = max(maxes[w], v)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := int64(0)
	for _, m := range maxes {
		want = max(want, m)
	}
	got, err := r.Get(ctx, "hot")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != want {
		t.Fatalf("stored version %d, want the max written %d", got.Version, want)
	}
	if !got.Deleted && string(got.Body) != string(sinktest.JSONDoc("hot", want).Body) {
		t.Fatalf("stored body %s does not belong to version %d", got.Body, want)
	}
}

// TestRedisWrongType: a key of another type is a permanent item error; the
// other items of the batch are written.
func TestRedisWrongType(t *testing.T) {
	t.Parallel()
	r, c := openRedis(t, redisstore.Options{})
	ctx := sinktest.Context(t)
	if err := c.HSet(ctx, r.Key("hash"), "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	err := r.Write(ctx, []sink.Doc{sinktest.JSONDoc("ok", 1), sinktest.JSONDoc("hash", 1), sinktest.JSONDoc("ok2", 1)})
	var be *sink.BatchError
	if !errors.As(err, &be) || len(be.Items) != 1 || !sink.IsPermanent(be.Items[1]) {
		t.Fatalf("Write = %v, want a BatchError with item 1 permanent", err)
	}
	if !strings.Contains(be.Items[1].Error(), "WRONGTYPE") {
		t.Errorf("item error %q does not say WRONGTYPE", be.Items[1])
	}
	for _, id := range []string{"ok", "ok2"} {
		if _, err := r.Get(ctx, id); err != nil {
			t.Errorf("Get(%q): %v", id, err)
		}
	}
}

// TestRedisUnreachable: Redis down fails the whole call, transiently.
func TestRedisUnreachable(t *testing.T) {
	t.Parallel()
	// Not testenv.RedisAt: its client's dial and command retries take seconds.
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { c.Close() })
	r := redisstore.New(c, redisstore.Options{KeyPattern: "x:{id}"})
	ctx := sinktest.Context(t)
	err := r.Write(ctx, []sink.Doc{sinktest.JSONDoc("a", 1), sinktest.JSONDoc("b", 1)})
	var be *sink.BatchError
	if err == nil || errors.As(err, &be) || sink.IsPermanent(err) {
		t.Fatalf("Write with Redis down = %v (%T), want a plain transient error", err, err)
	}
	if _, err := r.Get(ctx, "a"); err == nil || errors.Is(err, sink.ErrNotFound) {
		t.Fatalf("Get with Redis down = %v, want an error other than ErrNotFound", err)
	}
	if _, err := r.GetMany(ctx, []string{"a"}); err == nil {
		t.Fatalf("GetMany with Redis down succeeded")
	}
}

// BenchmarkRedisWrite writes batches of 100 documents of about 1 KB, each a
// newer version than the last, so every item passes the guard and is SET.
func BenchmarkRedisWrite(b *testing.B) {
	r, _ := openRedis(b, redisstore.Options{})
	sinktest.BenchWrite(b, r.Write)
}
