package config

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterReloadInterval bounds how long a Redis Cluster client may route by
// a slot map that no failure has questioned (go-redis's default is 60 s).
const clusterReloadInterval = 10 * time.Second

// reloadOnFailure is a go-redis hook for a Redis Cluster client: when a
// command cannot reach its node (a master was lost) or the cluster answers
// CLUSTERDOWN, it asks the client to reload the slot map at once. go-redis reloads on MOVED and ASK replies, but
// a dead master answers nothing, so without this the client keeps sending
// that master's slots to it until its periodic reload, long after a replica
// took over. Reloads are coalesced by go-redis (one at a time, 200 ms apart),
// so a burst of failures costs a few CLUSTER SLOTS, not one each.
type reloadOnFailure struct {
	c *redis.ClusterClient
}

// DialHook adds nothing: a failed dial fails its command, which
// ProcessHook and ProcessPipelineHook see.
func (h reloadOnFailure) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadOnFailure) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(ctx, cmd.Err())
		return err
	}
}

func (h reloadOnFailure) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			if h.check(ctx, cmd.Err()) {
				break
			}
		}
		return err
	}
}

// check reloads the slot map when err says a node could not be reached, or
// the cluster says it is down (a master lost and not yet replaced), and
// reports whether it did.
func (h reloadOnFailure) check(ctx context.Context, err error) bool {
	if !unreachable(err) && !redis.HasErrorPrefix(err, "CLUSTERDOWN") {
		return false
	}
	h.c.ReloadState(ctx)
	return true
}

// unreachable reports whether err is a failure to talk to a node, rather
// than an answer from it (an error reply, or redis.Nil) or a caller's
// context ending. The caller's context may well have ended by then (go-redis
// retries a dead node until it does): the error itself says what happened.
func unreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var reply redis.Error // redis.Nil is one too
	return !errors.As(err, &reply)
}
