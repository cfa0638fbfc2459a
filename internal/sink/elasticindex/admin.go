package elasticindex

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/tidwall/gjson"

	"github.com/readside/readside/internal/sink"
)

// What an Index offers operators' tools besides reads and writes: the
// sink.Scanner, sink.Counter, sink.Sampler and sink.Generations contracts.
var (
	_ sink.Scanner     = (*Index)(nil)
	_ sink.Counter     = (*Index)(nil)
	_ sink.Sampler     = (*Index)(nil)
	_ sink.Generations = (*Index)(nil)
)

// scanPage is the page size of Scan.
const scanPage = 500

// answer reads the body of a 2xx answer to what on target, or describes
// the failure (status, error type and reason; never the whole body).
func answer(what, target string, res *esapi.Response, err error) ([]byte, error) {
	if err != nil {
		return nil, fmt.Errorf("sink: elasticsearch %s %s: %w", what, target, err)
	}
	b, err := readBody(res)
	if err != nil {
		return nil, fmt.Errorf("sink: elasticsearch %s %s: %w", what, target, err)
	}
	if res.IsError() {
		why := responseError(res, b)
		if res.StatusCode == http.StatusNotFound {
			return nil, fmt.Errorf("sink: elasticsearch %s %s: %s (is the alias right, and has the projector created the index?): %w", what, target, why, errMissing)
		}
		return nil, fmt.Errorf("sink: elasticsearch %s %s: %s", what, target, why)
	}
	return b, nil
}

// errMissing is wrapped by answer's error for a 404: what was asked for
// (an index, an alias, a point in time) does not exist.
var errMissing = errors.New("not found")

// search runs the search body q on target (an alias or indices).
func (e *Index) search(ctx context.Context, target string, q any) ([]byte, error) {
	b, err := json.Marshal(q)
	if err != nil {
		return nil, err
	}
	s := e.c.Search
	res, err := s(s.WithContext(ctx), s.WithIndex(target), s.WithBody(bytes.NewReader(b)))
	return answer("search", target, res, err)
}

// GetMany reads ids through the alias in real time (one _mget, the ids in
// its body, so none needs escaping in a URL path), in their order: nil where
// nothing is stored, as for an id that can never be (empty, or longer than
// Elasticsearch takes), which is not asked for.
func (e *Index) GetMany(ctx context.Context, ids []string) ([]*sink.Stored, error) {
	if e.err != nil {
		return nil, e.err
	}
	out := make([]*sink.Stored, len(ids))
	var asked []string // the ids that can be stored
	var at []int       // their places in ids
	for i, id := range ids {
		if id != "" && len(id) <= maxIDBytes {
			asked, at = append(asked, id), append(at, i)
		}
	}
	if len(asked) == 0 {
		return out, nil
	}
	b, err := json.Marshal(map[string]any{"ids": asked})
	if err != nil {
		return nil, err
	}
	m := e.c.Mget
	res, err := m(bytes.NewReader(b), m.WithContext(ctx), m.WithIndex(e.o.Alias))
	body, err := answer("mget", e.o.Alias, res, err)
	if err != nil {
		return nil, err
	}
	docs := gjson.GetBytes(body, "docs").Array()
	if len(docs) != len(asked) {
		return nil, fmt.Errorf("sink: elasticsearch mget %s: %d documents answered for %d ids", e.o.Alias, len(docs), len(asked))
	}
	for k, d := range docs {
		if fail := d.Get("error"); fail.Exists() {
			return nil, fmt.Errorf("sink: elasticsearch mget %s, id %q: %s: %s", e.o.Alias, asked[k], fail.Get("type").Str, fail.Get("reason").Str)
		}
		if !d.Get("found").Bool() {
			continue
		}
		s := &sink.Stored{Version: d.Get("_version").Int()}
		if src := d.Get("_source"); src.Get(DeletedField).Bool() {
			s.Deleted = true
		} else {
			s.Body = []byte(src.Raw)
		}
		out[at[k]] = s
	}
	return out, nil
}

// liveQuery matches the documents that are not tombstones.
var liveQuery = map[string]any{"bool": map[string]any{"must_not": []any{map[string]any{"term": map[string]any{DeletedField: true}}}}}

