package assemble_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readside/readside/internal/assemble"
	"github.com/readside/readside/internal/source"
	"github.com/readside/readside/projections"
)

// reply is what the fake source API answers for one path.
type reply struct {
	status int // 0: 200
	body   string
}

// api is a fake source API: it answers each path with its reply, 404 for any
// other path, and counts the requests per path. It stands for the users' code.
type api struct {
	*httptest.Server
	replies map[string]reply // read-only once serving
	before  func(r *http.Request)

	mu   sync.Mutex
	hits map[string]int
}

// newAPI starts a fake source API, closed when the test ends. before, when
// set, runs at the start of every request.
func newAPI(t testing.TB, replies map[string]reply, before func(r *http.Request)) *api {
	t.Helper()
	a := &api{replies: replies, before: before, hits: map[string]int{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.before != nil {
			a.before(r)
		}
		a.mu.Lock()
		a.hits[r.URL.Path]++
		a.mu.Unlock()
		rep, ok := a.replies[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if rep.status != 0 {
			http.Error(w, rep.body, rep.status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, rep.body)
	}))
	t.Cleanup(a.Close)
	return a
}

// hitsUnder counts the requests for paths starting with prefix.
func (a *api) hitsUnder(prefix string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for p, c := range a.hits {
		if strings.HasPrefix(p, prefix) {
			n += c
		}
	}
	return n
}

// parse parses a definition whose URLs use ${API} for the fake API's base URL.
func parse(t testing.TB, def, apiURL string) *projections.Definition {
	t.Helper()
	d, err := projections.Parse(t.Name()+".yaml", []byte(def), projections.Options{
		Lookup: func(name string) (string, bool) { return apiURL, name == "API" },
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// newAssembler reads every source of def the way the projector does: a
// client with a short retry budget behind a breaker of its own.
func newAssembler(def *projections.Definition, o assemble.Options) *assemble.Assembler {
	fetchers := make([]assemble.Fetcher, len(def.Sources))
	for i, s := range def.Sources {
		c := source.New(source.Options{MaxElapsed: 200 * time.Millisecond, InitialInterval: 10 * time.Millisecond})
		fetchers[i] = source.WithBreaker(c, def.Name+"/"+s.Name)
	}
	return assemble.New(def, fetchers, o)
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

const primaryOnly = `name: shops
triggers: [{subject: "shop.changed.*"}]
sources: [{name: shop, url: "${API}/shops/{id}"}]
fields:
  - {name: name, from: shop.name, type: text}
  - {name: rating, from: shop.rating, type: float}
redis: {key: "shop:{id}"}
elasticsearch: {alias: shops}
`

// Each answer of the primary source maps to one outcome: a document, a
// tombstone, or an error that says whether retrying can help.
func TestAssemblePrimary(t *testing.T) {
	tests := []struct {
		name      string
		reply     reply
		wantDoc   string
		deleted   bool
		wantErr   bool
		permanent bool
		errAs     any // a pointer to the error type Err must hold, or an error it must wrap
	}{
		{name: "ok", reply: reply{body: `{"name":"Pizza Nord","rating":4.5,"secret":"x"}`},
			wantDoc: `{"id":"1","name":"Pizza Nord","rating":4.5}`},
		{name: "404 is a tombstone", reply: reply{status: 404}, deleted: true},
		{name: "410 is a tombstone", reply: reply{status: 410}, deleted: true},
		{name: "400 is permanent", reply: reply{status: 400, body: "bad id"},
			wantErr: true, permanent: true, errAs: new(*source.StatusError)},
		{name: "500 is transient", reply: reply{status: 500, body: "down"},
			wantErr: true, errAs: new(*source.UnavailableError)},
		{name: "invalid JSON is permanent", reply: reply{body: `{"name": nope`},
			wantErr: true, permanent: true, errAs: projections.ErrBadSource},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAPI(t, map[string]reply{"/shops/1": tt.reply}, nil)
			asm := newAssembler(parse(t, primaryOnly, a.URL), assemble.Options{})
			got := asm.Assemble(testCtx(t), []string{"1"})
			if len(got) != 1 {
				t.Fatalf("got %d results, want 1", len(got))
			}
			r := got[0]
			if r.ID != "1" || string(r.Doc) != tt.wantDoc || r.Deleted != tt.deleted ||
				(r.Err != nil) != tt.wantErr || r.Permanent != tt.permanent {
				t.Fatalf("Assemble = {ID:%q Doc:%s Deleted:%v Err:%v Permanent:%v}, want {Doc:%s Deleted:%v Err:%v Permanent:%v}",
					r.ID, r.Doc, r.Deleted, r.Err, r.Permanent, tt.wantDoc, tt.deleted, tt.wantErr, tt.permanent)
			}
			switch target := tt.errAs.(type) {
			case nil:
			case error:
				if !errors.Is(r.Err, target) {
					t.Errorf("Err = %v, want it to wrap %v", r.Err, target)
				}
			default:
				if !errors.As(r.Err, target) {
					t.Errorf("Err = %v (%T), want a %T", r.Err, r.Err, target)
				}
			}
		})
	}
}

// batchAPI is a fake source API with a batch endpoint, GET /shops?ids=1,2,3,
// answering {"items":[...]} with the shops it knows, and GET /shops/{id}.
type batchAPI struct {
	*httptest.Server
	shops  map[string]string // id → name; read-only once serving
	hidden map[string]bool   // known, but left out of batch answers
	fail   atomic.Int32      // non-zero: the batch endpoint answers this status

	mu      sync.Mutex
	batches [][]string // the ids of every batch request
	singles []string   // the ids of every single request
}

func newBatchAPI(t testing.TB, shops map[string]string, hidden ...string) *batchAPI {
	t.Helper()
	a := &batchAPI{shops: shops, hidden: map[string]bool{}}
	for _, id := range hidden {
		a.hidden[id] = true
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /shops", func(w http.ResponseWriter, r *http.Request) {
		ids := strings.Split(r.URL.Query().Get("ids"), ",")
		a.mu.Lock()
		a.batches = append(a.batches, ids)
		a.mu.Unlock()
		if code := a.fail.Load(); code != 0 {
			http.Error(w, "failing on purpose", int(code))
			return
		}
		var items []string
		for _, id := range ids {
			if name, ok := a.shops[id]; ok && !a.hidden[id] {
				items = append(items, fmt.Sprintf(`{"id":%q,"name":%q}`, id, name))
			}
		}
		fmt.Fprintf(w, `{"items":[%s]}`, strings.Join(items, ","))
	})
	mux.HandleFunc("GET /shops/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		a.mu.Lock()
		a.singles = append(a.singles, id)
		a.mu.Unlock()
		name, ok := a.shops[id]
		if !ok {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, `{"id":%q,"name":%q}`, id, name)
	})
	a.Server = httptest.NewServer(mux)
	t.Cleanup(a.Close)
	return a
}

func (a *batchAPI) calls() (batches [][]string, singles []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.batches), slices.Clone(a.singles)
}

