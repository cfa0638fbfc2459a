package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/source"
	"github.com/readside/readside/projections"
	"github.com/readside/readside/replay"
)

// docReader reads documents by id (the doc store).
type docReader interface {
	GetMany(ctx context.Context, ids []string) ([]*sink.Stored, error)
}

// filler fills an empty read model: it re-issues every shop once and tells
// the user how far the projector is.
type filler struct {
	js  jetstream.JetStream
	def *projections.Definition
	// replayConsumer is the durable consumer the re-issued events go to.
	replayConsumer func(ctx context.Context) (jetstream.Consumer, error)
	docs           docReader
	marker         string        // says the fill was done; later starts keep the data
	every          time.Duration // between two progress lines
	out            io.Writer     // the terminal
}

// run re-issues every shop the sample APIs list, unless the marker says it
// was done, and prints a progress line every f.every and one line when
// every document is in. A document is in when the projector has
// acknowledged its event — it does only once both stores have the document
// (or a tombstone, for a shop deleted meanwhile) — so the fill is done when
// every event is published and the replay consumer has none pending and none
// unacknowledged; the doc store is then read to count what it holds. The
// marker is written only then: a fill cut short by Ctrl-C starts over next
// time, which is harmless (re-issuing is).
func (f *filler) run(ctx context.Context) error {
	if b, err := os.ReadFile(f.marker); err == nil {
		fmt.Fprintf(f.out, "The read model was filled at %s; it and the sample APIs' changes are as the last run left them.\n", strings.TrimSpace(string(b)))
		return nil
	}
	start := time.Now()
	ids, err := f.list(ctx)
	if err != nil {
		return err
	}
	cons, err := f.replayConsumer(ctx)
	if err != nil {
		return fmt.Errorf("the fill: %w", err)
	}
	fmt.Fprintf(f.out, "Filling the read model: re-issuing all %d shops to the projector; a line every %s until every document is in.\n", len(ids), f.every)

	r := replay.NewReissuer(f.js, f.def, replay.ReissueOptions{Rate: -1, RunID: "demo-fill"})
	g, gctx := errgroup.WithContext(ctx)
	published := make(chan struct{})
	g.Go(func() error {
		defer close(published)
		return r.Reissue(gctx, ids)
	})
	g.Go(func() error { return f.watch(gctx, cons, r, len(ids), start, published) })
	if err := g.Wait(); err != nil {
		return err
	}

	docs, deleted, missing, err := f.count(ctx, ids)
	if err != nil {
		return err
	}
	took := time.Since(start)
	in := docs + deleted
	line := fmt.Sprintf("Filled: all %d documents are in", in)
	if in < len(ids) {
		line = fmt.Sprintf("Filled: %d of %d documents are in", in, len(ids))
	}
	line += fmt.Sprintf(", %s after the start (%.0f/s)", took.Round(100*time.Millisecond), float64(in)/took.Seconds())
	if deleted > 0 {
		line += fmt.Sprintf("; %d of them deleted meanwhile by the sample APIs' changes", deleted)
	}
	fmt.Fprintln(f.out, line+".")
	if missing > 0 {
		fmt.Fprintf(f.out, "%d shops are not in the doc store: their events were dead-lettered (go run ./cmd/replay dlq %s --list says why).\n", missing, f.def.Name)
	}
	if err := os.WriteFile(f.marker, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return fmt.Errorf("the fill's marker: %w", err)
	}
	return nil
}

// list reads every shop id from the sample APIs' list endpoint.
func (f *filler) list(ctx context.Context) ([]string, error) {
	src := source.New(source.Options{})
	var ids []string
	for cursor := ""; ; {
		url, err := f.def.ListURL(cursor)
		if err != nil {
			return nil, err
		}
		body, err := src.Get(ctx, url)
		if err != nil {
			return nil, fmt.Errorf("listing shops: %w", err)
		}
		page, next, err := f.def.ListPage(body)
		if err != nil {
			return nil, err
		}
		ids = append(ids, page...)
		if cursor = next; cursor == "" {
			return ids, nil
		}
	}
}

// watch prints a progress line every f.every until every event is
// published and acknowledged. Documents in are the events published less
// those the replay consumer has pending or unacknowledged.
func (f *filler) watch(ctx context.Context, cons jetstream.Consumer, r *replay.Reissuer, total int, start time.Time, published <-chan struct{}) error {
	poll := time.NewTicker(min(f.every, 250*time.Millisecond))
	defer poll.Stop()
	told := time.Now()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-poll.C:
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("the fill: the replay consumer: %w", err)
		}
		left := info.NumPending + uint64(info.NumAckPending)
		select {
		case <-published:
			if left == 0 {
				return nil
			}
		default:
		}
		if time.Since(told) < f.every {
			continue
		}
		told = time.Now()
		in := max(r.Done()-int64(left), 0)
		elapsed := time.Since(start)
		fmt.Fprintf(f.out, "Filling: %d of %d documents in (%.0f/s), %s\n", in, total, float64(in)/elapsed.Seconds(), elapsed.Round(time.Second))
	}
}

// count reads ids from the doc store: documents, tombstones (shops deleted
// since they were listed) and ids with nothing stored.
func (f *filler) count(ctx context.Context, ids []string) (docs, deleted, missing int, err error) {
	for len(ids) > 0 {
		n := min(len(ids), 1000)
		got, err := f.docs.GetMany(ctx, ids[:n])
		if err != nil {
			return 0, 0, 0, fmt.Errorf("the fill: counting the documents: %w", err)
		}
		for _, s := range got {
			switch {
			case s == nil:
				missing++
			case s.Deleted:
				deleted++
			default:
				docs++
			}
		}
		ids = ids[n:]
	}
	return docs, deleted, missing, nil
}