// Count counts the live documents behind the alias.
func (e *Index) Count(ctx context.Context) (int64, error) {
	if e.err != nil {
		return 0, e.err
	}
	b, err := json.Marshal(map[string]any{"query": liveQuery})
	if err != nil {
		return 0, err
	}
	c := e.c.Count
	res, err := c(c.WithContext(ctx), c.WithIndex(e.o.Alias), c.WithBody(bytes.NewReader(b)))
	body, err := answer("count", e.o.Alias, res, err)
	if err != nil {
		return 0, err
	}
	return gjson.GetBytes(body, "count").Int(), nil
}

// Sample picks up to n random ids behind the alias, tombstones included
// (function_score random_score), in one search.
func (e *Index) Sample(ctx context.Context, n int) ([]string, error) {
	if e.err != nil {
		return nil, e.err
	}
	if n <= 0 {
		return nil, nil
	}
	body, err := e.search(ctx, e.o.Alias, map[string]any{
		"size": n, "_source": false, "track_total_hits": false,
		"query": map[string]any{"function_score": map[string]any{
			"query":        map[string]any{"match_all": map[string]any{}},
			"random_score": map[string]any{"seed": rand.Int64(), "field": "_seq_no"},
			"boost_mode":   "replace",
		}},
	})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, h := range gjson.GetBytes(body, "hits.hits").Array() {
		ids = append(ids, h.Get("_id").Str)
	}
	return ids, nil
}

// Scan pages through every document behind the alias in two phases: the
// live documents sorted by the field "id" (a keyword in every mapping) with
// search_after, so a position ("live:" and the last id) stays valid for
// ever; then the tombstones, which have no id field, through a point in
// time sorted by _shard_doc. A tombstone position names its point in time,
// which a scan closes once it has given the last page, and otherwise leaves
// to expire (after 10 minutes unused), so that a scan fn stopped can go on
// from where it was; when it is gone, the tombstone phase starts again from
// its beginning: a tombstone may be seen twice, none is missed. The last
// page, whose Next is "", is the last of the tombstones, empty when there
// is none.
func (e *Index) Scan(ctx context.Context, from string, fn func(sink.ScanPage) error) error {
	if e.err != nil {
		return e.err
	}
	return e.scan(ctx, e.o.Alias, from, fn)
}

// Tombstones calls fn with the ids of the tombstones of the index gen, page
// by page (the second phase of a scan).
func (e *Index) Tombstones(ctx context.Context, gen string, fn func(ids []string) error) error {
	if e.err != nil {
		return e.err
	}
	return e.scanDeleted(ctx, gen, "", func(p sink.ScanPage) error {
		if len(p.Deleted) == 0 {
			return nil
		}
		return fn(p.Deleted)
	})
}

// scan is Scan on the index or alias gen.
func (e *Index) scan(ctx context.Context, gen, from string, fn func(sink.ScanPage) error) error {
	phase, pos, _ := strings.Cut(from, ":")
	switch phase {
	case "", "live":
		if err := e.scanLive(ctx, gen, pos, fn); err != nil {
			return err
		}
		pos = ""
	case "deleted":
	default:
		return fmt.Errorf("sink: elasticsearch scan %s: %q: %w", gen, from, sink.ErrBadPosition)
	}
	return e.scanDeleted(ctx, gen, pos, fn)
}

// scanLive pages through the live documents of target by id, after the
// id after ("": from the first).
func (e *Index) scanLive(ctx context.Context, target, after string, fn func(sink.ScanPage) error) error {
	for {
		q := map[string]any{
			"size": scanPage, "_source": false, "track_total_hits": false,
			"sort": []any{map[string]any{"id": "asc"}}, "query": liveQuery,
		}
		if after != "" {
			q["search_after"] = []any{after}
		}
		body, err := e.search(ctx, target, q)
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
		if err := fn(sink.ScanPage{IDs: ids, At: "live:" + after, Next: "live:" + last}); err != nil {
			return err
		}
		after = last
	}
}

// scanPosition is where the tombstone phase of a scan is: its point in
// time and the sort values of the last hit.
type scanPosition struct {
	PIT   string `json:"pit"`
	After []any  `json:"after"`
}

func (p scanPosition) String() string {
	b, _ := json.Marshal(p)
	return "deleted:" + base64.RawURLEncoding.EncodeToString(b)
}

// pitKeepAlive is how long a scan's point in time lives between two pages.
const pitKeepAlive = "10m"

