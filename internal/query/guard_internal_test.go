package query

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"
)

// A request id must never read as a number: the OpenAPI document says it is
// a string, and clients that guess types took "23161444881e-3" (a hex prefix
// of digits and an e, then the counter) for 2.3e7.
func TestRequestIDsNeverReadAsNumbers(t *testing.T) {
	for _, random := range [][]byte{
		{0x23, 0x16, 0x14, 0x44, 0x88, 0x1e}, // the prefix CI drew
		{0x00, 0x00, 0x00, 0x00, 0x00, 0x00},
		{0x12, 0x34, 0x56, 0x78, 0x90, 0x0e},
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	} {
		g := &requestIDs{prefix: requestIDPrefix(random)}
		for range 40 {
			id := g.next()
			if _, err := strconv.ParseFloat(id, 64); err == nil {
				t.Errorf("request id %q reads as a number", id)
			}
			if !safeToken(id) {
				t.Errorf("request id %q is not a safe token", id)
			}
		}
	}
}

// A request's context has its id and deadline without a timer: Err tells
// the deadline passed, and bounded gives what waits a Done that closes then.
func TestRequestContext(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc := &requestCtx{Context: parent, id: "r1-1", deadline: time.Now().Add(50 * time.Millisecond)}
	if RequestID(rc) != "r1-1" {
		t.Errorf("RequestID %q", RequestID(rc))
	}
	if d, ok := rc.Deadline(); !ok || !d.Equal(rc.deadline) {
		t.Errorf("Deadline %v %v", d, ok)
	}
	if rc.Err() != nil {
		t.Errorf("Err before the deadline: %v", rc.Err())
	}
	ctx, stop := bounded(rc)
	defer stop()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("bounded's Done did not close at the deadline")
	}
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) || !errors.Is(rc.Err(), context.DeadlineExceeded) {
		t.Errorf("after the deadline: bounded %v, request %v", ctx.Err(), rc.Err())
	}
	// The client going away ends both at once.
	rc2 := &requestCtx{Context: parent, id: "r1-2", deadline: time.Now().Add(time.Hour)}
	ctx2, stop2 := bounded(rc2)
	defer stop2()
	cancel()
	select {
	case <-ctx2.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("bounded's Done did not close when the client went away")
	}
	if !errors.Is(rc2.Err(), context.Canceled) {
		t.Errorf("request Err %v, want Canceled", rc2.Err())
	}
}
