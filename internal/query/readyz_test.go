package query_test

import (
	"context"
	"errors"
	"maps"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

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

// Readiness (the admin /readyz) is ready while any store answers, whatever
// NATS and the own stream do; it says why each part is down, and asks the
// stream only while NATS is connected. Public keeps the public /readyz's
// flat map: "nats" up only with the stream up.
func TestReadiness(t *testing.T) {
	refused := errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")
	gone := errors.New("stream READSIDE_OWN: no answer within 2s: it has no leader, or NATS is unreachable")
	stores := func(s map[string]error) func(context.Context) map[string]error {
		return func(context.Context) map[string]error { return s }
	}
	for _, tc := range []struct {
		name    string
		r       query.Readiness
		ready   bool
		checks  string // every check, sorted, name=state
		reasons string // a reason that must be there, name=text
		public  string // the public map, sorted, name=state
	}{
		{"all up", query.Readiness{Stores: stores(map[string]error{"redis": nil, "elasticsearch": nil}), NATS: natsConn{up: true}, Stream: streamCheck{}},
			true, "elasticsearch=up nats=up redis=up stream=up", "", "elasticsearch=up nats=up redis=up"},
		{"one store down", query.Readiness{Stores: stores(map[string]error{"redis": refused, "elasticsearch": nil})},
			true, "elasticsearch=up redis=down", "redis=" + refused.Error(), "elasticsearch=up redis=down"},
		{"both stores down", query.Readiness{Stores: stores(map[string]error{"redis": refused, "elasticsearch": refused}), NATS: natsConn{up: true}, Stream: streamCheck{}},
			false, "elasticsearch=down nats=up redis=down stream=up", "elasticsearch=" + refused.Error(), "elasticsearch=down nats=up redis=down"},
		{"stream down", query.Readiness{Stores: stores(map[string]error{"embedded": nil}), NATS: natsConn{up: true}, Stream: streamCheck{gone}},
			true, "embedded=up nats=up stream=down", "stream=" + gone.Error(), "embedded=up nats=down"},
		{"nats down", query.Readiness{Stores: stores(map[string]error{"embedded": nil}), NATS: natsConn{}, Stream: streamCheck{}},
			true, "embedded=up nats=down stream=unknown", "stream=not checked: NATS is not connected", "embedded=up nats=down"},
		{"no store, no nats", query.Readiness{}, true, "", "", ""},
	} {
		s := tc.r.Check(context.Background())
		if got := sortedStates(s.Checks); s.Ready != tc.ready || got != tc.checks {
			t.Errorf("%s: ready %v, %s; want ready %v, %s", tc.name, s.Ready, got, tc.ready, tc.checks)
		}
		if name, want, ok := strings.Cut(tc.reasons, "="); ok && s.Reasons[name] != want {
			t.Errorf("%s: reason of %s %q, want %q", tc.name, name, s.Reasons[name], want)
		}
		if got := sortedStates(tc.r.Public(context.Background())); got != tc.public {
			t.Errorf("%s: public %s, want %s", tc.name, got, tc.public)
		}
	}
}

func sortedStates(m map[string]string) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return strings.Join(out, " ")
}

type natsConn struct{ up bool }

func (c natsConn) IsConnected() bool { return c.up }
func (c natsConn) Status() nats.Status {
	if c.up {
		return nats.CONNECTED
	}
	return nats.RECONNECTING
}
func (c natsConn) LastError() error { return nil }

type streamCheck struct{ err error }

func (s streamCheck) Check(context.Context) error { return s.err }
