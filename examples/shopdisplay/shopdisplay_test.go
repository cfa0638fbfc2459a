package shopdisplay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/readside/readside/examples/shopdisplay/sampleapi"
	"github.com/readside/readside/internal/backend"
	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/elasticindex"
	"github.com/readside/readside/internal/sink/redisstore"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
)

// testShops keeps the sample API small: the tests touch at most 1000 shops.
const testShops = 2000

// env is the shop display projection, loaded from shopdisplay.yaml under the
// test's namespace, wired to a fresh embedded JetStream, the test Redis and
// Elasticsearch, and the sample API served by httptest.
type env struct {
	t       *testing.T
	ns      string
	api     *sampleapi.API
	def     *projections.Definition
	js      jetstream.JetStream
	streams *stream.Setup
	rdb     *redis.Client
	es      *elasticsearch.Client
	redis   *redisstore.Store
	elastic *elasticindex.Index
	log     *slog.Logger
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ns := testenv.Namespace(t)
	api := sampleapi.New(sampleapi.Options{Shops: testShops, Seed: 42})
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	def := loadDefinition(t, ns, srv.URL)
	_, js := testenv.StartJetStream(t).Connect(t)
	streams, err := stream.Ensure(context.Background(), js, stream.Config{}, def.AllSubjects())
	if err != nil {
		t.Fatal(err)
	}
	rdb := testenv.Redis(t)
	testenv.CleanRedis(t, rdb, ns)
	es := testenv.Elastic(t, ns)
	return &env{
		t: t, ns: ns, api: api, def: def, js: js, streams: streams, rdb: rdb, es: es,
		redis:   redisstore.New(rdb, redisstore.Options{KeyPattern: def.Redis.Key}),
		elastic: elasticindex.New(es, elasticindex.Options{Alias: def.Elasticsearch.Alias, Mapping: def.Mapping()}),
		log:     testenv.Logger(t, "projector"),
	}
}

// loadDefinition reads shopdisplay.yaml with its name, Redis key and alias
// moved under ns, and its API at apiURL. The subjects stay as they are: every
// test has a JetStream server of its own.
func loadDefinition(t *testing.T, ns, apiURL string) *projections.Definition {
	t.Helper()
	data, err := os.ReadFile("shopdisplay.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, r := range [][2]string{
		{"\nname: shopdisplay\n", "\nname: " + ns + "\n"},
		{`key: "shopdisplay:{id}"`, `key: "` + ns + `:{id}"`},
		{"alias: shopdisplay\n", "alias: " + ns + "\n"},
	} {
		if n := strings.Count(text, r[0]); n != 1 {
			t.Fatalf("shopdisplay.yaml: %q appears %d times, want once", r[0], n)
		}
		text = strings.Replace(text, r[0], r[1], 1)
	}
	def, err := projections.Parse("shopdisplay.yaml", []byte(text), projections.Options{Lookup: apiLookup(apiURL)})
	if err != nil {
		t.Fatal(err)
	}
	return def
}

func apiLookup(url string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		if name == "SHOPDISPLAY_API" {
			return url, true
		}
		return "", false
	}
}

// start runs a projector of the definition until the test ends.
func (e *env) start() {
	e.t.Helper()
	e.startWith(func(*projector.Options) {})
}

// startWith starts the projector with options changed by edit.
func (e *env) startWith(edit func(*projector.Options)) {
	e.t.Helper()
	penv := projector.Env{
		JetStream: e.js, Streams: e.streams, Stores: &backend.Stores{Redis: e.rdb, Elastic: e.es}, Log: e.log,
		SourceRetryBudget: 300 * time.Millisecond,
	}
	o := projector.Options{
		Batch: 64, Workers: 3, FetchConcurrency: 16,
		RetryInitial: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond,
		PartialRetry:  200 * time.Millisecond,
		ShutdownGrace: 5 * time.Second,
	}
	edit(&o)
	p, err := projector.ForDefinition(context.Background(), e.def, penv, o)
	if err != nil {
		e.t.Fatal(err)
	}
	testenv.Start(e.t, "projector", p.Run)
}

// publish publishes zero-payload events and waits for JetStream to store them.
func (e *env) publish(subjects ...string) {
	e.t.Helper()
	for _, s := range subjects {
		if _, err := e.js.Publish(context.Background(), s, nil); err != nil {
			e.t.Fatalf("publishing %s: %v", s, err)
		}
	}
}

