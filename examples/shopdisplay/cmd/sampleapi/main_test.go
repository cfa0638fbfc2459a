package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/readside/readside/examples/shopdisplay/sampleapi"
	"github.com/readside/readside/internal/testenv"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Publishing waits for the events stream, which the projector creates.
func TestPublishRetriesUntilTheStreamExists(t *testing.T) {
	_, js := testenv.StartJetStream(t).Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	publish := sampleapi.Retrying(js, discard())
	done := make(chan error, 1)
	go func() { done <- publish(ctx, "shop.changed.7") }()
	select {
	case err := <-done:
		t.Fatalf("published before the stream existed: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "READSIDE_EVENTS", Subjects: []string{"shop.changed.*"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Fatalf("the stream holds %+v (%v), want the one event", info.State, err)
	}

	// When ctx ends first, it says so.
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	if err := publish(short, "nobody.listens"); err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Errorf("publishing to no stream until ctx ends: %v", err)
	}
}

func TestAdminEndpoints(t *testing.T) {
	api := sampleapi.New(sampleapi.Options{Shops: 100})
	var published []string
	mux := http.NewServeMux()
	mux.Handle("/", api)
	mux.Handle("POST /admin/change", sampleapi.ChangeHandler(api, func(_ context.Context, s string) error {
		published = append(published, s)
		return nil
	}))
	mux.Handle("POST /admin/down", sampleapi.DownHandler(api, discard()))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	post := func(path string) (int, string) {
		t.Helper()
		res, err := srv.Client().Post(srv.URL+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, strings.TrimSpace(string(b))
	}
	before, _ := api.Owner(7)
	for _, c := range []struct {
		path   string
		status int
		body   string
	}{
		{"/admin/change?kind=owner&id=7", 200, `{"subject":"owner.changed.7","published":true}`},
		{"/admin/change?kind=delete&id=5", 200, `{"subject":"shop.changed.5","published":true}`},
		{"/admin/change?kind=menu&id=6", 200, `{"subject":"menu.changed.6","published":true}`},
		{"/admin/change?kind=price&id=6", 400, ""},
		{"/admin/change?kind=shop&id=x", 400, ""},
		{"/admin/change?kind=shop&id=101", 404, ""},
		{"/admin/down?source=ads&status=503", 204, ""},
		{"/admin/down?source=ads&status=x", 400, ""},
		{"/admin/down?source=payments&status=503", 400, ""},
	} {
		status, body := post(c.path)
		if status != c.status || (c.body != "" && body != c.body) {
			t.Errorf("POST %s: %d %s, want %d %s", c.path, status, body, c.status, c.body)
		}
	}
	if strings.Join(published, " ") != "owner.changed.7 shop.changed.5 menu.changed.6" {
		t.Errorf("published %v", published)
	}
	if after, _ := api.Owner(7); after.BusinessName == before.BusinessName {
		t.Error("owner 7 did not change")
	}
	if _, ok := api.Shop(5); ok {
		t.Error("shop 5 was not deleted")
	}
	res, err := srv.Client().Get(srv.URL + "/ads?shopId=1")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 503 {
		t.Errorf("ads answer %d after /admin/down, want 503", res.StatusCode)
	}
}
