package sampleapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/readside/readside/examples/shopdisplay/sampleapi"
)

// get answers the status and body of GET path.
func get(t *testing.T, srv *httptest.Server, path string) (int, []byte) {
	t.Helper()
	res, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, body
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSameSeedSameData(t *testing.T) {
	a := sampleapi.New(sampleapi.Options{Shops: 1000, Seed: 1})
	b := sampleapi.New(sampleapi.Options{Shops: 1000, Seed: 1})
	c := sampleapi.New(sampleapi.Options{Shops: 1000, Seed: 2})
	differ := 0
	for id := 1; id <= 1000; id++ {
		sa, _ := a.Shop(id)
		sb, _ := b.Shop(id)
		sc, _ := c.Shop(id)
		if !reflect.DeepEqual(sa, sb) {
			t.Fatalf("shop %d differs with the same seed: %+v, %+v", id, sa, sb)
		}
		if sa.Name != sc.Name {
			differ++
		}
		oa, _ := a.Owner(id / 10)
		ob, _ := b.Owner(id / 10)
		ma, _ := a.Menu(id)
		mb, _ := b.Menu(id)
		aa, _ := a.Ads(id)
		ab, _ := b.Ads(id)
		if oa != ob || !reflect.DeepEqual(ma, mb) || mustJSON(t, aa) != mustJSON(t, ab) {
			t.Fatalf("shop %d: owner, menu or ads differ with the same seed", id)
		}
		if sa.OwnerID != id/10 || sa.Rating.Average < 1 || sa.Rating.Average > 5 ||
			sa.Location.Lat < -90 || sa.Location.Lat > 90 || sa.Location.Lon < -180 || sa.Location.Lon > 180 {
			t.Fatalf("shop %d is out of range: %+v", id, sa)
		}
	}
	if differ < 500 {
		t.Errorf("only %d of 1000 shop names differ with another seed", differ)
	}
}

func TestMutationsMoveVersionsOn(t *testing.T) {
	api := sampleapi.New(sampleapi.Options{Shops: 100})
	srv := httptest.NewServer(api)
	defer srv.Close()
	must := func(subject string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return subject
	}

	s0, _ := api.Shop(42)
	if got := must(api.ChangeShop(42)); got != "shop.changed.42" {
		t.Errorf("ChangeShop: subject %q", got)
	}
	s1, _ := api.Shop(42)
	if s1.Version <= s0.Version || s1.Open == s0.Open || s1.Name != s0.Name {
		t.Errorf("after ChangeShop: %+v, before %+v: want a higher version, open toggled, the same name", s1, s0)
	}
	if got := must(api.DeleteShop(42)); got != "shop.changed.42" {
		t.Errorf("DeleteShop: subject %q", got)
	}
	if _, ok := api.Shop(42); ok {
		t.Error("a deleted shop exists")
	}
	for _, path := range []string{"/shops/42", "/shops/42/menu/summary", "/ads?shopId=42"} {
		if status, _ := get(t, srv, path); status != 404 {
			t.Errorf("GET %s of a deleted shop: %d, want 404", path, status)
		}
	}
	must(api.ChangeShop(42))
	s2, ok := api.Shop(42)
	if !ok || s2.Version <= s1.Version+1 {
		t.Errorf("re-created shop: %+v (exists %v), want a version above %d", s2, ok, s1.Version+1)
	}

	o0, _ := api.Owner(4)
	if got := must(api.ChangeOwner(4)); got != "owner.changed.4" {
		t.Errorf("ChangeOwner: subject %q", got)
	}
	o1, _ := api.Owner(4)
	if o1.BusinessName == o0.BusinessName || o1.Version <= o0.Version {
		t.Errorf("after ChangeOwner: %+v, before %+v", o1, o0)
	}
	m0, _ := api.Menu(7)
	if got := must(api.ChangeMenu(7)); got != "menu.changed.7" {
		t.Errorf("ChangeMenu: subject %q", got)
	}
	m1, _ := api.Menu(7)
	if m1.MinOrderPrice == m0.MinOrderPrice || reflect.DeepEqual(m1.TopItems, m0.TopItems) {
		t.Errorf("after ChangeMenu: %+v, before %+v", m1, m0)
	}
	a0, _ := api.Ads(7)
	if got := must(api.ChangeAds(7)); got != "ads.changed.7" {
		t.Errorf("ChangeAds: subject %q", got)
	}
	a1, _ := api.Ads(7)
	if mustJSON(t, a0) == mustJSON(t, a1) {
		t.Errorf("ChangeAds kept %s", mustJSON(t, a1))
	}

	for _, bad := range []func() (string, error){
		func() (string, error) { return api.ChangeShop(0) },
		func() (string, error) { return api.DeleteShop(101) },
		func() (string, error) { return api.ChangeOwner(11) },
		func() (string, error) { return api.ChangeMenu(-1) },
		func() (string, error) { return api.ChangeAds(1000) },
	} {
		if _, err := bad(); !errors.Is(err, sampleapi.ErrUnknown) {
			t.Errorf("a mutation of an unknown entity: %v, want ErrUnknown", err)
		}
	}
}

func TestEndpoints(t *testing.T) {
	api := sampleapi.New(sampleapi.Options{Shops: 250})
	srv := httptest.NewServer(api)
	defer srv.Close()
	shop, _ := api.Shop(17)
	owner, _ := api.Owner(1)
	menu, _ := api.Menu(17)
	ads, _ := api.Ads(17)
	if _, err := api.DeleteShop(3); err != nil {
		t.Fatal(err)
	}
	all := make([]string, sampleapi.MaxBatch+1)
	for i := range all {
		all[i] = strconv.Itoa(i + 1)
	}
	for _, c := range []struct {
		path   string
		status int
		body   string // "" to skip
	}{
		{"/shops/17", 200, mustJSON(t, shop)},
		{"/shops/0", 404, ""},
		{"/shops/251", 404, ""},
		{"/shops/017", 404, ""},
		{"/shops/x", 404, ""},
		{"/shops?ids=17,3,17,999,x", 200, `{"items":[` + mustJSON(t, shop) + `]}`},
		{"/shops?ids=", 200, `{"items":[]}`},
		{"/shops?ids=" + strings.Join(all, ","), 400, ""},
		{"/shops?cursor=&limit=3", 200, `{"items":[{"id":1},{"id":2},{"id":4}],"next":"5"}`},
		{"/shops?cursor=249&limit=5", 200, `{"items":[{"id":249},{"id":250}]}`},
		{"/shops?cursor=248&limit=2", 200, `{"items":[{"id":248},{"id":249}],"next":"250"}`},
		{"/shops?cursor=x", 400, ""},
		{"/shops?limit=1001", 400, ""},
		{"/owners/1", 200, mustJSON(t, owner)},
		{"/owners/26", 404, ""},
		{"/shops/17/menu/summary", 200, mustJSON(t, menu)},
		{"/ads?shopId=17", 200, mustJSON(t, ads)},
		{"/ads?shopId=", 400, ""},
		{"/ads?shopId=3", 404, ""},
	} {
		status, body := get(t, srv, c.path)
		if status != c.status || (c.body != "" && strings.TrimSpace(string(body)) != c.body) {
			t.Errorf("GET %s: %d %s, want %d %s", c.path, status, body, c.status, c.body)
		}
	}
	// Every shop of the list, with the default page size.
	var n int
	for cursor, pages := "", 0; pages < 10; pages++ {
		_, body := get(t, srv, "/shops?cursor="+cursor)
		var page struct {
			Items []struct{ ID int }
			Next  *string
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		n += len(page.Items)
		if page.Next == nil {
			break
		}
		cursor = *page.Next
	}
	if n != 249 {
		t.Errorf("the list has %d shops, want 249", n)
	}
}

func TestSetDownAndCounters(t *testing.T) {
	api := sampleapi.New(sampleapi.Options{Shops: 100})
	srv := httptest.NewServer(api)
	defer srv.Close()
	if err := api.SetDown("ads", 503); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path   string
		status int
	}{
		{"/ads?shopId=1", 503}, {"/shops/1", 200}, {"/shops?ids=1,2,3", 200}, {"/shops?ids=3,4", 200},
		{"/shops?cursor=", 200}, {"/owners/1", 200}, {"/shops/1/menu/summary", 200},
	} {
		if status, body := get(t, srv, c.path); status != c.status {
			t.Errorf("GET %s: %d %s, want %d", c.path, status, body, c.status)
		}
	}
	if err := api.SetDown("ads", 0); err != nil {
		t.Fatal(err)
	}
	if status, _ := get(t, srv, "/ads?shopId=1"); status != 200 {
		t.Errorf("ads answer %d after SetDown(ads, 0)", status)
	}
	for source, want := range map[string]int64{"shops": 4, "owners": 1, "menu": 1, "ads": 2} {
		if got := api.Requests(source); got != want {
			t.Errorf("Requests(%s) = %d, want %d", source, got, want)
		}
	}
	if api.ShopGets() != 1 || api.ShopBatches() != 2 || api.ShopLists() != 1 {
		t.Errorf("%d single GETs, %d batches, %d list pages; want 1, 2, 1", api.ShopGets(), api.ShopBatches(), api.ShopLists())
	}
	for id, want := range map[int]int64{1: 2, 3: 2, 4: 1, 5: 0} {
		if got := api.ShopFetches(id); got != want {
			t.Errorf("ShopFetches(%d) = %d, want %d", id, got, want)
		}
	}
	if err := api.SetDown("payments", 503); err == nil {
		t.Error("SetDown of an unknown source: no error")
	}
	if err := api.SetDown("shops", 42); err == nil {
		t.Error("SetDown with status 42: no error")
	}
}

func TestChangerChangesAtItsRateUntilCtxEnds(t *testing.T) {
	api := sampleapi.New(sampleapi.Options{Shops: 50})
	var mu sync.Mutex
	var subjects []string
	publish := func(ctx context.Context, subject string) error {
		mu.Lock()
		defer mu.Unlock()
		subjects = append(subjects, subject)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := sampleapi.NewChanger(api, 100, publish, 1).Run(ctx); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	// The limiter allows one change at once and 100 a second after it.
	if max := 1 + int(took.Seconds()*100); len(subjects) > max || len(subjects) < 5 {
		t.Errorf("%d changes in %s at 100/s", len(subjects), took)
	}
	kinds := map[string]int{}
	for _, s := range subjects {
		kind, id, ok := strings.Cut(s, ".changed.")
		if _, err := strconv.Atoi(id); !ok || err != nil {
			t.Fatalf("subject %q", s)
		}
		kinds[kind]++
	}
	if len(kinds) < 3 {
		t.Errorf("changes of kinds %v: want a mix", kinds)
	}

	// A publish error stops it.
	boom := errors.New("boom")
	err := sampleapi.NewChanger(api, 1000, func(context.Context, string) error { return boom }, 1).Run(context.Background())
	if !errors.Is(err, boom) {
		t.Errorf("Run with a failing publish: %v", err)
	}
	// No rate: nothing changes, and it ends with ctx.
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := sampleapi.NewChanger(api, 0, func(context.Context, string) error { panic("published") }, 1).Run(ctx); err != nil {
		t.Error(err)
	}
}

func ExampleAPI_ChangeOwner() {
	api := sampleapi.New(sampleapi.Options{Shops: 1000})
	before, _ := api.Owner(7)
	subject, _ := api.ChangeOwner(7) // publish this zero-payload event
	after, _ := api.Owner(7)
	fmt.Println(subject)
	fmt.Println(before.BusinessName != after.BusinessName, after.Version > before.Version)
	fmt.Println(api.ShopsOf(7))
	// Output:
	// owner.changed.7
	// true true
	// [70 71 72 73 74 75 76 77 78 79]
}
