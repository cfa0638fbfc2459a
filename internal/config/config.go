// Package config holds the deployment settings the Readside commands share:
// where NATS, Redis and Elasticsearch are, read from flags with environment
// variable defaults. Secrets never reach a log line.
package config

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/readside/readside/internal/telemetry"
	"github.com/readside/readside/projections"
)

// Secret is a string that prints as "[redacted]" in logs and %v.
type Secret string

func (s Secret) String() string { return redact(string(s)) }

// LogValue keeps the secret out of slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redact(string(s))) }

// MarshalJSON keeps the secret out of JSON, such as slog's JSON handler
// logging a struct that holds it.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(redact(string(s))) }

func redact(s string) string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// Embedded is the value of -nats-url, -redis-addr or -es-urls that runs that
// backend inside the process instead: NATS JetStream through nats-server,
// the doc store on bbolt, the search index on bleve, all keeping their data
// under DataDir. Embedded stores belong to one process (the demo runs the
// projector and the query API in one); real backends are shared by any
// number of processes.
const Embedded = "embedded"

// Backends are the addresses and credentials of NATS, Redis and
// Elasticsearch, each of which may be Embedded.
type Backends struct {
	NATSURL    string
	NATSCreds  string // a credentials file
	NATSListen string // where the embedded NATS server listens for other processes; "" for none

	DataDir string // where embedded backends keep their data

	RedisAddrs    []string // one address, or several for Redis Cluster
	RedisUsername string
	RedisPassword Secret
	RedisTLS      bool

	ElasticURLs     []string
	ElasticUsername string
	ElasticPassword Secret
	ElasticAPIKey   Secret
	ElasticCACert   string // a PEM file

	// Tracing, set by main (not a flag: the OTEL_* environment configures
	// it), instruments the Elasticsearch client and, in backend.OpenStores,
	// the Redis client and the query API's source clients. Nil: off.
	Tracing *telemetry.Tracing
}

// Register declares the flags on fs, each defaulting to its environment variable.
func (b *Backends) Register(fs *flag.FlagSet) {
	fs.StringVar(&b.NATSURL, "nats-url", Env("READSIDE_NATS_URL", nats.DefaultURL), "NATS server URL(s), comma-separated, or embedded [$READSIDE_NATS_URL]")
	fs.StringVar(&b.NATSListen, "nats-listen", Env("READSIDE_NATS_LISTEN", "127.0.0.1:4222"), "with -nats-url embedded: the address the embedded NATS server listens on, for replay and event producers; empty for none [$READSIDE_NATS_LISTEN]")
	fs.StringVar(&b.DataDir, "data-dir", Env("READSIDE_DATA_DIR", "readside-data"), "where embedded backends keep their data [$READSIDE_DATA_DIR]")
	fs.StringVar(&b.NATSCreds, "nats-creds", Env("READSIDE_NATS_CREDS", ""), "NATS credentials file [$READSIDE_NATS_CREDS]")
	fs.Func("redis-addr", "Redis address; several, comma-separated, for Redis Cluster; or embedded [$READSIDE_REDIS_ADDR] (default 127.0.0.1:6379)", listFlag(&b.RedisAddrs))
	b.RedisAddrs = split(Env("READSIDE_REDIS_ADDR", "127.0.0.1:6379"))
	fs.StringVar(&b.RedisUsername, "redis-username", Env("READSIDE_REDIS_USERNAME", ""), "Redis ACL user name [$READSIDE_REDIS_USERNAME]")
	b.RedisPassword = Secret(Env("READSIDE_REDIS_PASSWORD", ""))
	fs.Func("redis-password", "Redis password [$READSIDE_REDIS_PASSWORD]", func(s string) error { b.RedisPassword = Secret(s); return nil })
	fs.BoolVar(&b.RedisTLS, "redis-tls", EnvBool("READSIDE_REDIS_TLS", false), "connect to Redis over TLS [$READSIDE_REDIS_TLS=true]")
	fs.Func("es-urls", "Elasticsearch URL(s), comma-separated; or embedded [$READSIDE_ES_URLS] (default http://127.0.0.1:9200)", listFlag(&b.ElasticURLs))
	b.ElasticURLs = split(Env("READSIDE_ES_URLS", "http://127.0.0.1:9200"))
	fs.StringVar(&b.ElasticUsername, "es-username", Env("READSIDE_ES_USERNAME", ""), "Elasticsearch basic auth user [$READSIDE_ES_USERNAME]")
	b.ElasticPassword = Secret(Env("READSIDE_ES_PASSWORD", ""))
	fs.Func("es-password", "Elasticsearch basic auth password [$READSIDE_ES_PASSWORD]", func(s string) error { b.ElasticPassword = Secret(s); return nil })
	b.ElasticAPIKey = Secret(Env("READSIDE_ES_API_KEY", ""))
	fs.Func("es-api-key", "Elasticsearch API key [$READSIDE_ES_API_KEY]", func(s string) error { b.ElasticAPIKey = Secret(s); return nil })
	fs.StringVar(&b.ElasticCACert, "es-ca-cert", Env("READSIDE_ES_CA_CERT", ""), "PEM file of the CA that signed Elasticsearch's certificate [$READSIDE_ES_CA_CERT]")
}

