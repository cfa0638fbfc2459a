package query

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// sourcePage is where a degraded list is in the source's list endpoint.
type sourcePage struct {
	cursor string // the source's cursor of the page ("" for the first)
	offset int    // ids of that page already served
}

// listFromSource serves a plain list (no q, filter, sort or geo) from the
// source's list endpoint while Elasticsearch is down. The answer says so in
// X-Readside-Degraded; its cursor continues in the source's pages.
func (s *Server) listFromSource(w http.ResponseWriter, r *http.Request, v *view, lq *listQuery) {
	pg := lq.srcPage
	var all []string
	var srcNext string
	url, err := v.Def.ListURL(pg.cursor)
	if err == nil {
		var body []byte
		if body, err = v.asmSource(r.Context(), url); err == nil {
			all, srcNext, err = v.Def.ListPage(body)
		}
	}
	if err != nil {
		if r.Context().Err() != nil {
			timedOut(w, r)
			return
		}
		s.sourceFailed(r.Context(), v, err)
		unavailable(w, r, "search is unavailable, and so is the source's list endpoint; detail and multi-get still work", 5*time.Second)
		return
	}
	start := min(pg.offset, len(all))
	end := min(start+lq.limit, len(all))
	ids := all[start:end]
	next := ""
	switch {
	case end < len(all):
		next = s.sealCursor(lq.key, cursorState{Degr: true, Source: pg.cursor, Offset: end})
	case srcNext != "":
		next = s.sealCursor(lq.key, cursorState{Degr: true, Source: srcNext})
	}
	docs, gone := s.read(r.Context(), v, ids)
	if r.Context().Err() != nil && len(docs)+len(gone) < len(ids) {
		timedOut(w, r)
		return
	}
	w.Header().Set("X-Readside-Degraded", "list-endpoint")
	s.writeItems(w, v, listed(ids, gone), docs, next, epList, true)
}

// asmSource asks the primary source, through the same per-source bound as
// the fallbacks.
func (v *view) asmSource(ctx context.Context, url string) ([]byte, error) {
	return v.limitedPrimary.Get(ctx, url)
}

// errDown stands for a store the public state reports down.
var errDown = errors.New("down")

// readyz is the public /readyz: each backend's state, in a flat map. It
// answers 503 only when no store answers: with one of them, or with the
// sources, reads still work (see Readiness). Kubernetes should probe the
// admin address's /readyz instead, which also fails on shutdown and says why.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	state := map[string]string{}
	if s.ready != nil {
		ctx, cancel := bounded(r.Context())
		state = s.ready(ctx)
		cancel()
	}
	// NATS only carries re-project events: the rule of Readiness.
	var stores []error
	for name, st := range state {
		if name != "nats" {
			if st == "up" {
				stores = append(stores, nil)
			} else {
				stores = append(stores, errDown)
			}
		}
	}
	code := http.StatusOK
	if !readsWork(stores) {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(state)
}
