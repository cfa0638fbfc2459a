package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/sink/elasticindex"
	"github.com/readside/readside/internal/sink/redisstore"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
	"github.com/readside/readside/replay"
)

// rbStored reads the raw Redis value of id and decodes it.
func (r *rbRig) rbStored(def *projections.Definition, id string) ([]byte, sink.Stored) {
	r.t.Helper()
	key := redisstore.New(r.rdb, redisstore.Options{KeyPattern: def.Redis.Key}).Key(id)
	raw, err := r.rdb.Get(context.Background(), key).Bytes()
	if err != nil {
		r.t.Fatalf("redis %s: %v", key, err)
	}
	s, err := sink.DecodeValue(raw)
	if err != nil {
		r.t.Fatal(err)
	}
	return raw, s
}

// rewriteRedis replaces the body of id's Redis value, keeping its header
// (the version, the kind, the build time): the write guard sees no change.
func (r *rbRig) rewriteRedis(def *projections.Definition, id string, edit func(body []byte) []byte) {
	r.t.Helper()
	raw, s := r.rbStored(def, id)
	header := raw[:len(raw)-len(s.Body)]
	value := append(slices.Clone(header), edit(slices.Clone(s.Body))...)
	if check, err := sink.DecodeValue(value); err != nil || check.Version != s.Version {
		r.t.Fatalf("rewritten value of %s: %+v, %v", id, check, err)
	}
	key := redisstore.New(r.rdb, redisstore.Options{KeyPattern: def.Redis.Key}).Key(id)
	if err := r.rdb.Set(context.Background(), key, value, 0).Err(); err != nil {
		r.t.Fatal(err)
	}
}

// rbDrift is what a report found: kind → store → ids.
func rbDrift(rep *replay.VerifyReport) map[replay.Drift][3][]string {
	out := map[replay.Drift][3][]string{}
	for k, d := range rep.Drift {
		out[k] = [3][]string{d.IDs, d.Docs, d.Index}
	}
	return out
}