// scanDeleted pages through the tombstones of target from pos (""; or a
// scanPosition, base64 JSON).
func (e *Index) scanDeleted(ctx context.Context, target, pos string, fn func(sink.ScanPage) error) error {
	var at scanPosition
	if pos != "" {
		b, err := base64.RawURLEncoding.DecodeString(pos)
		if err == nil {
			err = json.Unmarshal(b, &at)
		}
		if err != nil {
			return fmt.Errorf("sink: elasticsearch scan %s: %w (%v)", target, sink.ErrBadPosition, err)
		}
	}
	if at.PIT == "" {
		pit, err := e.openPIT(ctx, target)
		if err != nil {
			return err
		}
		at = scanPosition{PIT: pit}
	}
	closePIT := func() {
		b, _ := json.Marshal(map[string]string{"id": at.PIT})
		c := e.c.ClosePointInTime
		// Closed even when ctx has ended, but not waited for forever.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if res, err := c(c.WithContext(cctx), c.WithBody(bytes.NewReader(b))); err == nil {
			res.Body.Close()
		}
	}
	restarted := false
	for {
		q := map[string]any{
			"size": scanPage, "_source": false, "track_total_hits": false,
			"pit":   map[string]any{"id": at.PIT, "keep_alive": pitKeepAlive},
			"sort":  []any{map[string]any{"_shard_doc": "asc"}},
			"query": map[string]any{"term": map[string]any{DeletedField: true}},
		}
		if at.After != nil {
			q["search_after"] = at.After
		}
		body, err := e.search(ctx, "", q)
		if err != nil && !restarted && (errors.Is(err, errMissing) || strings.Contains(err.Error(), "search_context_missing")) {
			// The point in time expired or was closed: the phase starts
			// again from its beginning, once.
			restarted = true
			pit, err := e.openPIT(ctx, target)
			if err != nil {
				return err
			}
			at = scanPosition{PIT: pit}
			continue
		}
		if err != nil {
			return err
		}
		hits := gjson.GetBytes(body, "hits.hits").Array()
		ids := make([]string, len(hits))
		for i, h := range hits {
			ids[i] = h.Get("_id").Str
		}
		page := sink.ScanPage{Deleted: ids, At: at.String()}
		if p := gjson.GetBytes(body, "pit_id").Str; p != "" {
			at.PIT = p
		}
		if len(hits) < scanPage { // the last page
			closePIT()
			return fn(page)
		}
		if err := json.Unmarshal([]byte(hits[len(hits)-1].Get("sort").Raw), &at.After); err != nil {
			return fmt.Errorf("sink: elasticsearch scan %s: sort values: %w", target, err)
		}
		page.Next = at.String()
		if err := fn(page); err != nil {
			return err
		}
	}
}

// openPIT opens a point in time on target (an index, or indices separated
// by commas) for a scan's tombstone phase.
func (e *Index) openPIT(ctx context.Context, target string) (string, error) {
	o := e.c.OpenPointInTime
	res, err := o(strings.Split(target, ","), pitKeepAlive, o.WithContext(ctx))
	body, err := answer("point in time", target, res, err)
	if err != nil {
		return "", err
	}
	return gjson.GetBytes(body, "id").Str, nil
}

// The generations of an Index are the indices "<alias>-v<N>": the alias
// points at the live one, and while a rebuild runs "<alias>-rebuild"
// (RebuildSuffix) points at the one being built, which Write fills too.

// State lists the indices behind the alias and the one behind the rebuild
// alias. The rebuild alias on several indices, or on a live one, is an
// error that says how to repair it.
func (e *Index) State(ctx context.Context) (live []string, building string, err error) {
	if e.err != nil {
		return nil, "", e.err
	}
	if live, err = e.aliasIndices(ctx, e.o.Alias); err != nil {
		return nil, "", err
	}
	rebuild := e.o.Alias + RebuildSuffix
	on, err := e.aliasIndices(ctx, rebuild)
	if err != nil {
		return nil, "", err
	}
	switch {
	case len(on) > 1:
		return nil, "", fmt.Errorf("sink: elasticsearch: alias %s points at %d indices (%s): remove it from all but one", rebuild, len(on), strings.Join(on, ", "))
	case len(on) == 1 && slices.Contains(live, on[0]):
		return nil, "", fmt.Errorf("sink: elasticsearch: alias %s points at %s, which alias %s points at too: remove %s", rebuild, on[0], e.o.Alias, rebuild)
	case len(on) == 1:
		building = on[0]
	}
	return live, building, nil
}

