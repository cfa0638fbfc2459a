package stream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
)

// setupAll ensures the streams with cfg and the three consumers of
// projection "shops", as a projector does at start.
func setupAll(t *testing.T, js jetstream.JetStream, cfg stream.Config) (*stream.Setup, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := stream.Ensure(ctx, js, cfg, []string{cfg.Events + ".shop.changed.*", projections.ReplayPrefix + cfg.Events, projections.RetryPrefix + cfg.Events})
	if err != nil {
		return nil, err
	}
	if _, err := s.Consumer(ctx, "shops", []string{cfg.Events + ".shop.changed.*"}, stream.ConsumerConfig{}); err != nil {
		return nil, err
	}
	if _, err := s.ReplayConsumer(ctx, "shops", projections.ReplayPrefix+cfg.Events, stream.ConsumerConfig{}); err != nil {
		return nil, err
	}
	if _, err := s.RetryConsumer(ctx, "shops", projections.RetryPrefix+cfg.Events, stream.ConsumerConfig{}); err != nil {
		return nil, err
	}
	return s, nil
}

// streamOf is the stream of consumer name under cfg (the own stream but for
// the live consumer).
func streamOf(cfg stream.Config, name string) string {
	if name == stream.ConsumerName("shops") {
		return cfg.Events
	}
	return cfg.Own
}

var consumerNames = []string{stream.ConsumerName("shops"), stream.ReplayConsumerName("shops"), stream.RetryConsumerName("shops")}

// checkReplicas fails the test unless both streams and the three consumers
// are configured with want replicas and, within 30s, have want-1 peers
// besides their leader.
func checkReplicas(t *testing.T, js jetstream.JetStream, cfg stream.Config, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var problems []string
		for _, name := range []string{cfg.Events, cfg.Own, cfg.DeadLetter} {
			s, err := js.Stream(ctx, name)
			if err != nil {
				problems = append(problems, "stream "+name+": "+err.Error())
				continue
			}
			info := s.CachedInfo()
			if info.Config.Replicas != want {
				t.Fatalf("stream %s is configured with %d replicas, want %d", name, info.Config.Replicas, want)
			}
			if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != want-1 || info.Cluster.Desired != nil {
				problems = append(problems, "stream "+name+": "+clusterString(info.Cluster))
			}
		}
		for _, name := range consumerNames {
			c, err := js.Consumer(ctx, streamOf(cfg, name), name)
			if err != nil {
				problems = append(problems, "consumer "+name+": "+err.Error())
				continue
			}
			info := c.CachedInfo()
			if info.Config.Replicas != want {
				t.Fatalf("consumer %s is configured with %d replicas, want %d", name, info.Config.Replicas, want)
			}
			if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != want-1 {
				problems = append(problems, "consumer "+name+": "+clusterString(info.Cluster))
			}
		}
		if len(problems) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not %d servers each after 30s:\n%s", want, strings.Join(problems, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func clusterString(c *jetstream.ClusterInfo) string {
	if c == nil {
		return "no cluster info"
	}
	b, _ := json.Marshal(c)
	return string(b)
}

// jsz reads server i's monitoring endpoint /jsz with every stream, its
// consumers and their configurations.
func jsz(t *testing.T, c *testenv.NATSCluster, i int) *server.JSInfo {
	t.Helper()
	res, err := http.Get(c.MonitorURL(i) + "/jsz?streams=true&consumers=true&config=true")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var info server.JSInfo
	if err := json.NewDecoder(res.Body).Decode(&info); err != nil {
		t.Fatal(err)
	}
	return &info
}

// servers counts the servers that the /jsz of server self says hold a
// stream or consumer: itself, the leader and the replicas it lists (the
// others, or the leader's followers).
func servers(c *server.ClusterInfo, self string) int {
	if c == nil {
		return 0
	}
	names := map[string]bool{self: true}
	if c.Leader != "" {
		names[c.Leader] = true
	}
	for _, p := range c.Replicas {
		names[p.Name] = true
	}
	return len(names)
}

// jszString shows the configured replicas (of a *server.StreamConfig or
// *server.ConsumerConfig) and the cluster that /jsz reports.
func jszString(cfg any, c *server.ClusterInfo) string {
	var replicas struct {
		Replicas int `json:"num_replicas"`
	}
	b, _ := json.Marshal(cfg)
	json.Unmarshal(b, &replicas)
	cb, _ := json.Marshal(c)
	return fmt.Sprintf("configured with %d replicas, cluster %s", replicas.Replicas, cb)
}

// logTo returns a logger writing text lines to buf.
func logTo(buf *testenv.Buffer) *slog.Logger { return slog.New(slog.NewTextHandler(buf, nil)) }

