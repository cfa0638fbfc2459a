package main

// Probe tests of the projector binary: NATS lost, and SIGTERM.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
)

// With its NATS server gone the projector stays live (/livez 200: a restart
// would not bring NATS back) but is not ready: /readyz answers 503 with
// "nats":"down" and why, and the change is logged once at WARN. When the
// server is back, it is ready again.
func TestNATSLostIsLiveButNotReady(t *testing.T) {
	t.Parallel()
	projectorBinary(t)
	dir := t.TempDir()
	port, err := strconv.Atoi(strings.TrimPrefix(freeAddr(t), "127.0.0.1:"))
	if err != nil {
		t.Fatal(err)
	}
	w := newWorldOn(t, testenv.StartJetStreamIn(t, dir, port))
	if w.streams, err = stream.Ensure(context.Background(), w.jsc, stream.Config{}, w.def.AllSubjects()); err != nil {
		t.Fatal(err)
	}
	admin := freeAddr(t)
	p := w.start("projector", "-metrics-addr", admin)
	w.waitReady(p, admin, 30*time.Second)

	w.js.Server.Shutdown()
	lost := time.Now()
	var r readyz
	w.waitFor(30*time.Second, "/readyz says NATS is down", func() (bool, string) {
		var code int
		code, r = getReadyz(t, admin)
		return code == http.StatusServiceUnavailable && r.Status == "not ready" && r.Checks["nats"] == "down",
			fmt.Sprintf("/readyz %d %+v", code, r)
	})
	t.Logf("/readyz 503 %s after NATS went: %+v", time.Since(lost).Round(time.Millisecond), r)
	if !strings.HasPrefix(r.Reasons["nats"], "not connected (RECONNECTING)") {
		t.Errorf("reason of nats %q, want it to say the connection is reconnecting", r.Reasons["nats"])
	}
	for range 3 {
		if code, body := probe(admin, "/livez"); code != http.StatusOK {
			t.Errorf("/livez with NATS down: %d %s, want 200", code, body)
		}
		getReadyz(t, admin)
	}
	if p.exited() {
		t.Fatalf("the projector exited without NATS: %v", p.err)
	}
	if n := len(regexp.MustCompile(`level=WARN msg="not ready" was=ready reasons="[^"]*nats: not connected`).FindAllString(p.logText(), -1)); n != 1 {
		t.Errorf("%d WARN lines \"not ready\" naming nats, want 1 however many probes", n)
	}

	testenv.StartJetStreamIn(t, dir, port)
	back := time.Now()
	w.waitReady(p, admin, 30*time.Second)
	t.Logf("/readyz 200 %s after NATS came back", time.Since(back).Round(time.Millisecond))
}

// On SIGTERM /readyz answers 503 "shutting down" at once, while the admin
// listener still accepts and the projector still works; only after
// -shutdown-delay does it drain, and the listener closes last, as the
// process exits with status 0.
func TestSIGTERMFailsReadinessFirst(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	admin := freeAddr(t)
	const delay = 2 * time.Second
	p := w.start("projector", "-metrics-addr", admin, "-shutdown-delay", delay.String())
	w.waitReady(p, admin, 30*time.Second)

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	var seen []string // what /readyz answered, in order, each answer once
	note := func(s string) {
		if len(seen) == 0 || seen[len(seen)-1] != s {
			seen = append(seen, s)
		}
	}
	for {
		code, body := probe(admin, "/readyz")
		if code == 0 {
			note("closed")
			break
		}
		var r readyz
		if code == http.StatusServiceUnavailable {
			_, r = getReadyz(t, admin)
		}
		note(fmt.Sprintf("%d %s", code, strings.TrimSpace(body)))
		if r.Status == "shutting down" {
			if code, _ := probe(admin, "/livez"); code != http.StatusOK {
				t.Errorf("/livez while shutting down: %d, want 200", code)
			}
			break
		}
		if time.Since(sent) > 10*time.Second {
			t.Fatalf("10s after SIGTERM /readyz still answers %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if seen[len(seen)-1] == "closed" {
		t.Fatalf("after SIGTERM /readyz answered %q: the listener closed before readiness failed", seen)
	}
	t.Logf("/readyz after SIGTERM: %q after %s", seen, time.Since(sent).Round(time.Millisecond))
	if !strings.Contains(p.logText(), `msg="shutting down: /readyz answers 503 from now; draining after the shutdown delay" delay=2s`) {
		t.Errorf("no log line says the projector is shutting down")
	}
	// Still working: the delay has not passed, nothing has stopped pulling.
	if p.exited() || strings.Contains(p.logText(), "projector stopped") {
		t.Errorf("the projector stopped before its -shutdown-delay was over")
	}

	select {
	case <-p.done:
	case <-time.After(delay + 10*time.Second):
		t.Fatalf("the projector did not exit within %s of SIGTERM", delay+10*time.Second)
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		t.Errorf("the projector exited with %v, want code 0", exit)
	}
	if _, err := net.DialTimeout("tcp", admin, time.Second); err == nil {
		t.Errorf("the admin server still answers at %s after the exit", admin)
	}
}
