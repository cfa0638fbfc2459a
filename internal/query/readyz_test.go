package query_test

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/readside/readside/internal/assemble"
	"github.com/readside/readside/internal/query"
)

// /readyz is 503 only when no store answers: with one of them, or with the
// source APIs, reads still work; NATS does not count.
func TestReadyz(t *testing.T) {
	def := richDef(t, "shops", "http://127.0.0.1:1")
	for _, tc := range []struct {
		state map[string]string
		want  int
	}{
		{map[string]string{"redis": "up", "elasticsearch": "up", "nats": "up"}, 200},
		{map[string]string{"redis": "dial tcp: refused", "elasticsearch": "up"}, 200},
		{map[string]string{"redis": "up", "elasticsearch": "503 Service Unavailable"}, 200},
		{map[string]string{"redis": "refused", "elasticsearch": "refused", "nats": "up"}, 503},
		{map[string]string{"embedded": "up", "nats": "down"}, 200},
		{map[string]string{"nats": "up"}, 200},
		{nil, 200},
	} {
		ready := func(context.Context) map[string]string { return tc.state }
		s := query.New([]query.View{{Def: def, Docs: downDocs{}, Search: closedSearch(t, def), Sources: []assemble.Fetcher{downSource{}}}},
			nil, logger(), ready, query.Options{})
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		if rec.Code != tc.want {
			t.Errorf("%v: %d, want %d", tc.state, rec.Code, tc.want)
		}
	}
}
