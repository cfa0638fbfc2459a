package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/internal/version"
)

// -version needs no other flag: it is asked of a binary before any
// configuration is at hand.
func TestVersionFlag(t *testing.T) {
	s, err := parse([]string{"-version"}, io.Discard)
	if err != nil || !s.version {
		t.Fatalf("parse -version: %+v, %v; want version set and no error", s, err)
	}
}

// The admin /metrics carries readside_build_info with this build's labels.
func TestBuildInfoMetric(t *testing.T) {
	api := testenv.NewShopAPI()
	defer api.Close()
	_, defFile := shops(t, api.URL)
	admin := freeAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"-definitions", defFile, "-addr", "127.0.0.1:0", "-metrics-addr", admin, "-no-reproject",
			"-redis-addr", testenv.RedisAddr(), "-es-urls", testenv.ElasticURL(), "-access-log=false", "-shutdown-delay", "0s"}, io.Discard, ready)
	}()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("run: %v", err)
	}
	i := version.Get()
	want := `readside_build_info{commit="` + i.Commit + `",goversion="` + i.GoVersion + `",version="` + i.Version + `"} 1`
	waitFor(t, 10*time.Second, "/metrics shows the build info", func() (bool, string) {
		code, body := get("http://" + admin + "/metrics")
		return code == 200 && strings.Contains(body, want), "want " + want
	})
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
