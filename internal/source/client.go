// Package source fetches the current state of entities from the source APIs
// that domain services own.
//
// A Client performs one GET per call, retrying what is transient (network
// errors, timeouts, 408, 429, 5xx) within a budget and reporting everything
// else at once, as errors the caller can act on: ErrNotFound (the entity is
// gone), a permanent error (IsPermanent: the event is bad) or an
// *UnavailableError (the source is down: try again later). A Template builds
// the URL from an entity's fields without letting a field value change the host
// or the shape of the path.
package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Options configure a Client. Zero (or negative) values take the defaults in
// brackets.
type Options struct {
	// Timeout bounds one attempt, from sending the request to reading the whole
	// body [5s]. It is applied only when it is shorter than what remains of the
	// caller's ctx.
	Timeout time.Duration
	// MaxBodyBytes is the largest response body Get accepts [8 MiB]; a longer
	// one is ErrTooLarge (permanent).
	MaxBodyBytes int64
	// MaxElapsed is the total retry budget of one Get [30s]: no wait starts
	// that would end after it, so Get returns within about MaxElapsed+Timeout.
	// The caller's ctx bounds Get too.
	MaxElapsed time.Duration
	// InitialInterval is the first backoff between attempts [100ms]. Later
	// ones grow exponentially, with ±50% jitter.
	InitialInterval time.Duration
	// MaxInterval caps the backoff before jitter [5s].
	MaxInterval time.Duration
	// Transport sends the requests [a tuned *http.Transport: keep-alives,
	// MaxIdleConnsPerHost 512, proxy from the environment].
	Transport http.RoundTripper
	// UserAgent is sent in the User-Agent header ["readside"].
	UserAgent string
	// Limiter, when set, bounds the attempts in flight: each attempt waits
	// for a permit (within ctx) before it is sent, and its latency and
	// outcome move the limit (see Limiter). Share one Limiter among all the
	// clients of one source. The per-attempt Timeout starts once the permit
	// is granted; waiting counts against MaxElapsed and ctx.
	Limiter *Limiter
	// Observe, when set, is called after every attempt that reached the
	// source, with how it ended ("ok", "not_found", "bad": another 4xx or a
	// body too large, "unavailable": a network error, a timeout, 408, 429 or
	// 5xx) and how long it took from sending the request to reading the
	// body. It must be safe for concurrent use.
	Observe func(result string, d time.Duration)
}

// Defaults of Options.
const (
	DefaultTimeout         = 5 * time.Second
	DefaultMaxBodyBytes    = 8 << 20
	DefaultMaxElapsed      = 30 * time.Second
	DefaultInitialInterval = 100 * time.Millisecond
	DefaultMaxInterval     = 5 * time.Second
	DefaultUserAgent       = "readside"
)

// drainLimit is how much of an unwanted body is read before closing it, so the
// connection can be reused; a longer body costs the connection instead.
const drainLimit = 64 << 10

// Client fetches JSON documents from source APIs. It is safe for concurrent
// use; share one per process so that connections are reused.
type Client struct {
	http            *http.Client
	timeout         time.Duration
	maxBody         int64
	maxElapsed      time.Duration
	initialInterval time.Duration
	maxInterval     time.Duration
	userAgent       string
	limiter         *Limiter
	observe         func(string, time.Duration)
}

// New returns a Client configured by o.
func New(o Options) *Client {
	c := &Client{
		timeout:         orDefault(o.Timeout, DefaultTimeout),
		maxBody:         orDefault(o.MaxBodyBytes, DefaultMaxBodyBytes),
		maxElapsed:      orDefault(o.MaxElapsed, DefaultMaxElapsed),
		initialInterval: orDefault(o.InitialInterval, DefaultInitialInterval),
		maxInterval:     orDefault(o.MaxInterval, DefaultMaxInterval),
		userAgent:       o.UserAgent,
		limiter:         o.Limiter,
		observe:         o.Observe,
	}
	if c.userAgent == "" {
		c.userAgent = DefaultUserAgent
	}
	rt := o.Transport
	if rt == nil {
		rt = NewTransport()
	}
	// No Client.Timeout: every attempt is bounded by its context instead, so
	// that the caller's deadline and the per-attempt timeout are one mechanism.
	c.http = &http.Client{Transport: rt}
	return c
}

func orDefault[T int64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// NewTransport is the default Transport: many idle connections per host,
// because a projector sends bursts of small requests to a few source APIs.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   30 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: 1 * time.Second,
	}
}

