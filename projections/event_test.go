package projections_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/readside/readside/projections"
)

func TestIDOf(t *testing.T) {
	d, err := projections.Parse("shops.yaml", []byte(good), apiEnv)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		subject, body, want, err string
	}{
		{subject: "shop.changed.42", want: "42"},
		{subject: "shop.changed.a-b_c:1", want: "a-b_c:1"},
		{subject: "shop.events", body: `{"shopId": 42}`, want: "42"},
		{subject: "shop.events", body: `{"shopId": "ü-7"}`, want: "ü-7"},
		{subject: "shop.events", body: `{"shopId": "a b"}`, err: "contains whitespace"},
		{subject: "shop.events", body: `{"shopId": "x*"}`, err: "NATS wildcard"},
		{subject: "shop.events", body: `{"shopId": ">"}`, err: "NATS wildcard"},
		{subject: "shop.events", body: `{"shopId": ""}`, err: "the id is empty"},
		{subject: "shop.events", body: `{"shopId": ".."}`, err: `the id ".." is not allowed`},
		{subject: "shop.events", body: `{"shopId": "a\u0007"}`, err: "unprintable"},
		{subject: "shop.events", body: `{"shopId": "` + strings.Repeat("9", 257) + `"}`, err: "257 bytes long"},
		{subject: "shop.events", body: `{"shopId": null}`, err: `"shopId" is null`},
		{subject: "shop.events", body: `{"shopId": {"a":1}}`, err: "not a string or a number"},
		{subject: "shop.events", body: `{"shop": 1}`, err: `no field "shopId"`},
		{subject: "shop.events", body: `not json`, err: "not valid JSON"},
		{subject: "shop.events", body: ``, err: "not valid JSON"},
		{subject: "shop.events", body: `{"shopId": 1, "state": "` + strings.Repeat("x", 70<<10) + `"}`, err: "an event carries an id, not a state"},
		{subject: "owner.changed.1", err: "matches no trigger"},
	}
	for _, tt := range tests {
		ev, err := d.Route(tt.subject, []byte(tt.body))
		got := ev.ID
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, projections.ErrBadEvent) {
				t.Errorf("IDOf(%s, %.40s) = %q, %v; want an ErrBadEvent with %q", tt.subject, tt.body, got, err, tt.err)
			}
		case err != nil || got != tt.want:
			t.Errorf("IDOf(%s, %.40s) = %q, %v; want %q", tt.subject, tt.body, got, err, tt.want)
		}
	}
}

func TestSubjectMatches(t *testing.T) {
	tests := []struct {
		filter, subject string
		want            bool
	}{
		{"shop.changed.*", "shop.changed.1", true},
		{"shop.changed.*", "shop.changed", false},
		{"shop.changed.*", "shop.changed.1.x", false},
		{"shop.>", "shop.changed.1", true},
		{"shop.>", "shop", false},
		{"shop.*.x", "shop.a.x", true},
		{"shop.events", "shop.events", true},
		{"shop.events", "shop.eventsx", false},
	}
	for _, tt := range tests {
		if got := projections.SubjectMatches(tt.filter, tt.subject); got != tt.want {
			t.Errorf("SubjectMatches(%q, %q) = %v", tt.filter, tt.subject, got)
		}
	}
}

// FuzzIDOf: any event body yields a valid id or an ErrBadEvent.
func FuzzIDOf(f *testing.F) {
	d, err := projections.Parse("shops.yaml", []byte(good), apiEnv)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("shop.events", []byte(`{"shopId": 42}`))
	f.Add("shop.changed.x", []byte(nil))
	f.Add("shop.events", []byte(`{"shopId": "a\tb"}`))
	f.Fuzz(func(t *testing.T, subject string, body []byte) {
		ev, err := d.Route(subject, body)
		id := ev.ID
		if err != nil {
			if !errors.Is(err, projections.ErrBadEvent) {
				t.Fatalf("error is not ErrBadEvent: %v", err)
			}
			return
		}
		if projections.ValidateID(id) != nil || !utf8.ValidString(id) {
			t.Fatalf("invalid id %q accepted", id)
		}
		if _, err := d.SourceURL(0, id); err != nil {
			t.Fatalf("valid id %q cannot be put in the URL: %v", id, err)
		}
	})
}

// EventBody is what Route reads back on each of a projection's own subjects,
// whatever characters a valid id holds.
func TestEventBodyRoundTrip(t *testing.T) {
	d, err := projections.Parse("shops.yaml", []byte(good), apiEnv)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"42", "ü-7", `a"b\c`, "a<b&c", "a-b_c:1"} {
		for _, subject := range []string{d.ReprojectSubject(), d.ReplaySubject(), d.RetrySubject()} {
			ev, err := d.Route(subject, projections.EventBody(id))
			if err != nil || ev.ID != id {
				t.Errorf("Route(%s, EventBody(%q)) = %q, %v", subject, id, ev.ID, err)
			}
		}
	}
}

func ExampleEventBody() {
	fmt.Printf("%s\n", projections.EventBody("42"))
	// Output: {"id":"42"}
}
