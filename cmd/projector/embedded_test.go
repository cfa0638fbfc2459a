package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/tidwall/gjson"

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
