package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/readside/readside/internal/backend"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
)

// The query API serves from embedded stores by configuration alone: what a
// projector wrote under the data directory is read back, from the doc store
// and the search index; a second process on the same directory is refused.
func TestServesEmbeddedStores(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	defFile := filepath.Join(dir, "shops.yaml")
	if err := os.WriteFile(defFile, []byte(testenv.ShopDefinition("shops", "http://127.0.0.1:1", true)), 0o644); err != nil {
		t.Fatal(err)
	}
	def, err := projections.Load(defFile, projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")

	// What a projector would have written.
	stores := &backend.Stores{Embedded: backend.NewEmbedded(data, nil)}
	st, err := stores.For(ctx, def)
	if err != nil {
		t.Fatal(err)
	}
	docs := []sink.Doc{
		{ID: "1", Version: 1, Body: []byte(`{"id":"1","name":"Pizza One","city":"Berlin"}`), BuiltAt: time.Now()},
		{ID: "2", Version: 1, Body: []byte(`{"id":"2","name":"Sushi Two","city":"Paris"}`), BuiltAt: time.Now()},
	}
	for _, s := range []interface {
		Write(context.Context, []sink.Doc) error
	}{st.Docs, st.Index} {
		if err := s.Write(ctx, docs); err != nil {
			t.Fatal(err)
		}
	}
	if err := stores.Close(); err != nil {
		t.Fatal(err)
	}

	args := []string{"-definitions", defFile, "-addr", "127.0.0.1:0", "-redis-addr", "embedded", "-es-urls", "embedded",
		"-data-dir", data, "-no-reproject", "-access-log=false", "-metrics-addr", "", "-shutdown-delay", "0s"}
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, args, io.Discard, ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-errc:
		t.Fatalf("run: %v", err)
	}
	get := func(path string) (int, []byte) {
		res, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	if code, body := get("/v1/shops/2"); code != 200 || gjson.GetBytes(body, "name").Str != "Sushi Two" {
		t.Errorf("detail: %d %s", code, body)
	}
	if code, body := get("/v1/shops?q=pizz"); code != 200 || gjson.GetBytes(body, "items.#.id").Raw != `["1"]` {
		t.Errorf("search: %d %s", code, body)
	}
	if code, body := get("/readyz"); code != 200 || gjson.GetBytes(body, "embedded").Str != "up" {
		t.Errorf("readyz: %d %s", code, body)
	}

	// A second process on the same data directory.
	err = run(ctx, append(args[:len(args):len(args)], "-addr", "127.0.0.1:0"), io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("a second query API on the data directory: %v, want an error naming another process", err)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("run after cancel: %v", err)
	}
}

// Embedded NATS belongs to the projector: the query API publishing
// re-project events needs that NATS's URL.
func TestEmbeddedNATSNeedsNoReproject(t *testing.T) {
	_, err := parse([]string{"-definitions", "x.yaml", "-nats-url", "embedded"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-no-reproject") {
		t.Fatalf("parse: %v, want the -nats-url embedded problem", err)
	}
}

// -nats-creds reaches a NATS server that requires user credentials (an
// operator-mode server, as production runs): the query API connects with
// them and reports NATS up; without them it serves on, reports NATS down,
// and logs the refusal.
func TestNATSCreds(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	defFile := filepath.Join(dir, "shops.yaml")
	if err := os.WriteFile(defFile, []byte(testenv.ShopDefinition("shops", "http://127.0.0.1:1", true)), 0o644); err != nil {
		t.Fatal(err)
	}
	def, err := projections.Load(defFile, projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.StartSecureJetStream(t)
	_, js := srv.Connect(t)
	if _, err := stream.Ensure(ctx, js, stream.Config{}, def.AllSubjects()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		creds []string
		nats  string
		log   string
	}{
		{[]string{"-nats-creds", srv.Creds}, "up", "NATS connected"},
		{nil, "down", "Authorization Violation"},
	} {
		rctx, stop := context.WithCancel(ctx)
		args := append([]string{"-definitions", defFile, "-addr", "127.0.0.1:0", "-metrics-addr", "", "-redis-addr", "embedded", "-es-urls", "embedded",
			"-data-dir", filepath.Join(dir, "data"), "-access-log=false", "-shutdown-delay", "0s", "-nats-url", srv.URL}, tc.creds...)
		var log testenv.Buffer
		ready := make(chan string, 1)
		errc := make(chan error, 1)
		go func() { errc <- run(rctx, args, &log, ready) }()
		var addr string
		select {
		case addr = <-ready:
		case err := <-errc:
			t.Fatalf("%v: run: %v", tc.creds, err)
		}
		state := ""
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			res, err := http.Get("http://" + addr + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if state = gjson.GetBytes(b, "nats").Str; state == tc.nats && strings.Contains(log.String(), tc.log) {
				break
			}
		}
		if state != tc.nats || !strings.Contains(log.String(), tc.log) {
			t.Errorf("%v: readyz nats %q, want %q; the log lacks %q:\n%s", tc.creds, state, tc.nats, tc.log, log.String())
		}
		stop()
		if err := <-errc; err != nil {
			t.Errorf("%v: run after cancel: %v", tc.creds, err)
		}
	}
}

// -shutdown-delay defaults to 5s, long enough for Kubernetes to take the pod
// out of its Service's endpoints; the environment sets it; a negative one
// or one that is no duration stops the start.
func TestParseShutdownDelay(t *testing.T) {
	for _, v := range []string{"READSIDE_SHUTDOWN_DELAY", "READSIDE_METRICS_ADDR"} {
		t.Setenv(v, "")
	}
	s, err := parse([]string{"-definitions", "x.yaml", "-no-reproject"}, io.Discard)
	if err != nil || s.stopDelay != 5*time.Second || s.metricsAddr != "127.0.0.1:9465" {
		t.Errorf("defaults: %v, %+v; want -shutdown-delay 5s, -metrics-addr 127.0.0.1:9465", err, s)
	}
	t.Setenv("READSIDE_SHUTDOWN_DELAY", "12s")
	if s, err := parse([]string{"-definitions", "x.yaml", "-no-reproject"}, io.Discard); err != nil || s.stopDelay != 12*time.Second {
		t.Errorf("from the environment: %v, %v; want 12s", err, s.stopDelay)
	}
	if _, err := parse([]string{"-definitions", "x.yaml", "-no-reproject", "-shutdown-delay", "-1s"}, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "-shutdown-delay must be 0 or more, not -1s") {
		t.Errorf("negative: %v", err)
	}
	t.Setenv("READSIDE_SHUTDOWN_DELAY", "5")
	if _, err := parse([]string{"-definitions", "x.yaml", "-no-reproject"}, io.Discard); err == nil ||
		!strings.Contains(err.Error(), `$READSIDE_SHUTDOWN_DELAY: "5" is not a duration`) {
		t.Errorf("no duration: %v", err)
	}
}