// Validate reports every problem at once.
func (b *Backends) Validate() error {
	var errs []error
	if b.NATSURL == "" {
		errs = append(errs, errors.New("-nats-url is empty"))
	}
	if len(b.RedisAddrs) == 0 {
		errs = append(errs, errors.New("-redis-addr is empty"))
	}
	if len(b.ElasticURLs) == 0 {
		errs = append(errs, errors.New("-es-urls is empty"))
	}
	if slices.Contains(b.RedisAddrs, Embedded) && len(b.RedisAddrs) > 1 {
		errs = append(errs, errors.New("-redis-addr: embedded stands alone, not in a list of addresses"))
	}
	if slices.Contains(b.ElasticURLs, Embedded) && len(b.ElasticURLs) > 1 {
		errs = append(errs, errors.New("-es-urls: embedded stands alone, not in a list of URLs"))
	}
	if (b.EmbeddedNATS() || b.EmbeddedDocs() || b.EmbeddedSearch()) && b.DataDir == "" {
		errs = append(errs, errors.New("-data-dir is empty: embedded backends keep their data there"))
	}
	for _, u := range b.ElasticURLs {
		if u != Embedded && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			errs = append(errs, fmt.Errorf("-es-urls: %q is not an http(s) URL", u))
		}
	}
	if b.ElasticAPIKey != "" && b.ElasticUsername != "" {
		errs = append(errs, errors.New("-es-api-key and -es-username are exclusive: choose one way to authenticate"))
	}
	return errors.Join(errs...)
}

// EmbeddedNATS reports whether NATS JetStream runs inside the process.
func (b *Backends) EmbeddedNATS() bool { return b.NATSURL == Embedded }

// EmbeddedDocs reports whether the doc store runs inside the process.
func (b *Backends) EmbeddedDocs() bool { return len(b.RedisAddrs) > 0 && b.RedisAddrs[0] == Embedded }

// EmbeddedSearch reports whether the search index runs inside the process.
func (b *Backends) EmbeddedSearch() bool {
	return len(b.ElasticURLs) > 0 && b.ElasticURLs[0] == Embedded
}

// NATS connects to NATS, reconnecting forever: an outage is waited out. The
// connection's events go to log (see NATSEvents); opts come after the
// defaults, so they may override them.
func (b *Backends) NATS(name string, log *slog.Logger, opts ...nats.Option) (*nats.Conn, error) {
	all := append([]nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second)}, NATSEvents(log)...)
	if b.NATSCreds != "" {
		all = append(all, nats.UserCredentials(b.NATSCreds))
	}
	nc, err := nats.Connect(b.NATSURL, append(all, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS at %s: %w", b.NATSURL, err)
	}
	return nc, nil
}

