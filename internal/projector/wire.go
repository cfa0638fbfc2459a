package projector

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/redis/go-redis/v9"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/source"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/projections"
)

// Env is what every projection of a process shares: connections, logs, metrics.
type Env struct {
	Streams      *stream.Setup
	Redis        redis.UniversalClient
	Elastic      *elasticsearch.Client
	Transport    http.RoundTripper // for source requests; nil: the source client's default
	Log          *slog.Logger
	Metrics      *Metrics
	TombstoneTTL time.Duration // how long Redis keeps tombstones [the sink's default]
	// SourceRetryBudget bounds the retries of one source request before the
	// id is retried later with backoff [3s]. Short, so a source outage is
	// noticed fast and pulling pauses.
	SourceRetryBudget time.Duration
}

// ForDefinition prepares one projection: its Elasticsearch index and alias,
// its durable consumer, its source client (with a circuit breaker) and its
// stores, and returns the Projector ready to Run.
func ForDefinition(ctx context.Context, def *projections.Definition, env Env, o Options) (*Projector, error) {
	o.defaults()
	es := sink.NewElastic(env.Elastic, sink.ElasticOptions{Alias: def.Elasticsearch.Alias, Mapping: def.Mapping()})
	if err := es.Ensure(ctx); err != nil {
		return nil, fmt.Errorf("projection %s: elasticsearch: %w", def.Name, err)
	}
	rd := sink.NewRedis(env.Redis, sink.RedisOptions{KeyPattern: def.Redis.Key, TombstoneTTL: env.TombstoneTTL})
	var subjects []string
	for _, t := range def.Triggers {
		subjects = append(subjects, t.Subject)
	}
	cons, err := env.Streams.Consumer(ctx, def.Name, subjects, stream.ConsumerConfig{AckWait: o.AckWait})
	if err != nil {
		return nil, fmt.Errorf("projection %s: %w", def.Name, err)
	}
	budget := env.SourceRetryBudget
	if budget <= 0 {
		budget = 3 * time.Second
	}
	src := source.New(source.Options{Timeout: def.SourceTimeout(0), MaxElapsed: budget, Transport: env.Transport})
	stores := []NamedStore{{Name: "redis", Store: rd}, {Name: "elasticsearch", Store: es}}
	return New(def, cons, source.WithBreaker(src, def.Name+"/"+def.Sources[0].Name), stores, env.Streams, env.Log, env.Metrics, o), nil
}
