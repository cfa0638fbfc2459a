package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readside/readside/internal/assemble"
	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/source"
	"github.com/readside/readside/internal/testenv"
)

// TestMain removes the projector binary that the process tests build once.
func TestMain(m *testing.M) {
	code := m.Run()
	binary.Remove()
	os.Exit(code)
}

// envVars are every environment variable parse reads. Each test case starts
// with all of them empty (which Env treats as unset), so the environment the
// tests run in cannot change their outcome.
var envVars = []string{
	"READSIDE_NATS_URL", "READSIDE_NATS_CREDS", "READSIDE_REDIS_ADDR", "READSIDE_REDIS_USERNAME",
	"READSIDE_REDIS_PASSWORD", "READSIDE_REDIS_TLS", "READSIDE_ES_URLS", "READSIDE_ES_USERNAME",
	"READSIDE_ES_PASSWORD", "READSIDE_ES_API_KEY", "READSIDE_ES_CA_CERT", "READSIDE_DEFINITIONS",
	"READSIDE_STREAM", "READSIDE_DLQ_STREAM", "READSIDE_METRICS_ADDR", "READSIDE_LOG_LEVEL",
	"READSIDE_LOG_FORMAT", "READSIDE_TOMBSTONE_TTL", "READSIDE_SOURCE_RETRY_BUDGET", "READSIDE_BATCH",
	"READSIDE_WORKERS", "READSIDE_FETCH_CONCURRENCY", "READSIDE_SHUTDOWN_GRACE",
	"READSIDE_NATS_LISTEN", "READSIDE_DATA_DIR", "READSIDE_PROJECTOR_QUERY_ADDR", "READSIDE_ACK_WAIT",
	"READSIDE_STREAM_REPLICAS", "READSIDE_SOURCE_MAX_CONCURRENCY", "READSIDE_OWN_STREAM",
	"READSIDE_SHUTDOWN_DELAY",
}