// aliasIndices lists the indices alias points at, sorted; none when it does
// not exist.
func (e *Index) aliasIndices(ctx context.Context, alias string) ([]string, error) {
	g := e.c.Indices.GetAlias
	res, err := g(g.WithContext(ctx), g.WithName(alias))
	if err == nil && res.StatusCode == http.StatusNotFound {
		res.Body.Close()
		return nil, nil
	}
	body, err := answer("alias", alias, res, err)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("sink: elasticsearch alias %s: %w", alias, err)
	}
	return slices.Sorted(maps.Keys(m)), nil
}

// Next names the next generation: "<alias>-v<N+1>", N the highest version
// among the indices behind the alias and those named "<alias>-v<digits>"
// (a kept old index, or a rebuild given up on, is never reused).
func (e *Index) Next(ctx context.Context) (string, error) {
	if e.err != nil {
		return "", e.err
	}
	behind, err := e.aliasIndices(ctx, e.o.Alias)
	if err != nil {
		return "", err
	}
	return e.next(ctx, behind)
}

// next is Next with the indices behind the alias known.
func (e *Index) next(ctx context.Context, behind []string) (string, error) {
	alias := e.o.Alias
	g := e.c.Indices.Get
	res, err := g([]string{alias + "-v*"}, g.WithContext(ctx), g.WithExpandWildcards("all"), g.WithFilterPath("*.settings.index.provided_name"))
	body, err := answer("indices", alias+"-v*", res, err)
	if err != nil {
		return "", err
	}
	var named map[string]json.RawMessage
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &named); err != nil {
			return "", fmt.Errorf("sink: elasticsearch indices %s-v*: %w", alias, err)
		}
	}
	n := 0
	for _, index := range append(slices.Collect(maps.Keys(named)), behind...) {
		if v, ok := indexVersion(alias, index); ok {
			n = max(n, v)
		}
	}
	return alias + "-v" + strconv.Itoa(n+1), nil
}

// indexVersion reads N of an index named "<alias>-v<N>".
func indexVersion(alias, index string) (int, bool) {
	digits, ok := strings.CutPrefix(index, alias+"-v")
	if !ok || digits == "" || strings.Trim(digits, "0123456789") != "" {
		return 0, false
	}
	v, err := strconv.Atoi(digits)
	return v, err == nil
}

// Begin creates the next generation with the mapping (and the tombstone
// field, as Ensure does), the shard and replica counts of the live index,
// and the rebuild alias on it, in one call. When a concurrent rebuild
// created it first, with the rebuild alias, that is fine.
func (e *Index) Begin(ctx context.Context) (string, error) {
	if e.err != nil {
		return "", e.err
	}
	live, _, err := e.State(ctx)
	if err != nil {
		return "", err
	}
	if len(live) == 0 {
		return "", fmt.Errorf("sink: elasticsearch: alias %s does not exist: the projector creates %s-v1 when it starts", e.o.Alias, e.o.Alias)
	}
	index, err := e.next(ctx, live)
	if err != nil {
		return "", err
	}
	rebuild := e.o.Alias + RebuildSuffix
	gs := e.c.Indices.GetSettings
	res, err := gs(gs.WithContext(ctx), gs.WithIndex(live[0]),
		gs.WithFilterPath("*.settings.index.number_of_shards", "*.settings.index.number_of_replicas"))
	settings, err := answer("settings", live[0], res, err)
	if err != nil {
		return "", err
	}
	like := &Index{o: e.o}
	like.o.Alias = rebuild
	like.o.Settings = map[string]any{}
	for _, k := range []string{"number_of_shards", "number_of_replicas"} {
		if v := gjson.GetBytes(settings, gjson.Escape(live[0])+".settings.index."+k); v.Exists() {
			like.o.Settings[k] = v.String()
		}
	}
	body, err := like.createBody()
	if err != nil {
		return "", err
	}
	c := e.c.Indices.Create
	res, err = c(index, c.WithContext(ctx), c.WithBody(bytes.NewReader(body)))
	if err != nil {
		return "", fmt.Errorf("sink: elasticsearch: creating index %s: %w", index, err)
	}
	b, err := readBody(res)
	if err != nil {
		return "", fmt.Errorf("sink: elasticsearch: creating index %s: %w", index, err)
	}
	if !res.IsError() {
		return index, nil
	}
	if gjson.GetBytes(b, "error.type").Str == "resource_already_exists_exception" {
		if on, err := e.aliasIndices(ctx, rebuild); err == nil && slices.Equal(on, []string{index}) {
			return index, nil // a concurrent rebuild
		}
		return "", fmt.Errorf("sink: elasticsearch: index %s exists already, without alias %s: delete it, or add the alias to continue a rebuild into it", index, rebuild)
	}
	return "", fmt.Errorf("sink: elasticsearch: creating index %s: %s", index, responseError(res, b))
}

