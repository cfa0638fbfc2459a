// Package backend opens what the Readside commands run on, as the
// configuration says: NATS JetStream, the doc store and the search index,
// each either a real cluster (NATS, Redis, Elasticsearch) or embedded in the
// process (nats-server, bbolt, bleve) with its data under a data directory.
// Everything above the store drivers — the projector, the query API — is the
// same code either way.
package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/readside/readside/internal/assemble"
	"github.com/readside/readside/internal/config"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/bleveindex"
	"github.com/readside/readside/internal/sink/boltstore"
	"github.com/readside/readside/internal/sink/elasticindex"
	"github.com/readside/readside/internal/sink/redisstore"
	"github.com/readside/readside/internal/source"
	"github.com/readside/readside/projections"
)

// Conn is an open set of backends. Close it when done.
type Conn struct {
	NATS *nats.Conn
	// NATSServer is the embedded NATS server, nil with a real one.
	NATSServer *server.Server
	Stores     *Stores
}

// Open connects to the backends cfg names, starting the embedded ones. name
// identifies the process to NATS; the NATS connection's events go to log
// (config.NATSEvents).
func Open(ctx context.Context, cfg config.Backends, name string, log *slog.Logger) (_ *Conn, err error) {
	c := &Conn{}
	defer func() {
		if err != nil {
			c.Close() // what was opened before the failure
		}
	}()
	if cfg.EmbeddedNATS() {
		if c.NATSServer, err = startNATS(cfg); err != nil {
			return nil, err
		}
		c.NATS, err = nats.Connect("", append(config.NATSEvents(log), nats.Name(name), nats.InProcessServer(c.NATSServer))...)
		if err != nil {
			return nil, fmt.Errorf("connecting to the embedded NATS server: %w", err)
		}
	} else if c.NATS, err = cfg.NATS(name, log); err != nil {
		return nil, err
	}
	if c.Stores, err = OpenStores(cfg, log); err != nil {
		return nil, err
	}
	return c, nil
}

// OpenStores prepares the stores cfg names: clients of Redis and
// Elasticsearch (which connect when first used), or the embedded stores
// under cfg.DataDir (opened when a projection first asks for them). With
// cfg.Tracing on, the clients are traced, and so are the source requests of
// the Views.
func OpenStores(cfg config.Backends, log *slog.Logger) (*Stores, error) {
	s := &Stores{Log: log}
	if cfg.Tracing.On() {
		s.SourceTransport = cfg.Tracing.Transport(source.NewTransport())
	}
	if cfg.EmbeddedDocs() || cfg.EmbeddedSearch() {
		s.Embedded = NewEmbedded(cfg.DataDir, log)
	}
	if !cfg.EmbeddedDocs() {
		s.Redis = cfg.Redis()
		if err := cfg.Tracing.InstrumentRedis(s.Redis); err != nil {
			s.Close()
			return nil, err
		}
	}
	if !cfg.EmbeddedSearch() {
		es, err := cfg.Elastic()
		if err != nil {
			s.Close()
			return nil, err
		}
		s.Elastic = es
	}
	return s, nil
}

// startNATS starts JetStream in the process, its data under the data
// directory, listening on cfg.NATSListen (when set) for the replay tool and
// for event producers.
func startNATS(cfg config.Backends) (*server.Server, error) {
	o := &server.Options{JetStream: true, StoreDir: filepath.Join(cfg.DataDir, "jetstream"), NoSigs: true, NoLog: true, ServerName: "readside-embedded"}
	if cfg.NATSListen == "" {
		o.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(cfg.NATSListen)
		if err != nil {
			return nil, fmt.Errorf("-nats-listen %q: %w", cfg.NATSListen, err)
		}
		if o.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("-nats-listen %q: the port is not a number", cfg.NATSListen)
		}
		o.Host = host
		if o.Port > 0 { // -1 picks a free port
			ln, err := net.Listen("tcp", cfg.NATSListen)
			if err != nil {
				return nil, fmt.Errorf("-nats-listen %s: %w (another NATS running? give the embedded one another address)", cfg.NATSListen, err)
			}
			ln.Close()
		}
	}
	ns, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("the embedded NATS server did not start listening on %s within 10s: is the address taken? (-nats-listen)", cfg.NATSListen)
	}
	return ns, nil
}