// Get fetches rawURL with Accept: application/json and returns the body of a
// 2xx answer. It retries transient failures with exponential backoff and
// jitter, and returns:
//
//   - an error wrapping ErrNotFound on 404 or 410, at once;
//   - a *StatusError on any other 4xx but 408 and 429, or on a 1xx or 3xx
//     the http.Client did not resolve, at once (permanent);
//   - an error wrapping ErrTooLarge when the body is longer than
//     Options.MaxBodyBytes, at once (permanent);
//   - an *UnavailableError when network errors, per-attempt timeouts, 408,
//     429 or 5xx answers last for Options.MaxElapsed, when a Retry-After hint
//     (honoured on 429 and 503) reaches beyond the budget or ctx's deadline,
//     or when ctx ends; never a bare ctx error;
//   - a plain error, at once, when rawURL is not an absolute http or https URL.
//
// A wait between attempts never outlasts ctx: when the next wait would end
// after ctx's deadline, Get gives up at once rather than sleep in vain.
// Response bodies are always drained (up to a limit) and closed, so that
// connections are reused.
func (c *Client) Get(ctx context.Context, rawURL string) ([]byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("source: GET: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("source: GET %s: not an absolute http or https URL", u.Redacted())
	}
	shown := u.Redacted()

	exp := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(c.initialInterval),
		backoff.WithMaxInterval(c.maxInterval),
		backoff.WithRandomizationFactor(0.5),
		backoff.WithMaxElapsedTime(c.maxElapsed),
	)
	bo := &hintedBackOff{exp: exp, ctx: ctx, budget: c.maxElapsed}

	var (
		final    error // a non-retryable outcome, returned as it is
		lastErr  error // the last transient failure
		lastHint time.Duration
	)
	op := func() ([]byte, error) {
		r := c.attempt(ctx, rawURL, shown)
		if r.hasHint {
			bo.hint, lastHint = r.hint, r.hint
		}
		switch {
		case r.err == nil:
			return r.body, nil
		case !r.retry:
			final = r.err
			return nil, backoff.Permanent(r.err)
		default:
			lastErr = r.err
			return nil, r.err
		}
	}
	body, err := backoff.RetryNotifyWithData(op, backoff.WithContext(bo, ctx), nil)
	if err == nil {
		return body, nil
	}
	if final != nil {
		return nil, final
	}
	cause := lastErr
	if cerr := ctx.Err(); cerr != nil {
		switch {
		case lastErr == nil || errors.Is(lastErr, cerr):
			cause = cerr
		default:
			cause = fmt.Errorf("%w (last attempt: %w)", cerr, lastErr)
		}
	}
	return nil, &UnavailableError{URL: shown, Err: cause, RetryAfter: lastHint}
}

// result is the outcome of one attempt.
type result struct {
	body    []byte
	err     error
	retry   bool          // err is transient
	hint    time.Duration // the Retry-After hint, when hasHint
	hasHint bool
	outcome outcome
}

// outcome classifies an attempt for the Limiter and Options.Observe.
type outcome int

const (
	outcomeOK          outcome = iota // a 2xx answer, read whole
	outcomeNotFound                   // 404 or 410: a normal answer
	outcomeBad                        // another 4xx, an unusable status, a body too large: a normal answer too
	outcomeUnavailable                // a network error, the per-attempt timeout, 408, 429 or 5xx
	outcomeCanceled                   // the caller's ctx ended: says nothing about the source
)

func (o outcome) String() string {
	return [...]string{"ok", "not_found", "bad", "unavailable", "canceled"}[o]
}

// attempt sends one request, bounded by the per-attempt timeout unless ctx
// ends sooner, after waiting for the Limiter's permit when there is one.
func (c *Client) attempt(ctx context.Context, rawURL, shown string) result {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return result{err: fmt.Errorf("source: GET %s: %w", shown, err)}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)

	var p *permit
	if c.limiter != nil {
		if p, err = c.limiter.acquire(ctx); err != nil {
			// Get reports ctx's end as an *UnavailableError.
			return result{err: err, retry: true}
		}
	}
	start := time.Now()
	r := c.send(ctx, req, shown)
	if p != nil {
		p.done(r.outcome)
	}
	if c.observe != nil && r.outcome != outcomeCanceled {
		c.observe(r.outcome.String(), time.Since(start))
	}
	return r
}

