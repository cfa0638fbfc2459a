package health_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readside/readside/internal/health"
	"github.com/readside/readside/internal/testenv"
)

type answer struct {
	code int
	health.Report
}

func get(t *testing.T, url string) answer {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	a := answer{code: res.StatusCode}
	if strings.HasSuffix(url, "/readyz") {
		if err := json.Unmarshal(b, &a.Report); err != nil {
			t.Fatalf("%s: %q is not JSON: %v", url, b, err)
		}
	} else {
		a.Status = string(b)
	}
	return a
}

// /readyz answers "starting" until the daemon sets its check, then what the
// check finds: 200 ready, 200 degraded, 503 not ready with the reasons;
// /livez is 200 throughout. Each change of status is logged once.
func TestReadyz(t *testing.T) {
	var logs testenv.Buffer
	p := health.New(slog.New(slog.NewTextHandler(&logs, nil)))
	mux := http.NewServeMux()
	p.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	if a := get(t, srv.URL+"/readyz"); a.code != 503 || a.Status != health.StatusStarting {
		t.Errorf("before SetCheck: %d %q, want 503 starting", a.code, a.Status)
	}
	var redis, nats atomic.Pointer[error]
	none := error(nil)
	redis.Store(&none)
	nats.Store(&none)
	p.SetCheck(func(ctx context.Context) health.Status {
		s := health.NewStatus()
		s.Set("redis", *redis.Load())
		s.Set("nats", *nats.Load())
		s.Ready = s.Checks["redis"] == health.Up // the daemon serves without NATS
		return s
	})
	for range 2 {
		if a := get(t, srv.URL+"/readyz"); a.code != 200 || a.Status != health.StatusReady || a.Checks["redis"] != "up" || len(a.Reasons) != 0 {
			t.Errorf("all up: %d %+v", a.code, a.Report)
		}
	}
	lost := errors.New("connection lost to nats://app:s3cret@nats-1:4222")
	nats.Store(&lost)
	a := get(t, srv.URL+"/readyz")
	if a.code != 200 || a.Status != health.StatusDegraded || a.Checks["nats"] != "down" {
		t.Errorf("nats down, ready without it: %d %+v, want 200 degraded", a.code, a.Report)
	}
	if want := "connection lost to nats://[redacted]@nats-1:4222"; a.Reasons["nats"] != want {
		t.Errorf("reason %q, want %q: no credentials", a.Reasons["nats"], want)
	}
	refused := errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")
	redis.Store(&refused)
	for range 3 {
		a = get(t, srv.URL+"/readyz")
	}
	if a.code != 503 || a.Status != health.StatusNotReady || a.Checks["redis"] != "down" || a.Reasons["redis"] != refused.Error() {
		t.Errorf("redis down: %d %+v, want 503 not ready with the reason", a.code, a.Report)
	}
	if a := get(t, srv.URL+"/livez"); a.code != 200 {
		t.Errorf("/livez with redis down: %d, want 200", a.code)
	}
	redis.Store(&none)
	nats.Store(&none)
	get(t, srv.URL+"/readyz")

	log := logs.String()
	for _, want := range []string{
		`level=INFO msg=ready was=starting`,
		`level=WARN msg=degraded was=ready reasons="nats: connection lost to nats://[redacted]@nats-1:4222"`,
		`level=WARN msg="not ready" was=degraded reasons="nats: connection lost to nats://[redacted]@nats-1:4222; redis: dial tcp 127.0.0.1:6379: connect: connection refused"`,
		`level=INFO msg=ready was="not ready"`,
	} {
		if strings.Count(log, want) != 1 {
			t.Errorf("the log has %d lines %s, want 1:\n%s", strings.Count(log, want), want, log)
		}
	}
	if n := strings.Count(log, "\n"); n != 4 {
		t.Errorf("%d log lines, want 4 (one per change):\n%s", n, log)
	}
}

// Once the stop context ends, /readyz answers 503 "shutting down" at once,
// without checking, while the work context goes on until the delay is over.
func TestShutdownAfter(t *testing.T) {
	p := health.New(nil)
	checks := atomic.Int64{}
	p.SetCheck(func(context.Context) health.Status {
		checks.Add(1)
		s := health.NewStatus()
		s.Ready = true
		return s
	})
	mux := http.NewServeMux()
	p.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	stop, signal := context.WithCancel(context.Background())
	work, cancel := p.ShutdownAfter(stop, time.Hour)
	defer cancel()
	if a := get(t, srv.URL+"/readyz"); a.code != 200 {
		t.Fatalf("before the signal: %d %+v", a.code, a.Report)
	}
	signal()
	deadline := time.Now().Add(5 * time.Second)
	for {
		a := get(t, srv.URL+"/readyz")
		if a.code == 503 && a.Status == health.StatusShuttingDown {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5s after the signal /readyz is %d %+v, want 503 shutting down", a.code, a.Report)
		}
		time.Sleep(10 * time.Millisecond)
	}
	n := checks.Load()
	get(t, srv.URL+"/readyz")
	if checks.Load() != n {
		t.Errorf("shutting down, /readyz still runs the checks")
	}
	if work.Err() != nil {
		t.Errorf("the work stopped before the delay (1h) was over")
	}
	if a := get(t, srv.URL+"/livez"); a.code != 200 {
		t.Errorf("/livez while shutting down: %d, want 200", a.code)
	}
	cancel()
	<-work.Done()

	// With no delay the work ends right after the signal.
	stop, signal = context.WithCancel(context.Background())
	work, cancel = health.New(nil).ShutdownAfter(stop, 0)
	defer cancel()
	signal()
	select {
	case <-work.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("with no delay, the work did not end within 5s of the signal")
	}
}

func TestReason(t *testing.T) {
	for in, want := range map[string]string{
		`Get "https://elastic:changeme@es-1:9200/_cluster/health": EOF`: `Get "https://[redacted]@es-1:9200/_cluster/health": EOF`,
		"redis://:pw@redis-1:6379 refused":                              "redis://[redacted]@redis-1:6379 refused",
		"nats: no servers available for connection":                     "nats: no servers available for connection",
		strings.Repeat("é", 600):                                        strings.Repeat("é", 512) + "…",
	} {
		if got := health.Reason(in); got != want {
			t.Errorf("Reason(%q) = %q, want %q", in, got, want)
		}
	}
}

// A daemon whose first checks have not run yet is not ready, and says so at
// INFO: nothing failed. One whose first check finds a part down says so at
// WARN.
func TestStartingIsNoWarning(t *testing.T) {
	for _, tc := range []struct {
		stream error // nil: not checked yet
		want   string
	}{
		{nil, `level=INFO msg="not ready yet: a check has not run" was=starting`},
		{errors.New("no answer within 2s"), `level=WARN msg="not ready" was=starting reasons="stream: no answer within 2s"`},
	} {
		var logs testenv.Buffer
		p := health.New(slog.New(slog.NewTextHandler(&logs, nil)))
		p.SetCheck(func(ctx context.Context) health.Status {
			s := health.NewStatus()
			s.Set("redis", nil)
			if tc.stream != nil {
				s.Set("stream", tc.stream)
			} else {
				s.SetUnknown("stream", "not checked yet")
			}
			s.Ready = s.AllUp()
			return s
		})
		if r := p.Check(context.Background()); r.Status != health.StatusNotReady {
			t.Fatalf("status %q, want not ready", r.Status)
		}
		if log := logs.String(); !strings.Contains(log, tc.want) || strings.Count(log, "\n") != 1 {
			t.Errorf("stream %v: the log is\n%s\nwant the one line %s", tc.stream, log, tc.want)
		}
	}
}