func clearEnv(t *testing.T) {
	for _, v := range envVars {
		t.Setenv(v, "")
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr []string // substrings of the error, every one; none: no error
		check   func(t *testing.T, s *settings)
	}{
		{
			name:    "missing definitions",
			args:    []string{},
			wantErr: []string{"-definitions is required"},
		},
		{
			name: "defaults are the projector's and the stores'",
			args: []string{"-definitions", "defs"},
			check: func(t *testing.T, s *settings) {
				d := projector.DefaultOptions()
				if s.opts.Batch != d.Batch || s.opts.Workers != d.Workers || s.opts.AckWait != d.AckWait || s.opts.ShutdownGrace != d.ShutdownGrace {
					t.Errorf("options %+v; want projector.DefaultOptions' %+v", s.opts, d)
				}
				if s.retryBudget != assemble.DefaultRetryBudget || s.tombstoneTTL != sink.DefaultTombstoneTTL {
					t.Errorf("source retry budget %s, tombstone TTL %s; want %s, %s", s.retryBudget, s.tombstoneTTL, assemble.DefaultRetryBudget, sink.DefaultTombstoneTTL)
				}
			},
		},
		{
			name:    "batch zero",
			args:    []string{"-definitions", "defs", "-batch", "0"},
			wantErr: []string{"-batch must be at least 1, not 0"},
		},
		{
			name:    "api key and user name",
			args:    []string{"-definitions", "defs", "-es-api-key", "k", "-es-username", "elastic"},
			wantErr: []string{"-es-api-key and -es-username are exclusive"},
		},
		{
			name:    "api key from the environment and user name from a flag",
			env:     map[string]string{"READSIDE_ES_API_KEY": "k"},
			args:    []string{"-definitions", "defs", "-es-username", "elastic"},
			wantErr: []string{"-es-api-key and -es-username are exclusive"},
		},
		{
			name: "every problem at once",
			args: []string{"-batch", "0", "-workers", "-2", "-fetch-concurrency", "-1", "-source-max-concurrency", "0",
				"-es-urls", "127.0.0.1:9200", "-nats-url", "", "-es-api-key", "k", "-es-username", "u"},
			wantErr: []string{
				"-definitions is required", "-batch must be at least 1, not 0", "-workers must be at least 1, not -2",
				"-fetch-concurrency must be at least 0 (0: no bound of its own), not -1",
				"-source-max-concurrency must be at least 1, not 0", `-es-urls: "127.0.0.1:9200" is not an http(s) URL`,
				"-nats-url is empty", "-es-api-key and -es-username are exclusive",
			},
		},
		{
			name:    "negative shutdown delay",
			args:    []string{"-definitions", "defs", "-shutdown-delay", "-1s"},
			wantErr: []string{"-shutdown-delay must be 0 or more, not -1s"},
		},
		{
			name:    "shutdown delay from the environment that is no duration",
			env:     map[string]string{"READSIDE_SHUTDOWN_DELAY": "5"},
			args:    []string{"-definitions", "defs"},
			wantErr: []string{`$READSIDE_SHUTDOWN_DELAY: "5" is not a duration`},
		},
		{
			name:    "positional arguments",
			args:    []string{"-definitions", "defs", "shops.yaml"},
			wantErr: []string{`unexpected arguments ["shops.yaml"]`},
		},
		{
			name:    "unknown flag",
			args:    []string{"-definitions", "defs", "-bacth", "3"},
			wantErr: []string{"flag provided but not defined: -bacth"},
		},
		{
			name: "defaults",
			args: []string{"-definitions", "defs"},
			check: func(t *testing.T, s *settings) {
				b := s.Backends
				if b.NATSURL != "nats://127.0.0.1:4222" || !slices.Equal(b.RedisAddrs, []string{"127.0.0.1:6379"}) ||
					!slices.Equal(b.ElasticURLs, []string{"http://127.0.0.1:9200"}) {
					t.Errorf("backends %+v: want the local defaults", b)
				}
				if s.stream != "READSIDE_EVENTS" || s.dlqStream != "READSIDE_DLQ" || s.metricsAddr != "127.0.0.1:9464" {
					t.Errorf("stream %q, dlq %q, metrics %q: want the defaults", s.stream, s.dlqStream, s.metricsAddr)
				}
				if o := s.opts; o.Batch != 256 || o.Workers != 4 || o.FetchConcurrency != 0 || o.ShutdownGrace != 10*time.Second || s.stopDelay != 0 {
					t.Errorf("options %+v: want the defaults", o)
				}
				if s.tombstoneTTL != 7*24*time.Hour || s.retryBudget != 3*time.Second || s.sourceMax != source.DefaultLimitMax {
					t.Errorf("tombstone TTL %v, retry budget %v, source max concurrency %d: want the defaults", s.tombstoneTTL, s.retryBudget, s.sourceMax)
				}
			},
		},
		{
			name: "environment variables are the defaults",
			env: map[string]string{
				"READSIDE_DEFINITIONS": "/etc/readside", "READSIDE_NATS_URL": "nats://nats:4222",
				"READSIDE_REDIS_ADDR": "r1:6379, r2:6379", "READSIDE_ES_URLS": "https://es1:9200,https://es2:9200",
				"READSIDE_ES_USERNAME": "elastic", "READSIDE_ES_PASSWORD": "from-env", "READSIDE_REDIS_TLS": "true",
				"READSIDE_STREAM": "EVENTS", "READSIDE_METRICS_ADDR": ":9000", "READSIDE_LOG_LEVEL": "debug",
				"READSIDE_BATCH": "7", "READSIDE_WORKERS": "2", "READSIDE_SHUTDOWN_GRACE": "3s", "READSIDE_SHUTDOWN_DELAY": "4s",
				"READSIDE_TOMBSTONE_TTL": "1h", "READSIDE_SOURCE_MAX_CONCURRENCY": "64",
			},
			args: []string{},
			check: func(t *testing.T, s *settings) {
				b := s.Backends
				if s.Definitions != "/etc/readside" || b.NATSURL != "nats://nats:4222" || !b.RedisTLS ||
					!slices.Equal(b.RedisAddrs, []string{"r1:6379", "r2:6379"}) ||
					!slices.Equal(b.ElasticURLs, []string{"https://es1:9200", "https://es2:9200"}) ||
					b.ElasticUsername != "elastic" || b.ElasticPassword != "from-env" {
					t.Errorf("definitions %q, backends %+v: want the environment's", s.Definitions, b)
				}
				if s.stream != "EVENTS" || s.metricsAddr != ":9000" || s.LogLevel != "debug" || s.tombstoneTTL != time.Hour {
					t.Errorf("stream %q, metrics %q, log level %q, tombstone TTL %v: want the environment's", s.stream, s.metricsAddr, s.LogLevel, s.tombstoneTTL)
				}
				if o := s.opts; o.Batch != 7 || o.Workers != 2 || o.ShutdownGrace != 3*time.Second || s.stopDelay != 4*time.Second || s.sourceMax != 64 {
					t.Errorf("options %+v, source max concurrency %d: want the environment's", o, s.sourceMax)
				}
			},
		},
		{
			name: "flags override the environment",
			env:  map[string]string{"READSIDE_REDIS_ADDR": "r1:6379", "READSIDE_BATCH": "7", "READSIDE_ES_PASSWORD": "from-env"},
			args: []string{"-definitions", "defs", "-redis-addr", "r9:6379", "-batch", "9", "-es-password", "from-flag"},
			check: func(t *testing.T, s *settings) {
				if !slices.Equal(s.Backends.RedisAddrs, []string{"r9:6379"}) || s.opts.Batch != 9 || s.Backends.ElasticPassword != "from-flag" {
					t.Errorf("redis %v, batch %d, es password set from flag %v: want the flags'",
						s.Backends.RedisAddrs, s.opts.Batch, s.Backends.ElasticPassword == "from-flag")
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out bytes.Buffer
			s, err := parse(tc.args, &out)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("parse(%q): %v", tc.args, err)
				}
				tc.check(t, s)
				return
			}
			if err == nil {
				t.Fatalf("parse(%q): no error, want one mentioning %q", tc.args, tc.wantErr)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error()+out.String(), want) {
					t.Errorf("parse(%q) error:\n%v\nwant it to mention %q", tc.args, err, want)
				}
			}
		})
	}
}