// send sends req, bounded by the per-attempt timeout unless ctx ends sooner.
func (c *Client) send(ctx context.Context, req *http.Request, shown string) result {
	timeout := c.timeout
	actx := ctx
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > timeout {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
		req = req.WithContext(actx)
	}
	// failed is a transient failure: the source's (unavailable) unless the
	// caller's ctx ended. A failure caused by the per-attempt timeout is
	// rewritten, so it does not read as the caller's deadline
	// (context.DeadlineExceeded).
	failed := func(err error) result {
		switch {
		case ctx.Err() != nil:
			return result{err: err, retry: true, outcome: outcomeCanceled}
		case actx.Err() != nil:
			err = fmt.Errorf("source: GET %s: attempt timed out after %s", shown, timeout)
		}
		return result{err: err, retry: true, outcome: outcomeUnavailable}
	}

	resp, err := c.http.Do(req)
	if err != nil {
		// The Client has already named the URL (without its password).
		return failed(err)
	}
	defer drainClose(resp.Body)

	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		if resp.ContentLength > c.maxBody {
			return result{err: fmt.Errorf("source: GET %s: %w (%d bytes, limit %d)", shown, ErrTooLarge, resp.ContentLength, c.maxBody), outcome: outcomeBad}
		}
		limit := c.maxBody
		if limit < math.MaxInt64 {
			limit++ // one byte more tells "exactly the limit" from "over it"
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
		if err != nil {
			return failed(fmt.Errorf("source: GET %s: reading body: %w", shown, err))
		}
		if int64(len(body)) > c.maxBody {
			return result{err: fmt.Errorf("source: GET %s: %w (limit %d bytes)", shown, ErrTooLarge, c.maxBody), outcome: outcomeBad}
		}
		return result{body: body, outcome: outcomeOK}

	case code == http.StatusNotFound || code == http.StatusGone:
		return result{err: fmt.Errorf("source: GET %s: status %d: %w", shown, code, ErrNotFound), outcome: outcomeNotFound}

	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		r := result{retry: true, outcome: outcomeUnavailable}
		if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
			r.hint, r.hasHint = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
		// Not a *StatusError: that type means "permanent" to IsPermanent.
		r.err = fmt.Errorf("source: GET %s: status %d", shown, code)
		if snippet := readSnippet(resp.Body); snippet != "" {
			r.err = fmt.Errorf("source: GET %s: status %d: %q", shown, code, snippet)
		}
		return r

	default: // other 4xx; 1xx and 3xx that the http.Client did not handle
		return result{err: &StatusError{URL: shown, Code: code, Body: readSnippet(resp.Body)}, outcome: outcomeBad}
	}
}

// readSnippet returns the start of an error response's body, for the error
// message; a failure to read just shortens it.
func readSnippet(body io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(body, statusBodyLimit))
	return string(b)
}

// drainClose reads what is left of a body, up to drainLimit, and closes it, so
// that the Transport can put the connection back in its idle pool.
func drainClose(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, drainLimit))
	_ = body.Close()
}

// parseRetryAfter reads a Retry-After header: delta-seconds or an HTTP date
// (a date in the past means "now"). ok is false when there is no valid hint.
func parseRetryAfter(h string, now time.Time) (d time.Duration, ok bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(h, 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange) || err == nil && n > uint64(math.MaxInt64/int64(time.Second)):
		return time.Duration(math.MaxInt64), true // "forever", as far as any budget goes
	case err == nil:
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// hintedBackOff is the ExponentialBackOff, stretched to a Retry-After hint and
// cut short when a wait could not end within the budget or ctx's deadline.
// Like the ExponentialBackOff, it belongs to one Get and is not shared.
type hintedBackOff struct {
	exp    *backoff.ExponentialBackOff
	ctx    context.Context
	budget time.Duration
	hint   time.Duration // the source's latest hint, for the next wait only
}

func (b *hintedBackOff) Reset() {
	b.exp.Reset()
	b.hint = 0
}

func (b *hintedBackOff) NextBackOff() time.Duration {
	next := b.exp.NextBackOff()
	hint := b.hint
	b.hint = 0
	if next == backoff.Stop {
		return backoff.Stop
	}
	if hint > next {
		if hint > b.budget-b.exp.GetElapsedTime() {
			return backoff.Stop // waiting as asked would overrun the budget
		}
		next = hint
	}
	if dl, ok := b.ctx.Deadline(); ok && next >= time.Until(dl) {
		return backoff.Stop // ctx would end during the wait; say so now
	}
	return next
}
