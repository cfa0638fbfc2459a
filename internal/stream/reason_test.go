package stream

import "testing"

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
