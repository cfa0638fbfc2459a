package query_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/readside/readside/internal/query"
	"github.com/readside/readside/internal/testenv"
)

// Concurrent detail reads go to Redis together: while one read is in flight
// (Redis answering 100 ms late through a fault proxy), the others wait and
// go as one MGET. Each request still gets what a read of its own would give:
// its document from the store; the source's document for the one id whose
// stored value does not decode (not every id read with it); 404 for an id
// nobody has.
func TestDetailReadsCoalesce(t *testing.T) {
	t.Parallel()
	const n = 30
	w, ids, stored := storedWorld(t, n)
	corrupt := ids[n/2]
	if err := w.redis.Set(context.Background(), strings.Replace(w.def.Redis.Key, "{id}", corrupt, 1), "not a stored value", 0).Err(); err != nil {
		t.Fatal(err)
	}
	rd := testenv.StartProxy(t, testenv.RedisAddr())
	rd.Latency(100 * time.Millisecond)
	reg := prometheus.NewRegistry()
	srv := w.serve(testenv.RedisAt(t, rd.Addr), w.es, query.Options{CoalesceReads: 1, Registerer: reg})
	base := srv.URL + "/v1/" + w.ns + "/"

	urls := []string{base + "999"} // nobody has it
	for _, id := range ids {
		urls = append(urls, base+id)
	}
	answers := getAll(testClient(t), urls)
	wantProblem(t, "GET /999", answers[0], http.StatusNotFound)
	for i, id := range ids {
		from := "store"
		if id == corrupt {
			from = "source"
		}
		wantDoc(t, "GET /"+id, answers[i+1], stored[id], from)
	}

	h := series(t, reg, "readside_query_detail_read_ids", map[string]string{"projection": w.ns}).GetHistogram()
	var dist []string
	for _, b := range h.GetBucket() {
		dist = append(dist, fmt.Sprintf("≤%g: %d", b.GetUpperBound(), b.GetCumulativeCount()))
	}
	t.Logf("%d doc-store reads carried %g detail reads (%s)", h.GetSampleCount(), h.GetSampleSum(), strings.Join(dist, ", "))
	if got := h.GetSampleSum(); got != float64(len(urls)) {
		t.Errorf("the doc-store reads carried %g detail reads, want %d: one for each request", got, len(urls))
	}
	if h.GetSampleCount() > uint64(len(urls))/4 {
		t.Errorf("%d doc-store reads for %d concurrent detail reads with one lane: they were not joined", h.GetSampleCount(), len(urls))
	}
}

// Joined reads keep each request's deadline: with Redis answering later
// than any deadline, every one of a burst of detail reads on one lane is
// answered from the source within its deadline, none after the reads in
// front of it have each used theirs.
func TestCoalescedReadsKeepDeadlines(t *testing.T) {
	t.Parallel()
	const (
		n        = 20
		deadline = 500 * time.Millisecond
	)
	w, ids, stored := storedWorld(t, n)
	rd := testenv.StartProxy(t, testenv.RedisAddr())
	rd.Latency(3 * time.Second)
	srv := w.serve(testenv.RedisAt(t, rd.Addr), w.es, query.Options{CoalesceReads: 1, RequestTimeout: deadline})
	var urls []string
	for _, id := range ids {
		urls = append(urls, srv.URL+"/v1/"+w.ns+"/"+id)
	}
	for i, a := range getAll(testClient(t), urls) {
		what := "GET /" + ids[i]
		if a.took > deadline+700*time.Millisecond {
			t.Errorf("%s: answered after %s with a request deadline of %s", what, a.took.Round(time.Millisecond), deadline)
		}
		if a.status == http.StatusGatewayTimeout {
			wantProblem(t, what, a, http.StatusGatewayTimeout)
			continue
		}
		wantDoc(t, what, a, stored[ids[i]], "source")
	}
}