// Close closes every connection and embedded backend.
func (c *Conn) Close() error {
	var errs []error
	if c.NATS != nil {
		c.NATS.Close()
	}
	if c.Stores != nil {
		errs = append(errs, c.Stores.Close())
	}
	if c.NATSServer != nil {
		c.NATSServer.Shutdown()
		c.NATSServer.WaitForShutdown()
	}
	return errors.Join(errs...)
}

// Stores opens projections' stores: on Redis when Redis is set, else
// embedded; on Elasticsearch when Elastic is set, else embedded.
type Stores struct {
	Redis    redis.UniversalClient
	Elastic  *elasticsearch.Client
	Embedded *Embedded
	// TombstoneTTL is how long the doc store keeps tombstones and a deleted
	// document's refs [sink.DefaultTombstoneTTL].
	TombstoneTTL time.Duration
	Log          *slog.Logger
	// SourceTransport sends the source requests of Sources (the query API's
	// fallback); nil: the source client's default.
	SourceTransport http.RoundTripper
}

// For opens def's stores to project into. On Elasticsearch it creates the
// index and alias when they do not exist and checks the mapping: new fields
// are added (and logged), a conflicting one is refused.
func (s *Stores) For(ctx context.Context, def *projections.Definition) (sink.Stores, error) {
	return s.open(ctx, def, true)
}

// Read opens def's stores to read only: Elasticsearch is not touched until
// a request comes. It is what the query API's views read (query.Views).
func (s *Stores) Read(ctx context.Context, def *projections.Definition) (sink.Stores, error) {
	return s.open(ctx, def, false)
}

// SearchProbe asks the search engine whether it answers at all (see
// ElasticProbe); nil for the embedded index, which has nothing to probe.
func (s *Stores) SearchProbe() func(ctx context.Context) error {
	if s.Elastic == nil {
		return nil
	}
	return ElasticProbe(s.Elastic)
}

// Sources are def's source clients for the query API's fallbacks, sending
// with SourceTransport, each request's retries bounded by retryBudget.
func (s *Stores) Sources(def *projections.Definition, retryBudget time.Duration) []assemble.Fetcher {
	return assemble.Clients(def, s.SourceTransport, retryBudget)
}

func (s *Stores) open(ctx context.Context, def *projections.Definition, prepare bool) (sink.Stores, error) {
	out, err := s.ReadDocs(def)
	if err != nil {
		return out, err
	}
	out.Index, out.IndexName, err = s.index(ctx, def, prepare)
	return out, err
}

// ReadDocs opens def's doc store and reverse lookups alone (Index unset):
// what For and Read start from, and what replay reads directly when only
// the search index is embedded, and so belongs to the projector.
func (s *Stores) ReadDocs(def *projections.Definition) (sink.Stores, error) {
	var out sink.Stores
	switch {
	case s.Redis != nil:
		out.Docs, out.DocsName = redisstore.New(s.Redis, redisstore.Options{KeyPattern: def.Redis.Key, TombstoneTTL: s.TombstoneTTL}), "redis"
		out.Refs = redisstore.NewRefs(s.Redis, sink.RefsPrefix(def.Name), s.TombstoneTTL)
	case s.Embedded != nil:
		db, err := s.Embedded.bolt()
		if err != nil {
			return out, err
		}
		out.Docs, out.DocsName = db.Docs(def.Name, s.TombstoneTTL), "embedded-docs"
		out.Refs = db.Refs(def.Name, s.TombstoneTTL)
	default:
		return out, errors.New("backend: no doc store: set Redis or Embedded")
	}
	return out, nil
}

// ReadIndex opens def's search index alone, with its name, to read only:
// what replay reads directly when only the doc store is embedded.
func (s *Stores) ReadIndex(ctx context.Context, def *projections.Definition) (sink.Index, string, error) {
	return s.index(ctx, def, false)
}

