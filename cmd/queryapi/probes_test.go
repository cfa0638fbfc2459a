package main

// Probe tests of the query API: its admin /readyz while the own stream or
// NATS is gone (run in the test process), and SIGTERM to the binary.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
)

// TestMain removes the query API binary that the process tests build once.
func TestMain(m *testing.M) {
	code := m.Run()
	binary.Remove()
	os.Exit(code)
}

// binary is the query API built once for every test of the package run.
var binary = testenv.NewBinary("queryapi")

func queryapiBinary(t *testing.T) string {
	t.Helper()
	return binary.Path(t)
}

func freeAddr(t *testing.T) string { return testenv.FreeAddr(t) }

// get asks url, returning the status code and body (0 when nothing answers).
func get(url string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// readyz is the admin /readyz's body.
type readyz struct {
	Status  string            `json:"status"`
	Checks  map[string]string `json:"checks"`
	Reasons map[string]string `json:"reasons"`
}

func getReadyz(t *testing.T, admin string) (int, readyz) {
	t.Helper()
	code, body := get("http://" + admin + "/readyz")
	var r readyz
	if code != 0 {
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("/readyz %d: %q is not its JSON: %v", code, body, err)
		}
	}
	return code, r
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s: %s", what, d, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// shops is a shop definition file in a namespace of its own, reading api.
func shops(t *testing.T, api string) (ns, file string) {
	t.Helper()
	ns = testenv.Namespace(t)
	testenv.CleanRedis(t, testenv.Redis(t), ns)
	testenv.Elastic(t, ns)
	file = filepath.Join(t.TempDir(), ns+".yaml")
	if err := os.WriteFile(file, []byte(testenv.ShopDefinition(ns, api, true)), 0o644); err != nil {
		t.Fatal(err)
	}
	return ns, file
}

// The query API serves reads without NATS, so losing the own stream or NATS
// leaves its admin /readyz at 200 but "degraded", with the reason: stream
// down naming the stream; nats down, the stream then not checked. /livez is
// 200 throughout, reads are served, and the public /readyz keeps its
// format, "nats":"down".
func TestReadyzDegradedWithoutNATS(t *testing.T) {
	js := testenv.StartJetStream(t)
	_, jsc := js.Connect(t)
	setup := func() {
		t.Helper()
		if _, err := stream.Ensure(context.Background(), jsc, stream.Config{}, []string{"probe.>"}); err != nil {
			t.Fatal(err)
		}
	}
	setup()
	api := testenv.NewShopAPI()
	defer api.Close()
	api.Put("1", "shop one")
	ns, defFile := shops(t, api.URL)
	admin := freeAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	logs := &testenv.Buffer{}
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"-definitions", defFile, "-addr", "127.0.0.1:0", "-metrics-addr", admin, "-nats-url", js.URL,
			"-redis-addr", testenv.RedisAddr(), "-es-urls", testenv.ElasticURL(), "-access-log=false", "-shutdown-delay", "0s"}, logs, ready)
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
	waitStatus := func(what, status string, cond func(r readyz) bool) readyz {
		t.Helper()
		var r readyz
		waitFor(t, 20*time.Second, what, func() (bool, string) {
			var code int
			code, r = getReadyz(t, admin)
			want := http.StatusOK
			if status != "ready" && status != "degraded" {
				want = http.StatusServiceUnavailable
			}
			return code == want && r.Status == status && cond(r), fmt.Sprintf("/readyz %d %+v", code, r)
		})
		if code, _ := get("http://" + admin + "/livez"); code != 200 {
			t.Errorf("%s: /livez %d, want 200", what, code)
		}
		if code, body := get("http://" + addr + "/v1/" + ns + "/1"); code != 200 || !strings.Contains(body, "shop one") {
			t.Errorf("%s: a read answered %d %s, want 200 with the shop", what, code, body)
		}
		return r
	}

	waitStatus("ready", "ready", func(r readyz) bool {
		return r.Checks["nats"] == "up" && r.Checks["stream"] == "up" && r.Checks["redis"] == "up" && r.Checks["elasticsearch"] == "up"
	})

	if err := jsc.DeleteStream(ctx, "READSIDE_OWN"); err != nil {
		t.Fatal(err)
	}
	r := waitStatus("the own stream deleted", "degraded", func(r readyz) bool { return r.Checks["stream"] == "down" })
	if !strings.HasPrefix(r.Reasons["stream"], "stream READSIDE_OWN: ") || r.Checks["nats"] != "up" {
		t.Errorf("the own stream deleted: %+v, want nats up and the reason naming the stream", r)
	}
	t.Logf("the own stream deleted: %+v", r)
	setup()
	waitStatus("the own stream back", "ready", func(r readyz) bool { return r.Checks["stream"] == "up" })

	js.Server.Shutdown()
	r = waitStatus("NATS shut down", "degraded", func(r readyz) bool { return r.Checks["nats"] == "down" })
	if !strings.HasPrefix(r.Reasons["nats"], "not connected (RECONNECTING)") || r.Checks["stream"] != "unknown" {
		t.Errorf("NATS shut down: %+v, want the reason saying it reconnects and the stream unknown", r)
	}
	t.Logf("NATS shut down: %+v", r)
	var public map[string]string
	code, body := get("http://" + addr + "/readyz")
	if err := json.Unmarshal([]byte(body), &public); err != nil || code != 200 || public["nats"] != "down" || public["redis"] != "up" {
		t.Errorf("public /readyz with NATS down: %d %s, want 200 with the flat states, nats down", code, body)
	}
	for _, want := range []string{
		`level=WARN msg=degraded was=ready reasons="stream: stream READSIDE_OWN: `,
		`level=WARN msg=degraded was=ready reasons="nats: not connected (RECONNECTING)`,
	} {
		if n := strings.Count(logs.String(), want); n != 1 {
			t.Errorf("%d log lines %s, want 1", n, want)
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("run: %v", err)
	}
}

