package config

import (
	"context"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
)

func parse(t *testing.T, env map[string]string, args ...string) *Backends {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	b := &Backends{}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	b.Register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return b
}

// Each backend is embedded on its own, by flag or environment; the rest
// keep their addresses.
func TestEmbeddedByConfiguration(t *testing.T) {
	b := parse(t, map[string]string{"READSIDE_ES_URLS": "embedded"}, "-redis-addr", "embedded", "-data-dir", "/tmp/rs")
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	if b.EmbeddedNATS() || !b.EmbeddedDocs() || !b.EmbeddedSearch() {
		t.Fatalf("nats %t docs %t search %t, want false true true", b.EmbeddedNATS(), b.EmbeddedDocs(), b.EmbeddedSearch())
	}
	if b.NATSURL != "nats://127.0.0.1:4222" || b.DataDir != "/tmp/rs" || b.NATSListen != "127.0.0.1:4222" {
		t.Fatalf("got %+v", b)
	}
	t.Setenv("READSIDE_ES_URLS", "")
	b = parse(t, nil, "-nats-url", "embedded", "-nats-listen", "")
	if !b.EmbeddedNATS() || b.EmbeddedDocs() || b.EmbeddedSearch() || b.NATSListen != "" || b.DataDir != "readside-data" {
		t.Fatalf("got %+v", b)
	}
}

// Every problem is reported at once, each naming its flag.
func TestValidateEmbedded(t *testing.T) {
	b := parse(t, nil, "-redis-addr", "embedded,127.0.0.1:6379", "-es-urls", "embedded,http://es:9200", "-data-dir", "")
	err := b.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"-redis-addr: embedded stands alone", "-es-urls: embedded stands alone", "-data-dir is empty"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if b := parse(t, nil, "-es-urls", "es:9200"); b.Validate() == nil || !strings.Contains(b.Validate().Error(), `"es:9200" is not an http(s) URL`) {
		t.Errorf("a URL without scheme: %v", b.Validate())
	}
}

// Boolean variables take what strconv.ParseBool takes, and a value that is
// not a boolean is reported, not read as false.
func TestEnvBool(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  bool
		bad   bool
	}{{"true", true, false}, {"1", true, false}, {"TRUE", true, false}, {"t", true, false},
		{"false", false, false}, {"0", false, false}, {"F", false, false},
		{"yes", true, true}, {"on", true, true}, {"", true, false}} {
		t.Setenv("READSIDE_TEST_BOOL", tc.value)
		if got := EnvBool("READSIDE_TEST_BOOL", true); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.value, got, tc.want)
		}
		if err := CheckEnvBools("READSIDE_TEST_BOOL"); (err != nil) != tc.bad {
			t.Errorf("%q: CheckEnvBools %v, want an error: %v", tc.value, err, tc.bad)
		}
	}
}

// -h and -help show the usage and exit 0; any other failure exits 1.
func TestRunHelpExitsZero(t *testing.T) {
	if code := Run("test", func(context.Context) error { return flag.ErrHelp }); code != 0 {
		t.Errorf("-help: exit %d, want 0", code)
	}
	if code := Run("test", func(context.Context) error { return errors.New("broken") }); code != 1 {
		t.Errorf("a failure: exit %d, want 1", code)
	}
}
