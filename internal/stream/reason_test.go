package stream

import (
	"testing"

	"github.com/readside/readside/projections"
)

// The id is replaced only where it stands alone, wherever else its digits
// appear: in a port, a status, a longer id.
func TestNormalizeReason(t *testing.T) {
	for _, c := range []struct{ reason, id, want string }{
		{`GET http://127.0.0.1:37533/shops/3: status 400`, "3", `GET http://127.0.0.1:37533/shops/{id}: status 400`},
		{`GET http://h:4/shops/4?x=44: status 404`, "4", `GET http://h:{id}/shops/{id}?x=44: status 404`},
		{`shop "a b" failed: /shops/a%20b`, "a b", `shop "{id}" failed: /shops/{id}`},
		{`33 333 3`, "33", `{id} 333 3`},
		{`no id here`, "", `no id here`},
	} {
		if got := NormalizeReason(c.reason, c.id); got != c.want {
			t.Errorf("NormalizeReason(%q, %q) = %q, want %q", c.reason, c.id, got, c.want)
		}
	}
}

// The cover of several filter subjects is the narrowest filter matching
// all they match.
func TestCoverOf(t *testing.T) {
	for _, c := range []struct {
		filters []string
		want    string
	}{
		{[]string{"a.b.*", "a.c.d"}, "a.*.*"},
		{[]string{"ns.shop.changed.*", "ns.shop.events"}, "ns.shop.>"},
		{[]string{"a.b", "a.b.c"}, "a.>"},
		{[]string{"a", "a.b"}, ">"},
		{[]string{"a.b", "c.d"}, "*.*"},
		{[]string{"a.x.>", "a.y.z"}, "a.*.>"},
		{[]string{"a.b", "a.b"}, "a.b"},
	} {
		got := coverOf(c.filters)
		if got != c.want {
			t.Errorf("coverOf(%q) = %q, want %q", c.filters, got, c.want)
		}
		for _, f := range c.filters {
			if !projections.Covers(got, f) {
				t.Errorf("coverOf(%q) = %q does not cover %q", c.filters, got, f)
			}
		}
	}
}
