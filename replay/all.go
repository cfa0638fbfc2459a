package replay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/redis/go-redis/v9"
	"github.com/tidwall/gjson"

	"github.com/readside/readside/internal/sink/elasticindex"
	"github.com/readside/readside/internal/source"
	"github.com/readside/readside/projections"
)

// Origin says where All finds every id of a projection.
type Origin string

// The origins of All.
const (
	// FromAuto is FromList when the definition has a list endpoint, else FromRedis.
	FromAuto Origin = ""
	// FromList pages through the primary source's list endpoint: every
	// entity the source knows, so it also repairs stores that lost documents.
	FromList Origin = "list"
	// FromRedis scans the Redis keys of the projection (SCAN MATCH on its key
	// pattern, each node of a Redis Cluster in turn), skipping tombstones:
	// every document Redis holds.
	FromRedis Origin = "redis"
	// FromElasticsearch pages through the index behind the alias (sorted by
	// id, with search_after), skipping tombstones: every document the index
	// holds, as of its last refresh.
	FromElasticsearch Origin = "elasticsearch"
)

// ParseOrigin reads an origin: "", "auto", "list", "redis" or "elasticsearch" ("es").
func ParseOrigin(s string) (Origin, error) {
	switch strings.ToLower(s) {
	case "", "auto":
		return FromAuto, nil
	case "list", "source":
		return FromList, nil
	case "redis":
		return FromRedis, nil
	case "elasticsearch", "es":
		return FromElasticsearch, nil
	}
	return "", fmt.Errorf("replay: %q is not an origin of ids: use auto, list, redis or elasticsearch", s)
}

// listPageSize is the page size for Redis SCAN and Elasticsearch.
const listPageSize = 1000

// All re-issues every id of def, found at from, at most o.Rate per second.
// The total is not known in advance, except from Elasticsearch. Ids are not
// de-duplicated across pages (a list that changes while it is paged may
// repeat one; re-issuing twice is harmless). The Result's Source says where
// the ids came from, and so does a line in o.Notes as the run starts.
//
// The run is keyed by the projection and the origin; its position is the
// page being worked and how many of its ids are done.
func (e *Env) All(ctx context.Context, def *projections.Definition, from Origin, o Options) (*Result, error) {
	if from == FromAuto {
		from = FromRedis
		if def.Listable() {
			from = FromList
		}
	}
	var walk func(context.Context, *projections.Definition, *run) error
	switch from {
	case FromList:
		if !def.Listable() {
			return nil, fmt.Errorf("replay: projection %s has no list endpoint (sources[0].list in %s): replay all from redis or elasticsearch instead", def.Name, def.File)
		}
		walk = e.allFromList
	case FromRedis:
		if e.Redis == nil {
			return nil, errors.New("replay: all from redis needs Redis (embedded stores are read only by their own process)")
		}
		walk = e.allFromRedis
	case FromElasticsearch:
		if e.Elastic == nil {
			return nil, errors.New("replay: all from elasticsearch needs Elasticsearch (embedded stores are read only by their own process)")
		}
		walk = e.allFromElastic
	default:
		return nil, fmt.Errorf("replay: unknown origin %q", from)
	}
	if err := e.checkEvents(ctx, def); err != nil {
		return nil, err
	}
	r, err := e.begin(def, "all "+def.Name, "all "+def.Name+" from="+string(from), "ids", o)
	if err != nil {
		return nil, err
	}
	return r.end(ctx, walk(ctx, def, r))
}

// source notes where the ids come from.
func (r *run) source(s string) {
	r.res.Source = s
	fmt.Fprintf(r.o.Notes, "ids from %s\n", s)
}

// validIDs keeps the ids that are valid, recording the others as problems.
func (r *run) validIDs(ids []string, where func(id string) string) []string {
	out := ids[:0:0]
	for _, id := range ids {
		if err := projections.ValidateID(id); err != nil {
			r.cp.Counts.Invalid++
			r.problem(Problem{Where: where(id), Input: id, Why: strings.TrimPrefix(err.Error(), projections.ErrBadEvent.Error()+": ")})
			continue
		}
		out = append(out, id)
	}
	return out
}

