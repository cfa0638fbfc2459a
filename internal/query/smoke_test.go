package query_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/readside/readside/internal/query"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/redisstore"
)

func TestSmoke(t *testing.T) {
	w := newWorld(t, 60)
	srv := w.serve(w.redis, w.es, query.Options{})
	c := newContract(t, srv.Config.Handler) // every answer below must fit /openapi.json
	base := srv.URL + "/v1/" + w.ns
	for _, u := range []string{
		"/001", "/999", "?ids=001,002,999", "?limit=5", "?q=pizza&limit=3", "?city=Seoul&limit=2&sort=-rating",
		"?near=52.5,13.4&within=50km&limit=2", "?limit=0&bogus=1", "/a%20b",
	} {
		res, body := c.get(t, base+u)
		t.Logf("%s → %d %s %s\n%s", u, res.StatusCode, res.Header.Get("ETag"), res.Header.Get("X-Readside-Source"), body)
	}
	res, _ := c.get(t, base+"/001")
	res2, _ := c.get(t, base+"/001", "If-None-Match", res.Header.Get("ETag"))
	if res2.StatusCode != 304 {
		t.Errorf("If-None-Match: %d", res2.StatusCode)
	}
	for _, u := range []string{"/healthz", "/readyz", "/openapi.json"} {
		if res, body := c.get(t, srv.URL+u); res.StatusCode != 200 {
			t.Errorf("%s: %d %s", u, res.StatusCode, body)
		}
	}
}

// Elasticsearch is near-real-time: right after a deletion it can still find
// the document while Redis holds the tombstone. A list skips such an id; it
// is not "missing". A multi-get that asks for it lists it as missing.
func TestListSkipsDocumentsDeletedSinceIndexed(t *testing.T) {
	w := newWorld(t, 12)
	srv := w.serve(w.redis, w.es, query.Options{})
	rd := redisstore.New(w.redis, redisstore.Options{KeyPattern: w.def.Redis.Key})
	if err := rd.Write(context.Background(), []sink.Doc{{ID: "003", Version: 1 << 40, Deleted: true}}); err != nil {
		t.Fatal(err)
	}
	res, body := get(t, srv.URL+"/v1/"+w.ns+"?limit=50")
	var page struct {
		Items   []struct{ ID string } `json:"items"`
		Missing []string              `json:"missing"`
	}
	if err := json.Unmarshal(body, &page); err != nil || res.StatusCode != 200 {
		t.Fatalf("list: %d %s", res.StatusCode, body)
	}
	if len(page.Items) != 11 || len(page.Missing) != 0 {
		t.Errorf("list: %d items, missing %v; want 11 items and nothing missing", len(page.Items), page.Missing)
	}
	for _, it := range page.Items {
		if it.ID == "003" {
			t.Errorf("list shows the deleted 003")
		}
	}
	_, body = get(t, srv.URL+"/v1/"+w.ns+"?ids=002,003")
	if !strings.Contains(string(body), `"missing":["003"]`) {
		t.Errorf("multi-get: %s; want 003 missing", body)
	}
}
