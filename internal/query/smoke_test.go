package query_test

import (
	"testing"

	"github.com/readside/readside/internal/query"
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