const batched = `name: shops
triggers: [{subject: "shop.changed.*"}]
sources:
  - name: shop
    url: "${API}/shops/{id}"
    batch: {url: "${API}/shops?ids={ids}", items: items, max: 100}
fields:
  - {name: name, from: shop.name, type: keyword}
redis: {key: "shop:{id}"}
elasticsearch: {alias: shops}
`

func shopDoc(id, name string) string { return fmt.Sprintf(`{"id":%q,"name":%q}`, id, name) }

func TestAssembleBatch(t *testing.T) {
	t.Run("a burst takes as few requests as the batch size allows", func(t *testing.T) {
		shops := map[string]string{}
		var ids []string
		for i := range 250 {
			id := strconv.Itoa(i)
			shops[id] = "shop " + id
			ids = append(ids, id)
		}
		a := newBatchAPI(t, shops)
		got := newAssembler(parse(t, batched, a.URL), assemble.Options{}).Assemble(testCtx(t), ids)

		for i, r := range got {
			if r.ID != ids[i] || r.Err != nil || string(r.Doc) != shopDoc(ids[i], shops[ids[i]]) {
				t.Errorf("result %d = {ID:%q Doc:%s Err:%v}", i, r.ID, r.Doc, r.Err)
			}
		}
		batches, singles := a.calls()
		if len(batches) != 3 || len(singles) != 0 {
			t.Errorf("%d batch calls and %d single GETs, want 3 and 0", len(batches), len(singles))
		}
		var asked []string
		for _, b := range batches {
			if len(b) > 100 {
				t.Errorf("a batch of %d ids; max is 100", len(b))
			}
			asked = append(asked, b...)
		}
		slices.Sort(asked)
		want := slices.Sorted(slices.Values(ids))
		if !slices.Equal(asked, want) {
			t.Errorf("the batches asked for %d ids, want each of the %d once", len(asked), len(want))
		}
	})

	t.Run("ids the batch answer lacks are fetched alone", func(t *testing.T) {
		// 2 is left out of batch answers but exists; 3 does not exist at all.
		a := newBatchAPI(t, map[string]string{"1": "one", "2": "two", "4": "four"}, "2")
		got := newAssembler(parse(t, batched, a.URL), assemble.Options{}).Assemble(testCtx(t), []string{"1", "2", "3", "4"})

		if string(got[0].Doc) != shopDoc("1", "one") || string(got[1].Doc) != shopDoc("2", "two") ||
			string(got[3].Doc) != shopDoc("4", "four") {
			t.Errorf("docs = %s, %s, %s", got[0].Doc, got[1].Doc, got[3].Doc)
		}
		if r := got[2]; !r.Deleted || r.Err != nil || r.Doc != nil {
			t.Errorf("3, unknown = {Deleted:%v Err:%v Doc:%s}, want a tombstone", r.Deleted, r.Err, r.Doc)
		}
		batches, singles := a.calls()
		slices.Sort(singles)
		if len(batches) != 1 || !slices.Equal(singles, []string{"2", "3"}) {
			t.Errorf("batches %q, singles %q; want one batch, then 2 and 3 alone", batches, singles)
		}
	})

	t.Run("an id with a comma is fetched alone", func(t *testing.T) {
		a := newBatchAPI(t, map[string]string{"1": "one", "a,b": "comma", "2": "two"})
		got := newAssembler(parse(t, batched, a.URL), assemble.Options{}).Assemble(testCtx(t), []string{"1", "a,b", "2"})

		for i, want := range []string{shopDoc("1", "one"), shopDoc("a,b", "comma"), shopDoc("2", "two")} {
			if string(got[i].Doc) != want || got[i].Err != nil {
				t.Errorf("result %d = {Doc:%s Err:%v}, want %s", i, got[i].Doc, got[i].Err, want)
			}
		}
		batches, singles := a.calls()
		if len(batches) != 1 || !slices.Equal(batches[0], []string{"1", "2"}) || !slices.Equal(singles, []string{"a,b"}) {
			t.Errorf("batches %q, singles %q; want [[1 2]] and [a,b]", batches, singles)
		}
	})

	t.Run("a failing batch call fails its ids transiently", func(t *testing.T) {
		a := newBatchAPI(t, map[string]string{"1": "one", "2": "two", "3": "three"})
		a.fail.Store(http.StatusInternalServerError)
		got := newAssembler(parse(t, batched, a.URL), assemble.Options{}).Assemble(testCtx(t), []string{"1", "2", "3"})

		for _, r := range got {
			if r.Err == nil || r.Permanent || r.Doc != nil || r.Deleted {
				t.Errorf("%s = {Err:%v Permanent:%v Doc:%s Deleted:%v}, want a transient error", r.ID, r.Err, r.Permanent, r.Doc, r.Deleted)
			}
			if !errors.As(r.Err, new(*source.UnavailableError)) {
				t.Errorf("%s: Err = %v, want an *UnavailableError", r.ID, r.Err)
			}
		}
		if _, singles := a.calls(); len(singles) != 0 {
			t.Errorf("single GETs %q after the batch failed; want none", singles)
		}
	})
}