// TestVerifyFindsDrift injects every kind of drift on purpose, in Redis and
// in Elasticsearch; verify reports each with the right ids (and not a body
// that differs only in key order and number spelling), by --all and by a
// sample; --fix re-issues exactly the drifted ids, and verify then finds none.
func TestVerifyFindsDrift(t *testing.T) {
	t.Parallel()
	r := newRBRig(t)
	def := r.def(true, true, "")
	ctx := context.Background()
	ids := rbIDs(1, 40)
	for _, id := range ids {
		r.put(id, "shop "+id)
	}
	r.start(def)
	r.waitConverged(def, ids, 30*time.Second)

	rd := redisstore.New(r.rdb, redisstore.Options{KeyPattern: def.Redis.Key})
	es := elasticindex.New(r.es, elasticindex.Options{Alias: def.Elasticsearch.Alias})
	// missing: gone from Redis (3, 4, 5), from Elasticsearch (11).
	for _, id := range []string{"3", "4", "5"} {
		if err := r.rdb.Del(ctx, rd.Key(id)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// (A plain delete would bump the version, and the write guard would
	// refuse the fix until Elasticsearch forgets it, after index.gc_deletes.)
	r.esJSON("DELETE", "/"+def.Elasticsearch.Alias+"-v1/_doc/11?refresh=true&version=1&version_type=external_gte", "")
	// stale: another name under the same version, in Redis (6, 7) and in
	// Elasticsearch (9).
	for _, id := range []string{"6", "7"} {
		r.rewriteRedis(def, id, func(b []byte) []byte { return bytes.Replace(b, []byte(`"shop `+id+`"`), []byte(`"old name"`), 1) })
	}
	stored, err := es.Get(ctx, "9")
	if err != nil {
		t.Fatal(err)
	}
	if err := es.Write(ctx, []sink.Doc{{ID: "9", Version: stored.Version, Body: bytes.Replace(stored.Body, []byte(`"shop 9"`), []byte(`"old name"`), 1)}}); err != nil {
		t.Fatal(err)
	}
	// not drift: the same document with its keys in another order, spread
	// over lines, and its version spelled as a float.
	r.rewriteRedis(def, "8", func(b []byte) []byte {
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		out, _ := json.MarshalIndent(v, "", "  ")
		respelled := strings.Replace(string(out), `"version": 1`, `"version": 1.0`, 1)
		if respelled == string(out) {
			t.Fatalf("shop 8's document has no version 1: %s", out)
		}
		return []byte(respelled)
	})
	// extra: a document for an id the source does not know, in both stores.
	ghost := []sink.Doc{{ID: "ghost", Version: 5, Body: []byte(`{"id":"ghost","name":"nobody"}`)}}
	if err := rd.Write(ctx, ghost); err != nil {
		t.Fatal(err)
	}
	if err := es.Write(ctx, ghost); err != nil {
		t.Fatal(err)
	}
	// partial: a document lacking a source's part, in both stores.
	_, s10 := r.rbStored(def, "10")
	partial := []sink.Doc{{ID: "10", Version: s10.Version, Body: append(bytes.TrimSuffix(slices.Clone(s10.Body), []byte("}")), []byte(`,"readside_partial":["shop"]}`)...)}}
	if err := rd.Write(ctx, partial); err != nil {
		t.Fatal(err)
	}
	if err := es.Write(ctx, partial); err != nil {
		t.Fatal(err)
	}
	r.esJSON("POST", "/"+def.Elasticsearch.Alias+"/_refresh", "")

	want := map[replay.Drift][3][]string{ // ids, in Redis, in Elasticsearch
		replay.Missing: {{"11", "3", "4", "5"}, {"3", "4", "5"}, {"11"}},
		replay.Stale:   {{"6", "7", "9"}, {"6", "7"}, {"9"}},
		replay.Extra:   {{"ghost"}, {"ghost"}, {"ghost"}},
		replay.Partial: {{"10"}, {"10"}, {"10"}},
	}
	drifted := []string{"10", "11", "3", "4", "5", "6", "7", "9", "ghost"}
	quick := 200 * time.Millisecond

	rep, err := r.env.Verify(ctx, def, replay.VerifyOptions{All: true, Rate: -1, Recheck: quick})
	if err != nil {
		t.Fatalf("Verify --all: %v", err)
	}
	var printed bytes.Buffer
	rep.Print(&printed)
	t.Logf("verify --all:\n%s", printed.String())
	if got := rbDrift(rep); !equalDrift(got, want) {
		t.Errorf("verify --all found %v, want %v", got, want)
	}
	if rep.Checked != 41 || len(rep.Unverified) != 0 || !slices.Equal(rep.Drifted(), drifted) {
		t.Errorf("checked %d (want 41), unverified %v, drifted %v", rep.Checked, rep.Unverified, rep.Drifted())
	}
	for _, line := range []string{"kind", "missing", "stale", "extra", "partial", "drift in 9 ids", "missing (4): 11 3 4 5", "extra (1): ghost"} {
		if !strings.Contains(printed.String(), line) {
			t.Errorf("the report lacks %q", line)
		}
	}

	// A sample as large as the projection finds the same.
	rep, err = r.env.Verify(ctx, def, replay.VerifyOptions{Sample: 200, Rate: -1, Recheck: quick})
	if err != nil {
		t.Fatalf("Verify --sample: %v", err)
	}
	if got := rbDrift(rep); !equalDrift(got, want) {
		t.Errorf("verify --sample 200 (%s) found %v, want %v", rep.Scope, got, want)
	}

	// --fix re-issues the drifted ids, and only those.
	var notes testenv.Buffer
	rep, err = r.env.Verify(ctx, def, replay.VerifyOptions{All: true, Fix: true, Rate: -1, Recheck: quick, Notes: &notes})
	if err != nil {
		t.Fatalf("Verify --fix: %v", err)
	}
	if rep.Fixed != int64(len(drifted)) {
		t.Errorf("--fix re-issued %d ids, want %d", rep.Fixed, len(drifted))
	}
	reissued := r.replayed(def)
	slices.Sort(reissued)
	if !slices.Equal(reissued, drifted) {
		t.Errorf("re-issued %v, want %v", reissued, drifted)
	}
	r.waitReplayDrained(def, 30*time.Second)
	fixed := slices.DeleteFunc(append(slices.Clone(ids), "ghost"), func(id string) bool { return id == "8" }) // 8 is as it was: no drift
	r.waitConverged(def, fixed, 30*time.Second)
	rep, err = r.env.Verify(ctx, def, replay.VerifyOptions{All: true, Rate: -1, Recheck: quick})
	if err != nil {
		t.Fatalf("Verify after the fix: %v", err)
	}
	if d := rep.Drifted(); len(d) > 0 || len(rep.Unverified) > 0 {
		printed.Reset()
		rep.Print(&printed)
		t.Errorf("after --fix, verify finds drift:\n%s", printed.String())
	}
}

// replayed lists the ids of the events on the projection's replay subject.
func (r *rbRig) replayed(def *projections.Definition) []string {
	r.t.Helper()
	ctx := context.Background()
	s, err := r.js.Stream(ctx, r.streams.Config().Own)
	if err != nil {
		r.t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(def.ReplaySubject()))
	if err != nil {
		r.t.Fatal(err)
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{def.ReplaySubject()}})
	if err != nil {
		r.t.Fatal(err)
	}
	var ids []string
	for range info.State.Subjects[def.ReplaySubject()] {
		m, err := c.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			r.t.Fatalf("reading the replay subject: %v", err)
		}
		var body struct{ ID string }
		if err := json.Unmarshal(m.Data(), &body); err != nil {
			r.t.Fatal(err)
		}
		ids = append(ids, body.ID)
	}
	return ids
}

