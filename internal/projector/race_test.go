package projector_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/readside/readside/internal/projector"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/projections"
)

// The races between replicas that a deletion of a versioned projection can
// lose, made deterministic: what another replica would write is written
// into the stores at the exact moment. Each ends with both stores holding
// the source's state.

// Another replica stores the re-created entity while this one's fetch of it
// answers 404: the late tombstone must not hide it.
func TestDeletionNeverHidesARecreation(t *testing.T) {
	for _, stores := range backends {
		t.Run(stores, func(t *testing.T) {
			t.Parallel()
			h := newHarnessOn(t, true, stores)
			h.startDefault()
			h.api.Put("1", "first")
			h.changed("1")
			h.waitConverged([]string{"1"}, 20*time.Second)

			h.api.Delete("1")
			var once sync.Once
			h.api.OnAnswer(func(id string, exists bool) {
				if id != "1" || exists {
					return
				}
				once.Do(func() {
					// While the 404 is on its way: re-created, and another
					// replica stores it.
					shop := h.api.Put("1", "re-created")
					h.writeBoth(sink.Doc{ID: "1", Version: shop.Version, Body: h.want("1"), BuiltAt: time.Now()})
				})
			})
			h.changed("1")
			h.waitConverged([]string{"1"}, 20*time.Second)
			// And it stays so: nothing left in flight may hide it later.
			time.Sleep(500 * time.Millisecond)
			h.waitConverged([]string{"1"}, time.Second)
		})
	}
}

// This replica fetched the entity before it was deleted, and its write
// reaches the stores after another replica stored the deletion: the stale
// document must not stay over the deletion.
func TestStaleFetchWrittenAfterDeletion(t *testing.T) {
	for _, stores := range backends {
		t.Run(stores, func(t *testing.T) {
			t.Parallel()
			h := newHarnessOn(t, true, stores)
			gated := &gatedOpener{StoreOpener: h.stores, id: "1"}
			h.startOn(gated)
			h.api.Put("1", "first")
			h.changed("1")
			h.waitConverged([]string{"1"}, 20*time.Second)
			stored, err := h.docs.Get(context.Background(), "1")
			if err != nil {
				t.Fatal(err)
			}

			release := gated.close()
			h.api.Put("1", "second")
			h.changed("1")
			gated.waitBlocked(t)
			// The write of "second" waits; meanwhile the shop is deleted and
			// another replica stores the tombstone it would (the version
			// after the newest it found stored).
			h.api.Delete("1")
			h.writeBoth(sink.Doc{ID: "1", Version: stored.Version + 1, Deleted: true, BuiltAt: time.Now()})
			release()
			h.waitConverged([]string{"1"}, 20*time.Second)
		})
	}
}

// writeBoth writes docs to both stores, as another replica would.
func (h *harness) writeBoth(docs ...sink.Doc) {
	h.t.Helper()
	for _, st := range []interface {
		Write(context.Context, []sink.Doc) error
	}{h.docs, h.index} {
		if err := st.Write(context.Background(), docs); err != nil {
			h.t.Errorf("writing as another replica: %v", err)
		}
	}
}

// gatedOpener opens stores whose writes of one id wait while the gate is
// closed: a slow write, as when a store node stalls.
type gatedOpener struct {
	projector.StoreOpener
	id string

	mu      sync.Mutex
	gate    chan struct{} // closed: open; nil: never closed
	blocked chan struct{} // signalled when a write waits at the gate
}

// close closes the gate and returns what opens it again.
func (g *gatedOpener) close() (open func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	gate := make(chan struct{})
	g.gate, g.blocked = gate, make(chan struct{}, 16)
	return sync.OnceFunc(func() { close(gate) })
}

func (g *gatedOpener) waitBlocked(t *testing.T) {
	t.Helper()
	g.mu.Lock()
	blocked := g.blocked
	g.mu.Unlock()
	select {
	case <-blocked:
	case <-time.After(20 * time.Second):
		t.Fatal("no write reached the gate")
	}
}

// wait blocks while the gate is closed, when docs hold the gated id.
func (g *gatedOpener) wait(ctx context.Context, docs []sink.Doc) {
	g.mu.Lock()
	gate, blocked := g.gate, g.blocked
	g.mu.Unlock()
	if gate == nil {
		return
	}
	for _, d := range docs {
		if d.ID == g.id {
			select {
			case blocked <- struct{}{}:
			default:
			}
			select {
			case <-gate:
			case <-ctx.Done():
			}
			return
		}
	}
}

func (g *gatedOpener) For(ctx context.Context, def *projections.Definition) (sink.Stores, error) {
	st, err := g.StoreOpener.For(ctx, def)
	if err != nil {
		return st, err
	}
	st.Docs = &gatedDocs{DocStore: st.Docs, g: g}
	st.Index = &gatedIndex{Index: st.Index, g: g}
	return st, nil
}

type gatedDocs struct {
	sink.DocStore
	g *gatedOpener
}

func (d *gatedDocs) Write(ctx context.Context, docs []sink.Doc) error {
	d.g.wait(ctx, docs)
	return d.DocStore.Write(ctx, docs)
}

// WriteReport keeps the store a sink.Reporter, as the projector expects.
func (d *gatedDocs) WriteReport(ctx context.Context, docs []sink.Doc) ([]sink.Outcome, error) {
	d.g.wait(ctx, docs)
	r, ok := d.DocStore.(sink.Reporter)
	if !ok {
		return nil, fmt.Errorf("%T is not a sink.Reporter", d.DocStore)
	}
	return r.WriteReport(ctx, docs)
}

type gatedIndex struct {
	sink.Index
	g *gatedOpener
}

func (i *gatedIndex) Write(ctx context.Context, docs []sink.Doc) error {
	i.g.wait(ctx, docs)
	return i.Index.Write(ctx, docs)
}