// Secrets given by flag or environment never reach the -h output or a log line.
func TestSecretsStayOutOfOutput(t *testing.T) {
	clearEnv(t)
	secrets := []string{"es-pass-Zq1", "redis-pass-Zq2", "api-key-Zq3", "env-pass-Zq4"}
	t.Setenv("READSIDE_REDIS_PASSWORD", "env-pass-Zq4")
	args := []string{"-definitions", "defs", "-es-password", "es-pass-Zq1", "-redis-password", "redis-pass-Zq2", "-es-api-key", "api-key-Zq3"}

	noSecret := func(t *testing.T, what, text string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s shows the secret %q:\n%s", what, s, text)
			}
		}
	}

	t.Run("help", func(t *testing.T) {
		var out bytes.Buffer
		if _, err := parse(append(args, "-h"), &out); !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("parse -h: %v, want flag.ErrHelp", err)
		}
		if !strings.Contains(out.String(), "-es-password") || !strings.Contains(out.String(), "$READSIDE_ES_PASSWORD") {
			t.Errorf("-h output does not describe -es-password:\n%s", out.String())
		}
		noSecret(t, "-h output", out.String())
	})

	s, err := parse(args, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	if s.Backends.ElasticPassword != "es-pass-Zq1" || s.Backends.RedisPassword != "redis-pass-Zq2" || s.Backends.ElasticAPIKey != "api-key-Zq3" {
		t.Fatal("the secrets given by flag were not parsed")
	}
	for _, h := range []struct {
		format string
		new    func(*bytes.Buffer) slog.Handler
	}{
		{"text", func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) }},
		{"json", func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }},
	} {
		t.Run("slog "+h.format, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(h.new(&buf))
			log.Info("config", "backends", s.Backends)
			log.Info("secrets", "es_password", s.Backends.ElasticPassword, "redis_password", s.Backends.RedisPassword, "es_api_key", s.Backends.ElasticAPIKey)
			if !strings.Contains(buf.String(), "[redacted]") {
				t.Errorf("log has no [redacted] value:\n%s", buf.String())
			}
			noSecret(t, h.format+" log", buf.String())
		})
	}
}

