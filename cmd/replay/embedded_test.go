package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/tidwall/gjson"

	"github.com/readside/readside/internal/storeapi"
	"github.com/readside/readside/internal/testenv"
)

// projectorBin is the projector command, built once for the tests that run
// one with embedded stores; TestMain removes it.
var projectorBin = testenv.NewBinaryOf("projector", "../projector")

func TestMain(m *testing.M) {
	code := m.Run()
	projectorBin.Remove()
	os.Exit(code)
}

// Every operator command works on the embedded stores as on Redis and
// Elasticsearch: a projector with everything embedded (bbolt docs, bleve
// index, JetStream) serves its stores on its admin address, and replay
// reads them there (--projector-url). verify finds drift in both stores and
// --fix repairs it; all re-issues every id from either store; rebuild
// re-indexes the embedded index while it serves.
func TestEmbeddedStores(t *testing.T) {
	c := newCLI(t)
	ctx := t.Context()
	api := testenv.NewShopAPI()
	t.Cleanup(api.Close)
	ns, dir := testenv.Namespace(t), t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ns+".yaml"), []byte(testenv.ShopDefinition(ns, api.URL, true)), 0o644); err != nil {
		t.Fatal(err)
	}
	natsAddr, admin := testenv.FreeAddr(t), testenv.FreeAddr(t)
	logFile := filepath.Join(dir, "projector.log")
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(projectorBin.Path(t), "-definitions", dir, "-nats-url", "embedded", "-nats-listen", natsAddr,
		"-redis-addr", "embedded", "-es-urls", "embedded", "-data-dir", filepath.Join(dir, "data"),
		"-metrics-addr", admin, "-log-level", "debug")
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "READSIDE_") })
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if b, err := os.ReadFile(logFile); err == nil {
			os.WriteFile("/tmp/proj.log", b, 0o644)
		}
		if t.Failed() {
			t.Logf("last lines of the projector's log:\n%s", testenv.TailFile(logFile, 40))
		}
	})
	waitFor(t, 30*time.Second, "the projector is ready", exited, func() bool {
		res, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})

	// 30 shops projected, read back through the store API.
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	const n = 30
	for i := 1; i <= n; i++ {
		id := strconv.Itoa(i)
		api.Put(id, "shop "+id)
		if err := nc.Publish(ns+".shop.changed."+id, nil); err != nil {
			t.Fatal(err)
		}
	}
	nc.Flush()
	stores := storeapi.NewClient("http://"+admin, nil)
	waitFor(t, 30*time.Second, "every shop is in both embedded stores", exited, func() bool {
		d, err1 := stores.Docs(ns).Count(ctx)
		i, err2 := stores.Index(ns).Count(ctx)
		return err1 == nil && err2 == nil && d == n && i == n
	})

	base := []string{"--definitions", dir, "--nats-url", "nats://" + natsAddr, "--redis-addr", "embedded", "--es-urls", "embedded", "-o", "json"}
	withProjector := append(slices.Clone(base), "--projector-url", "http://"+admin)

	// Without the projector's address, replay says how to reach the stores.
	code, _, errOut := c.run(append([]string{"verify", ns, "--all"}, base...)...)
	if code == 0 || !strings.Contains(errOut, "--projector-url") {
		t.Errorf("verify on embedded stores without --projector-url: exit %d, stderr %s; want an error naming --projector-url", code, errOut)
	}

	// Drift without events: 2 renamed (stale), 3 deleted at the source
	// (extra). verify --fix finds both in both stores and re-issues them.
	api.Put("2", "renamed, and no event")
	api.Delete("3")
	code, out, errOut := c.run(append([]string{"verify", ns, "--all", "--rate", "-1", "--fix"}, withProjector...)...)
	var v verifyReport
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("verify: exit %d, stdout is not a report (%v):\n%s\nstderr %s", code, err, out, errOut)
	}
	stale, extra := v.Drift["stale"], v.Drift["extra"]
	if code != exitFailed || v.Checked != n || !slices.Equal(v.Drifted, []string{"2", "3"}) ||
		!slices.Equal(stale.Docs, []string{"2"}) || !slices.Equal(stale.Index, []string{"2"}) ||
		!slices.Equal(extra.Docs, []string{"3"}) || !slices.Equal(extra.Index, []string{"3"}) ||
		v.Stores["docs"] != "embedded-docs" || v.Stores["index"] != "embedded-search" || v.Fixed != 2 {
		t.Fatalf("verify --fix on the embedded stores: exit %d, report %s\nstderr %s", code, out, errOut)
	}
	last := ""
	waitFor(t, 30*time.Second, "verify finds no drift once the fix is projected", exited, func() bool {
		code, out, errOut := c.run(append([]string{"verify", ns, "--all", "--rate", "-1"}, withProjector...)...)
		last = out + errOut
		return code == 0
	}, &last)

	// all, from either store: every live document (3 is a tombstone now).
	for _, from := range []string{"docs", "index"} {
		code, out, errOut := c.run(append([]string{"all", ns, "--from", from, "--rate", "-1", "--restart"}, withProjector...)...)
		if code != 0 || gjson.Get(out, "counts.reissued").Int() != n-1 || gjson.Get(out, "counts.tombstones").Int() != 1 ||
			!strings.Contains(gjson.Get(out, "source").Str, "embedded-") {
			t.Errorf("all --from %s: exit %d, report %s\nstderr %s; want %d re-issued, 1 tombstone", from, code, out, errOut, n-1)
		}
	}

	// rebuild re-indexes the embedded index in place while it serves.
	code, out, errOut = c.run(append([]string{"rebuild", ns}, withProjector...)...)
	var r rebuildReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("rebuild: exit %d, stdout is not a report (%v):\n%s\nstderr %s", code, err, out, errOut)
	}
	if code != 0 || !r.Swapped || r.Reindexed != n {
		t.Errorf("rebuild on the embedded index: exit %d, report %s\nstderr %s; want swapped with %d documents re-indexed", code, out, errOut, n)
	}
	if got, err := stores.Index(ns).Count(ctx); err != nil || got != n-1 {
		t.Errorf("after the rebuild the index counts %d live documents (%v), want %d", got, err, n-1)
	}
	got, err := stores.Index(ns).GetMany(ctx, []string{"2", "3"})
	if err != nil || got[0] == nil || gjson.GetBytes(got[0].Body, "name").Str != "renamed, and no event" || got[1] == nil || !got[1].Deleted {
		t.Errorf("after the rebuild the index holds %v (%v), want 2 renamed and 3's tombstone", got, err)
	}
}

// waitFor polls cond until it holds, failing the test after d or when the
// process behind exited ends; last are what the test shows then.
func waitFor(t *testing.T, d time.Duration, what string, exited <-chan struct{}, cond func() bool, last ...*string) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(100 * time.Millisecond) {
		select {
		case <-exited:
			t.Fatalf("the projector exited while waiting until %s", what)
		default:
		}
		if time.Now().After(deadline) {
			for _, l := range last {
				t.Logf("last try: %s", *l)
			}
			t.Fatalf("not within %s: %s", d, what)
		}
	}
}
