package query

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/readside/readside/internal/sink"
)

// storeCalls is a doc store's GetMany for the coalescer: each call is sent
// on calls and answered with what the test sends back.
type storeCalls struct {
	calls chan []string
	reply chan func(ids []string) ([]*sink.Stored, error)
}

func (s storeCalls) get(_ context.Context, ids []string) ([]*sink.Stored, error) {
	s.calls <- ids
	return (<-s.reply)(ids)
}

func docsOf(ids []string) ([]*sink.Stored, error) {
	out := make([]*sink.Stored, len(ids))
	for i, id := range ids {
		out[i] = &sink.Stored{Body: []byte(id)}
	}
	return out, nil
}

type outcome struct {
	body     string
	ok       bool
	err      error
	panicked any
}

// reads starts a read of each id, one after the other once the coalescer
// holds it (running or waiting), and returns their outcomes once all ended.
func reads(c *coalescer, ids ...string) func() []outcome {
	out := make([]outcome, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		held := c.held()
		wg.Go(func() {
			defer func() { out[i].panicked = recover() }()
			st, ok, err := c.one(context.Background(), id, time.Now().Add(time.Minute))
			out[i] = outcome{ok: ok, err: err}
			if st != nil {
				out[i].body = string(st.Body)
			}
		})
		for c.held() == held {
			time.Sleep(time.Millisecond)
		}
	}
	return func() []outcome { wg.Wait(); return out }
}

// held is how many reads the coalescer runs or keeps waiting.
func (c *coalescer) held() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.busy + len(c.queue)
}

// A joint read's partial failure sends the ids it failed for back to reads
// of their own, and gives the others their documents.
func TestCoalescerPartialFailure(t *testing.T) {
	s := storeCalls{calls: make(chan []string, 8), reply: make(chan func([]string) ([]*sink.Stored, error), 8)}
	c := newCoalescer(s.get, 1, nil)
	wait := reads(c, "a", "b", "c", "d")
	if got := <-s.calls; !slices.Equal(got, []string{"a"}) {
		t.Fatalf("first read %v, want [a] alone", got)
	}
	s.reply <- docsOf
	if got := <-s.calls; !slices.Equal(got, []string{"b", "c", "d"}) {
		t.Fatalf("joint read %v, want [b c d]", got)
	}
	s.reply <- func(ids []string) ([]*sink.Stored, error) {
		docs, _ := docsOf(ids)
		docs[1] = nil
		return docs, &sink.BatchError{Items: map[int]error{1: errors.New("node lost")}}
	}
	got := wait()
	want := []outcome{{body: "a", ok: true}, {body: "b", ok: true}, {ok: false}, {body: "d", ok: true}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("outcomes %v, want %v", got, want)
	}
	if n := c.held(); n != 0 {
		t.Errorf("%d reads still held after all ended", n)
	}
}

// A store that panics in a joint read still answers the reads it carried
// (with an error) and frees the lane: later reads are served, none hangs.
func TestCoalescerPanicFreesTheLane(t *testing.T) {
	s := storeCalls{calls: make(chan []string, 8), reply: make(chan func([]string) ([]*sink.Stored, error), 8)}
	c := newCoalescer(s.get, 1, nil)
	wait := reads(c, "a", "b", "c")
	<-s.calls
	s.reply <- docsOf
	<-s.calls // b and c
	s.reply <- func([]string) ([]*sink.Stored, error) { panic("store bug") }
	got := wait()
	if got[0].body != "a" || got[1].panicked != "store bug" || got[2].err == nil || got[2].panicked != nil {
		t.Errorf("outcomes %v: want a's document, b (running the joint read) panicking, c an error", got)
	}
	later := reads(c, "e")
	<-s.calls
	s.reply <- docsOf
	if got := later(); got[0].body != "e" {
		t.Errorf("a read after the panic: %v, want e's document", got)
	}
}