// CheckBuilding checks the mapping of the index being built (behind the
// rebuild alias) against this Index's; fields it lacks are added. A
// conflict is a *MappingConflictError.
func (e *Index) CheckBuilding(ctx context.Context) error {
	if e.err != nil {
		return e.err
	}
	o := e.o
	o.Alias += RebuildSuffix
	_, err := New(e.c, o).CheckMapping(ctx)
	return err
}

// Settle is twice RebuildDiscovery: the longest a writer takes to see a
// new rebuild alias, and as long again for a write that started before.
func (e *Index) Settle() time.Duration { return RebuildSettle }

// RebuildSettle is what Settle answers, for a rebuild's help.
const RebuildSettle = 2 * RebuildDiscovery

// RefreshGenerations makes what was written to gens searchable.
func (e *Index) RefreshGenerations(ctx context.Context, gens []string) error {
	if e.err != nil {
		return e.err
	}
	r := e.c.Indices.Refresh
	res, err := r(r.WithContext(ctx), r.WithIndex(gens...))
	_, err = answer("refresh", strings.Join(gens, ","), res, err)
	return err
}

// CountGenerations counts the live documents of each of gens, in one
// search (a terms aggregation on _index), so the counts are of one moment.
func (e *Index) CountGenerations(ctx context.Context, gens []string) (map[string]int64, error) {
	if e.err != nil {
		return nil, e.err
	}
	body, err := e.search(ctx, strings.Join(gens, ","), map[string]any{
		"size": 0, "track_total_hits": true, "query": liveQuery,
		"aggs": map[string]any{"by": map[string]any{"terms": map[string]any{"field": "_index", "size": len(gens) + 1}}},
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(gens))
	for _, g := range gens {
		out[g] = 0
	}
	for _, b := range gjson.GetBytes(body, "aggregations.by.buckets").Array() {
		out[b.Get("key").Str] = b.Get("doc_count").Int()
	}
	return out, nil
}

// Swap moves the alias from live to gen (as its write index) and removes
// the rebuild alias, in one atomic _aliases call; every removal must find
// its alias, so a concurrent change fails the whole call rather than leave
// a half swap.
func (e *Index) Swap(ctx context.Context, live []string, gen string) error {
	if e.err != nil {
		return e.err
	}
	var actions []any
	for _, o := range live {
		actions = append(actions, map[string]any{"remove": map[string]any{"index": o, "alias": e.o.Alias, "must_exist": true}})
	}
	actions = append(actions,
		map[string]any{"add": map[string]any{"index": gen, "alias": e.o.Alias, "is_write_index": true}},
		map[string]any{"remove": map[string]any{"index": gen, "alias": e.o.Alias + RebuildSuffix, "must_exist": true}})
	b, err := json.Marshal(map[string]any{"actions": actions})
	if err != nil {
		return err
	}
	u := e.c.Indices.UpdateAliases
	res, err := u(bytes.NewReader(b), u.WithContext(ctx))
	_, err = answer("swap of", e.o.Alias, res, err)
	return err
}

// Drop deletes the indices gens.
func (e *Index) Drop(ctx context.Context, gens []string) error {
	if e.err != nil {
		return e.err
	}
	if len(gens) == 0 {
		return errors.New("sink: elasticsearch: no index to delete")
	}
	d := e.c.Indices.Delete
	res, err := d(gens, d.WithContext(ctx))
	_, err = answer("delete", strings.Join(gens, ","), res, err)
	return err
}
