package main

import (
	"context"
	"errors"
	"io"
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

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/storeapi"
	"github.com/readside/readside/internal/testenv"
)

// A single machine by configuration alone: JetStream, the doc store and the
// search index embedded, the query API served from the same process
// (-query-addr); events published to the embedded NATS by a producer of its
// own become documents the query API serves from the store and finds.
func TestSingleMachineOnEmbeddedBackends(t *testing.T) {
	clearEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	api := testenv.NewShopAPI()
	t.Cleanup(api.Close)
	dir := t.TempDir()
	defFile := filepath.Join(dir, "shops.yaml")
	if err := os.WriteFile(defFile, []byte(testenv.ShopDefinition("shops", api.URL, true)), 0o644); err != nil {
		t.Fatal(err)
	}
	natsAddr, queryAddr := freeAddr(t), freeAddr(t)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-definitions", defFile, "-nats-url", "embedded", "-nats-listen", natsAddr,
			"-redis-addr", "embedded", "-es-urls", "embedded", "-data-dir", filepath.Join(dir, "data"),
			"-query-addr", queryAddr, "-metrics-addr", "", "-log-level", "warn"}, io.Discard)
	}()
	get := func(path string) (int, http.Header, []byte) {
		res, err := http.Get("http://" + queryAddr + path)
		if err != nil {
			return 0, nil, nil
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header, b
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if code, _, _ := get("/healthz"); code == 200 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the projector stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the query API did not answer within 20s")
		}
	}

	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatalf("the embedded NATS does not take producers on -nats-listen: %v", err)
	}
	defer nc.Close()
	for i := 1; i <= 20; i++ {
		id := strconv.Itoa(i)
		api.Put(id, "Pizza "+id)
		if err := nc.Publish("shops.shop.changed."+id, nil); err != nil {
			t.Fatal(err)
		}
	}
	nc.Flush()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, h, body := get("/v1/shops/17")
		_, _, list := get("/v1/shops?q=pizz&limit=100")
		if code == 200 && h.Get("X-Readside-Source") == "store" && gjson.GetBytes(body, "name").Str == "Pizza 17" &&
			len(gjson.GetBytes(list, "items").Array()) == 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not projected within 20s: detail %d %q %s; search %s", code, h.Get("X-Readside-Source"), body, list)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

// With embedded stores, which no other process can open, the projector
// binary serves them to operators' tools on its admin address (the store
// API): what it projected is read there, and a contract a store does not
// keep is answered 501, naming the store and what it cannot do.
func TestServesEmbeddedStoresOnTheAdminAddress(t *testing.T) {
	bin := projectorBinary(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	api := testenv.NewShopAPI()
	t.Cleanup(api.Close)
	ns, dir := testenv.Namespace(t), t.TempDir()
	defFile := filepath.Join(dir, ns+".yaml")
	if err := os.WriteFile(defFile, []byte(testenv.ShopDefinition(ns, api.URL, true)), 0o644); err != nil {
		t.Fatal(err)
	}
	natsAddr, adminAddr := freeAddr(t), freeAddr(t)
	logFile := filepath.Join(dir, "projector.log")
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(bin, "-definitions", defFile, "-nats-url", "embedded", "-nats-listen", natsAddr,
		"-redis-addr", "embedded", "-es-urls", "embedded", "-data-dir", filepath.Join(dir, "data"),
		"-metrics-addr", adminAddr, "-log-level", "debug")
	cmd.Stdout, cmd.Stderr, cmd.Env = f, f, cleanEnv()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: logFile, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("last lines of the projector's log:\n%s", testenv.TailFile(logFile, 60))
		}
	})

	// Ready: the events stream exists, so no event published is lost.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		res, err := http.Get("http://" + adminAddr + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("the projector is not ready within 20s: %v", err)
		}
	}
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatalf("the embedded NATS does not take producers on -nats-listen: %v", err)
	}
	defer nc.Close()
	ids := []string{"1", "2", "3", "4", "5"}
	for _, id := range ids {
		api.Put(id, "Pizza "+id)
		if err := nc.Publish(ns+".shop.changed."+id, nil); err != nil {
			t.Fatal(err)
		}
	}
	nc.Flush()

	client := storeapi.NewClient("http://"+adminAddr, nil)
	docs := client.Docs(ns)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		got, err := docs.GetMany(ctx, ids)
		projected := err == nil
		for i := range got {
			projected = projected && got[i] != nil && gjson.GetBytes(got[i].Body, "name").Str == "Pizza "+ids[i]
		}
		if projected {
			break
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("the documents are not read through the store API within 20s: %v (last error %v)", got, err)
		}
	}

	// Both embedded stores count and scan what they hold.
	for _, st := range []*storeapi.Store{docs, client.Index(ns)} {
		if got, err := st.Count(ctx); err != nil || got != int64(len(ids)) {
			t.Errorf("count = %d, %v; want %d", got, err, len(ids))
		}
		var scanned []string
		if err := st.Scan(ctx, "", func(p sink.ScanPage) error { scanned = append(scanned, p.IDs...); return nil }); err != nil || !slices.Equal(scanned, ids) {
			t.Errorf("scan = %v, %v; want %v", scanned, err, ids)
		}
	}
	// The doc store cannot re-index itself: 501, saying which store cannot
	// do what.
	_, err = docs.Reindex(ctx)
	var e *storeapi.Error
	if !errors.Is(err, storeapi.ErrNotSupported) || !errors.As(err, &e) || !strings.Contains(e.Detail, "the embedded-docs store of projection "+ns+" cannot") {
		t.Errorf("POST /stores/v1/%s/docs/reindex = %v, want a 501 saying the embedded-docs store cannot re-index", ns, err)
	}
	_, err = client.Docs("nosuch").GetMany(ctx, ids)
	if !errors.As(err, &e) || e.Status != http.StatusNotFound || !strings.Contains(e.Detail, `"nosuch"`) {
		t.Errorf("the docs of an unknown projection = %v, want a 404 naming it", err)
	}
}
