package main

import (
	"bytes"
	"context"
	"errors"
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

	"github.com/readside/readside/internal/assemble"
	"github.com/readside/readside/internal/query"
	"github.com/readside/readside/internal/sink"
)

// servers are the HTTP servers under test, on 127.0.0.1 random ports.
type servers struct {
	baseline, api, apiLogged string // base URLs
	running                  []*http.Server
	logFile                  *os.File // the access log of apiLogged
}

func (s *servers) close() {
	for _, srv := range s.running {
		srv.Close()
	}
	if s.logFile != nil {
		s.logFile.Close()
		os.Remove(s.logFile.Name())
	}
}

// listen serves h as cmd/queryapi does (the same http.Server settings, with
// its default request timeout), and returns the base URL.
func (s *servers) listen(h http.Handler, log *slog.Logger) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      2*time.Second + 5*time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	s.running = append(s.running, srv)
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), nil
}

// serve starts the baseline server, the API, and the API with its access log.
func (b *bench) serve() error {
	var err error
	prefix, suffix, _ := strings.Cut(b.def.Redis.Key, "{id}")
	bl := &baseline{rdb: b.stores.Redis, es: b.stores.Elastic, alias: b.def.Elasticsearch.Alias, prefix: prefix, suffix: suffix}
	if b.srv.baseline, err = b.srv.listen(bl.handler(), b.log); err != nil {
		return err
	}
	// As cmd/queryapi builds it, without re-project events (nothing misses)
	// and with -access-log=false.
	views := []query.View{{
		Def:     b.def,
		Docs:    sink.NewRedis(b.stores.Redis, sink.RedisOptions{KeyPattern: b.def.Redis.Key}),
		Search:  sink.NewElastic(b.stores.Elastic, sink.ElasticOptions{Alias: b.def.Elasticsearch.Alias, Fields: b.def.Fields}),
		Sources: assemble.Clients(b.def, nil, 300*time.Millisecond),
	}}
	api := query.New(views, nil, b.log, nil, query.Options{})
	if b.srv.api, err = b.srv.listen(api, b.log); err != nil {
		return err
	}
	// With -access-log=true: cmd/queryapi's logger (text, info) writing to a
	// file, as it would to a redirected stderr.
	if b.srv.logFile, err = os.CreateTemp("", "querybench-access-*.log"); err != nil {
		return err
	}
	logged := query.AccessLog(slog.New(slog.NewTextHandler(b.srv.logFile, &slog.HandlerOptions{Level: slog.LevelInfo})), api)
	b.srv.apiLogged, err = b.srv.listen(logged, b.log)
	return err
}

// baseline is the floor of each scenario: the store calls the API has to
// make, with the stored JSON written as it is, and nothing else — no
// deadline, breaker, validation, freshness headers or cursor. It serves the
// API's paths, so that one request URL fits both.
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
// the kinds 'D' and 'T' (see sink.DecodeValue).
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

// collection answers a multi-get (ids=a,b,...) with pipelined GETs, and a
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
	cmds := make([]*redis.StringCmd, len(ids))
	pipe := bl.rdb.Pipeline()
	for i, id := range ids {
		cmds[i] = pipe.Get(r.Context(), bl.prefix+id+bl.suffix)
	}
	pipe.Exec(r.Context())
	var out bytes.Buffer
	out.Grow(64 + len(ids)*1100)
	out.WriteString(`{"items":[`)
	n := 0
	for _, c := range cmds {
		v, err := c.Bytes()
		if err != nil {
			if errors.Is(err, redis.Nil) {
				continue
			}
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		if n > 0 {
			out.WriteByte(',')
		}
		out.Write(body(v))
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
