package source_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readside/readside/internal/source"
)

// fast are Options that keep retrying tests well under a second.
var fast = source.Options{
	Timeout:         200 * time.Millisecond,
	MaxElapsed:      300 * time.Millisecond,
	InitialInterval: 5 * time.Millisecond,
	MaxInterval:     20 * time.Millisecond,
}

// step is how a scripted source answers one request.
type step struct {
	code   int
	header map[string]string
	body   string
	sleep  time.Duration // before answering, unless the request is cancelled
}

// scripted starts a source that answers the n-th request with steps[n], and
// every request after the last step with the last step. It counts requests.
func scripted(t *testing.T, steps ...step) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		s := steps[min(i, len(steps)-1)]
		if s.sleep > 0 {
			select {
			case <-time.After(s.sleep):
			case <-r.Context().Done():
				return
			}
		}
		for k, v := range s.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(s.code)
		_, _ = w.Write([]byte(s.body))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func ok(body string) step { return step{code: 200, body: body} }

func TestGetStatus(t *testing.T) {
	t.Parallel()
	type check func(t *testing.T, body []byte, err error)
	wantBody := func(want string) check {
		return func(t *testing.T, body []byte, err error) {
			t.Helper()
			if err != nil || string(body) != want {
				t.Fatalf("Get = %q, %v; want %q, nil", body, err, want)
			}
		}
	}
	wantNotFound := func(t *testing.T, _ []byte, err error) {
		t.Helper()
		if !errors.Is(err, source.ErrNotFound) || source.IsPermanent(err) {
			t.Fatalf("err = %v; want ErrNotFound, not permanent", err)
		}
	}
	wantStatus := func(code int, body string) check {
		return func(t *testing.T, _ []byte, err error) {
			t.Helper()
			var se *source.StatusError
			if !errors.As(err, &se) || se.Code != code || se.Body != body || !source.IsPermanent(err) {
				t.Fatalf("err = %#v; want permanent *StatusError %d with body %q", err, code, body)
			}
		}
	}
	wantUnavailable := func(retryAfter time.Duration) check {
		return func(t *testing.T, _ []byte, err error) {
			t.Helper()
			var ue *source.UnavailableError
			if !errors.As(err, &ue) || source.IsPermanent(err) {
				t.Fatalf("err = %v; want *UnavailableError, not permanent", err)
			}
			if ue.RetryAfter != retryAfter {
				t.Errorf("RetryAfter = %v; want %v", ue.RetryAfter, retryAfter)
			}
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v; it blames a ctx that did not end", err)
			}
		}
	}

	tests := []struct {
		name     string
		steps    []step
		opts     func(*source.Options)
		check    check
		attempts int32 // 0: at least 2
		minTime  time.Duration
		maxTime  time.Duration
	}{
		{name: "200", steps: []step{ok(`{"id":42}`)}, check: wantBody(`{"id":42}`), attempts: 1},
		{name: "204 empty", steps: []step{{code: 204}}, check: wantBody(""), attempts: 1},
		{name: "404", steps: []step{{code: 404, body: "no such shop"}}, check: wantNotFound, attempts: 1},
		{name: "410", steps: []step{{code: 410}}, check: wantNotFound, attempts: 1},
		{name: "400", steps: []step{{code: 400, body: "bad id"}}, check: wantStatus(400, "bad id"), attempts: 1},
		{name: "422 long body is cut", steps: []step{{code: 422, body: strings.Repeat("e", 2000)}},
			check: wantStatus(422, strings.Repeat("e", 512)), attempts: 1},
		{name: "301 without Location is not followed", steps: []step{{code: 301}}, check: wantStatus(301, ""), attempts: 1},
		{name: "408 then 200", steps: []step{{code: 408}, ok("x")}, check: wantBody("x"), attempts: 2},
		{name: "429 Retry-After seconds is waited for",
			steps:    []step{{code: 429, header: map[string]string{"Retry-After": "1"}}, ok("x")},
			opts:     func(o *source.Options) { o.MaxElapsed = 1800 * time.Millisecond },
			check:    wantBody("x"),
			attempts: 2, minTime: time.Second, maxTime: 1800 * time.Millisecond},
		{name: "500 three times then 200",
			steps: []step{{code: 500}, {code: 502}, {code: 504}, ok("x")}, check: wantBody("x"), attempts: 4},
		{name: "503 forever", steps: []step{{code: 503, body: "down"}}, check: wantUnavailable(0),
			maxTime: time.Second},
		{name: "503 Retry-After beyond the budget gives up at once",
			steps: []step{{code: 503, header: map[string]string{"Retry-After": "120"}}},
			check: wantUnavailable(120 * time.Second), attempts: 1, maxTime: 100 * time.Millisecond},
		{name: "429 Retry-After date beyond the budget gives up at once",
			steps: []step{{code: 429, header: map[string]string{
				"Retry-After": time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}}},
			check: func(t *testing.T, _ []byte, err error) {
				var ue *source.UnavailableError
				if !errors.As(err, &ue) || ue.RetryAfter < 59*time.Minute || ue.RetryAfter > time.Hour {
					t.Fatalf("err = %v; want *UnavailableError with RetryAfter about 1h", err)
				}
			},
			attempts: 1, maxTime: 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, n := scripted(t, tt.steps...)
			o := fast
			if tt.opts != nil {
				tt.opts(&o)
			}
			c := source.New(o)
			start := time.Now()
			body, err := c.Get(t.Context(), srv.URL+"/shops/42")
			took := time.Since(start)
			tt.check(t, body, err)
			switch got := n.Load(); {
			case tt.attempts == 0 && got < 2:
				t.Errorf("%d attempts; want retries", got)
			case tt.attempts != 0 && got != tt.attempts:
				t.Errorf("%d attempts; want %d", got, tt.attempts)
			}
			if took < tt.minTime {
				t.Errorf("took %v; want at least %v", took, tt.minTime)
			}
			if tt.maxTime > 0 && took > tt.maxTime {
				t.Errorf("took %v; want at most %v", took, tt.maxTime)
			}
		})
	}
}

