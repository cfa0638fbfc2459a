package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/readside/readside/internal/stream"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
)

// replay status shows, from JetStream, each projection's consumers with
// their backlog and lag, and its dead letters with their reasons: found
// without definitions, as text and as JSON.
func TestStatus(t *testing.T) {
	c := newCLI(t)
	dir := definitions(t, "http://127.0.0.1:1")
	srv := testenv.StartJetStream(t)
	_, js := srv.Connect(t)
	ctx := context.Background()
	streams, defs := ensureStreams(t, js, dir)
	// The consumers a projector makes for "shops", none for the others.
	var shops *projections.Definition
	for _, d := range defs {
		if d.Name == "shops" {
			shops = d
		}
	}
	cc := stream.ConsumerConfig{}
	if _, err := streams.Consumer(ctx, shops.Name, shops.TriggerSubjects(), cc); err != nil {
		t.Fatal(err)
	}
	if _, err := streams.ReprojectConsumer(ctx, shops.Name, shops.ReprojectSubject(), cc); err != nil {
		t.Fatal(err)
	}
	if _, err := streams.ReplayConsumer(ctx, shops.Name, shops.ReplaySubject(), cc); err != nil {
		t.Fatal(err)
	}
	if _, err := streams.RetryConsumer(ctx, shops.Name, shops.RetrySubject(), cc); err != nil {
		t.Fatal(err)
	}
	// Five events nobody consumed, and two dead letters.
	for range 5 {
		if _, err := js.Publish(ctx, strings.Replace(shops.TriggerSubjects()[0], "*", "7", 1), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"8", "9"} {
		m := nats.NewMsg(streams.DeadLetterSubject("shops"))
		m.Header.Set(stream.HeaderReason, "source: status 400 for shop "+id)
		m.Header.Set(stream.HeaderID, id)
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond) // so the oldest event is measurably old

	code, out, errOut := c.run("status", "--nats-url", srv.URL)
	if code != exitOK {
		t.Fatalf("status: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"projection shops", "live", "reproject", "replay", "retry", "dead letters: 2", "source: status 400 for shop"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "kiosks") {
		t.Errorf("status shows kiosks, which has no consumer:\n%s", out)
	}

	code, out, errOut = c.run("status", "shops", "--definitions", dir, "--nats-url", srv.URL, "-o", "json")
	if code != exitOK {
		t.Fatalf("status -o json: exit %d\n%s\n%s", code, out, errOut)
	}
	var doc statusReport
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if doc.Command != "status" || doc.Status != "completed" || len(doc.Projections) != 1 {
		t.Fatalf("report %+v", doc)
	}
	p := doc.Projections[0]
	if len(p.Consumers) != 4 {
		t.Fatalf("%d consumers, want 4: %s", len(p.Consumers), out)
	}
	live := p.Consumers[0]
	if live.Kind != "live" || live.Pending != 5 || live.LagSeconds <= 0 || live.Error != "" {
		t.Errorf("live consumer %+v, want 5 pending and a lag", live)
	}
	for _, c := range p.Consumers[1:] {
		if c.Pending != 0 || c.LagSeconds != 0 || c.Error != "" {
			t.Errorf("%s consumer %+v, want nothing pending", c.Kind, c)
		}
	}
	// The two reasons differ only by the id: one group.
	if p.DeadLetters.Messages != 2 || len(p.DeadLetters.Reasons) != 1 || p.DeadLetters.Reasons[0].Count != 2 {
		t.Errorf("dead letters %+v, want 2 with one reason", p.DeadLetters)
	}

	// A projection the definitions do not have.
	if code, _, errOut = c.run("status", "nosuch", "--definitions", dir, "--nats-url", srv.URL); code != exitFailed || !strings.Contains(errOut, `unknown projection "nosuch"`) {
		t.Errorf("status nosuch: exit %d, %s", code, errOut)
	}
}
