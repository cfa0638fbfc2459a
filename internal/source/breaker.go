package source

import (
	"context"
	"errors"
	neturl "net/url"
	"time"

	"github.com/sony/gobreaker/v2"
)

// ErrOpen is the cause of an UnavailableError returned without a request
// because the source's circuit breaker is open: it failed repeatedly just now.
var ErrOpen = errors.New("source: circuit breaker open")

// The settings of every breaker: each source's, and the query API's in front
// of its doc store and search engine.
const (
	BreakerFailures = 5               // failures in a row that open the breaker
	BreakerOpen     = 2 * time.Second // how long it fails fast before a probe
)

// Breaker is a Client behind a circuit breaker (github.com/sony/gobreaker):
// after BreakerFailures failures in a row it fails fast for BreakerOpen,
// then lets one request probe the source. Only a source that is down counts as a failure: answers
// such as 404, 400 or a too-large body are the source working, and a
// caller's cancelled context is not the source's fault. Safe for concurrent use.
type Breaker struct {
	c  *Client
	cb *gobreaker.CircuitBreaker[[]byte]
}

// WithBreaker puts c behind a circuit breaker named name (for logs).
func WithBreaker(c *Client, name string) *Breaker {
	return &Breaker{c: c, cb: gobreaker.NewCircuitBreaker[[]byte](gobreaker.Settings{
		Name:        name,
		MaxRequests: 1,
		Timeout:     BreakerOpen,
		ReadyToTrip: func(n gobreaker.Counts) bool { return n.ConsecutiveFailures >= BreakerFailures },
		IsSuccessful: func(err error) bool {
			return err == nil || errors.Is(err, ErrNotFound) || IsPermanent(err)
		},
		IsExcluded: func(err error) bool {
			return errors.Is(err, context.Canceled)
		},
	})}
}

// Get is Client.Get behind the breaker. While the breaker is open it returns
// an *UnavailableError wrapping ErrOpen at once.
func (b *Breaker) Get(ctx context.Context, url string) ([]byte, error) {
	body, err := b.cb.Execute(func() ([]byte, error) { return b.c.Get(ctx, url) })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return nil, &UnavailableError{URL: redactURL(url), Err: ErrOpen}
	}
	return body, err
}

// State is the breaker's state now: closed (requests go through), half-open
// (one probes the source) or open (failing fast).
func (b *Breaker) State() gobreaker.State { return b.cb.State() }

// redactURL hides a password in url, as the Client's errors do.
func redactURL(raw string) string {
	if u, err := neturl.Parse(raw); err == nil {
		return u.Redacted()
	}
	return raw
}