// On a 3-server cluster, Ensure creates both streams and the consumers with
// the replicas asked for, visible in their info and on every server's /jsz;
// started again with another count, it changes the existing streams and
// consumers, down and up, and logs each change at WARN; a count the cluster
// cannot hold is refused with NATS's reason and the ways out.
func TestReplicasOnCluster(t *testing.T) {
	c := testenv.StartNATSCluster(t, 3)
	_, js := c.Connect(t)
	ns := testenv.Namespace(t)
	var logs testenv.Buffer
	cfg := stream.Config{Events: ns + "_EVENTS", Own: ns + "_OWN", DeadLetter: ns + "_DLQ", DLQPrefix: ns + ".dlq", Replicas: 3, Log: logTo(&logs)}

	if _, err := setupAll(t, js, cfg); err != nil {
		t.Fatal(err)
	}
	checkReplicas(t, js, cfg, 3)
	if logs.String() != "" {
		t.Errorf("creating the streams logged:\n%s", logs.String())
	}
	for i := range 3 {
		seen := map[string]bool{}
		for _, acc := range jsz(t, c, i).AccountDetails {
			for _, sd := range acc.Streams {
				if sd.Name != cfg.Events && sd.Name != cfg.Own && sd.Name != cfg.DeadLetter {
					continue
				}
				seen[sd.Name] = true
				if i == 0 {
					t.Logf("n0 /jsz: stream %s: %s", sd.Name, jszString(sd.Config, sd.Cluster))
				}
				if sd.Config == nil || sd.Config.Replicas != 3 || servers(sd.Cluster, fmt.Sprintf("n%d", i)) != 3 {
					t.Errorf("n%d /jsz: stream %s: %s; want 3 replicas", i, sd.Name, jszString(sd.Config, sd.Cluster))
				}
				for _, ci := range sd.Consumer {
					seen[ci.Name] = true
					if ci.Config == nil || ci.Config.Replicas != 3 || servers(ci.Cluster, fmt.Sprintf("n%d", i)) != 3 {
						t.Errorf("n%d /jsz: consumer %s: %s; want 3 replicas", i, ci.Name, jszString(ci.Config, ci.Cluster))
					}
				}
			}
		}
		for _, name := range append([]string{cfg.Events, cfg.Own, cfg.DeadLetter}, consumerNames...) {
			if !seen[name] {
				t.Errorf("n%d /jsz does not list %s: every server keeps a replica of it", i, name)
			}
		}
	}

	// Down to one replica, then up again: the consumers follow.
	for _, want := range []int{1, 3} {
		logs = testenv.Buffer{}
		cfg.Log = logTo(&logs)
		cfg.Replicas = want
		start := time.Now()
		if _, err := setupAll(t, js, cfg); err != nil {
			t.Fatalf("to %d replicas: %v", want, err)
		}
		t.Logf("changed to %d replicas in %s", want, time.Since(start).Round(time.Millisecond))
		checkReplicas(t, js, cfg, want)
		from := map[int]string{1: "3", 3: "1"}[want]
		for _, name := range []string{cfg.Events, cfg.DeadLetter} {
			if !hasLine(logs.String(), "level=WARN", `msg="stream replicas changed`, "stream="+name+" ", "from="+from, "to="+itoa(want)) {
				t.Errorf("no WARN line for stream %s from %s to %d replicas in:\n%s", name, from, want, logs.String())
			}
		}
		for _, name := range consumerNames {
			if !hasLine(logs.String(), "level=WARN", `msg="consumer replicas changed"`, "consumer="+name+" ", "from="+from, "to="+itoa(want)) {
				t.Errorf("no WARN line for consumer %s from %s to %d replicas in:\n%s", name, from, want, logs.String())
			}
		}
	}

	// More replicas than servers: an existing stream is left as it is.
	cfg.Replicas = 5
	_, err := setupAll(t, js, cfg)
	var re *stream.ReplicasError
	if !errors.As(err, &re) || re.Stream != cfg.Events || re.Have != 3 || re.Want != 5 {
		t.Fatalf("to 5 replicas on 3 servers: %v, want a ReplicasError for %s from 3 to 5", err, cfg.Events)
	}
	for _, want := range []string{cfg.Events, "3 replica(s) and 5 are wanted", "no suitable peers", "needs a JetStream server of its own",
		"-stream-replicas 3", "nats stream edit " + cfg.Events + " --replicas 5"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	checkReplicas(t, js, stream.Config{Events: cfg.Events, Own: cfg.Own, DeadLetter: cfg.DeadLetter}, 3)

	// A new stream with more replicas than servers.
	_, err = stream.Ensure(context.Background(), js, stream.Config{Events: ns + "_NEW", Own: ns + "_NEWOWN", DeadLetter: ns + "_NEWDLQ", DLQPrefix: ns + ".newdlq", Replicas: 4}, []string{ns + ".new.>"})
	for _, want := range []string{"create " + ns + "_NEW with 4 replicas", "no suitable peers", "lower -stream-replicas"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("creating a stream of 4 replicas on 3 servers: %v, want it to mention %q", err, want)
		}
	}
}

