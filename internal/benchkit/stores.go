package benchkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/redis/go-redis/v9"
	"github.com/tidwall/gjson"

	"github.com/readside/readside/internal/config"
	"github.com/readside/readside/internal/telemetry"
)

// StoresConfig says where the stores are and how to tell a user who has not
// started them.
type StoresConfig struct {
	RedisAddr  string
	ElasticURL string
	// HowToStart ends the error that a store does not answer, such as
	// "start the test services with `make testenv`".
	HowToStart string
	// WrapElastic, when not nil, wraps the transport of the Elasticsearch
	// client, for example to time its requests. (Redis hooks can be added to
	// Stores.Redis after Connect.)
	WrapElastic func(http.RoundTripper) http.RoundTripper
	// Tracing, when on, traces the Elasticsearch client as the daemons'
	// is (Redis: Tracing.InstrumentRedis on Stores.Redis after Connect).
	Tracing *telemetry.Tracing
}

// Stores are the Redis and Elasticsearch a benchmark runs against, with the
// client settings of cmd/projector and cmd/queryapi (internal/config.Backends),
// and what the stores said about themselves when connected.
type Stores struct {
	Redis   *redis.Client
	Elastic *elasticsearch.Client
	PIDs    PIDs // of the stores when they run on this machine, for SampleCPU

	cfg           StoresConfig
	redisVersion  string
	elasticServer string // version and heap
}

// Connect makes the clients and checks that both stores answer, within 5
// seconds unless ctx has a deadline. The error of a store that does not
// answer ends with cfg.HowToStart.
func Connect(ctx context.Context, cfg StoresConfig) (*Stores, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	s := &Stores{cfg: cfg}
	if err := s.connectRedis(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.connectElastic(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Stores) connectRedis(ctx context.Context) error {
	addr := s.cfg.RedisAddr
	// Dial first: the client would retry and log every attempt.
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("Redis at %s does not answer (%v): %s", addr, err, s.cfg.HowToStart)
	}
	conn.Close()
	s.Redis = redis.NewClient(&redis.Options{Addr: addr, PoolSize: config.RedisPoolSize, ReadTimeout: config.RedisTimeout, WriteTimeout: config.RedisTimeout, ContextTimeoutEnabled: true})
	info, err := s.Redis.Info(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("Redis at %s does not answer (%v): %s", addr, err, s.cfg.HowToStart)
	}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "redis_version:"); ok {
			s.redisVersion = v
		}
		if v, ok := strings.CutPrefix(line, "process_id:"); ok && isLocal(addr) {
			s.PIDs.Redis, _ = strconv.Atoi(v)
		}
	}
	return nil
}

func (s *Stores) connectElastic(ctx context.Context) error {
	u := s.cfg.ElasticURL
	var tr http.RoundTripper = &http.Transport{MaxIdleConnsPerHost: 64, ResponseHeaderTimeout: 30 * time.Second}
	if s.cfg.WrapElastic != nil {
		tr = s.cfg.WrapElastic(tr)
	}
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{u}, Transport: tr, Instrumentation: s.cfg.Tracing.ElasticInstrumentation()})
	if err != nil {
		return fmt.Errorf("elasticsearch client: %w", err)
	}
	s.Elastic = es
	info := es.Nodes.Info
	res, err := info(info.WithContext(ctx), info.WithNodeID("_local"),
		info.WithFilterPath("nodes.*.version", "nodes.*.jvm.mem.heap_max_in_bytes", "nodes.*.process.id"))
	if err != nil {
		return fmt.Errorf("Elasticsearch at %s does not answer (%v): %s", u, err, s.cfg.HowToStart)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.IsError() {
		return fmt.Errorf("Elasticsearch at %s answers %s: %s", u, res.Status(), s.cfg.HowToStart)
	}
	gjson.GetBytes(body, "nodes").ForEach(func(_, n gjson.Result) bool {
		s.elasticServer = fmt.Sprintf("%s, heap %d MB", n.Get("version").Str, n.Get("jvm.mem.heap_max_in_bytes").Int()>>20)
		if pu, err := url.Parse(u); err == nil && isLocal(pu.Host) {
			s.PIDs.Elastic = int(n.Get("process.id").Int())
		}
		return false
	})
	return nil
}

// isLocal reports whether addr (host:port) is on this machine, where the
// process id a service reports is one /proc knows.
func isLocal(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Describe says which stores these are, for a report's header:
// "Redis 7.4.1 at 127.0.0.1:6391; Elasticsearch 8.15.0, heap 512 MB at http://…".
func (s *Stores) Describe() string {
	return fmt.Sprintf("Redis %s at %s; Elasticsearch %s at %s", s.redisVersion, s.cfg.RedisAddr, s.elasticServer, s.cfg.ElasticURL)
}

// Namespace is a fresh namespace for the keys and indices of one run: prefix
// and 6 random hex digits, such as "bench3f9a1c". Give prefix in lower case,
// as Elasticsearch wants index names.
func Namespace(prefix string) (string, error) {
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", err
	}
	return prefix + hex.EncodeToString(rnd[:]), nil
}

// DeleteKeys deletes the Redis keys starting with prefix, a thousand at a time.
func (s *Stores) DeleteKeys(ctx context.Context, prefix string) error {
	iter := s.Redis.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		err := s.Redis.Unlink(ctx, keys...).Err()
		keys = keys[:0]
		return err
	}
	for iter.Next(ctx) {
		if keys = append(keys, iter.Val()); len(keys) == 1000 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	return flush()
}

// DeleteIndices deletes the Elasticsearch indices matching pattern, hidden
// ones included; none matching is no error.
func (s *Stores) DeleteIndices(ctx context.Context, pattern string) error {
	del := s.Elastic.Indices.Delete
	res, err := del([]string{pattern}, del.WithContext(ctx), del.WithExpandWildcards("all"), del.WithAllowNoIndices(true))
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.IsError() {
		return fmt.Errorf("deleting indices %s: %s", pattern, res.Status())
	}
	return nil
}

// Clean deletes every Redis key and Elasticsearch index whose name starts with
// ns: all that a run made under its Namespace. It cleans both stores whatever
// fails in one, and returns the failures joined, each naming its store.
func (s *Stores) Clean(ctx context.Context, ns string) error {
	var errs []error
	if err := s.DeleteKeys(ctx, ns); err != nil {
		errs = append(errs, fmt.Errorf("cleaning Redis: %w", err))
	}
	if err := s.DeleteIndices(ctx, ns+"*"); err != nil {
		errs = append(errs, fmt.Errorf("cleaning Elasticsearch: %w", err))
	}
	return errors.Join(errs...)
}

// Close closes the Redis client; the Elasticsearch client holds nothing to close.
func (s *Stores) Close() {
	if s.Redis != nil {
		s.Redis.Close()
	}
}