// TestVerifyRechecks: a document that changes while it is checked (its
// event lands after the first check) is not reported; one that stays
// different is.
func TestVerifyRechecks(t *testing.T) {
	t.Parallel()
	r := newRBRig(t)
	def := r.def(false, false, "")
	ids := rbIDs(1, 20)
	for _, id := range ids {
		r.put(id, "shop "+id)
	}
	r.start(def)
	r.waitConverged(def, ids, 30*time.Second)

	// Both change at the source; only shop 12's event comes, and only once
	// verify has seen the difference.
	r.api.Put("12", "renamed, event on its way")
	r.api.Put("13", "renamed, event lost")
	notes := &rbSignal{want: "checking 2 ids again", seen: make(chan struct{})}
	go func() {
		select {
		case <-notes.seen:
			r.changed("12")
		case <-time.After(20 * time.Second):
		}
	}()
	rep, err := r.env.Verify(context.Background(), def, replay.VerifyOptions{All: true, Rate: -1, Recheck: 5 * time.Second, Notes: notes})
	if err != nil {
		t.Fatal(err)
	}
	var printed bytes.Buffer
	rep.Print(&printed)
	t.Logf("notes:\n%s\nreport:\n%s", notes.String(), printed.String())
	if !notes.saw() {
		t.Fatalf("verify did not check twice")
	}
	if got := rep.Drifted(); !slices.Equal(got, []string{"13"}) {
		t.Errorf("drifted %v, want [13]", got)
	}
	if d := rep.Drift[replay.Stale]; d == nil || !slices.Equal(d.Docs, []string{"13"}) || !slices.Equal(d.Index, []string{"13"}) {
		t.Errorf("stale: %+v, want 13 in both stores", d)
	}
}

// rbSignal collects notes and closes seen once a line contains want.
type rbSignal struct {
	testenv.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func (s *rbSignal) Write(p []byte) (int, error) {
	n, err := s.Buffer.Write(p)
	if strings.Contains(string(p), s.want) {
		s.once.Do(func() { close(s.seen) })
	}
	return n, err
}

func (s *rbSignal) saw() bool {
	select {
	case <-s.seen:
		return true
	default:
		return false
	}
}

func equalDrift(a, b map[replay.Drift][3][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok {
			return false
		}
		for i := range v {
			if !slices.Equal(v[i], w[i]) {
				return false
			}
		}
	}
	return true
}