// A single NATS server keeps one replica: Ensure refuses more, clearly, for
// a new stream and for an existing one, which it leaves as it is.
func TestReplicasOnSingleServer(t *testing.T) {
	_, js := testenv.StartJetStream(t).Connect(t)
	cfg := stream.Config{Events: "EVENTS", Own: "OWN", DeadLetter: "DLQ"}
	if _, err := setupAll(t, js, cfg); err != nil {
		t.Fatal(err)
	}
	for _, name := range consumerNames {
		c, err := js.Consumer(context.Background(), streamOf(cfg, name), name)
		if err != nil {
			t.Fatal(err)
		}
		if r := c.CachedInfo().Config.Replicas; r != 1 {
			t.Errorf("consumer %s: %d replicas, want 1, set explicitly", name, r)
		}
	}
	cfg.Replicas = 3
	_, err := setupAll(t, js, cfg)
	var re *stream.ReplicasError
	if !errors.As(err, &re) {
		t.Fatalf("3 replicas on one server: %v, want a ReplicasError", err)
	}
	for _, want := range []string{"EVENTS has 1 replica(s) and 3 are wanted", "not supported in non-clustered mode",
		"not part of a cluster", "-stream-replicas 1", "nats stream edit EVENTS --replicas 3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	s, err := js.Stream(context.Background(), "EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	if r := s.CachedInfo().Config.Replicas; r != 1 {
		t.Errorf("the refused stream has %d replicas now, want 1", r)
	}

	_, err = stream.Ensure(context.Background(), js, stream.Config{Events: "NEW", Own: "NEWOWN", DeadLetter: "NEWDLQ", DLQPrefix: "new.dlq", Replicas: 3}, []string{"new.>"})
	if err == nil || !strings.Contains(err.Error(), "create NEW with 3 replicas") || !strings.Contains(err.Error(), "lower -stream-replicas") {
		t.Errorf("a new stream of 3 replicas on one server: %v, want a clear refusal", err)
	}
	for _, n := range []int{-1, 6} {
		if _, err := stream.Ensure(context.Background(), js, stream.Config{Replicas: n}, []string{"x.>"}); err == nil || !strings.Contains(err.Error(), "1 to 5") {
			t.Errorf("%d replicas: %v, want an error saying 1 to 5", n, err)
		}
	}
}

// countingJS counts stream-info requests.
type countingJS struct {
	jetstream.JetStream
	n atomic.Int64
}

func (c *countingJS) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	c.n.Add(1)
	return c.JetStream.Stream(ctx, name)
}

// A probe asks NATS once for a burst of checks, keeps the answer for its ttl,
// reports a missing stream, and logs each change of state once.
func TestProbe(t *testing.T) {
	_, js := testenv.StartJetStream(t).Connect(t)
	ctx := context.Background()
	if _, err := stream.Ensure(ctx, js, stream.Config{}, []string{"p.>"}); err != nil {
		t.Fatal(err)
	}
	cjs := &countingJS{JetStream: js}
	var logs testenv.Buffer
	const ttl = 300 * time.Millisecond
	p := stream.NewProbe(cjs, "READSIDE_EVENTS", time.Second, ttl, logTo(&logs))
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if err := p.Check(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := cjs.n.Load(); n != 1 {
		t.Errorf("50 checks at once asked NATS %d times, want 1", n)
	}

	if err := js.DeleteStream(ctx, "READSIDE_EVENTS"); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(ctx); err != nil {
		t.Errorf("within the ttl: %v, want the kept answer", err)
	}
	time.Sleep(ttl)
	for range 3 {
		err := p.Check(ctx)
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("a deleted stream: %v, want ErrStreamNotFound", err)
		}
		time.Sleep(ttl)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 || !hasLine(logs.String(), `msg="JetStream stream unavailable"`, "stream=READSIDE_EVENTS") {
		t.Errorf("%d WARN lines, want one naming the stream:\n%s", n, logs.String())
	}
	if _, err := stream.Ensure(ctx, js, stream.Config{}, []string{"p.>"}); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(ctx); err != nil {
		t.Errorf("the stream is back: %v", err)
	}
	if !hasLine(logs.String(), "level=INFO", `msg="JetStream stream available again"`) {
		t.Errorf("no INFO line for the stream's return:\n%s", logs.String())
	}
}

// hasLine reports whether one line of log holds every part.
func hasLine(log string, parts ...string) bool {
	for line := range strings.SplitSeq(log, "\n") {
		ok := true
		for _, p := range parts {
			if !strings.Contains(line+" ", p) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func itoa(n int) string { return string(rune('0' + n)) }