// A broken definition stops the projector at start, with an error naming the
// file and every problem, before it connects to NATS, Redis or Elasticsearch.
func TestBadDefinitionFailsAtStart(t *testing.T) {
	clearEnv(t)
	good := testenv.ShopDefinition("shops", "http://127.0.0.1:1", true)
	for _, tc := range []struct {
		name  string
		files map[string]string // file name → content; the first sorted is passed, or the directory with "dir"
		dir   bool
		want  []string // substrings of the error; "{dir}" is replaced by the directory
	}{
		{
			name: "several problems",
			files: map[string]string{"shops.yaml": `name: Shops
triggers:
  - subject: shop.changed.*
sources:
  - name: shop
    url: http://shops/shops/{shop}
fields:
  - {name: name, from: shop.name, type: txt}
  - {name: city, from: store.city, type: keyword}
redis:
  key: "shop"
elasticsearch:
  alias: shops
`},
			// Locations and offending values; the wording belongs to package projections.
			want: []string{
				"loading definitions", `{dir}/shops.yaml:1: name: "Shops"`,
				"{dir}/shops.yaml:6: sources[0].url: ", "{shop}",
				`{dir}/shops.yaml:8: fields[0].type: "txt"`,
				`{dir}/shops.yaml:9: fields[1].from: "store.city"`,
				`{dir}/shops.yaml:11: redis.key: "shop"`,
			},
		},
		{
			name:  "not YAML",
			files: map[string]string{"shops.yaml": "name: shops\ntriggers: [\n"},
			want:  []string{"{dir}/shops.yaml"},
		},
		{
			name:  "misspelt field",
			files: map[string]string{"shops.yaml": strings.Replace(good, "fields:", "feilds:", 1)},
			want:  []string{"{dir}/shops.yaml:", "feilds", "unknown field"},
		},
		{
			name:  "empty file",
			files: map[string]string{"shops.yaml": ""},
			want:  []string{"{dir}/shops.yaml: ", "empty"},
		},
		{
			name: "one bad file in a directory",
			dir:  true,
			files: map[string]string{
				"a-shops.yaml": good,
				"b-bad.yaml":   strings.Replace(strings.Replace(good, "name: shops", "name: bad", 1), "type: integer", "type: int", 1),
			},
			want: []string{`{dir}/b-bad.yaml:`, `"int" is not a field type`},
		},
		{
			name: "two definitions with one name",
			dir:  true,
			files: map[string]string{
				"a.yaml": good,
				"b.yaml": good,
			},
			want: []string{`{dir}/b.yaml: name: `, `"shops"`, "{dir}/a.yaml"},
		},
		{
			name: "no definitions in the directory",
			dir:  true,
			want: []string{"{dir}", "yaml"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var names []string
			for name, content := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				names = append(names, name)
			}
			slices.Sort(names)
			path := dir
			if !tc.dir {
				path = filepath.Join(dir, names[0])
			}
			// Every backend points at a listener that counts connections.
			addr, conns := countingListener(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var stderr bytes.Buffer
			err := run(ctx, []string{"-definitions", path, "-metrics-addr", "",
				"-nats-url", "nats://" + addr, "-redis-addr", addr, "-es-urls", "http://" + addr}, &stderr)
			if err == nil {
				t.Fatal("run: no error")
			}
			for _, w := range tc.want {
				if w = strings.ReplaceAll(w, "{dir}", dir); !strings.Contains(err.Error(), w) {
					t.Errorf("run error:\n%v\nwant it to mention %q", err, w)
				}
			}
			if tc.name == "one bad file in a directory" && strings.Contains(err.Error(), "a-shops.yaml") {
				t.Errorf("run error blames the good file:\n%v", err)
			}
			if n := conns.Load(); n != 0 {
				t.Errorf("run connected %d times before failing on the definitions", n)
			}
		})
	}
}

// countingListener accepts and counts TCP connections until the test ends.
func countingListener(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return ln.Addr().String(), &n
}
