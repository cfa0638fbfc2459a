// Package testenv connects tests to the real services Readside runs against:
// Redis and Elasticsearch started by `make testenv` (scripts/testenv.sh), and
// NATS JetStream embedded in the test process.
//
// A missing service is a test failure that says how to start it, never a skip.
// Tests share one Redis and one Elasticsearch across packages that `go test`
// runs in parallel, so every test works under its own Namespace, and removes
// what it wrote there when it ends (Elastic's prefix, CleanRedis).
//
// It also holds what tests of a running projector share: Start runs it until
// the test ends, Logger keeps its log for a failure (or shows it as it goes,
// with $READSIDE_TEST_LOG set), and ConsumerState, WaitDrained, DeadLetters
// and NoDeadLetters look at its JetStream consumer and dead-letter stream.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/readside/readside/internal/fixture"
)

const howToStart = "start the test services with `make testenv` (or run everything with `make test`)"

// RedisAddr is the address of the test Redis: $READSIDE_TEST_REDIS_ADDR or 127.0.0.1:6391.
func RedisAddr() string { return fixture.RedisAddr() }

// ElasticURL is the URL of the test Elasticsearch: $READSIDE_TEST_ES_URL or http://127.0.0.1:9251.
func ElasticURL() string { return fixture.ElasticURL() }

// Namespace returns a short prefix unique to this test run, such as "t3f9a1c2",
// for keys, index names and stream names, so parallel tests never collide.
// It is lower case, so it is a valid Elasticsearch index name prefix.
func Namespace(t testing.TB) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "t" + hex.EncodeToString(b[:])
}

// Redis returns a client for the test Redis, closed when the test ends.
// It fails the test, saying how to start Redis, when Redis does not answer.
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	return RedisAt(t, RedisAddr())
}

// RedisAt is Redis for another address, such as a fault proxy in front of the test Redis.
func RedisAt(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil && addr == RedisAddr() {
		t.Fatalf("Redis at %s does not answer (%v): %s", addr, err, howToStart)
	}
	return c
}

// CleanRedis deletes, when the test ends, the keys of namespace ns from c:
// those starting with ns (documents under keys such as "<ns>:{id}") and with
// "readside:<ns>" (a projection's reverse lookups; see sink.RefsPrefix).
// Call it after c is made, so it runs before c is closed.
func CleanRedis(t testing.TB, c *redis.Client, ns string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, pattern := range []string{ns + "*", "readside:" + ns + "*"} {
			iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
			for iter.Next(ctx) {
				c.Del(ctx, iter.Val())
			}
		}
	})
}

// Elastic returns a client for the test Elasticsearch. It fails the test,
// saying how to start Elasticsearch, when it does not answer.
// Indices whose names start with prefix are deleted when the test ends (pass
// the test's Namespace); an empty prefix deletes nothing.
func Elastic(t testing.TB, prefix string) *elasticsearch.Client {
	t.Helper()
	c := ElasticAt(t, ElasticURL())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := c.Cluster.Health(c.Cluster.Health.WithContext(ctx))
	if err != nil {
		t.Fatalf("Elasticsearch at %s does not answer (%v): %s", ElasticURL(), err, howToStart)
	}
	res.Body.Close()
	if res.IsError() {
		t.Fatalf("Elasticsearch at %s answers %s: %s", ElasticURL(), res.Status(), howToStart)
	}
	deleteIndicesAtCleanup(t, c, prefix, 10*time.Second)
	return c
}

// deleteIndicesAtCleanup deletes, when the test ends, the indices of c whose
// names start with prefix (nothing when it is empty), waiting at most wait.
func deleteIndicesAtCleanup(t testing.TB, c *elasticsearch.Client, prefix string, wait time.Duration) {
	if prefix == "" {
		return
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		res, err := c.Indices.Delete([]string{strings.ToLower(prefix) + "*"},
			c.Indices.Delete.WithContext(ctx), c.Indices.Delete.WithExpandWildcards("all"))
		if err == nil {
			res.Body.Close()
		}
	})
}

// ElasticAt is a client for another URL, such as a fault proxy in front of the
// test Elasticsearch; it does not check that the URL answers.
func ElasticAt(t testing.TB, url string) *elasticsearch.Client {
	t.Helper()
	c, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses: []string{url},
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, ResponseHeaderTimeout: 30 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// JetStream is an embedded NATS server with JetStream on a random port and a
// temporary store, shut down when the test ends.
type JetStream struct {
	Server *server.Server
	URL    string
}

// StartJetStream starts an embedded JetStream server for the test.
func StartJetStream(t testing.TB) *JetStream {
	t.Helper()
	return StartJetStreamIn(t, t.TempDir(), -1)
}

// StartJetStreamIn starts an embedded JetStream server storing under dir, on
// port (-1 for a random one). Restarting on the same dir and port keeps the streams.
func StartJetStreamIn(t testing.TB, dir string, port int) *JetStream {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("embedded NATS server did not start")
	}
	t.Cleanup(s.Shutdown)
	return &JetStream{Server: s, URL: s.ClientURL()}
}

// Connect opens a NATS connection, reconnecting forever (a test may stop
// the server), and a JetStream context, closed when the test ends.
func (j *JetStream) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return connect(t, j.URL, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
}

// connect opens a NATS connection to url with opts and a JetStream context,
// closed when the test ends.
func connect(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}