// On SIGTERM the admin /readyz answers 503 "shutting down" at once while the
// API goes on serving reads for -shutdown-delay; then it drains, both
// listeners close, and the process exits with status 0.
func TestSIGTERMFailsReadinessFirst(t *testing.T) {
	bin := queryapiBinary(t)
	api := testenv.NewShopAPI()
	defer api.Close()
	api.Put("1", "shop one")
	ns, defFile := shops(t, api.URL)
	addr, admin := freeAddr(t), freeAddr(t)
	logFile := filepath.Join(t.TempDir(), "queryapi.log")
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const delay = 2 * time.Second
	cmd := exec.Command(bin, "-definitions", defFile, "-addr", addr, "-metrics-addr", admin, "-no-reproject",
		"-redis-addr", testenv.RedisAddr(), "-es-urls", testenv.ElasticURL(), "-shutdown-delay", delay.String())
	cmd.Stdout, cmd.Stderr = f, f
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "READSIDE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("query API log:\n%s", testenv.TailFile(logFile, 60))
		}
	})
	waitFor(t, 30*time.Second, "the query API is ready", func() (bool, string) {
		code, r := getReadyz(t, admin)
		return code == 200 && r.Status == "ready", fmt.Sprintf("/readyz %d %+v", code, r)
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	var seen []string // what /readyz answered, in order, each answer once
	for {
		code, r := getReadyz(t, admin)
		s := fmt.Sprintf("%d %s", code, r.Status)
		if code == 0 {
			s = "closed"
		}
		if len(seen) == 0 || seen[len(seen)-1] != s {
			seen = append(seen, s)
		}
		if code == 0 || r.Status == "shutting down" {
			break
		}
		if time.Since(sent) > 10*time.Second {
			t.Fatalf("10s after SIGTERM /readyz still answers %s", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if seen[len(seen)-1] != "503 shutting down" {
		t.Fatalf("after SIGTERM /readyz answered %q: the listener closed before readiness failed", seen)
	}
	t.Logf("/readyz after SIGTERM: %q after %s", seen, time.Since(sent).Round(time.Millisecond))
	// Still serving: Kubernetes is taking the pod out of the endpoints.
	if code, body := get("http://" + addr + "/v1/" + ns + "/1"); code != 200 || !strings.Contains(body, "shop one") {
		t.Errorf("a read while shutting down answered %d %s, want 200 with the shop", code, body)
	}
	if code, _ := get("http://" + admin + "/livez"); code != 200 {
		t.Errorf("/livez while shutting down: %d, want 200", code)
	}

	select {
	case err := <-done:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Errorf("the query API exited with %v, want code 0", exit)
		}
	case <-time.After(delay + 15*time.Second):
		t.Fatalf("the query API did not exit within %s of SIGTERM", delay+15*time.Second)
	}
	for _, a := range []string{addr, admin} {
		if _, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			t.Errorf("%s still accepts after the exit", a)
		}
	}
	log := testenv.TailFile(logFile, 60)
	if !strings.Contains(log, `msg="shutting down: /readyz answers 503 from now; draining after the shutdown delay" delay=2s`) ||
		!strings.Contains(log, `msg="query API stopped" err=<nil>`) {
		t.Errorf("the log does not say it shut down, then stopped cleanly")
	}
}