func TestGetSendsHeaders(t *testing.T) {
	t.Parallel()
	var accept, ua string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		accept, ua = r.Header.Get("Accept"), r.Header.Get("User-Agent")
	}))
	defer srv.Close()

	if _, err := source.New(fast).Get(t.Context(), srv.URL); err != nil {
		t.Fatal(err)
	}
	if accept != "application/json" || ua != "readside" {
		t.Errorf("Accept %q, User-Agent %q; want application/json, readside", accept, ua)
	}
	o := fast
	o.UserAgent = "projector/shops"
	if _, err := source.New(o).Get(t.Context(), srv.URL); err != nil {
		t.Fatal(err)
	}
	if ua != "projector/shops" {
		t.Errorf("User-Agent %q; want projector/shops", ua)
	}
}

func TestGetTimeoutPerAttempt(t *testing.T) {
	t.Parallel()
	srv, n := scripted(t, step{code: 200, body: "slow", sleep: 5 * time.Second}, ok("fast"))
	o := fast
	o.Timeout = 50 * time.Millisecond
	o.MaxElapsed = time.Second

	start := time.Now()
	body, err := source.New(o).Get(t.Context(), srv.URL)
	if err != nil || string(body) != "fast" {
		t.Fatalf("Get = %q, %v; want fast", body, err)
	}
	if n.Load() != 2 {
		t.Errorf("%d attempts; want 2", n.Load())
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("took %v; the slow attempt was not cut at 50ms", took)
	}
}

func TestGetTimeoutEveryAttempt(t *testing.T) {
	t.Parallel()
	srv, _ := scripted(t, step{code: 200, sleep: 5 * time.Second})
	o := fast
	o.Timeout = 30 * time.Millisecond

	_, err := source.New(o).Get(t.Context(), srv.URL)
	var ue *source.UnavailableError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v; want *UnavailableError", err)
	}
	// The caller's ctx did not end: a per-attempt timeout must not read as it.
	if errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("err = %v; want an attempt timeout that is not context.DeadlineExceeded", err)
	}
}