// joined is a chain shop → owner → company, and optional ads. Owner changes
// are looked up: the documents using an owner are projected again.
const joined = `name: shops
triggers:
  - {subject: "shop.changed.*"}
  - {subject: "owner.changed.*", lookup: owner}
sources:
  - {name: shop, url: "${API}/shops/{id}"}
  - {name: owner, url: "${API}/owners/{shop.ownerId}"}
  - {name: company, url: "${API}/companies/{owner.companyId}"}
  - {name: ads, url: "${API}/ads/{id}", optional: true}
fields:
  - {name: name, from: shop.name, type: text}
  - {name: owner, from: owner.name, type: keyword}
  - {name: company, from: company.name, type: keyword}
  - {name: ads, from: ads.count, type: integer}
redis: {key: "shop:{id}"}
elasticsearch: {alias: shops}
`

func TestAssembleJoins(t *testing.T) {
	full := func() map[string]reply {
		return map[string]reply{
			"/shops/1":      {body: `{"name":"Pizza Nord","ownerId":7}`},
			"/owners/7":     {body: `{"name":"Ada","companyId":"c1"}`},
			"/companies/c1": {body: `{"name":"Ada GmbH"}`},
			"/ads/1":        {body: `{"count":3}`},
		}
	}
	ownerRef := []assemble.Ref{{ID: "1", Source: "owner", Key: "7"}}
	tests := []struct {
		name       string
		edit       func(map[string]reply)
		wantDoc    string
		partial    []string
		refs       []assemble.Ref
		wantErr    bool
		noOwnerGet bool // the owner endpoint must not be asked
	}{
		{
			name:    "every source",
			wantDoc: `{"id":"1","name":"Pizza Nord","owner":"Ada","company":"Ada GmbH","ads":3}`,
			refs:    ownerRef,
		},
		{
			name:       "the primary answer lacks the join key",
			edit:       func(m map[string]reply) { m["/shops/1"] = reply{body: `{"name":"Pizza Nord"}`} },
			wantDoc:    `{"id":"1","name":"Pizza Nord","owner":null,"company":null,"ads":3}`,
			noOwnerGet: true,
		},
		{
			name:    "the joined entity does not exist",
			edit:    func(m map[string]reply) { delete(m, "/owners/7") },
			wantDoc: `{"id":"1","name":"Pizza Nord","owner":null,"company":null,"ads":3}`,
			refs:    ownerRef,
		},
		{
			name:    "the end of the chain does not exist",
			edit:    func(m map[string]reply) { delete(m, "/companies/c1") },
			wantDoc: `{"id":"1","name":"Pizza Nord","owner":"Ada","company":null,"ads":3}`,
			refs:    ownerRef,
		},
		{
			name:    "a required joined source is down",
			edit:    func(m map[string]reply) { m["/owners/7"] = reply{status: 503} },
			wantErr: true,
		},
		{
			name:    "an optional source is down",
			edit:    func(m map[string]reply) { m["/ads/1"] = reply{status: 503} },
			wantDoc: `{"id":"1","name":"Pizza Nord","owner":"Ada","company":"Ada GmbH","ads":null,"readside_partial":["ads"]}`,
			partial: []string{"ads"},
			refs:    ownerRef,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			replies := full()
			if tt.edit != nil {
				tt.edit(replies)
			}
			a := newAPI(t, replies, nil)
			r := newAssembler(parse(t, joined, a.URL), assemble.Options{}).Assemble(testCtx(t), []string{"1"})[0]

			if tt.wantErr {
				if r.Err == nil || r.Permanent || r.Doc != nil {
					t.Fatalf("Assemble = {Doc:%s Err:%v Permanent:%v}, want a transient error", r.Doc, r.Err, r.Permanent)
				}
				if !errors.As(r.Err, new(*source.UnavailableError)) {
					t.Errorf("Err = %v, want an *UnavailableError", r.Err)
				}
				return
			}
			if r.Err != nil || r.Deleted {
				t.Fatalf("Assemble: Err %v, Deleted %v", r.Err, r.Deleted)
			}
			if string(r.Doc) != tt.wantDoc {
				t.Errorf("Doc =\n%s\nwant\n%s", r.Doc, tt.wantDoc)
			}
			if !slices.Equal(r.Partial, tt.partial) {
				t.Errorf("Partial = %q, want %q", r.Partial, tt.partial)
			}
			if !slices.Equal(r.Refs, tt.refs) {
				t.Errorf("Refs = %+v, want %+v", r.Refs, tt.refs)
			}
			if n := a.hitsUnder("/owners/"); tt.noOwnerGet && n != 0 {
				t.Errorf("the owner endpoint was asked %d times; the shop names no owner", n)
			}
		})
	}
}