// must returns the subject of a sample API mutation.
func (e *env) must(subject string, err error) string {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
	return subject
}

func (e *env) setDown(source string, status int) {
	e.t.Helper()
	if err := e.api.SetDown(source, status); err != nil {
		e.t.Fatal(err)
	}
}

func shopChanged(ids []int) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = "shop.changed." + strconv.Itoa(id)
	}
	return out
}

func span(from, to int) []int {
	out := make([]int, 0, to-from+1)
	for id := from; id <= to; id++ {
		out = append(out, id)
	}
	return out
}

// display is a shop display document as the projection writes it; decoding
// refuses any other field.
type display struct {
	ID            string              `json:"id"`
	Name          *string             `json:"name"`
	Category      *string             `json:"category"`
	Location      *sampleapi.Location `json:"location"`
	OpeningHours  json.RawMessage     `json:"openingHours"`
	Open          *bool               `json:"open"`
	Rating        *float64            `json:"rating"`
	RatingCount   *int                `json:"ratingCount"`
	OwnerName     *string             `json:"ownerName"`
	OwnerPhone    *string             `json:"ownerPhone"`
	TopItems      []string            `json:"topItems"`
	MinOrderPrice *float64            `json:"minOrderPrice"`
	AdRank        *int                `json:"adRank"`
	Partial       []string            `json:"readside_partial"`
}

// state is what a store should hold for a shop.
type state func(id int, s sink.Stored) error

// complete: the document holds the sample API's current data of the shop,
// its owner, menu and ads, and is not partial.
func (e *env) complete(id int, s sink.Stored) error { return e.joined(id, s, nil) }

// partial: like complete, but without the parts of the missing sources,
// which readside_partial lists.
func (e *env) partial(missing ...string) state {
	return func(id int, s sink.Stored) error { return e.joined(id, s, missing) }
}

// current: a tombstone when the sample API has deleted the shop, else complete.
func (e *env) current(id int, s sink.Stored) error {
	if _, ok := e.api.Shop(id); !ok {
		return tombstone(id, s)
	}
	return e.complete(id, s)
}

func tombstone(id int, s sink.Stored) error {
	if !s.Deleted {
		return fmt.Errorf("shop %d: want a tombstone, have %s", id, s.Body)
	}
	return nil
}

// joined checks a stored document against the sample API's own accessors.
func (e *env) joined(id int, s sink.Stored, missing []string) error {
	if s.Deleted {
		return fmt.Errorf("shop %d: a tombstone, want a document", id)
	}
	var got display
	dec := json.NewDecoder(bytes.NewReader(s.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		return fmt.Errorf("shop %d: decoding %s: %v", id, s.Body, err)
	}
	shop, ok := e.api.Shop(id)
	if !ok {
		return fmt.Errorf("shop %d: deleted in the API, but a document is stored: %s", id, s.Body)
	}
	owner, _ := e.api.Owner(shop.OwnerID)
	menu, _ := e.api.Menu(id)
	ads, _ := e.api.Ads(id)
	var hours sampleapi.OpeningHours
	if err := json.Unmarshal(got.OpeningHours, &hours); err != nil {
		return fmt.Errorf("shop %d: openingHours %s: %v", id, got.OpeningHours, err)
	}
	var diffs []string
	diff := func(field string, got, want any) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		if !bytes.Equal(g, w) {
			diffs = append(diffs, fmt.Sprintf("%s is %s, want %s", field, g, w))
		}
	}
	lacks := func(source string) bool { return slices.Contains(missing, source) }
	diff("id", got.ID, strconv.Itoa(id))
	diff("name", got.Name, shop.Name)
	diff("category", got.Category, shop.Category)
	diff("location", got.Location, shop.Location)
	diff("openingHours", hours, shop.OpeningHours)
	diff("open", got.Open, shop.Open)
	diff("rating", got.Rating, shop.Rating.Average)
	diff("ratingCount", got.RatingCount, shop.Rating.Count)
	diff("ownerName", got.OwnerName, owner.BusinessName)
	diff("ownerPhone", got.OwnerPhone, owner.Phone)
	if lacks("menu") {
		diff("topItems", got.TopItems, nil)
		diff("minOrderPrice", got.MinOrderPrice, nil)
	} else {
		diff("topItems", got.TopItems, menu.TopItems)
		diff("minOrderPrice", got.MinOrderPrice, menu.MinOrderPrice)
	}
	if lacks("ads") {
		diff("adRank", got.AdRank, nil)
	} else {
		diff("adRank", got.AdRank, ads.ActiveRank)
	}
	diff("readside_partial", got.Partial, missing)
	if len(diffs) > 0 {
		return fmt.Errorf("shop %d: %s\n\tdocument: %s", id, strings.Join(diffs, "; "), s.Body)
	}
	return nil
}

