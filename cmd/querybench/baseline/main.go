// Command baseline is the floor cmd/querybench measures the query API
// against: an HTTP server on the API's paths that makes only the store reads
// each answer needs and writes the stored JSON as it is. No deadline,
// breaker, validation, freshness headers, cursor or load shedding; nothing
// of Readside's but the stored value's header, which it skips.
//
// Usage:
//
//	baseline -key 'ns:shop:{id}' -alias ns-shops [-addr 127.0.0.1:0] [-redis ADDR] [-es URL]
//
//	GET /v1/{p}/{id}               one go-redis GET; the body written after its header.
//	GET /v1/{p}?ids=a,b,…          one pipeline of GETs, spliced raw into {"items":[…]}.
//	GET /v1/{p}?city=C&…           one Elasticsearch query for 25 ids (terms filter on
//	                               city, sorted by rating; _source off, no hit count,
//	                               filter_path), then the pipeline of GETs.
//	GET /v1/{p}?q=Q&…              as city, with the API's bool_prefix multi_match on
//	                               name, sorted by score.
//
// The Redis and Elasticsearch clients have cmd/queryapi's pool sizes and the
// server its http.Server settings, so that the two differ in what they do per
// request, not in how they hold connections. It logs one JSON line to stderr
// when it serves ({"msg":"baseline serving","addr":"127.0.0.1:PORT"}), which
// cmd/querybench waits for, and stops on SIGINT or SIGTERM.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/redis/go-redis/v9"
	"github.com/tidwall/gjson"

	"github.com/readside/readside/internal/config"
)

func main() {
	os.Exit(config.Run("baseline", func(ctx context.Context) error { return run(ctx, os.Args[1:], os.Stderr) }))
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("baseline", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "address to serve on")
	redisAddr := fs.String("redis", "127.0.0.1:6391", "Redis address")
	esURL := fs.String("es", "http://127.0.0.1:9251", "Elasticsearch URL")
	key := fs.String("key", "", "Redis key pattern of the documents, with {id}")
	alias := fs.String("alias", "", "Elasticsearch alias of the documents")
	if err := fs.Parse(args); err != nil {
		return err
	}
	prefix, suffix, ok := strings.Cut(*key, "{id}")
	var errs []error
	if !ok {
		errs = append(errs, fmt.Errorf("-key %q has no {id}", *key))
	}
	if *alias == "" {
		errs = append(errs, errors.New("-alias is required"))
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	// internal/config.Backends' settings, which cmd/queryapi uses.
	rdb := redis.NewClient(&redis.Options{Addr: *redisAddr, PoolSize: config.RedisPoolSize, ReadTimeout: config.RedisTimeout, WriteTimeout: config.RedisTimeout})
	defer rdb.Close()
	es, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses: []string{*esURL},
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, ResponseHeaderTimeout: 30 * time.Second},
	})
	if err != nil {
		return err
	}
	bl := &baseline{rdb: rdb, es: es, alias: *alias, prefix: prefix, suffix: suffix}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	// internal/query.Serve's settings, with its default request timeout.
	srv := &http.Server{
		Handler:           bl.handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      2*time.Second + 5*time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("baseline serving", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shut)
}

// baseline serves the API's paths, so that one request URL fits both.
type baseline struct {
	rdb            *redis.Client
	es             *elasticsearch.Client
	alias          string
	prefix, suffix string // of the Redis key, around the id
}

func (bl *baseline) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/{projection}/{id}", bl.detail)
	mux.HandleFunc("GET /v1/{projection}", bl.collection)
	return mux
}

// body is the document in a stored value: after the 21-byte header (20
// digits of version and the kind), and the 13 digits of the build time for
// the kinds 'D' and 'T' (see sink.DecodeValue, which the test compares with).
func body(v []byte) []byte {
	if len(v) > 20 && (v[20] == 'D' || v[20] == 'T') {
		return v[min(len(v), 34):]
	}
	return v[min(len(v), 21):]
}

func (bl *baseline) detail(w http.ResponseWriter, r *http.Request) {
	v, err := bl.rdb.Get(r.Context(), bl.prefix+r.PathValue("id")+bl.suffix).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		http.Error(w, "not found", http.StatusNotFound)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body(v))
}

// collection answers a multi-get (ids=a,b,...) with one MGET, and a
// list (city=…) or a search (q=…) with one Elasticsearch query for 25 ids
// and then the same.
func (bl *baseline) collection(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var ids []string
	if q.Has("ids") {
		ids = strings.Split(q.Get("ids"), ",")
	} else {
		var err error
		if ids, err = bl.search(r.Context(), q.Get("city"), q.Get("q")); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = bl.prefix + id + bl.suffix
	}
	var vals []any
	if len(keys) > 0 {
		var err error
		if vals, err = bl.rdb.MGet(r.Context(), keys...).Result(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	var out bytes.Buffer
	out.Grow(64 + len(ids)*1100)
	out.WriteString(`{"items":[`)
	n := 0
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // no such key
		}
		if n > 0 {
			out.WriteByte(',')
		}
		out.Write(body([]byte(s)))
		n++
	}
	out.WriteString("]}")
	w.Header().Set("Content-Type", "application/json")
	w.Write(out.Bytes())
}

// search asks Elasticsearch for 25 ids: the query the API sends (a terms
// filter on city sorted by rating, or a bool_prefix match on the name sorted
// by score; tombstones out; id as the last sort key; no hit count), written
// by hand, with only the ids in the answer.
func (bl *baseline) search(ctx context.Context, city, q string) ([]string, error) {
	var body []byte
	if q != "" {
		body = append(body, `{"query":{"bool":{"filter":[],"must_not":[{"term":{"readside_deleted":true}}],`+
			`"must":[{"multi_match":{"query":`...)
		body = strconv.AppendQuote(body, q)
		body = append(body, `,"type":"bool_prefix","fields":["name"],"operator":"and"}}]}},`+
			`"sort":[{"_score":"desc"},{"id":"asc"}],"size":25,"_source":false,"track_total_hits":false}`...)
	} else {
		body = append(body, `{"query":{"bool":{"filter":[{"terms":{"city":[`...)
		body = strconv.AppendQuote(body, city)
		body = append(body, `]}}],"must_not":[{"term":{"readside_deleted":true}}]}},`+
			`"sort":[{"rating":{"order":"desc","missing":"_last"}},{"id":"asc"}],"size":25,"_source":false,"track_total_hits":false}`...)
	}
	res, err := bl.es.Search(bl.es.Search.WithContext(ctx), bl.es.Search.WithIndex(bl.alias),
		bl.es.Search.WithBody(bytes.NewReader(body)), bl.es.Search.WithFilterPath("hits.hits._id"))
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	resp, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	if res.IsError() {
		return nil, fmt.Errorf("elasticsearch: %s: %s", res.Status(), resp)
	}
	var ids []string
	gjson.GetBytes(resp, "hits.hits").ForEach(func(_, h gjson.Result) bool {
		ids = append(ids, h.Get("_id").Str)
		return true
	})
	return ids, nil
}
