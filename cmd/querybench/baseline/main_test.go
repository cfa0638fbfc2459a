package main

import (
	"bytes"
	"testing"

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
