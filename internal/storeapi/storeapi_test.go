package storeapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/elasticindex"
	"github.com/readside/readside/internal/sink/redisstore"
	"github.com/readside/readside/internal/storeapi"
	"github.com/readside/readside/internal/testenv"
)

// The stores the tests serve: live documents, tombstones, and one entity
// used by many documents.
const (
	live    = 1100 // over two pages of every store's scan
	deleted = 600  // over one page of Elasticsearch's tombstone phase
	users   = 2500 // over two pages of ZSCAN
)

// rig serves a projection's real stores (the test Redis and Elasticsearch)
// with Handler on an httptest server, and reaches them with a Client.
type rig struct {
	t      *testing.T
	ns     string // the projection's name
	stores sink.Stores
	redis  *redisstore.Store
	es     *elasticindex.Index
	srv    *httptest.Server
	client *storeapi.Client
	bodies map[string][]byte // what was written for each live id
}

func ctxOf(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newRig fills the stores of a projection of its own, and serves them.
func newRig(t *testing.T) *rig {
	t.Helper()
	ctx := ctxOf(t)
	r := &rig{t: t, ns: testenv.Namespace(t), bodies: map[string][]byte{}}
	rdb := testenv.Redis(t)
	testenv.CleanRedis(t, rdb, r.ns)
	r.redis = redisstore.New(rdb, redisstore.Options{KeyPattern: r.ns + ":{id}"})
	r.es = elasticindex.New(testenv.Elastic(t, r.ns), elasticindex.Options{
		Alias:    r.ns + "-docs",
		Mapping:  map[string]any{"properties": map[string]any{"id": map[string]any{"type": "keyword"}, "name": map[string]any{"type": "text"}}},
		Settings: map[string]any{"number_of_shards": 2, "number_of_replicas": 0},
	})
	if err := r.es.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	refs := redisstore.NewRefs(rdb, sink.RefsPrefix(r.ns), 0)
	r.stores = sink.Stores{Docs: r.redis, DocsName: "redis", Index: r.es, IndexName: "elasticsearch", Refs: refs}

	built := time.Now().Truncate(time.Millisecond)
	var docs []sink.Doc
	for i := range live + deleted {
		id := strconv.Itoa(i)
		if i >= live {
			docs = append(docs, sink.Doc{ID: id, Version: int64(i + 1), Deleted: true})
			continue
		}
		// Spaces, escapes and HTML characters, which a re-encoding would change.
		body := fmt.Appendf(nil, `{"id": %q,  "name":"shop <%d> & caf\u00e9 \u2028"}`, id, i)
		r.bodies[id] = body
		docs = append(docs, sink.Doc{ID: id, Version: int64(i + 1), Body: body, BuiltAt: built})
	}
	for chunk := range slices.Chunk(docs, 500) {
		if err := r.redis.Write(ctx, chunk); err != nil {
			t.Fatal(err)
		}
		if err := r.es.Write(ctx, chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.es.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	var used []sink.Ref
	var builds []sink.Built
	for i := range users {
		ref := sink.Ref{ID: "u" + strconv.Itoa(i), Source: "owner", Key: "7", Version: 1}
		used = append(used, ref)
		builds = append(builds, sink.Built{ID: ref.ID, Version: 1, Refs: []sink.Ref{ref}})
	}
	if err := refs.Add(ctx, used); err != nil {
		t.Fatal(err)
	}
	if err := refs.Commit(ctx, builds); err != nil {
		t.Fatal(err)
	}
	r.serve(r.stores)
	return r
}

// serve serves stores as the rig's projection, on a new server.
func (r *rig) serve(stores sink.Stores) {
	open := func(ctx context.Context, projection string) (sink.Stores, error) {
		if projection != r.ns {
			return sink.Stores{}, fmt.Errorf("projection %q: %w", projection, storeapi.ErrUnknownProjection)
		}
		return stores, nil
	}
	log := testenv.Logger(r.t, "storeapi")
	r.srv = httptest.NewServer(storeapi.Handler(open, log))
	r.t.Cleanup(r.srv.Close)
	r.client = storeapi.NewClient(r.srv.URL, r.srv.Client())
}

// scanAll collects every page of s's scan from from.
func scanAll(t *testing.T, s sink.Scanner, from string) []sink.ScanPage {
	t.Helper()
	var pages []sink.ScanPage
	err := s.Scan(ctxOf(t), from, func(p sink.ScanPage) error {
		if len(pages) > 100 {
			return errors.New("over 100 pages: the scan does not end")
		}
		pages = append(pages, p)
		return nil
	})
	if err != nil {
		t.Fatalf("Scan from %q: %v", from, err)
	}
	return pages
}

// idsOf are the distinct live and deleted ids of pages.
func idsOf(pages []sink.ScanPage) (ids, gone map[string]bool) {
	ids, gone = map[string]bool{}, map[string]bool{}
	for _, p := range pages {
		for _, id := range p.IDs {
			ids[id] = true
		}
		for _, id := range p.Deleted {
			gone[id] = true
		}
	}
	return ids, gone
}

// A scan through the API sees every id once at least, live and deleted
// apart, in the pages the store gives; a scan resumes from a page's At
// (that page again) and from its Next (the pages after it). Elasticsearch's
// pages are the same every time; those of Redis, whose SCAN walks the
// whole key space, which other tests change meanwhile, hold at least the
// ids of the pages they resume.
func TestScanRoundTripsAndResumes(t *testing.T) {
	r := newRig(t)
	for _, c := range []struct {
		name   string
		direct sink.Scanner
		api    *storeapi.Store
		stable bool // the same pages every time
	}{
		{"docs on redis", r.redis, r.client.Docs(r.ns), false},
		{"index on elasticsearch", r.es, r.client.Index(r.ns), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			pages := scanAll(t, c.api, "")
			ids, gone := idsOf(pages)
			if len(ids) != live || len(gone) != deleted {
				t.Fatalf("the scan through the API saw %d live and %d deleted ids in %d pages, want %d and %d", len(ids), len(gone), len(pages), live, deleted)
			}
			for id := range ids {
				if _, ok := r.bodies[id]; !ok {
					t.Fatalf("id %q is among the live ones, but was written as a tombstone", id)
				}
			}
			if len(pages) < 4 {
				t.Fatalf("%d pages: the test needs several", len(pages))
			}
			if c.stable {
				direct := scanAll(t, c.direct, "")
				if len(direct) != len(pages) {
					t.Errorf("%d pages through the API, %d from the store", len(pages), len(direct))
				}
				for i := range min(len(direct), len(pages)) {
					if !slices.Equal(direct[i].IDs, pages[i].IDs) || !slices.Equal(direct[i].Deleted, pages[i].Deleted) {
						t.Errorf("page %d: %d live and %d deleted through the API, %d and %d from the store",
							i, len(pages[i].IDs), len(pages[i].Deleted), len(direct[i].IDs), len(direct[i].Deleted))
					}
				}
			}

			// Resume at a page of live ids, and after it.
			k := slices.IndexFunc(pages, func(p sink.ScanPage) bool { return len(p.IDs) > 0 && p.Next != "" })
			again := scanAll(t, c.api, pages[k].At)
			if c.stable && !slices.Equal(again[0].IDs, pages[k].IDs) {
				t.Errorf("a scan from At %q starts with %d ids %v..., want page %d again (%d ids)", pages[k].At, len(again[0].IDs), first(again[0].IDs), k, len(pages[k].IDs))
			}
			covers(t, "a scan from At of page "+strconv.Itoa(k), again, pages[k:])
			after := scanAll(t, c.api, pages[k].Next)
			covers(t, "a scan from Next of page "+strconv.Itoa(k), after, pages[k+1:])
			if c.stable {
				later, _ := idsOf(pages[k+1:])
				afterIDs, _ := idsOf(after)
				for _, id := range pages[k].IDs {
					if afterIDs[id] && !later[id] {
						t.Errorf("a scan from Next of page %d gives id %s of page %d again", k, id, k)
					}
				}
			}

			// fn's error stops the scan, and comes back as it is.
			stop := errors.New("enough")
			n := 0
			err := c.api.Scan(ctxOf(t), "", func(sink.ScanPage) error { n++; return stop })
			if err != stop || n != 1 {
				t.Errorf("Scan whose fn fails = %v after %d pages, want fn's error after 1", err, n)
			}
		})
	}
	// A scan resumed at a page of tombstones once the scan has ended (its
	// point in time closed) starts the tombstone phase again.
	pages := scanAll(t, r.client.Index(r.ns), "")
	k := slices.IndexFunc(pages, func(p sink.ScanPage) bool { return len(p.Deleted) > 0 })
	again := scanAll(t, r.client.Index(r.ns), pages[len(pages)-1].At)
	covers(t, "a scan from the At of the last page, of tombstones, after the scan ended", again, pages[k:])
}

// covers checks that the pages got hold every id of want.
func covers(t *testing.T, what string, got, want []sink.ScanPage) {
	t.Helper()
	ids, gone := idsOf(got)
	wantIDs, wantGone := idsOf(want)
	for id := range wantIDs {
		if !ids[id] {
			t.Fatalf("%s misses live id %s of a page it should cover (%d of %d live ids)", what, id, len(ids), len(wantIDs))
		}
	}
	for id := range wantGone {
		if !gone[id] {
			t.Fatalf("%s misses tombstone %s of a page it should cover (%d of %d tombstones)", what, id, len(gone), len(wantGone))
		}
	}
}

func first(ids []string) []string { return ids[:min(3, len(ids))] }

// GetMany through the API answers each store's versions, tombstones and
// misses in the order asked, and bodies byte for byte as stored, also past
// one request's MaxGet ids.
func TestGetManyAnswersVersionsTombstonesAndBodies(t *testing.T) {
	r := newRig(t)
	ctx := ctxOf(t)
	ids := []string{"missing"}
	for i := range live + deleted {
		ids = append(ids, strconv.Itoa(i))
	}
	for _, c := range []struct {
		name   string
		direct sink.Reader
		api    *storeapi.Store
	}{
		{"docs on redis", r.redis, r.client.Docs(r.ns)},
		{"index on elasticsearch", r.es, r.client.Index(r.ns)},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.api.GetMany(ctx, ids)
			if err != nil {
				t.Fatal(err)
			}
			want, err := c.direct.GetMany(ctx, ids)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(ids) {
				t.Fatalf("%d answers for %d ids", len(got), len(ids))
			}
			if got[0] != nil {
				t.Errorf("a missing id answers %+v, want nil", got[0])
			}
			for i := 1; i < len(ids); i++ {
				g, w := got[i], want[i]
				if g == nil || w == nil {
					t.Fatalf("id %s: %v through the API, %v from the store", ids[i], g, w)
				}
				if g.Version != w.Version || g.Deleted != w.Deleted || !g.BuiltAt.Equal(w.BuiltAt) || !bytes.Equal(g.Body, w.Body) {
					t.Fatalf("id %s: through the API version %d deleted %v built %v body %q; from the store %d %v %v %q",
						ids[i], g.Version, g.Deleted, g.BuiltAt, g.Body, w.Version, w.Deleted, w.BuiltAt, w.Body)
				}
				if b, ok := r.bodies[ids[i]]; ok && !bytes.Equal(g.Body, b) {
					t.Fatalf("id %s: body %q, written %q", ids[i], g.Body, b)
				}
				if wantDeleted := i > live; g.Deleted != wantDeleted || g.Version != int64(i) {
					t.Fatalf("id %s: version %d deleted %v, want %d %v", ids[i], g.Version, g.Deleted, i, wantDeleted)
				}
			}
			if _, err := c.api.Get(ctx, "missing"); !errors.Is(err, sink.ErrNotFound) {
				t.Errorf("Get of a missing id = %v, want sink.ErrNotFound", err)
			}
			if s, err := c.api.Get(ctx, "3"); err != nil || !bytes.Equal(s.Body, r.bodies["3"]) {
				t.Errorf("Get 3 = %q, %v; want %q", s.Body, err, r.bodies["3"])
			}
		})
	}
	// One request asks for at most MaxGet ids.
	body, _ := json.Marshal(map[string][]string{"ids": ids[:storeapi.MaxGet+1]})
	code, ctype, p := post(t, r.srv.URL+"/stores/v1/"+r.ns+"/docs/get", body)
	if code != http.StatusBadRequest || ctype != "application/problem+json" || !strings.Contains(p.Detail, "at most 1000") {
		t.Errorf("a get of %d ids answers %d %s %q, want 400 saying at most 1000", storeapi.MaxGet+1, code, ctype, p.Detail)
	}
}

