// Package health answers a daemon's Kubernetes probes and orders its
// shutdown around them: /livez says the process works, /readyz says whether
// it can do its job now and, when not, why; on SIGTERM readiness fails at
// once and the work stops only after a delay, so that load balancers and
// Kubernetes endpoints stop sending traffic before the listeners close.
package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// The states of one check in Status.Checks.
const (
	Up      = "up"
	Down    = "down"
	Unknown = "unknown" // not checked (yet), or not checkable while another check is down
)

// Status is what a readiness check found: whether the process is ready,
// each dependency's state, and for each one not up, why.
type Status struct {
	Ready   bool
	Checks  map[string]string // name → Up, Down or Unknown
	Reasons map[string]string // name → why it is not up; credentials in URLs are redacted
}

// NewStatus returns an empty status, not ready until the caller decides.
func NewStatus() Status {
	return Status{Checks: map[string]string{}, Reasons: map[string]string{}}
}

// Set records the check name: Up when err is nil, else Down with err as the reason.
func (s Status) Set(name string, err error) {
	if err == nil {
		s.Checks[name] = Up
		delete(s.Reasons, name)
		return
	}
	s.Checks[name], s.Reasons[name] = Down, Reason(err.Error())
}

// SetUnknown records the check name as Unknown, because of why.
func (s Status) SetUnknown(name, why string) {
	s.Checks[name], s.Reasons[name] = Unknown, Reason(why)
}

// AllUp reports whether every check is Up (true for no checks).
func (s Status) AllUp() bool {
	for _, v := range s.Checks {
		if v != Up {
			return false
		}
	}
	return true
}

// Conn is what NATSCheck asks a NATS connection; *nats.Conn has it.
type Conn interface {
	IsConnected() bool
	Status() nats.Status
	LastError() error
}

// NATSCheck returns nil while c is connected to a NATS server, else why not:
// its state (RECONNECTING, CLOSED) and its last error. A nil c is no
// connection.
func NATSCheck(c Conn) error {
	switch {
	case c == nil:
		return errors.New("no connection")
	case c.IsConnected():
		return nil
	}
	err := fmt.Errorf("not connected (%s): nothing is published or consumed until nats.go reconnects", c.Status())
	if last := c.LastError(); last != nil {
		err = fmt.Errorf("%w; last error: %w", err, last)
	}
	return err
}