// allFromList pages through the list endpoint. The position is the cursor
// of the page being worked and how many of its ids are done.
func (e *Env) allFromList(ctx context.Context, def *projections.Definition, r *run) error {
	first, err := def.ListURL("")
	if err != nil {
		return fmt.Errorf("replay: list endpoint: %w", err)
	}
	r.source(fmt.Sprintf("the list endpoint of source %s (%s)", def.Sources[0].Name, redactedURL(first)))
	c := source.New(source.Options{Transport: e.Transport, Timeout: def.SourceTimeout(0)})
	cursor, skip := r.cp.Position.Cursor, r.cp.Position.Skip
	if r.resumed {
		fmt.Fprintf(r.o.Notes, "continuing at the page with cursor %q, after its first %d ids\n", cursor, skip)
	}
	r.show(-1)
	for page := 1; ; page++ {
		url, err := def.ListURL(cursor)
		if err != nil {
			return fmt.Errorf("replay: list endpoint, cursor %q: %w", cursor, err)
		}
		body, err := c.Get(ctx, url)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("replay: list endpoint, page %d (cursor %q): %w", page, cursor, err)
		}
		ids, next, err := def.ListPage(body)
		if err != nil {
			return fmt.Errorf("replay: list endpoint, page %d (cursor %q): %w", page, cursor, err)
		}
		if next != "" && next == cursor {
			return fmt.Errorf("replay: list endpoint, page %d: the next cursor is the page's own (%q): the endpoint would loop", page, cursor)
		}
		ids = r.validIDs(ids, func(string) string { return fmt.Sprintf("list page %d", page) })
		skip = min(skip, len(ids))
		at := cursor
		if err := r.reissue(ctx, ids[skip:], true, func(n int) Position { return Position{Cursor: at, Skip: skip + n} }); err != nil {
			return err
		}
		if next == "" {
			return nil
		}
		cursor, skip = next, 0
		r.moved(Position{Cursor: cursor}, 0)
	}
}

// redactedURL drops a password from a URL, for notes and errors.
func redactedURL(raw string) string {
	if i := strings.Index(raw, "://"); i >= 0 {
		rest := raw[i+3:]
		if at := strings.IndexByte(rest, '@'); at >= 0 && at < strings.IndexAny(rest+"/", "/?#") {
			if user, _, hasPass := strings.Cut(rest[:at], ":"); hasPass {
				return raw[:i+3] + user + ":xxxxx" + rest[at:]
			}
		}
	}
	return raw
}

// allFromRedis scans the projection's keys, node by node on a cluster. The
// position is the node, its SCAN cursor, and how many ids of that cursor's
// batch are done.
func (e *Env) allFromRedis(ctx context.Context, def *projections.Definition, r *run) error {
	prefix, suffix, _ := strings.Cut(def.Redis.Key, "{id}")
	pattern := globEscape(prefix) + "*" + globEscape(suffix)
	r.source(fmt.Sprintf("Redis keys matching %s (SCAN; tombstones skipped)", pattern))
	nodes, err := scanNodes(ctx, e.Redis)
	if err != nil {
		return err
	}
	pos := r.cp.Position
	i := 0
	if r.resumed {
		if i = slices.IndexFunc(nodes, func(n scanNode) bool { return n.addr == pos.Node }); i < 0 {
			return fmt.Errorf("replay: the checkpoint scans Redis node %q, which is not among the nodes now (%d): pass --restart", pos.Node, len(nodes))
		}
		fmt.Fprintf(r.o.Notes, "continuing the SCAN at cursor %s, after %d ids of its batch\n", cmpOr(pos.Cursor, "0"), pos.Skip)
	} else {
		pos = Position{Node: nodes[0].addr}
	}
	r.show(-1)
	for ; i < len(nodes); i++ {
		n := nodes[i]
		if n.addr != pos.Node {
			pos = Position{Node: n.addr}
		}
		cursor, _ := strconv.ParseUint(cmpOr(pos.Cursor, "0"), 10, 64)
		skip := pos.Skip
		for {
			keys, next, err := n.c.Scan(ctx, cursor, pattern, listPageSize).Result()
			if err != nil {
				return fmt.Errorf("replay: redis SCAN %s: %w", pattern, err)
			}
			ids, err := e.liveIDs(ctx, n.c, keys, prefix, suffix, r)
			if err != nil {
				return err
			}
			skip = min(skip, len(ids))
			at := strconv.FormatUint(cursor, 10)
			if err := r.reissue(ctx, ids[skip:], true, func(k int) Position { return Position{Node: n.addr, Cursor: at, Skip: skip + k} }); err != nil {
				return err
			}
			if next == 0 {
				break
			}
			cursor, skip = next, 0
			r.moved(Position{Node: n.addr, Cursor: strconv.FormatUint(next, 10)}, 0)
		}
		if i+1 < len(nodes) {
			r.moved(Position{Node: nodes[i+1].addr}, 0)
		}
	}
	return nil
}

// liveIDs turns keys into ids, dropping the tombstones: the kind byte of a
// stored value (see sink.DecodeValue) is read with GETRANGE, in one round trip.
func (e *Env) liveIDs(ctx context.Context, c redis.Cmdable, keys []string, prefix, suffix string, r *run) ([]string, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	kinds := make([]*redis.StringCmd, len(keys))
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			kinds[i] = p.GetRange(ctx, k, 20, 20)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) && !isWrongType(err) {
		return nil, fmt.Errorf("replay: redis: reading %d keys: %w", len(keys), err)
	}
	ids := make([]string, 0, len(keys))
	for i, k := range keys {
		kind, err := kinds[i].Result()
		switch {
		case err != nil && (errors.Is(err, redis.Nil) || isWrongType(err)):
			continue // gone since the SCAN, or not a document
		case kind == "t" || kind == "T":
			r.cp.Counts.Tombstones++
			continue
		case kind == "": // gone since the SCAN
			continue
		}
		if len(k) < len(prefix)+len(suffix) || !strings.HasPrefix(k, prefix) || !strings.HasSuffix(k, suffix) {
			continue
		}
		ids = append(ids, k[len(prefix):len(k)-len(suffix)])
	}
	return r.validIDs(ids, func(id string) string { return "redis key " + prefix + id + suffix }), nil
}