// NATSEvents are the connection options that log a NATS connection's
// events on log, each with the server's URL: connected (INFO), the
// connection lost (WARN: nats.go reconnects, and until it does nothing is
// consumed, acknowledged or published), reconnected (INFO), closed with an
// error (ERROR; a deliberate Close or Drain logs at INFO), and asynchronous
// errors such as a slow consumer or a permission refused (ERROR). A nil log
// gives no options.
func NATSEvents(log *slog.Logger) []nats.Option {
	if log == nil {
		return nil
	}
	var last atomic.Pointer[string] // the URL of the server last connected to
	url := func(nc *nats.Conn) string {
		if u := nc.ConnectedUrlRedacted(); u != "" {
			last.Store(&u)
			return u
		}
		if u := last.Load(); u != nil {
			return *u
		}
		return ""
	}
	return []nats.Option{
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("NATS connected", "url", url(nc), "server", nc.ConnectedServerName())
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() {
				return // the closed handler says why
			}
			log.Warn("NATS connection lost: reconnecting; until then nothing is consumed, acknowledged or published",
				"url", url(nc), "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS reconnected", "url", url(nc), "server", nc.ConnectedServerName())
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if err := nc.LastError(); err != nil {
				log.Error("NATS connection closed", "url", url(nc), "err", err)
				return
			}
			log.Info("NATS connection closed", "url", url(nc))
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Error("NATS error", "url", url(nc), "subject", subject, "err", err)
		}),
	}
}

// The Redis client settings of every command, which the benchmarks
// (internal/benchkit, cmd/querybench/baseline) use too, to measure what runs.
const (
	RedisPoolSize = 64              // connections per node
	RedisTimeout  = 3 * time.Second // read and write timeout of one command
)

// Redis returns a client: a cluster client when several addresses are given.
func (b *Backends) Redis() redis.UniversalClient {
	o := &redis.UniversalOptions{
		Addrs: b.RedisAddrs, Username: b.RedisUsername, Password: string(b.RedisPassword),
		PoolSize: RedisPoolSize, ReadTimeout: RedisTimeout, WriteTimeout: RedisTimeout,
		// Calls end at their context's deadline, not only at ReadTimeout: the
		// query API gives Redis part of a request's deadline.
		ContextTimeoutEnabled: true,
	}
	if b.RedisTLS {
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if len(b.RedisAddrs) > 1 {
		co := o.Cluster()
		co.ClusterStateReloadInterval = clusterReloadInterval
		c := redis.NewClusterClient(co)
		c.AddHook(reloadOnFailure{c: c})
		return c
	}
	return redis.NewClient(o.Simple())
}

// Elastic returns an Elasticsearch client.
func (b *Backends) Elastic() (*elasticsearch.Client, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, ResponseHeaderTimeout: 30 * time.Second}
	if b.ElasticCACert != "" {
		pem, err := os.ReadFile(b.ElasticCACert)
		if err != nil {
			return nil, fmt.Errorf("-es-ca-cert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-es-ca-cert: %s holds no PEM certificate", b.ElasticCACert)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	c, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses: b.ElasticURLs, Username: b.ElasticUsername, Password: string(b.ElasticPassword),
		APIKey: string(b.ElasticAPIKey), Transport: tr,
		Instrumentation: b.Tracing.ElasticInstrumentation(),
	})
	if err != nil {
		return nil, fmt.Errorf("elasticsearch client: %w", err)
	}
	return c, nil
}

// Env returns the environment variable name, or def when it is unset or empty.
func Env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// EnvInt is Env for an integer; a value that does not parse gives def, and
// CheckEnv reports it.
func EnvInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return n
	}
	return def
}

// EnvBool is Env for a boolean: what strconv.ParseBool takes (1, t, true,
// TRUE, 0, f, false, ...); a value that does not parse gives def, and
// CheckEnvBools reports it.
func EnvBool(name string, def bool) bool {
	if b, err := strconv.ParseBool(os.Getenv(name)); err == nil {
		return b
	}
	return def
}

// CheckEnvBools reports every variable of names set to what is not a boolean.
func CheckEnvBools(names ...string) error {
	var errs []error
	for _, n := range names {
		if v, ok := os.LookupEnv(n); ok && v != "" {
			if _, err := strconv.ParseBool(v); err != nil {
				errs = append(errs, fmt.Errorf("$%s: %q is not a boolean such as true or false", n, v))
			}
		}
	}
	return errors.Join(errs...)
}

