package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/redis/go-redis/v9"
	"github.com/tidwall/gjson"

	"github.com/readside/readside/projections"
)

const howToStart = "start the test services with `make testenv` (or run `make querybench`, which does)"

// bench is what every scenario shares: the stores, the documents, the
// servers under test and the namespace of every key and index of the run.
type bench struct {
	s    *settings
	log  *slog.Logger
	out  io.Writer // progress
	ns   string    // namespace of this run, such as "qbench3f9a1c"; also the projection's name
	def  *projections.Definition
	rdb  *redis.Client
	es   *elasticsearch.Client
	data dataset
	srv  servers
	info struct{ redis, es string }
	pids servicePIDs
	idle cpuUse // one second before the run
}

// start checks the stores and makes the namespace. Close the bench when
// done: it deletes everything the run made.
func start(ctx context.Context, s *settings, log *slog.Logger, out io.Writer) (*bench, error) {
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	b := &bench{s: s, log: log, out: out, ns: "qbench" + hex.EncodeToString(rnd[:])}
	if err := b.connect(ctx); err != nil {
		b.close()
		return nil, err
	}
	// How busy the machine is before we start: what other processes take is
	// noise that the baselines see as much as the API does.
	cpu := sampleCPU(b.pids)
	select {
	case <-ctx.Done():
		b.close()
		return nil, ctx.Err()
	case <-time.After(time.Second):
	}
	b.idle = cpu.since()
	return b, nil
}

// connect makes the clients with the settings of cmd/queryapi
// (internal/config.Backends) and checks that both stores answer.
func (b *bench) connect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	b.rdb = redis.NewClient(&redis.Options{Addr: b.s.redisAddr, PoolSize: 64, ReadTimeout: 3 * time.Second, WriteTimeout: 3 * time.Second, ContextTimeoutEnabled: true})
	info, err := b.rdb.Info(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("Redis at %s does not answer (%v): %s", b.s.redisAddr, err, howToStart)
	}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "redis_version:"); ok {
			b.info.redis = v
		}
		if v, ok := strings.CutPrefix(line, "process_id:"); ok && isLocal(b.s.redisAddr) {
			b.pids.redis, _ = strconv.Atoi(v)
		}
	}
	b.es, err = elasticsearch.NewClient(elasticsearch.Config{
		Addresses: []string{b.s.esURL},
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, ResponseHeaderTimeout: 30 * time.Second},
	})
	if err != nil {
		return fmt.Errorf("elasticsearch client: %w", err)
	}
	res, err := b.es.Nodes.Info(b.es.Nodes.Info.WithContext(ctx), b.es.Nodes.Info.WithNodeID("_local"),
		b.es.Nodes.Info.WithFilterPath("nodes.*.version", "nodes.*.jvm.mem.heap_max_in_bytes", "nodes.*.process.id"))
	if err != nil {
		return fmt.Errorf("Elasticsearch at %s does not answer (%v): %s", b.s.esURL, err, howToStart)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.IsError() {
		return fmt.Errorf("Elasticsearch at %s answers %s: %s", b.s.esURL, res.Status(), howToStart)
	}
	gjson.GetBytes(body, "nodes").ForEach(func(_, n gjson.Result) bool {
		b.info.es = fmt.Sprintf("%s, heap %d MB", n.Get("version").Str, n.Get("jvm.mem.heap_max_in_bytes").Int()>>20)
		if u, err := url.Parse(b.s.esURL); err == nil && isLocal(u.Host) {
			b.pids.es = int(n.Get("process.id").Int())
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

// close stops the servers and deletes every Redis key and Elasticsearch
// index of the run.
func (b *bench) close() {
	b.srv.close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if b.rdb != nil {
		if err := b.deleteKeys(ctx); err != nil {
			b.progress("cleaning Redis: %v", err)
		}
		b.rdb.Close()
	}
	if b.es != nil {
		if err := b.deleteIndices(ctx); err != nil {
			b.progress("cleaning Elasticsearch: %v", err)
		}
	}
}

// deleteKeys deletes the Redis keys of the namespace.
func (b *bench) deleteKeys(ctx context.Context) error {
	iter := b.rdb.Scan(ctx, 0, b.ns+"*", 1000).Iterator()
	var keys []string
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		err := b.rdb.Unlink(ctx, keys...).Err()
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

// deleteIndices deletes the Elasticsearch indices of the namespace.
func (b *bench) deleteIndices(ctx context.Context) error {
	del := b.es.Indices.Delete
	res, err := del([]string{b.ns + "*"}, del.WithContext(ctx), del.WithExpandWildcards("all"), del.WithAllowNoIndices(true))
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.IsError() {
		return fmt.Errorf("deleting indices %s*: %s", b.ns, res.Status())
	}
	return nil
}

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(b.out, "querybench: "+format+"\n", args...)
}

// describe is the report's header: where and how the figures were taken.
func (b *bench) describe() []string {
	host, _ := os.Hostname()
	idle := "not measured (no /proc/stat)"
	if b.idle.ok {
		idle = fmt.Sprintf("%.2f of %d CPUs busy with other processes, %.0f%% stolen", b.idle.other, runtime.NumCPU(), 100*b.idle.steal)
	}
	cmd := "go run ./cmd/querybench"
	if len(b.s.args) > 0 {
		cmd += " " + strings.Join(b.s.args, " ")
	}
	return []string{
		fmt.Sprintf("%s, %s, %d CPUs (GOMAXPROCS %d), host %s", time.Now().Format("2006-01-02 15:04"), runtime.Version(), runtime.NumCPU(), runtime.GOMAXPROCS(0), host),
		"in the second before the run: " + idle,
		fmt.Sprintf("Redis %s at %s; Elasticsearch %s at %s", b.info.redis, b.s.redisAddr, b.info.es, b.s.esURL),
		fmt.Sprintf("`%s`: %d documents (mean %d bytes), %d connections, %s measured per row in %d turns alternating between the servers, after %s of warm-up",
			cmd, b.data.n, b.data.meanSize, b.s.conns, b.s.duration, b.s.slices, b.s.warmup),
	}
}
