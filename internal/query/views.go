package query

import (
	"context"
	"time"

	"github.com/readside/readside/internal/assemble"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/projections"
)

// DefaultRetryBudget bounds the retries of one fallback request to a source
// [cmd/queryapi's -source-retry-budget]: short, since a reader waits.
const DefaultRetryBudget = 300 * time.Millisecond

// Opener opens what the views of projections read: backend.Stores is one.
type Opener interface {
	// Read opens def's stores to read only.
	Read(ctx context.Context, def *projections.Definition) (sink.Stores, error)
	// SearchProbe is View.SearchProbe, nil when the engine has none.
	SearchProbe() func(ctx context.Context) error
	// Sources are def's source clients for fallbacks, each request's
	// retries bounded by retryBudget.
	Sources(def *projections.Definition, retryBudget time.Duration) []assemble.Fetcher
}

// Views are the views of defs over the stores o opens, in the order of defs.
// It fails with the first store that does not open.
func Views(ctx context.Context, defs []*projections.Definition, o Opener, retryBudget time.Duration) ([]View, error) {
	views := make([]View, 0, len(defs))
	for _, d := range defs {
		st, err := o.Read(ctx, d)
		if err != nil {
			return nil, err
		}
		views = append(views, View{Def: d, Docs: st.Docs, Search: st.Index, Sources: o.Sources(d, retryBudget), SearchProbe: o.SearchProbe()})
	}
	return views, nil
}
