package source

import (
	"errors"
	"fmt"
	"time"
)

// The outcomes of Get other than success. Callers map them to what happens to
// the event that caused the fetch:
//
//   - errors.Is(err, ErrNotFound): the entity is gone; write a tombstone.
//   - IsPermanent(err) (a *StatusError or ErrTooLarge): the event is bad;
//     dead-letter it. Retrying cannot help.
//   - errors.As(err, new(*UnavailableError)): the source is down or slow; nak
//     the event with a delay (at least the error's RetryAfter) and back off.
//   - anything else: the call itself was wrong (a malformed or non-HTTP URL).
var (
	// ErrNotFound means the source answered 404 Not Found or 410 Gone: the
	// entity does not exist (any more). Get wraps it with the URL.
	ErrNotFound = errors.New("source: not found")

	// ErrTooLarge means the response body was longer than Options.MaxBodyBytes.
	// It is permanent: the same request would get the same answer. Get wraps it
	// with the URL.
	ErrTooLarge = errors.New("source: response body too large")
)

// statusBodyLimit is how much of an error response's body a StatusError keeps.
const statusBodyLimit = 512

// StatusError is a permanent refusal by the source: any 4xx answer other than
// 404, 408, 410 and 429, meaning the request (hence the event that led to it)
// is bad. Get also reports a 1xx or 3xx answer it cannot use (a redirect it
// did not follow) as a StatusError, because repeating the request would get the
// same answer. It is never retried.
type StatusError struct {
	URL  string // the requested URL, with any password redacted
	Code int    // the HTTP status code
	Body string // the first 512 bytes of the response body
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("source: GET %s: status %d", e.URL, e.Code)
	}
	return fmt.Sprintf("source: GET %s: status %d: %q", e.URL, e.Code, e.Body)
}

// UnavailableError means the source could not answer: transient failures
// (network errors, per-attempt timeouts, 408, 429, 5xx) lasted for the whole
// retry budget, a Retry-After hint reached beyond the budget or the caller's
// deadline, or ctx ended while Get was retrying. The event is fine; the
// dependency is not, so the caller should retry later rather than dead-letter.
//
// Err is the last attempt's failure. When ctx ended, Err also wraps ctx.Err(),
// so errors.Is(err, context.Canceled) and errors.Is(err,
// context.DeadlineExceeded) report why Get stopped.
type UnavailableError struct {
	URL string // the requested URL, with any password redacted
	Err error
	// RetryAfter is the most recent Retry-After hint the source sent during
	// this Get (on 429 or 503), or 0 if it sent none. It is a lower bound for
	// the caller's own delay before asking again.
	RetryAfter time.Duration
}

func (e *UnavailableError) Error() string {
	msg := fmt.Sprintf("source: GET %s: unavailable: %v", e.URL, e.Err)
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	return msg
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// IsPermanent reports whether err means the fetch can never succeed as asked:
// a *StatusError or ErrTooLarge anywhere in its chain. Such an event belongs in
// the dead-letter queue. It is false for ErrNotFound (a valid outcome: the
// entity is gone), for *UnavailableError and for nil.
func IsPermanent(err error) bool {
	var se *StatusError
	return errors.As(err, &se) || errors.Is(err, ErrTooLarge)
}
