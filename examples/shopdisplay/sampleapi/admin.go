package sampleapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Retrying returns a Publish that publishes an event and waits for JetStream to store it, retrying
// with backoff until ctx ends: the events stream may not exist yet (the
// projector creates it), or NATS may be reconnecting.
func Retrying(js jetstream.JetStream, log *slog.Logger) Publish {
	return func(ctx context.Context, subject string) error {
		delay := 100 * time.Millisecond
		for {
			_, err := js.Publish(ctx, subject, nil)
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return fmt.Errorf("publishing %s: %w", subject, err)
			}
			log.Warn("publishing failed; retrying (is the projector up? it creates the stream)", "subject", subject, "err", err, "in", delay)
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("publishing %s: %w", subject, ctx.Err())
			case <-t.C:
			}
			delay = min(2*delay, 5*time.Second)
		}
	}
}

// ChangeHandler serves POST /admin/change?kind=shop|owner|menu|ads|delete&id=N:
// it makes one change and publishes its event (within 10 s).
func ChangeHandler(api *API, publish Publish) http.Handler {
	changes := map[string]func(int) (string, error){
		"shop": api.ChangeShop, "owner": api.ChangeOwner, "menu": api.ChangeMenu, "ads": api.ChangeAds, "delete": api.DeleteShop,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := r.URL.Query().Get("kind")
		change, ok := changes[kind]
		if !ok {
			http.Error(w, "kind must be one of shop, owner, menu, ads, delete", http.StatusBadRequest)
			return
		}
		id, err := strconv.Atoi(r.URL.Query().Get("id"))
		if err != nil {
			http.Error(w, "id must be an integer", http.StatusBadRequest)
			return
		}
		subject, err := change(id)
		if errors.Is(err, ErrUnknown) {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		answer := struct {
			Subject   string `json:"subject"`
			Published bool   `json:"published"`
		}{Subject: subject}
		if publish != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
			defer cancel()
			if err := publish(ctx, subject); err != nil {
				http.Error(w, fmt.Sprintf("changed, but the event was not published: %v", err), http.StatusServiceUnavailable)
				return
			}
			answer.Published = true
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(answer)
	})
}

// DownHandler serves POST /admin/down?source=shops|owners|menu|ads&status=503
// (status=0: answer normally again).
func DownHandler(api *API, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		source := r.URL.Query().Get("source")
		status, err := strconv.Atoi(r.URL.Query().Get("status"))
		if err != nil {
			http.Error(w, "status must be an HTTP status, or 0", http.StatusBadRequest)
			return
		}
		if err := api.SetDown(source, status); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		log.Info("source status set", "source", source, "status", status)
		w.WriteHeader(http.StatusNoContent)
	})
}