// index opens def's search index; prepare: see For.
func (s *Stores) index(ctx context.Context, def *projections.Definition, prepare bool) (sink.Index, string, error) {
	switch {
	case s.Elastic != nil:
		es := elasticindex.New(s.Elastic, elasticindex.Options{Alias: def.Elasticsearch.Alias, Mapping: def.Mapping(), Fields: def.Fields})
		if !prepare {
			return es, "elasticsearch", nil
		}
		if err := es.Ensure(ctx); err != nil {
			return nil, "", fmt.Errorf("projection %s: elasticsearch: %w", def.Name, err)
		}
		added, err := es.CheckMapping(ctx)
		if err != nil {
			return nil, "", fmt.Errorf("projection %s: %w", def.Name, err)
		}
		if len(added) > 0 && s.Log != nil {
			s.Log.Warn("new fields added to the index mapping; documents gain them as they are projected again (replay all fills them now)",
				"projection", def.Name, "alias", def.Elasticsearch.Alias, "fields", added)
		}
		return es, "elasticsearch", nil
	case s.Embedded != nil:
		idx, err := s.Embedded.index(def)
		if err != nil {
			return nil, "", err
		}
		return idx, "embedded-search", nil
	default:
		return nil, "", errors.New("backend: no search index: set Elastic or Embedded")
	}
}

// ElasticProbe asks Elasticsearch through es for its cluster health as the
// node it reaches sees it: a ping, since HEAD / is missing from some
// distributions (the integration-test zip answers 405).
func ElasticProbe(es *elasticsearch.Client) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		h := es.Cluster.Health
		res, err := h(h.WithContext(ctx), h.WithLocal(true))
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.IsError() {
			return errors.New(res.Status())
		}
		return nil
	}
}

// Check asks each store whether it answers, within 1s at most: nil for one
// that does, else why not, keyed "redis", "elasticsearch" or "embedded"
// (up while the process runs). Safe for concurrent use.
func (s *Stores) Check(ctx context.Context) map[string]error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	state := map[string]error{}
	if s.Redis != nil {
		state["redis"] = s.Redis.Ping(ctx).Err()
	}
	if s.Elastic != nil {
		state["elasticsearch"] = ElasticProbe(s.Elastic)(ctx)
	}
	if s.Embedded != nil {
		state["embedded"] = nil
	}
	return state
}

// Ready reports each store's state for a readiness probe: "up" or "down"
// (why, at debug level in the log).
func (s *Stores) Ready(ctx context.Context) map[string]string {
	state := map[string]string{}
	for name, err := range s.Check(ctx) {
		state[name] = "up"
		if err != nil {
			state[name] = "down"
			if s.Log != nil {
				s.Log.Debug("readiness: a store does not answer", "store", name, "err", err)
			}
		}
	}
	return state
}

// Close closes the clients and the embedded stores.
func (s *Stores) Close() error {
	var errs []error
	if s.Redis != nil {
		errs = append(errs, s.Redis.Close())
	}
	if s.Embedded != nil {
		errs = append(errs, s.Embedded.Close())
	}
	return errors.Join(errs...)
}

// Embedded are the stores kept in the process under one data directory: a
// bbolt file for every projection's documents and refs ("docs.db"), and a
// bleve index per projection ("search/<projection>"). They are opened on
// first use and shared by everything in the process that asks for them:
// bbolt locks its file, so a second process using the same directory fails
// with a clear error instead of corrupting it.
type Embedded struct {
	dir string
	log *slog.Logger

	mu      sync.Mutex
	db      *boltstore.DB
	indices map[string]*bleveindex.Index
}

// NewEmbedded keeps the stores under dir.
func NewEmbedded(dir string, log *slog.Logger) *Embedded {
	return &Embedded{dir: dir, log: log, indices: map[string]*bleveindex.Index{}}
}

func (e *Embedded) bolt() (*boltstore.DB, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.db == nil {
		db, err := boltstore.Open(filepath.Join(e.dir, "docs.db"), boltstore.Options{})
		if err != nil {
			return nil, err
		}
		e.db = db
	}
	return e.db, nil
}

func (e *Embedded) index(def *projections.Definition) (*bleveindex.Index, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if idx := e.indices[def.Name]; idx != nil {
		return idx, nil
	}
	idx, err := bleveindex.Open(filepath.Join(e.dir, "search", def.Name), bleveindex.Options{Name: def.Name, Fields: def.Fields, Log: e.log})
	if err != nil {
		return nil, fmt.Errorf("projection %s: embedded search index: %w", def.Name, err)
	}
	e.indices[def.Name] = idx
	return idx, nil
}

// Close closes the stores opened so far.
func (e *Embedded) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	for name, idx := range e.indices {
		errs = append(errs, idx.Close())
		delete(e.indices, name)
	}
	if e.db != nil {
		errs = append(errs, e.db.Close())
		e.db = nil
	}
	return errors.Join(errs...)
}
