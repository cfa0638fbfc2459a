package elasticindex_test

import (
	"testing"

	"github.com/readside/readside/internal/sink/elasticindex"
	"github.com/readside/readside/internal/sink/sinktest"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
)

func TestElasticSearchConformance(t *testing.T) {
	t.Parallel()
	sinktest.RunSearch(t, func(t *testing.T, def *projections.Definition) sinktest.SearchStore {
		ns := testenv.Namespace(t)
		e := elasticindex.New(testenv.Elastic(t, ns), elasticindex.Options{
			Alias: ns + "-" + def.Name, Mapping: def.Mapping(), Fields: def.Fields, Settings: testSettings,
		})
		if err := e.Ensure(sinktest.Context(t)); err != nil {
			t.Fatalf("Ensure: %v", err)
		}
		return e
	})
}
