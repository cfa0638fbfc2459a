package bleveindex

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/projections"
)

// A Write that waits for its turn (a Reindex holds it for all of its copy)
// gives up when its ctx ends, and writes nothing.
func TestWriteWaitingGivesUpWithItsContext(t *testing.T) {
	b, err := Open(t.TempDir(), Options{Name: "shops", Fields: []projections.Field{{Name: "name", Type: projections.Keyword}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.writer <- struct{}{} // the turn, held as a Reindex holds it
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	werr := make(chan error, 1)
	go func() {
		werr <- b.Write(ctx, []sink.Doc{{ID: "a", Version: 1, Body: []byte(`{"id":"a","name":"A"}`)}})
	}()
	select {
	case err := <-werr:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Write whose ctx ended while waiting = %v, want the deadline", err)
		}
	case <-time.After(10 * time.Second):
		<-b.writer // let it go, so that Close does not wait for it
		t.Fatal("Write still waits for the turn 10s after its ctx ended")
	}
	<-b.writer
	got, err := b.GetMany(context.Background(), []string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != nil {
		t.Errorf("a Write that gave up wrote %+v", got[0])
	}
	if err := b.Write(context.Background(), []sink.Doc{{ID: "b", Version: 1, Body: []byte(`{"id":"b","name":"B"}`)}}); err != nil {
		t.Errorf("the next Write: %v", err)
	}
}
