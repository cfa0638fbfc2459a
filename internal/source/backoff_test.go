package source

import (
	"context"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"3", 3 * time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{"99999999999999999999", time.Duration(math.MaxInt64), true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"Sunday, 02-Mar-25 12:00:00 GMT", 24 * time.Hour, true}, // RFC 850, still allowed
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestHintedBackOff(t *testing.T) {
	t.Parallel()
	newBO := func(ctx context.Context, budget time.Duration) *hintedBackOff {
		exp := backoff.NewExponentialBackOff(
			backoff.WithInitialInterval(10*time.Millisecond),
			backoff.WithMaxInterval(10*time.Millisecond),
			backoff.WithRandomizationFactor(0.5),
			backoff.WithMaxElapsedTime(budget),
		)
		b := &hintedBackOff{exp: exp, ctx: ctx, budget: budget}
		b.Reset()
		return b
	}

	b := newBO(t.Context(), time.Minute)
	if d := b.NextBackOff(); d < 5*time.Millisecond || d > 15*time.Millisecond {
		t.Errorf("no hint: wait %v; want 10ms ± 50%%", d)
	}
	b.hint = 2 * time.Second
	if d := b.NextBackOff(); d != 2*time.Second {
		t.Errorf("hint 2s: wait %v; want 2s", d)
	}
	if d := b.NextBackOff(); d > 15*time.Millisecond {
		t.Errorf("a hint is for the next wait only; got %v", d)
	}
	b.hint = 2 * time.Minute
	if d := b.NextBackOff(); d != backoff.Stop {
		t.Errorf("hint past the budget: wait %v; want Stop", d)
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	b = newBO(ctx, time.Minute)
	b.hint = 5 * time.Second
	if d := b.NextBackOff(); d != backoff.Stop {
		t.Errorf("hint past ctx's deadline: wait %v; want Stop", d)
	}
}
