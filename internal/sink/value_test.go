package sink_test

import (
	"strings"
	"testing"
	"time"

	"github.com/readside/readside/internal/sink"
)

func TestDecodeValue(t *testing.T) {
	tests := []struct {
		in      string
		want    sink.Stored
		wantErr string
	}{
		{in: `00000000000000000042d{"a":1}`, want: sink.Stored{Version: 42, Body: []byte(`{"a":1}`)}},
		{in: `00000000000000000000d{}`, want: sink.Stored{Version: 0, Body: []byte(`{}`)}},
		{in: `00000000000000000007t`, want: sink.Stored{Version: 7, Deleted: true}},
		{in: `09223372036854775807t`, want: sink.Stored{Version: 1<<63 - 1, Deleted: true}},
		{in: ``, wantErr: "too short"},
		{in: `{"a":1}`, wantErr: "too short"},
		{in: `0000000000000000004d{"a":1}`, wantErr: "not digits"},
		{in: `0000000000000000004xd{"a":1}`, wantErr: "not digits"},
		{in: `-0000000000000000042d{}`, wantErr: "not digits"},
		{in: `09223372036854775808t`, wantErr: "overflows"},
		{in: `99999999999999999999d{}`, wantErr: "overflows"},
		{in: `00000000000000000042x{}`, wantErr: "unknown kind"},
		{in: `00000000000000000042d`, wantErr: "without a body"},
		{in: `00000000000000000042t{}`, wantErr: "tombstone with a body"},
	}
	for _, tt := range tests {
		got, err := sink.DecodeValue([]byte(tt.in))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("DecodeValue(%q) = %+v, %v; want an error with %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got.Version != tt.want.Version || got.Deleted != tt.want.Deleted ||
			string(got.Body) != string(tt.want.Body) || (got.Body == nil) != (tt.want.Body == nil) {
			t.Errorf("DecodeValue(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func FuzzDecodeValue(f *testing.F) {
	f.Add([]byte(`00000000000000000042d{"a":1}`))
	f.Add([]byte(`00000000000000000007t`))
	f.Add([]byte(`99999999999999999999d{}`))
	f.Fuzz(func(t *testing.T, v []byte) {
		s, err := sink.DecodeValue(v)
		if err != nil {
			return
		}
		if s.Version < 0 || (s.Deleted && s.Body != nil) || (!s.Deleted && len(s.Body) == 0) {
			t.Fatalf("DecodeValue(%q) = %+v", v, s)
		}
	})
}

func TestValueWithBuildTime(t *testing.T) {
	at := time.UnixMilli(1795255200123)
	for _, d := range []sink.Doc{
		{ID: "a", Version: 42, Body: []byte(`{"x":1}`), BuiltAt: at},
		{ID: "a", Version: 7, Deleted: true, BuiltAt: at},
		{ID: "a", Version: 9, Body: []byte(`{}`)},
	} {
		v := sink.AppendValue(nil, &d)
		got, err := sink.DecodeValue(v)
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		if got.Version != d.Version || got.Deleted != d.Deleted || !got.BuiltAt.Equal(d.BuiltAt) || (!d.Deleted && string(got.Body) != string(d.Body)) {
			t.Errorf("%s decoded to %+v, want %+v", v, got, d)
		}
	}
	for _, bad := range []string{"00000000000000000001D12", "00000000000000000001Dabcdefghijklm{}", "00000000000000000001T1795255200123{}"} {
		if _, err := sink.DecodeValue([]byte(bad)); err == nil {
			t.Errorf("DecodeValue(%q): no error", bad)
		}
	}
}
