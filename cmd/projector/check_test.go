package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readside/readside/internal/testenv"
)

// listener accepts connections and counts them, so a test can tell that
// nothing connected.
func listener(t *testing.T) (addr string, accepted *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	accepted = new(atomic.Int64)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	return l.Addr().String(), accepted
}

// -check validates the definitions without connecting to NATS, Redis or
// Elasticsearch: one OK line naming the projections and their subjects, or
// every problem of every file with its file and line, and an error.
func TestCheckDefinitions(t *testing.T) {
	t.Setenv("CHECK_TEST_API", "")
	os.Unsetenv("CHECK_TEST_API")
	nats, natsConns := listener(t)
	redis, redisConns := listener(t)
	es, esConns := listener(t)
	backends := []string{"-nats-url", "nats://" + nats, "-redis-addr", redis, "-es-urls", "http://" + es}
	dir := t.TempDir()
	write := func(name, yaml string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("shops.yaml", testenv.ShopDefinition("shops", "${CHECK_TEST_API}", true))
	write("kiosks.yaml", testenv.ShopDefinition("kiosks", "http://kiosks.internal", false))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var out bytes.Buffer
	if err := run(ctx, append([]string{"-definitions", dir, "-check"}, backends...), &out); err != nil {
		t.Fatalf("-check of good definitions: %v\n%s", err, out.String())
	}
	line := out.String()
	for _, want := range []string{"definitions OK: " + dir + ": 2 projections: ", "kiosks (kiosks.shop.changed.*, kiosks.shop.events); shops (shops.shop.changed.*, shops.shop.events)",
		"environment variables not set here, which the daemons need: CHECK_TEST_API"} {
		if !strings.Contains(line, want) {
			t.Errorf("the OK line lacks %q:\n%s", want, line)
		}
	}
	if strings.Count(line, "\n") != 1 {
		t.Errorf("-check printed %d lines, want one:\n%s", strings.Count(line, "\n"), line)
	}

	write("broken.yaml", strings.NewReplacer("type: keyword", "type: keywrd", ":shop:{id}", ":shop").Replace(testenv.ShopDefinition("broken", "http://x", false)))
	write("bad-yaml.yml", "name: [unclosed\n")
	out.Reset()
	err := run(ctx, append([]string{"-definitions", dir, "-check"}, backends...), &out)
	if err == nil {
		t.Fatalf("-check of broken definitions: no error; printed %s", out.String())
	}
	msg := err.Error()
	for _, want := range []string{"4 problems; the projector and the query API would not start", filepath.Join(dir, "broken.yaml") + ":", "fields[2].type", "keywrd", "fields[5].type", "redis.key", filepath.Join(dir, "bad-yaml.yml") + ":1"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(out.String(), "definitions OK") {
		t.Errorf("OK printed for broken definitions: %s", out.String())
	}
	for name, n := range map[string]*atomic.Int64{"NATS": natsConns, "Redis": redisConns, "Elasticsearch": esConns} {
		if n.Load() != 0 {
			t.Errorf("-check connected to %s %d times", name, n.Load())
		}
	}
}