func isWrongType(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "WRONGTYPE") }

// scanNode is one Redis node to SCAN: the server, or each cluster master.
type scanNode struct {
	addr string
	c    *redis.Client
}

// scanNodes lists the nodes to scan, in a stable order (by address).
func scanNodes(ctx context.Context, c redis.UniversalClient) ([]scanNode, error) {
	switch c := c.(type) {
	case *redis.Client:
		return []scanNode{{addr: "", c: c}}, nil
	case *redis.ClusterClient:
		var mu sync.Mutex
		var nodes []scanNode
		err := c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			nodes = append(nodes, scanNode{addr: n.Options().Addr, c: n})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("replay: redis cluster: %w", err)
		}
		slices.SortFunc(nodes, func(a, b scanNode) int { return strings.Compare(a.addr, b.addr) })
		return nodes, nil
	}
	return nil, fmt.Errorf("replay: cannot SCAN a %T: use a *redis.Client or *redis.ClusterClient", c)
}

// globEscape escapes the characters SCAN MATCH treats as a pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// allFromElastic pages through the index behind the alias, sorted by the
// document field "id" (a keyword in every mapping), with search_after. The
// position is the last id done.
func (e *Env) allFromElastic(ctx context.Context, def *projections.Definition, r *run) error {
	alias := def.Elasticsearch.Alias
	r.source(fmt.Sprintf("the Elasticsearch index behind alias %s (search_after on id; tombstones skipped)", alias))
	live := map[string]any{"bool": map[string]any{"must_not": []any{map[string]any{"term": map[string]any{elasticindex.DeletedField: true}}}}}
	total, err := e.esCount(ctx, alias, live)
	if err != nil {
		return err
	}
	after := r.cp.Position.Cursor
	if r.resumed {
		fmt.Fprintf(r.o.Notes, "continuing after id %q\n", after)
	}
	r.show(total)
	for {
		q := map[string]any{
			"size": listPageSize, "_source": false, "track_total_hits": false,
			"sort": []any{map[string]any{"id": "asc"}}, "query": live,
		}
		if after != "" {
			q["search_after"] = []any{after}
		}
		body, err := e.esSearch(ctx, alias, q)
		if err != nil {
			return err
		}
		hits := gjson.GetBytes(body, "hits.hits").Array()
		if len(hits) == 0 {
			return nil
		}
		ids := make([]string, 0, len(hits))
		for _, h := range hits {
			id := h.Get("sort.0").String()
			if id == "" {
				id = h.Get("_id").String()
			}
			ids = append(ids, id)
		}
		last := ids[len(ids)-1]
		valid := r.validIDs(ids, func(string) string { return "elasticsearch " + alias })
		if err := r.reissue(ctx, valid, true, func(n int) Position {
			if n == len(valid) {
				return Position{Cursor: last}
			}
			return Position{Cursor: valid[n-1]}
		}); err != nil {
			return err
		}
		if len(valid) == 0 {
			r.moved(Position{Cursor: last}, 0)
		}
		after = last
	}
}

// esCount counts the documents of alias matching query.
func (e *Env) esCount(ctx context.Context, alias string, query any) (int64, error) {
	b, err := json.Marshal(map[string]any{"query": query})
	if err != nil {
		return 0, err
	}
	c := e.Elastic.Count
	body, err := esAnswer("count", alias)(c(c.WithContext(ctx), c.WithIndex(alias), c.WithBody(bytes.NewReader(b))))
	if err != nil {
		return 0, err
	}
	return gjson.GetBytes(body, "count").Int(), nil
}

// esSearch runs a search on alias.
func (e *Env) esSearch(ctx context.Context, alias string, q any) ([]byte, error) {
	b, err := json.Marshal(q)
	if err != nil {
		return nil, err
	}
	s := e.Elastic.Search
	return esAnswer("search", alias)(s(s.WithContext(ctx), s.WithIndex(alias), s.WithBody(bytes.NewReader(b))))
}

// esAnswer reads the body of a 2xx answer, or describes the failure.
func esAnswer(what, alias string) func(*esapi.Response, error) ([]byte, error) {
	return func(res *esapi.Response, err error) ([]byte, error) {
		if err != nil {
			return nil, fmt.Errorf("replay: elasticsearch %s %s: %w", what, alias, err)
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			return nil, fmt.Errorf("replay: elasticsearch %s %s: %w", what, alias, err)
		}
		if res.IsError() {
			why := gjson.GetBytes(body, "error.reason").Str
			if why == "" {
				why = string(body[:min(len(body), 200)])
			}
			if res.StatusCode == 404 {
				why += " (is the alias right, and has the projector created the index?)"
			}
			return nil, fmt.Errorf("replay: elasticsearch %s %s: %s: %s", what, alias, res.Status(), why)
		}
		return body, nil
	}
}
