package main

import (
	"io"
	"testing"
)

// -version needs no other flag: it is asked of a binary before any
// configuration is at hand.
func TestVersionFlag(t *testing.T) {
	s, err := parse([]string{"-version"}, io.Discard)
	if err != nil || !s.version {
		t.Fatalf("parse -version: %+v, %v; want version set and no error", s, err)
	}
}