// EnvDuration is Env for a duration; a value that does not parse gives def,
// and CheckEnv reports it.
func EnvDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return def
}

// CheckEnv reports every set environment variable among ints and durations
// whose value does not parse, so a typo is an error, not a silent default.
func CheckEnv(ints, durations []string) error {
	var errs []error
	for _, n := range ints {
		if v, ok := os.LookupEnv(n); ok && v != "" {
			if _, err := strconv.Atoi(v); err != nil {
				errs = append(errs, fmt.Errorf("$%s: %q is not an integer", n, v))
			}
		}
	}
	for _, n := range durations {
		if v, ok := os.LookupEnv(n); ok && v != "" {
			if _, err := time.ParseDuration(v); err != nil {
				errs = append(errs, fmt.Errorf("$%s: %q is not a duration such as 30s or 5m", n, v))
			}
		}
	}
	return errors.Join(errs...)
}

func listFlag(dst *[]string) func(string) error {
	return func(s string) error { *dst = split(s); return nil }
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Logger builds the process logger writing to w: level debug|info|warn|error,
// format text|json.
func Logger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	o := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("-log-format: %q is neither text nor json", format)
}

// Common is what every Readside daemon reads: the backends, the projection
// definitions, and how to log.
type Common struct {
	Backends
	Definitions string
	LogLevel    string
	LogFormat   string
}

// Register declares the common flags on fs, each defaulting to its environment variable.
func (c *Common) Register(fs *flag.FlagSet) {
	c.Backends.Register(fs)
	fs.StringVar(&c.Definitions, "definitions", Env("READSIDE_DEFINITIONS", ""), "projection definition file, or directory of *.yaml files [$READSIDE_DEFINITIONS]")
	fs.StringVar(&c.LogLevel, "log-level", Env("READSIDE_LOG_LEVEL", "info"), "debug, info, warn or error [$READSIDE_LOG_LEVEL]")
	fs.StringVar(&c.LogFormat, "log-format", Env("READSIDE_LOG_FORMAT", "text"), "text or json [$READSIDE_LOG_FORMAT]")
}

// Validate reports every problem of the common settings at once.
func (c *Common) Validate() error {
	errs := []error{c.Backends.Validate(), CheckEnvBools("READSIDE_REDIS_TLS")}
	if c.Definitions == "" {
		errs = append(errs, errors.New("-definitions is required: a projection definition file or a directory of them"))
	}
	return errors.Join(errs...)
}

// Logger builds the process logger writing to w.
func (c *Common) Logger(w io.Writer) (*slog.Logger, error) { return Logger(w, c.LogLevel, c.LogFormat) }

// Start builds the logger writing to w and loads the definitions: what a
// daemon does first. A broken definition fails it with every problem listed.
func (c *Common) Start(w io.Writer) (*slog.Logger, []*projections.Definition, error) {
	log, err := c.Logger(w)
	if err != nil {
		return nil, nil, err
	}
	defs, err := projections.LoadDir(c.Definitions, projections.Options{})
	if err != nil {
		return nil, nil, fmt.Errorf("loading definitions:\n%w", err)
	}
	return log, defs, nil
}

// NewFlagSet returns a flag set for command name that prints usage (the
// usage line and a description) and its flags to out, and returns errors
// instead of exiting.
func NewFlagSet(name, usage, description string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: %s\n\n%s\nEvery flag reads the environment variable in brackets.\n\nFlags:\n", usage, description)
		fs.PrintDefaults()
	}
	return fs
}

// Run runs a daemon's body until SIGINT or SIGTERM (a second signal stops
// the process at once) and returns its exit code, printing the error, if
// any, prefixed with name. main passes the code to os.Exit.
func Run(name string, body func(ctx context.Context) error) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop)
	if err := body(ctx); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0 // -h, -help: the usage was asked for and shown
		}
		fmt.Fprintln(os.Stderr, name+":", err)
		return 1
	}
	return 0
}