// Count and Sample reach the stores that keep them; the others answer 501,
// which the Client turns into ErrNotSupported, saying which store cannot
// do what and which projector said so.
func TestCountSampleAndWhatAStoreCannotDo(t *testing.T) {
	r := newRig(t)
	ctx := ctxOf(t)
	n, err := r.client.Index(r.ns).Count(ctx)
	if err != nil || n != live {
		t.Errorf("Count of the index = %d, %v; want %d", n, err, live)
	}
	ids, err := r.client.Index(r.ns).Sample(ctx, 10)
	if err != nil || len(ids) != 10 {
		t.Fatalf("Sample 10 of the index = %v, %v", ids, err)
	}
	for _, id := range ids {
		if i, err := strconv.Atoi(id); err != nil || i < 0 || i >= live+deleted {
			t.Errorf("Sample gave id %q, which was never written", id)
		}
	}
	for _, c := range []struct {
		what string
		call func() error
		want string
	}{
		{"Count of the docs", func() error { _, err := r.client.Docs(r.ns).Count(ctx); return err }, "the redis store of projection " + r.ns + " cannot count"},
		{"Sample of the docs", func() error { _, err := r.client.Docs(r.ns).Sample(ctx, 3); return err }, "the redis store of projection " + r.ns + " cannot sample"},
		{"Reindex of the index", func() error { _, err := r.client.Index(r.ns).Reindex(ctx); return err }, "the elasticsearch store of projection " + r.ns + " cannot re-index itself"},
		{"Reindex of the docs", func() error { _, err := r.client.Docs(r.ns).Reindex(ctx); return err }, "the redis store of projection " + r.ns + " cannot re-index itself"},
	} {
		err := c.call()
		var e *storeapi.Error
		if !errors.Is(err, storeapi.ErrNotSupported) || !errors.As(err, &e) || e.Status != http.StatusNotImplemented {
			t.Errorf("%s = %v, want a 501 wrapping ErrNotSupported", c.what, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), r.srv.URL) {
			t.Errorf("%s: %q does not say %q and which projector (%s) answered", c.what, err, c.want, r.srv.URL)
		}
	}
	code, _, p := get(t, r.srv.URL+"/stores/v1/"+r.ns+"/index/sample?n=0")
	if code != http.StatusBadRequest || !strings.Contains(p.Detail, "n:") {
		t.Errorf("sample?n=0 answers %d %q, want 400 about n", code, p.Detail)
	}
}