// userinfo matches the user and password of a URL ("nats://u:p@host").
var userinfo = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@`)

// maxReason bounds a reason: a probe's answer is read by people and kubelets.
const maxReason = 1024

// Reason makes an error text fit for a probe's answer: a URL's user and
// password are redacted (clients usually strip them from their errors; this
// holds whatever a library returns), and it is cut to 1 KiB.
func Reason(s string) string {
	s = userinfo.ReplaceAllString(s, "${1}[redacted]@")
	if len(s) > maxReason {
		s = strings.ToValidUTF8(s[:maxReason], "") + "…"
	}
	return s
}

// The values of the "status" field of /readyz.
const (
	StatusReady        = "ready"         // 200: every check up
	StatusDegraded     = "degraded"      // 200: ready, though a check is not up (the daemon serves without it)
	StatusNotReady     = "not ready"     // 503
	StatusStarting     = "starting"      // 503: the daemon is still setting up
	StatusShuttingDown = "shutting down" // 503: SIGTERM received; the daemon drains after its -shutdown-delay
)

// Report is the JSON answer of /readyz.
type Report struct {
	Status  string            `json:"status"`
	Checks  map[string]string `json:"checks"`
	Reasons map[string]string `json:"reasons,omitempty"`
}

// Probes answers /livez and /readyz for one daemon. Its methods are safe for
// concurrent use.
type Probes struct {
	log      *slog.Logger
	check    atomic.Pointer[func(ctx context.Context) Status]
	stopping atomic.Bool

	mu   sync.Mutex
	last string // the status last answered, to log its changes
}

// New returns probes that answer "starting" until SetCheck is called. A
// change of the readiness status is logged on log: WARN with the reasons
// when it turns not ready or degraded, INFO when it is ready again, never a
// line per probe.
func New(log *slog.Logger) *Probes {
	return &Probes{log: log, last: StatusStarting}
}

// SetCheck sets how readiness is checked, once the daemon has what the check
// asks about. check is called for every /readyz request, with the request's
// context, and must be safe for concurrent use.
func (p *Probes) SetCheck(check func(ctx context.Context) Status) { p.check.Store(&check) }

// Register serves GET /livez and GET /readyz on mux.
func (p *Probes) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /livez", p.Livez)
	mux.HandleFunc("GET /readyz", p.Readyz)
}

// Livez answers 200 "ok" while the process serves HTTP, whatever its
// dependencies do: a restart would not bring NATS or a store back, and
// restarting every replica during an outage only adds a second one.
func (p *Probes) Livez(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, "ok\n")
}

// Readyz answers 200 while the daemon is ready ("ready", or "degraded" when
// a dependency it can serve without is down) and 503 otherwise ("not
// ready", "starting", "shutting down"), with every check's state and the
// reason of each one not up:
//
//	{"status":"not ready","checks":{"nats":"up","stream":"down"},"reasons":{"stream":"stream READSIDE_EVENTS: ..."}}
//
// From the moment the daemon is told to stop (ShutdownAfter) it answers 503
// "shutting down" without checking anything.
func (p *Probes) Readyz(w http.ResponseWriter, r *http.Request) {
	b := p.Check(r.Context())
	code := http.StatusOK
	if b.Status != StatusReady && b.Status != StatusDegraded {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(b)
}

// Check checks readiness now, as /readyz answers it, logging a change of
// its status.
func (p *Probes) Check(ctx context.Context) Report {
	b := Report{Checks: map[string]string{}}
	check := p.check.Load()
	switch {
	case p.stopping.Load():
		b.Status = StatusShuttingDown
	case check == nil:
		b.Status = StatusStarting
	default:
		s := (*check)(ctx)
		b.Checks = s.Checks
		if len(s.Reasons) > 0 {
			b.Reasons = s.Reasons
		}
		switch {
		case !s.Ready:
			b.Status = StatusNotReady
		case s.AllUp():
			b.Status = StatusReady
		default:
			b.Status = StatusDegraded
		}
		// A probe the caller gave up on says nothing about the daemon.
		if ctx.Err() == nil {
			p.logChange(b)
		}
	}
	return b
}

func (p *Probes) logChange(b Report) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b.Status == p.last || p.log == nil {
		p.last = b.Status
		return
	}
	was := p.last
	p.last = b.Status
	switch {
	case b.Status == StatusReady:
		p.log.Info("ready", "was", was)
	case (was == "" || was == StatusStarting) && !anyDown(b):
		// Still starting: a check has not run yet. Nothing failed.
		p.log.Info(b.Status+" yet: a check has not run", "was", was)
	default:
		var why []string
		for _, name := range slices.Sorted(maps.Keys(b.Reasons)) {
			why = append(why, name+": "+b.Reasons[name])
		}
		p.log.Warn(b.Status, "was", was, "reasons", strings.Join(why, "; "))
	}
}

// anyDown reports whether a check of b is down (not merely unknown).
func anyDown(b Report) bool {
	for _, state := range b.Checks {
		if state == Down {
			return true
		}
	}
	return false
}

// ShutdownAfter returns a context for the daemon's work that ends delay
// after stop ends. stop is the context that ends on SIGTERM or SIGINT
// (config.Run's). From the moment stop ends, /readyz answers 503 "shutting
// down", so that Kubernetes takes the pod out of its Service's endpoints
// while the daemon still serves; when the returned context ends, the daemon
// drains as it always did. Calling cancel releases the timer (the daemon
// returned before stop ended, say because a part failed).
func (p *Probes) ShutdownAfter(stop context.Context, delay time.Duration) (work context.Context, cancel context.CancelFunc) {
	work, cancelWork := context.WithCancel(context.WithoutCancel(stop))
	unregister := context.AfterFunc(stop, func() {
		p.stopping.Store(true)
		if p.log != nil {
			p.log.Info("shutting down: /readyz answers 503 from now; draining after the shutdown delay", "delay", delay)
		}
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-work.Done():
		}
		cancelWork()
	})
	return work, func() {
		unregister()
		cancelWork()
	}
}

// ListenAdmin listens on addr and serves h there, the daemon's admin server
// (/metrics and the probes), with short timeouts. An error serving after the
// listener is open is logged on log. stop closes the listener and lets the
// requests under way finish for up to 5s; a daemon calls it last, once its
// work has drained, so /readyz answers "shutting down" until the end.
func ListenAdmin(addr string, h http.Handler, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics-addr: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 90 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) && log != nil {
			log.Error("admin server stopped: no metrics or probes from now", "addr", addr, "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	}, nil
}
