package sink_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/readside/readside/internal/sink"
)

func TestBatchError(t *testing.T) {
	perm := &sink.PermanentError{Err: errors.New("mapper_parsing_exception: bad")}
	be := &sink.BatchError{Items: map[int]error{
		7: errors.New("seven"), 2: perm, 4: errors.New("four"), 9: errors.New("nine"), 11: context.DeadlineExceeded,
	}}
	msg := be.Error()
	wantMsg := "sink: 5 items failed: item 2: permanent: mapper_parsing_exception: bad; item 4: four; item 7: seven; and 2 more"
	if msg != wantMsg {
		t.Errorf("Error() = %q\nwant      %q", msg, wantMsg)
	}
	errs := be.Unwrap()
	if len(errs) != 5 || errs[0] != perm || errs[4] != context.DeadlineExceeded {
		t.Errorf("Unwrap() = %v, want the item errors by index", errs)
	}
	var pe *sink.PermanentError
	if !errors.As(be, &pe) || pe != perm {
		t.Errorf("errors.As does not find the permanent item")
	}
	if !errors.Is(fmt.Errorf("wrapped: %w", be), context.DeadlineExceeded) {
		t.Errorf("errors.Is does not see through a wrapped BatchError")
	}
}

func TestIsPermanent(t *testing.T) {
	perm := &sink.PermanentError{Err: errors.New("bad")}
	plain := errors.New("down")
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain", plain, false},
		{"permanent", perm, true},
		{"wrapped permanent", fmt.Errorf("x: %w", perm), true},
		{"permanent wrapping plain", &sink.PermanentError{Err: plain}, true},
		{"joined with a permanent", errors.Join(plain, perm), true},
		{"batch of permanents", &sink.BatchError{Items: map[int]error{0: perm, 3: fmt.Errorf("y: %w", perm)}}, true},
		{"batch with a transient item", &sink.BatchError{Items: map[int]error{0: perm, 1: plain}}, false},
		{"empty batch", &sink.BatchError{}, false},
		{"wrapped batch of permanents", fmt.Errorf("z: %w", &sink.BatchError{Items: map[int]error{2: perm}}), true},
	}
	for _, tt := range tests {
		if got := sink.IsPermanent(tt.err); got != tt.want {
			t.Errorf("%s: IsPermanent(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestPermanentErrorMessage(t *testing.T) {
	err := &sink.PermanentError{Err: errors.New("document_parsing_exception: failed to parse")}
	if !strings.Contains(err.Error(), "document_parsing_exception") || errors.Unwrap(err) != err.Err {
		t.Errorf("PermanentError = %q, unwraps to %v", err, errors.Unwrap(err))
	}
}
