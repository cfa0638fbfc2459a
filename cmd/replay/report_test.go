package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/readside/readside/internal/backend"
	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
)

// verify and rebuild with --output json, against a running projector on
// the real Redis and Elasticsearch: verify reports the drift it finds as
// data (every id, per store, and the error); rebuild reports the indices,
// the counts and the swap.
func TestVerifyAndRebuildJSON(t *testing.T) {
	c := newCLI(t)
	ns := testenv.Namespace(t)
	api := testenv.NewShopAPI()
	t.Cleanup(api.Close)
	dir := t.TempDir()
	file := filepath.Join(dir, ns+".yaml")
	if err := os.WriteFile(file, []byte(testenv.ShopDefinition(ns, api.URL, true)), 0o600); err != nil {
		t.Fatal(err)
	}
	def, err := projections.Load(file, projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.StartJetStream(t)
	_, js := srv.Connect(t)
	streams, err := stream.Ensure(context.Background(), js, stream.Config{}, def.AllSubjects())
	if err != nil {
		t.Fatal(err)
	}
	rdb := testenv.Redis(t)
	testenv.CleanRedis(t, rdb, ns)
	es := testenv.Elastic(t, ns)
	ctx, cancel := context.WithCancel(context.Background())
	p, err := projector.ForDefinition(ctx, def, projector.Env{
		JetStream: js, Streams: streams, Stores: &backend.Stores{Redis: rdb, Elastic: es}, Log: testenv.Logger(t, "projector"),
	}, projector.Options{Batch: 64, ShutdownGrace: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	const n = 5
	for i := 1; i <= n; i++ {
		id := strconv.Itoa(i)
		api.Put(id, "shop "+id)
		if _, err := js.Publish(context.Background(), ns+".shop.changed."+id, nil); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		keys, _ := rdb.Keys(context.Background(), ns+":shop:*").Result()
		if len(keys) == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the projector wrote %d of %d documents in 30s", len(keys), n)
		}
	}
	testenv.WaitDrained(t, js, streams.Config().Events, stream.ConsumerName(def.Name), 30*time.Second)
	api.Put("2", "renamed, and no event") // stale in both stores

	backends := []string{"--definitions", dir, "--nats-url", srv.URL, "--redis-addr", testenv.RedisAddr(), "--es-urls", testenv.ElasticURL(), "--output", "json"}
	code, out, errOut := c.run(append([]string{"verify", ns, "--all", "--rate", "-1"}, backends...)...)
	var v verifyReport
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("verify: exit %d, stdout is not a report (%v):\n%s\nstderr %s", code, err, out, errOut)
	}
	stale := v.Drift["stale"]
	if code != exitFailed || v.Status != "failed" || v.Command != "verify" || v.Projection != ns || v.Checked != n ||
		!slices.Equal(v.Drifted, []string{"2"}) || !slices.Equal(stale.IDs, []string{"2"}) ||
		!slices.Equal(stale.Docs, []string{"2"}) || !slices.Equal(stale.Index, []string{"2"}) || v.Stores["docs"] != "redis" || v.Stores["index"] != "elasticsearch" ||
		len(v.Drift) != 4 || v.Drift["missing"].IDs == nil || v.Error != "verify "+ns+": drift in 1 ids" {
		t.Errorf("verify: exit %d, report %s\nstderr %s", code, out, errOut)
	}

	code, out, errOut = c.run(append([]string{"rebuild", ns, "--rate", "-1"}, backends...)...)
	var r rebuildReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("rebuild: exit %d, stdout is not a report (%v):\n%s\nstderr %s", code, err, out, errOut)
	}
	alias := def.Elasticsearch.Alias
	if code != exitOK || r.Status != "completed" || !r.Swapped || r.Alias != alias || !slices.Equal(r.OldIndices, []string{alias + "-v1"}) ||
		r.NewIndex != alias+"-v2" || r.Reissued != n || r.OldCount != n || r.NewCount != n || r.Error != "" {
		t.Errorf("rebuild: exit %d, report %s\nstderr %s", code, out, errOut)
	}
}
