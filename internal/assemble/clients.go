package assemble

import (
	"net/http"
	"time"

	"github.com/readside/readside/internal/source"
	"github.com/readside/readside/projections"
)

// Clients returns a client for every source of def, each behind its own
// circuit breaker, in definition order. retryBudget bounds the retries of one
// request [3s].
func Clients(def *projections.Definition, transport http.RoundTripper, retryBudget time.Duration) []Fetcher {
	if retryBudget <= 0 {
		retryBudget = 3 * time.Second
	}
	out := make([]Fetcher, len(def.Sources))
	for i, s := range def.Sources {
		c := source.New(source.Options{Timeout: def.SourceTimeout(i), MaxElapsed: retryBudget, Transport: transport})
		out[i] = source.WithBreaker(c, def.Name+"/"+s.Name)
	}
	return out
}