// check reports the first id whose document, in Redis or Elasticsearch, is
// not in state want (nil: every one is). Redis is read first, in one round
// trip; Elasticsearch only once Redis is right.
func (e *env) check(ids []int, want state) error {
	ctx := context.Background()
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = strconv.Itoa(id)
	}
	got, err := e.redis.GetMany(ctx, keys)
	if err != nil {
		return fmt.Errorf("redis: %v", err)
	}
	for i, s := range got {
		if s == nil {
			return fmt.Errorf("redis: shop %d: nothing stored", ids[i])
		}
		if err := want(ids[i], *s); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
	}
	var g errgroup.Group
	g.SetLimit(8)
	for _, id := range ids {
		g.Go(func() error {
			s, err := e.elastic.Get(ctx, strconv.Itoa(id))
			switch {
			case errors.Is(err, sink.ErrNotFound):
				return fmt.Errorf("elasticsearch: shop %d: nothing stored", id)
			case err != nil:
				return fmt.Errorf("elasticsearch: %v", err)
			}
			if err := want(id, s); err != nil {
				return fmt.Errorf("elasticsearch: %w", err)
			}
			return nil
		})
	}
	return g.Wait()
}

// waitFor polls until every id is in state want in both stores, and fails
// the test with the first difference when d passes first. It returns how
// long it took.
func (e *env) waitFor(ids []int, want state, d time.Duration, what string) time.Duration {
	e.t.Helper()
	start := time.Now()
	for {
		err := e.check(ids, want)
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > d {
			e.t.Fatalf("%s: not there after %s: %v", what, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// absent fails the test when either store holds anything for the ids.
func (e *env) absent(ids []int) {
	e.t.Helper()
	ctx := context.Background()
	for _, id := range ids {
		for name, st := range map[string]projector.Store{"redis": e.redis, "elasticsearch": e.elastic} {
			s, err := st.Get(ctx, strconv.Itoa(id))
			if !errors.Is(err, sink.ErrNotFound) {
				e.t.Fatalf("%s: shop %d: want nothing stored, have %+v (err %v), body %s", name, id, s, err, s.Body)
			}
		}
	}
}

// consumer returns the projection's consumer state: events not yet
// delivered, and delivered but not acknowledged.
func (e *env) consumer() (pending uint64, unacked int) {
	e.t.Helper()
	return testenv.ConsumerState(e.t, e.js, e.streams.Config().Events, stream.ConsumerName(e.def.Name))
}

// waitDrained waits until every event was acknowledged (or terminated).
func (e *env) waitDrained(d time.Duration) {
	e.t.Helper()
	testenv.WaitDrained(e.t, e.js, e.streams.Config().Events, stream.ConsumerName(e.def.Name), d)
}

// noDeadLetters fails the test when the dead-letter stream holds anything,
// showing the first entry's subject and reason.
func (e *env) noDeadLetters() {
	e.t.Helper()
	if err := testenv.NoDeadLetters(e.t, e.js, e.streams.Config().DeadLetter); err != nil {
		e.t.Fatal(err)
	}
}

// lastSeq is the events stream's last sequence: it moves when anything
// publishes an event.
func (e *env) lastSeq() uint64 {
	e.t.Helper()
	s, err := e.js.Stream(context.Background(), e.streams.Config().Events)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.LastSeq
}

// waitUntil polls cond until it holds, or fails the test after d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The definition file loads as it is, and its batch and list endpoints
// read the sample API right.
func TestDefinitionMatchesSampleAPI(t *testing.T) {
	t.Parallel()
	api := sampleapi.New(sampleapi.Options{Shops: 2500})
	srv := httptest.NewServer(api)
	defer srv.Close()
	def, err := projections.Load("shopdisplay.yaml", projections.Options{Lookup: apiLookup(srv.URL)})
	if err != nil {
		t.Fatal(err)
	}
	if def.Name != "shopdisplay" || def.Redis.Key != "shopdisplay:{id}" || def.Elasticsearch.Alias != "shopdisplay" {
		t.Errorf("name %q, key %q, alias %q", def.Name, def.Redis.Key, def.Elasticsearch.Alias)
	}
	want := []string{"shop.changed.*", "menu.changed.*", "ads.changed.*", "owner.changed.*", def.ReprojectSubject()}
	if got := def.Subjects(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("subjects %v, want %v", got, want)
	}
	ev, err := def.Route("owner.changed.7", nil)
	if err != nil || ev != (projections.Event{ID: "7", Lookup: "owner"}) {
		t.Errorf("owner.changed.7 routes to %+v (%v), want owner 7 looked up", ev, err)
	}

	client := srv.Client()
	get := func(url string) []byte {
		t.Helper()
		res, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(res.Body)
		if res.StatusCode != 200 {
			t.Fatalf("GET %s: %s: %s", url, res.Status, b.Bytes())
		}
		return b.Bytes()
	}

	// Batch: unknown and deleted ids are absent, the rest split by id.
	if _, err := api.DeleteShop(2); err != nil {
		t.Fatal(err)
	}
	url, err := def.BatchURL([]string{"1", "2", "3", "99999"})
	if err != nil {
		t.Fatal(err)
	}
	items, err := def.SplitBatch(get(url))
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || items["1"] == nil || items["3"] == nil {
		t.Errorf("batch of 1,2,3,99999 (2 deleted) answered %d shops: %v", len(items), items)
	}

	// List: every shop but the deleted one, page by page.
	var ids []string
	pages := 0
	for cursor := ""; ; pages++ {
		url, err := def.ListURL(cursor)
		if err != nil {
			t.Fatal(err)
		}
		page, next, err := def.ListPage(get(url))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(ids) != 2499 || ids[0] != "1" || ids[1] != "3" || ids[len(ids)-1] != "2500" || pages != 2 {
		t.Errorf("the list gave %d ids in %d pages (%v ... %v), want 2499 in 3 pages", len(ids), pages+1, ids[:3], ids[len(ids)-1])
	}
}

// (a) Every document in Redis and Elasticsearch joins the shop with its
// owner, menu and ads; each trigger kind rebuilds its document.
func TestJoinedDocumentInBothStores(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start()
	ids := span(1, 200)
	e.publish(shopChanged(ids)...)
	took := e.waitFor(ids, e.complete, 30*time.Second, "200 shops")
	t.Logf("200 joined documents in both stores after %s", took)

	// A menu, an ads and a shop change each reach their document.
	e.publish(e.must(e.api.ChangeMenu(5)), e.must(e.api.ChangeAds(6)), e.must(e.api.ChangeShop(7)))
	e.waitFor([]int{5, 6, 7}, e.complete, 15*time.Second, "changed menu, ads and shop")
	e.waitDrained(15 * time.Second)
	e.noDeadLetters()

	// The index answers a geo and filter search with the mapping generated
	// from the definition.
	if err := e.elastic.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	shop, _ := e.api.Shop(1)
	query := fmt.Sprintf(`{"query":{"bool":{"filter":[
		{"term":{"category":%q}},
		{"geo_distance":{"distance":"1km","location":{"lat":%v,"lon":%v}}}]}}}`,
		shop.Category, shop.Location.Lat, shop.Location.Lon)
	res, err := e.es.Search(e.es.Search.WithIndex(e.def.Elasticsearch.Alias), e.es.Search.WithBody(strings.NewReader(query)))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var found struct {
		Hits struct {
			Hits []struct {
				ID string `json:"_id"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.NewDecoder(res.Body).Decode(&found); err != nil || res.IsError() {
		t.Fatalf("search: %s (%v)", res.Status(), err)
	}
	hit := false
	for _, h := range found.Hits.Hits {
		hit = hit || h.ID == "1"
	}
	if !hit {
		t.Errorf("a search for %s shops within 1 km of shop 1 found %v, not shop 1", shop.Category, found.Hits.Hits)
	}
}

// (b) An owner change re-projects that owner's shops, in both stores, and
// fetches no other shop.
func TestOwnerChangeReprojectsExactlyItsShops(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start()
	ids := span(1, 200)
	e.publish(shopChanged(ids)...)
	e.waitFor(ids, e.complete, 30*time.Second, "200 shops")
	e.waitDrained(15 * time.Second)

	before := map[int]int64{}
	for id := 1; id <= testShops; id++ {
		before[id] = e.api.ShopFetches(id)
	}
	owners := e.api.Requests(sampleapi.SourceOwners)
	old, _ := e.api.Owner(7)
	e.publish(e.must(e.api.ChangeOwner(7)))
	now, _ := e.api.Owner(7)
	if now.BusinessName == old.BusinessName {
		t.Fatalf("ChangeOwner kept the business name %q", now.BusinessName)
	}
	mine := e.api.ShopsOf(7)
	took := e.waitFor(mine, e.complete, 15*time.Second, "owner 7's shops")
	e.waitDrained(15 * time.Second)
	t.Logf("owner 7's %d shops show %q after %s; %d owner requests", len(mine), now.BusinessName, took,
		e.api.Requests(sampleapi.SourceOwners)-owners)

	for id := 1; id <= testShops; id++ {
		n := e.api.ShopFetches(id) - before[id]
		switch isMine := id/10 == 7; {
		case isMine && n == 0:
			t.Errorf("shop %d of owner 7 was not fetched again", id)
		case !isMine && n != 0:
			t.Errorf("shop %d of owner %d was fetched %d more times after owner 7 changed", id, id/10, n)
		}
	}
	// The other shops still show their owners.
	if err := e.check(ids, e.complete); err != nil {
		t.Error(err)
	}
	e.noDeadLetters()
}

// (c) While optional sources fail, documents are written without their
// parts and marked partial; once they answer again every document is
// completed without any new event.
func TestOptionalSourceDownGivesPartialThatHeals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setDown(sampleapi.SourceMenu, 503)
	e.setDown(sampleapi.SourceAds, 503)
	e.start()
	ids := span(1, 100)
	e.publish(shopChanged(ids)...)
	took := e.waitFor(ids, e.partial("menu", "ads"), 30*time.Second, "partial documents")
	t.Logf("100 partial documents after %s", took)
	seq := e.lastSeq()

	e.setDown(sampleapi.SourceMenu, 0)
	e.setDown(sampleapi.SourceAds, 0)
	took = e.waitFor(ids, e.complete, 30*time.Second, "healed documents")
	t.Logf("every document complete %s after the sources came back", took)
	if now := e.lastSeq(); now != seq {
		t.Errorf("the events stream moved from %d to %d while healing: something published events", seq, now)
	}
	e.waitDrained(15 * time.Second)
	e.noDeadLetters()
}

// Documents waiting for an optional source never fill the live consumer's
// ack-pending limit: with a limit of 50 and 300 shops whose optional sources
// are down, every shop is written (partial), and a later change of a shop
// still gets through.
func TestPartialDocumentsDoNotStallLiveEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setDown(sampleapi.SourceMenu, 503)
	e.setDown(sampleapi.SourceAds, 503)
	e.startWith(func(o *projector.Options) { o.MaxAckPending = 50 })
	ids := span(1, 300)
	e.publish(shopChanged(ids)...)
	e.waitFor(ids, e.partial("menu", "ads"), 60*time.Second, "300 partial documents past an ack-pending limit of 50")
	e.publish(e.must(e.api.ChangeShop(7)))
	e.waitFor([]int{7}, e.partial("menu", "ads"), 30*time.Second, "a shop change while 300 documents wait for their sources")
	e.setDown(sampleapi.SourceMenu, 0)
	e.setDown(sampleapi.SourceAds, 0)
	e.waitFor(ids, e.complete, 60*time.Second, "healed documents")
	e.noDeadLetters()
}

// (d) While a required source fails, nothing is written and nothing is
// dead-lettered; once it answers, everything converges.
func TestRequiredSourceDownLosesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setDown(sampleapi.SourceOwners, 503)
	e.start()
	ids := span(1, 100)
	e.publish(shopChanged(ids)...)
	// Every event is held, and the shops have been fetched again and again:
	// the projector retried while the owners failed.
	shopCalls := func() int64 { return e.api.ShopGets() + e.api.ShopBatches() }
	waitUntil(t, 15*time.Second, "events held and retried", func() bool {
		_, unacked := e.consumer()
		return unacked == len(ids) && shopCalls() >= 10
	})
	e.absent(ids)
	e.noDeadLetters()
	t.Logf("while the owners failed: %d shop calls, %d owner requests", shopCalls(), e.api.Requests(sampleapi.SourceOwners))

	e.setDown(sampleapi.SourceOwners, 0)
	took := e.waitFor(ids, e.complete, 30*time.Second, "documents after the owners came back")
	t.Logf("every document complete %s after the owners came back", took)
	e.waitDrained(15 * time.Second)
	e.noDeadLetters()
}

// (e) A burst of events costs a few batch requests, not one request per event.
func TestBatchEndpointCutsCalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ids := span(1, 1000)
	e.publish(shopChanged(ids)...)
	e.start()
	took := e.waitFor(ids, e.complete, 45*time.Second, "1000 shops")
	e.waitDrained(15 * time.Second)
	gets, batches := e.api.ShopGets(), e.api.ShopBatches()
	perEvent := float64(gets+batches) / float64(len(ids))
	t.Logf("%d events: %d batch calls + %d single GETs to the shops API = %.3f calls per event; owners %d, menu %d, ads %d requests; took %s",
		len(ids), batches, gets, perEvent, e.api.Requests(sampleapi.SourceOwners), e.api.Requests(sampleapi.SourceMenu),
		e.api.Requests(sampleapi.SourceAds), took)
	if perEvent >= 0.2 {
		t.Errorf("%.3f shop calls per event, want < 0.2: the batch endpoint is not used", perEvent)
	}
	e.noDeadLetters()
}

// (f) A deleted shop leaves a tombstone in both stores; re-created, it has
// a document again.
func TestShopDeletedLeavesTombstone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start()
	ids := []int{5, 6}
	e.publish(shopChanged(ids)...)
	e.waitFor(ids, e.complete, 15*time.Second, "shops 5 and 6")

	e.publish(e.must(e.api.DeleteShop(5)))
	e.waitFor([]int{5}, tombstone, 15*time.Second, "tombstone of shop 5")
	if err := e.check([]int{6}, e.complete); err != nil {
		t.Errorf("shop 6 after shop 5 was deleted: %v", err)
	}
	// Its menu and ads events find no shop: still a tombstone.
	e.publish("menu.changed.5", "ads.changed.5")
	e.waitDrained(15 * time.Second)
	if err := e.check([]int{5}, tombstone); err != nil {
		t.Error(err)
	}

	e.publish(e.must(e.api.ChangeShop(5)))
	e.waitFor([]int{5}, e.complete, 15*time.Second, "re-created shop 5")
	e.waitDrained(15 * time.Second)
	e.noDeadLetters()
}

// (g) Random changes of every kind — shops, owners, menus, ads, deletions
// and re-creations — published while the projector runs: once they stop,
// every document matches the sample API.
func TestRandomChangesConverge(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	touched := map[int]bool{}
	for _, id := range span(1, 500) {
		touched[id] = true
	}
	e.publish(shopChanged(span(1, 500))...)
	e.start()
	e.waitFor(span(1, 500), e.complete, 30*time.Second, "500 shops")

	var mu sync.Mutex
	var changes, owners atomic.Int64
	publish := func(ctx context.Context, subject string) error {
		kind, id, _ := strings.Cut(subject, ".changed.")
		n, err := strconv.Atoi(id)
		if err != nil {
			return err
		}
		// The change is made: publish it even when the run's time is up.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, err := e.js.Publish(ctx, subject, nil); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if kind == "owner" {
			owners.Add(1)
		} else {
			touched[n] = true
		}
		changes.Add(1)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := sampleapi.NewChanger(e.api, 250, publish, 7).Run(ctx); err != nil {
		t.Fatal(err)
	}
	var ids []int
	for id := range touched {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	took := e.waitFor(ids, e.current, 30*time.Second, "documents after random changes")
	e.waitDrained(15 * time.Second)
	e.noDeadLetters()
	t.Logf("%d random changes (%d of owners) over %d shops converged %s after the last", changes.Load(), owners.Load(), len(ids), took)
}
