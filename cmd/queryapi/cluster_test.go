package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
)

// /readyz reports nats "up" only while the own stream (where re-project
// events go) answers, not
// merely while the connection is up: with the stream's one server of three
// down, it says "down" (the stores still up, so 200: reads work), and "up"
// again once the server is back.
func TestReadyzReportsStreamLoss(t *testing.T) {
	c := testenv.StartNATSCluster(t, 3)
	_, js := c.Connect(t)
	ns := testenv.Namespace(t)
	if _, err := stream.Ensure(context.Background(), js, stream.Config{}, []string{ns + ".>"}); err != nil {
		t.Fatal(err)
	}
	testenv.Redis(t)
	testenv.Elastic(t, ns)
	defFile := filepath.Join(t.TempDir(), ns+".yaml")
	if err := os.WriteFile(defFile, []byte(testenv.ShopDefinition(ns, "http://127.0.0.1:1", true)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	logs := &testenv.Buffer{}
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"-definitions", defFile, "-addr", "127.0.0.1:0", "-nats-url", c.URLs(),
			"-redis-addr", testenv.RedisAddr(), "-es-urls", testenv.ElasticURL(), "-access-log=false", "-metrics-addr", "", "-shutdown-delay", "0s"}, logs, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-errc:
		t.Fatalf("run: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("query API log:\n%s", logs.String())
		}
	})
	readyz := func() (int, map[string]string) {
		hc := http.Client{Timeout: 5 * time.Second}
		res, err := hc.Get("http://" + addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		var state map[string]string
		if err := json.Unmarshal(b, &state); err != nil {
			t.Fatalf("/readyz %d: %q: %v", res.StatusCode, b, err)
		}
		return res.StatusCode, state
	}
	waitNATS := func(want string, d time.Duration) {
		t.Helper()
		start := time.Now()
		for {
			code, state := readyz()
			if state["nats"] == want {
				if code != 200 || state["redis"] != "up" || state["elasticsearch"] != "up" {
					t.Errorf("/readyz %d %v: want 200 with the stores up", code, state)
				}
				t.Logf("nats %s after %s", want, time.Since(start).Round(time.Millisecond))
				return
			}
			if time.Since(start) > d {
				t.Fatalf("/readyz %d %v: nats not %s after %s", code, state, want, d)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitNATS("up", 10*time.Second)

	leader := c.StreamLeader(t, js, "READSIDE_OWN")
	c.Shutdown(leader)
	waitNATS("down", 15*time.Second)
	if !strings.Contains(logs.String(), `level=WARN msg="JetStream stream unavailable" stream=READSIDE_OWN`) {
		t.Errorf("no WARN line naming the stream in the log:\n%s", logs.String())
	}
	c.Restart(t, leader)
	waitNATS("up", 30*time.Second)
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("run: %v", err)
	}
}
