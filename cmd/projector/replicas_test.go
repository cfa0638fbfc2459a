package main

import (
	"bytes"
	"strings"
	"testing"
)

// -stream-replicas takes 1 to 5, from the flag or $READSIDE_STREAM_REPLICAS,
// and refuses more than one replica of an embedded NATS.
func TestParseStreamReplicas(t *testing.T) {
	for _, tc := range []struct {
		env     string
		args    []string
		want    int
		wantErr string
	}{
		{args: nil, want: 1},
		{args: []string{"-stream-replicas", "3"}, want: 3},
		{env: "5", want: 5},
		{env: "5", args: []string{"-stream-replicas", "3"}, want: 3},
		{args: []string{"-stream-replicas", "0"}, wantErr: "-stream-replicas must be 1 to 5 (servers of the NATS cluster keeping each stream), not 0"},
		{args: []string{"-stream-replicas", "6"}, wantErr: "-stream-replicas must be 1 to 5"},
		{env: "three", wantErr: `$READSIDE_STREAM_REPLICAS: "three" is not an integer`},
		{args: []string{"-stream-replicas", "3", "-nats-url", "embedded"}, wantErr: "-stream-replicas 3: the embedded NATS is one server, which keeps 1 replica"},
	} {
		clearEnv(t)
		t.Setenv("READSIDE_STREAM_REPLICAS", tc.env)
		s, err := parse(append([]string{"-definitions", "defs"}, tc.args...), new(bytes.Buffer))
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("env %q, args %q: %v, want an error mentioning %q", tc.env, tc.args, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("env %q, args %q: %v", tc.env, tc.args, err)
		case s.replicas != tc.want:
			t.Errorf("env %q, args %q: %d replicas, want %d", tc.env, tc.args, s.replicas, tc.want)
		}
	}
}