// Users through the API gives every user of an entity, in the pages the
// store gives; fn's error stops it and comes back as it is.
func TestUsersStreamsEveryPage(t *testing.T) {
	r := newRig(t)
	ctx := ctxOf(t)
	collect := func(refs interface {
		Users(ctx context.Context, source, key string, fn func([]string) error) error
	}) (pages int, ids map[string]bool) {
		ids = map[string]bool{}
		err := refs.Users(ctx, "owner", "7", func(page []string) error {
			pages++
			for _, id := range page {
				ids[id] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return pages, ids
	}
	pages, ids := collect(r.client.Refs(r.ns))
	directPages, direct := collect(r.stores.Refs)
	if len(ids) != users || !maps.Equal(ids, direct) {
		t.Errorf("Users through the API gave %d ids, the store %d; want %d, the same", len(ids), len(direct), users)
	}
	if pages != directPages || pages < 2 {
		t.Errorf("Users through the API gave %d pages, the store %d; want the same, several", pages, directPages)
	}
	if n, _ := collect(r.client.Refs(r.ns)); n == 0 {
		t.Error("no page")
	}
	stop := errors.New("enough")
	if err := r.client.Refs(r.ns).Users(ctx, "owner", "7", func([]string) error { return stop }); err != stop {
		t.Errorf("Users whose fn fails = %v, want fn's error", err)
	}
	none := 0
	if err := r.client.Refs(r.ns).Users(ctx, "owner", "nobody", func([]string) error { none++; return nil }); err != nil || none != 0 {
		t.Errorf("Users of an entity nobody uses = %d pages, %v; want none, nil", none, err)
	}
	code, _, p := get(t, r.srv.URL+"/stores/v1/"+r.ns+"/refs?source=owner")
	if code != http.StatusBadRequest || !strings.Contains(p.Detail, "key") {
		t.Errorf("refs without a key answers %d %q, want 400 saying key is needed", code, p.Detail)
	}
}

// The answers to what cannot be done: problem+json with a detail saying
// what is wrong, never the store's own error (hosts, files).
func TestProblems(t *testing.T) {
	r := newRig(t)
	ctx := ctxOf(t)

	_, err := r.client.Docs("nosuch").GetMany(ctx, []string{"1"})
	var e *storeapi.Error
	if !errors.As(err, &e) || e.Status != http.StatusNotFound || !strings.Contains(e.Detail, `"nosuch"`) || errors.Is(err, storeapi.ErrNotSupported) {
		t.Errorf("an unknown projection = %v, want a 404 naming it", err)
	}
	if code, ctype, p := get(t, r.srv.URL+"/stores/v1/"+r.ns+"/cache/count"); code != http.StatusNotFound || ctype != "application/problem+json" || !strings.Contains(p.Detail, `"cache"`) {
		t.Errorf("an unknown store answers %d %s %q, want a 404 problem naming it", code, ctype, p.Detail)
	}

	for _, c := range []struct {
		store *storeapi.Store
		from  string
	}{
		{r.client.Docs(r.ns), "not-a-position"},
		{r.client.Index(r.ns), "elsewhere:1"},
		{r.client.Index(r.ns), "deleted:%%%"},
	} {
		err := c.store.Scan(ctx, c.from, func(sink.ScanPage) error { return nil })
		if !errors.As(err, &e) || e.Status != http.StatusBadRequest || !strings.Contains(e.Detail, strconv.Quote(c.from)) {
			t.Errorf("Scan from %q = %v, want a 400 naming the position", c.from, err)
		}
	}

	// A store that fails: a 500 whose detail names the store, not where it
	// is; the log has the error.
	addr := testenv.FreeAddr(t)
	down := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { down.Close() })
	r.serve(sink.Stores{Docs: redisstore.New(down, redisstore.Options{KeyPattern: r.ns + ":{id}"}), DocsName: "redis", Index: r.es, IndexName: "elasticsearch"})
	_, err = r.client.Docs(r.ns).GetMany(ctx, []string{"1"})
	if !errors.As(err, &e) || e.Status != http.StatusInternalServerError || !strings.Contains(e.Detail, "redis store of projection "+r.ns) || strings.Contains(e.Detail, addr) {
		t.Errorf("a store down = %v, want a 500 naming the store, not its address %s", err, addr)
	}
}

// A re-index outlasts the server's write timeout: its route lifts it.
func TestReindexOutlastsTheWriteTimeout(t *testing.T) {
	r := newRig(t)
	stores := r.stores
	stores.Index = slowReindex{r.es}
	open := func(context.Context, string) (sink.Stores, error) { return stores, nil }
	srv := httptest.NewUnstartedServer(storeapi.Handler(open, testenv.Logger(t, "storeapi")))
	srv.Config.WriteTimeout = 200 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	n, err := storeapi.NewClient(srv.URL, srv.Client()).Index(r.ns).Reindex(ctxOf(t))
	if err != nil || n != live {
		t.Errorf("Reindex = %d, %v; want %d", n, err, live)
	}
}

// slowReindex is the Elasticsearch index with a Reindex that takes longer
// than the test server's write timeout, and answers how many it holds.
type slowReindex struct{ *elasticindex.Index }

func (s slowReindex) Reindex(ctx context.Context) (int64, error) {
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return s.Count(ctx)
}

func post(t *testing.T, url string, body []byte) (int, string, storeapi.Problem) {
	t.Helper()
	res, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return readProblem(t, res)
}

func get(t *testing.T, url string) (int, string, storeapi.Problem) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	return readProblem(t, res)
}

func readProblem(t *testing.T, res *http.Response) (int, string, storeapi.Problem) {
	t.Helper()
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var p storeapi.Problem
	if res.StatusCode != http.StatusOK {
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatalf("%s answers %d with %q, not a problem: %v", res.Request.URL, res.StatusCode, b, err)
		}
	}
	return res.StatusCode, res.Header.Get("Content-Type"), p
}