// The refs a stage uses are handed to BeforeJoin before any of them is
// fetched: a change of the joined entity made after the fetch then always
// finds the document. The owner endpoint checks that its owner was recorded.
func TestAssembleBeforeJoin(t *testing.T) {
	replies := map[string]reply{
		"/shops/1":      {body: `{"name":"one","ownerId":7}`},
		"/shops/2":      {body: `{"name":"two","ownerId":"7"}`},
		"/shops/3":      {body: `{"name":"three","ownerId":8}`},
		"/shops/4":      {body: `{"name":"four"}`},
		"/owners/7":     {body: `{"name":"Ada","companyId":"c1"}`},
		"/owners/8":     {body: `{"name":"Bo","companyId":"c1"}`},
		"/companies/c1": {body: `{"name":"Co"}`},
	}
	wantRefs := [][]assemble.Ref{
		{{ID: "1", Source: "owner", Key: "7"}},
		{{ID: "2", Source: "owner", Key: "7"}},
		{{ID: "3", Source: "owner", Key: "8"}},
		nil,
	}
	ids := []string{"1", "2", "3", "4"}

	t.Run("recorded before the fetch", func(t *testing.T) {
		var (
			mu       sync.Mutex
			recorded = map[string]bool{} // owner keys handed to BeforeJoin
			calls    [][]assemble.Ref
			early    []string // owners fetched before they were recorded
		)
		a := newAPI(t, replies, func(r *http.Request) {
			if key, ok := strings.CutPrefix(r.URL.Path, "/owners/"); ok {
				mu.Lock()
				if !recorded[key] {
					early = append(early, key)
				}
				mu.Unlock()
			}
		})
		asm := newAssembler(parse(t, joined, a.URL), assemble.Options{
			BeforeJoin: func(_ context.Context, refs []assemble.Ref) error {
				mu.Lock()
				defer mu.Unlock()
				calls = append(calls, slices.Clone(refs))
				for _, r := range refs {
					recorded[r.Key] = true
				}
				return nil
			},
		})
		got := asm.Assemble(testCtx(t), ids)

		for i, r := range got {
			if r.Err != nil || r.Doc == nil {
				t.Errorf("%s: Err %v, Doc %s", r.ID, r.Err, r.Doc)
			}
			if !slices.Equal(r.Refs, wantRefs[i]) {
				t.Errorf("%s: Refs = %+v, want %+v", r.ID, r.Refs, wantRefs[i])
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if len(early) > 0 {
			t.Errorf("owners %q were fetched before BeforeJoin recorded them", early)
		}
		want := slices.Concat(wantRefs...)
		if len(calls) != 1 || !sameRefs(calls[0], want) {
			t.Errorf("BeforeJoin calls = %+v, want one with %+v (only owner is looked up)", calls, want)
		}
		if n := a.hitsUnder("/owners/"); n != 3 {
			t.Errorf("the owner endpoint was asked %d times, want 3", n)
		}
	})

	t.Run("a failure holds the documents back", func(t *testing.T) {
		a := newAPI(t, replies, nil)
		errDown := errors.New("redis down")
		asm := newAssembler(parse(t, joined, a.URL), assemble.Options{
			BeforeJoin: func(context.Context, []assemble.Ref) error { return errDown },
		})
		got := asm.Assemble(testCtx(t), ids)

		for _, r := range got[:3] {
			if !errors.Is(r.Err, errDown) || r.Permanent || r.Doc != nil {
				t.Errorf("%s = {Err:%v Permanent:%v Doc:%s}, want a transient error wrapping %v", r.ID, r.Err, r.Permanent, r.Doc, errDown)
			}
		}
		// 4 names no owner: it joins nothing, so nothing had to be recorded.
		if r := got[3]; r.Err != nil || string(r.Doc) != `{"id":"4","name":"four","owner":null,"company":null,"ads":null}` {
			t.Errorf("4 = {Err:%v Doc:%s}, want the document without an owner", r.Err, r.Doc)
		}
		if n := a.hitsUnder("/owners/"); n != 0 {
			t.Errorf("the owner endpoint was asked %d times after BeforeJoin failed; want 0", n)
		}
		if n := a.hitsUnder("/companies/"); n != 0 {
			t.Errorf("the company endpoint was asked %d times after BeforeJoin failed; want 0", n)
		}
	})
}

func sameRefs(a, b []assemble.Ref) bool {
	key := func(r assemble.Ref) string { return r.ID + "\x00" + r.Source + "\x00" + r.Key }
	ka, kb := make([]string, len(a)), make([]string, len(b))
	for i := range a {
		ka[i] = key(a[i])
	}
	for i := range b {
		kb[i] = key(b[i])
	}
	slices.Sort(ka)
	slices.Sort(kb)
	return slices.Equal(ka, kb)
}

func TestAssembleVersion(t *testing.T) {
	const versioned = `name: shops
triggers: [{subject: "shop.changed.*"}]
sources: [{name: shop, url: "${API}/shops/{id}"}]
version: shop.version
fields: [{name: name, from: shop.name, type: text}]
redis: {key: "shop:{id}"}
elasticsearch: {alias: shops}
`
	a := newAPI(t, map[string]reply{
		"/shops/1": {body: `{"name":"one","version":12}`},
		"/shops/2": {body: `{"name":"two","version":"2026-11-21T10:00:00.5Z"}`},
		"/shops/3": {body: `{"name":"three"}`},
		"/shops/4": {body: `{"name":"four","version":-1}`},
	}, nil)
	got := newAssembler(parse(t, versioned, a.URL), assemble.Options{}).Assemble(testCtx(t), []string{"1", "2", "3", "4"})

	for i, want := range []int64{12, 1795255200500000000} {
		if r := got[i]; r.Err != nil || r.Version != want || r.Doc == nil {
			t.Errorf("%s: Version %d, Err %v, Doc %s; want version %d", r.ID, r.Version, r.Err, r.Doc, want)
		}
	}
	for _, r := range got[2:] {
		if !errors.Is(r.Err, projections.ErrBadSource) || !r.Permanent || r.Doc != nil {
			t.Errorf("%s without a valid version = {Err:%v Permanent:%v Doc:%s}, want a permanent ErrBadSource", r.ID, r.Err, r.Permanent, r.Doc)
		}
	}
}

// Options.Concurrency bounds the requests in flight at once, in every stage:
// single primary fetches, batch calls and joins.
func TestAssembleConcurrency(t *testing.T) {
	var active, peak atomic.Int64
	slow := func(w http.ResponseWriter, r *http.Request) {
		n := active.Add(1)
		defer active.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		if id, ok := strings.CutPrefix(r.URL.Path, "/shops/"); ok {
			fmt.Fprintf(w, `{"id":%q,"name":"s","ownerId":"o%s"}`, id, id)
			return
		}
		if ids := r.URL.Query().Get("ids"); ids != "" {
			var items []string
			for _, id := range strings.Split(ids, ",") {
				items = append(items, fmt.Sprintf(`{"id":%q,"name":"s","ownerId":"o%s"}`, id, id))
			}
			fmt.Fprintf(w, `{"items":[%s]}`, strings.Join(items, ","))
			return
		}
		fmt.Fprint(w, `{"name":"o"}`)
	}
	srv := httptest.NewServer(http.HandlerFunc(slow))
	t.Cleanup(srv.Close)

	const def = `name: shops
triggers: [{subject: "shop.changed.*"}]
sources:
  - name: shop
    url: "${API}/shops/{id}"
    %s
  - {name: owner, url: "${API}/owners/{shop.ownerId}"}
fields: [{name: owner, from: owner.name, type: keyword}]
redis: {key: "shop:{id}"}
elasticsearch: {alias: shops}
`
	var ids []string
	for i := range 40 {
		ids = append(ids, strconv.Itoa(i))
	}
	for _, tt := range []struct{ name, batch string }{
		{"single", ""},
		{"batch", `batch: {url: "${API}/shops?ids={ids}", items: items, max: 4}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			peak.Store(0)
			asm := newAssembler(parse(t, fmt.Sprintf(def, tt.batch), srv.URL), assemble.Options{Concurrency: 4})
			for _, r := range asm.Assemble(testCtx(t), ids) {
				if r.Err != nil || string(r.Doc) != fmt.Sprintf(`{"id":%q,"owner":"o"}`, r.ID) {
					t.Fatalf("%s: Err %v, Doc %s", r.ID, r.Err, r.Doc)
				}
			}
			p := peak.Load()
			t.Logf("peak concurrency %d", p)
			if p > 4 {
				t.Errorf("the source saw %d requests at once; Concurrency is 4", p)
			}
			if p < 2 {
				t.Errorf("the source saw at most %d request at once: requests are not concurrent", p)
			}
		})
	}
}

// An Assembler fetches the primary source, then each joined source with the
// fields of those before it, and flattens the answers into one document.
func ExampleAssembler_Assemble() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/shops/42":
			fmt.Fprint(w, `{"name": "Pizza Nord", "ownerId": 7, "secret": "x"}`)
		case "/owners/7":
			fmt.Fprint(w, `{"name": "Ada"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer api.Close()

	def, err := projections.Parse("shops.yaml", []byte(`name: shops
triggers:
  - {subject: "shop.changed.*"}
  - {subject: "owner.changed.*", lookup: owner}
sources:
  - {name: shop, url: "${SHOP_API}/shops/{id}"}
  - {name: owner, url: "${SHOP_API}/owners/{shop.ownerId}"}
fields:
  - {name: name, from: shop.name, type: text}
  - {name: owner, from: owner.name, type: keyword}
redis: {key: "shop:{id}"}
elasticsearch: {alias: shops}
`), projections.Options{Lookup: func(string) (string, bool) { return api.URL, true }})
	if err != nil {
		fmt.Println(err)
		return
	}
	client := source.New(source.Options{})
	asm := assemble.New(def, []assemble.Fetcher{client, client}, assemble.Options{})
	for _, r := range asm.Assemble(context.Background(), []string{"42", "43"}) {
		switch {
		case r.Err != nil:
			fmt.Println(r.ID, "failed:", r.Err)
		case r.Deleted:
			fmt.Println(r.ID, "is gone")
		default:
			fmt.Println(string(r.Doc), r.Refs)
		}
	}
	// Output:
	// {"id":"42","name":"Pizza Nord","owner":"Ada"} [{42 owner 7 0}]
	// 43 is gone
}