func TestGetConnectionRefused(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()

	start := time.Now()
	_, err := source.New(fast).Get(t.Context(), url+"/shops/1")
	var ue *source.UnavailableError
	if !errors.As(err, &ue) || source.IsPermanent(err) {
		t.Fatalf("err = %v; want *UnavailableError", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) {
		t.Errorf("err = %v; want the dial error inside", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("took %v; want about MaxElapsed (%v)", took, fast.MaxElapsed)
	}
}

func TestGetBodyLimit(t *testing.T) {
	t.Parallel()
	const limit = 10
	tests := []struct {
		name    string
		body    string
		chunked bool // no Content-Length: the limit is found while reading
		tooBig  bool
	}{
		{name: "at the limit", body: strings.Repeat("a", limit)},
		{name: "over, with Content-Length", body: strings.Repeat("a", limit+1), tooBig: true},
		{name: "over, chunked", body: strings.Repeat("a", 100<<10), chunked: true, tooBig: true},
		{name: "at the limit, chunked", body: strings.Repeat("a", limit), chunked: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				if tt.chunked {
					w.(http.Flusher).Flush() // commit headers without a length
				}
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			o := fast
			o.MaxBodyBytes = limit

			body, err := source.New(o).Get(t.Context(), srv.URL)
			if !tt.tooBig {
				if err != nil || string(body) != tt.body {
					t.Fatalf("Get = %q, %v; want %q", body, err, tt.body)
				}
				return
			}
			if !errors.Is(err, source.ErrTooLarge) || !source.IsPermanent(err) || body != nil {
				t.Fatalf("Get = %q, %v; want permanent ErrTooLarge", body, err)
			}
			if n.Load() != 1 {
				t.Errorf("%d attempts; ErrTooLarge must not be retried", n.Load())
			}
		})
	}
}

func TestGetCancelDuringBackoff(t *testing.T) {
	t.Parallel()
	srv, n := scripted(t, step{code: 503, body: "down"})
	o := source.Options{InitialInterval: 10 * time.Second, MaxInterval: 10 * time.Second, MaxElapsed: time.Minute}
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel) // the first attempt is long over by then

	start := time.Now()
	_, err := source.New(o).Get(ctx, srv.URL)
	if took := time.Since(start); took > 600*time.Millisecond {
		t.Errorf("took %v; want a prompt return on cancel", took)
	}
	var ue *source.UnavailableError
	if !errors.As(err, &ue) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v; want *UnavailableError wrapping context.Canceled", err)
	}
	if !strings.Contains(err.Error(), "503") {
		t.Errorf("err = %v; want it to name the last attempt's failure", err)
	}
	if n.Load() != 1 {
		t.Errorf("%d attempts; want 1", n.Load())
	}
}

func TestGetDeadlineBeforeNextWait(t *testing.T) {
	t.Parallel()
	srv, n := scripted(t, step{code: 500})
	o := source.Options{InitialInterval: 10 * time.Second, MaxInterval: 10 * time.Second, MaxElapsed: time.Minute}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()

	start := time.Now()
	_, err := source.New(o).Get(ctx, srv.URL)
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("took %v; a wait past the deadline should not start", took)
	}
	var ue *source.UnavailableError
	if !errors.As(err, &ue) || n.Load() != 1 {
		t.Fatalf("err = %v after %d attempts; want *UnavailableError after 1", err, n.Load())
	}
}

func TestGetContextAlreadyEnded(t *testing.T) {
	t.Parallel()
	srv, _ := scripted(t, ok("x"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	_, err := source.New(fast).Get(ctx, srv.URL)
	var ue *source.UnavailableError
	if !errors.As(err, &ue) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v; want *UnavailableError wrapping context.Canceled", err)
	}
}

func TestGetBadURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "/shops/1", "ftp://example.com/x", "http://", "http://[::1"} {
		_, err := source.New(fast).Get(t.Context(), u)
		var ue *source.UnavailableError
		if err == nil || errors.As(err, &ue) {
			t.Errorf("Get(%q) = %v; want an immediate error", u, err)
		}
	}
}

func TestGetRedactsPassword(t *testing.T) {
	t.Parallel()
	srv, _ := scripted(t, step{code: 400})
	u := strings.Replace(srv.URL, "http://", "http://reader:s3cret@", 1)

	_, err := source.New(fast).Get(t.Context(), u)
	var se *source.StatusError
	if !errors.As(err, &se) || strings.Contains(se.URL, "s3cret") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("err = %v; want a *StatusError without the password", err)
	}
}

// TestGetReusesConnections checks that bodies are drained and closed on every
// path, so that one keep-alive connection serves a sequence of calls.
func TestGetReusesConnections(t *testing.T) {
	t.Parallel()
	var conns atomic.Int32
	var n atomic.Int32
	bodies := strings.Repeat("b", 4<<10)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/404":
			w.WriteHeader(404)
		case "/400":
			w.WriteHeader(400)
		case "/flaky":
			if n.Add(1) == 1 {
				w.WriteHeader(500)
			}
		}
		_, _ = w.Write([]byte(bodies))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	c := source.New(fast)
	for _, p := range []string{"/ok", "/404", "/400", "/flaky", "/ok"} {
		_, _ = c.Get(t.Context(), srv.URL+p)
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("%d connections; want 1 reused for every call", got)
	}
}

func TestIsPermanent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{&source.StatusError{Code: 400}, true},
		{errors.Join(errors.New("fetch shop"), &source.StatusError{Code: 422}), true},
		{source.ErrTooLarge, true},
		{source.ErrNotFound, false},
		{&source.UnavailableError{Err: errors.New("refused")}, false},
		{context.Canceled, false},
	}
	for _, tt := range tests {
		if got := source.IsPermanent(tt.err); got != tt.want {
			t.Errorf("IsPermanent(%v) = %v; want %v", tt.err, got, tt.want)
		}
	}
}
