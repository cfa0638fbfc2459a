package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/readside/readside/internal/sink"
)

// The baseline must send exactly the document the API sends: the body of
// the stored value, whatever its kind.
func TestBodyMatchesDecodeValue(t *testing.T) {
	for _, v := range []string{
		"00000000000000000007d" + `{"id":"a"}`,
		"00000000000000000007D1763771234567" + `{"id":"b","name":"x"}`,
	} {
		s, err := sink.DecodeValue([]byte(v))
		if err != nil {
			t.Fatal(err)
		}
		if got := body([]byte(v)); !bytes.Equal(got, s.Body) {
			t.Errorf("body(%q) = %q, want %q", v, got, s.Body)
		}
	}
}

func TestPercentile(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct{ p, want float64 }{{50, 50}, {99, 99}, {100, 100}, {0, 1}} {
		if got := percentile(lat, c.p); got != c.want {
			t.Errorf("percentile(%v) = %v ms, want %v", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile of nothing = %v, want 0", got)
	}
}
