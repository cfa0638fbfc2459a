package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/readside/readside/internal/sink"
)

var _ sink.Scanner = (*Store)(nil)

// scanPageSize is how many keys one SCAN asks for.
const scanPageSize = 500

// Scan walks the keys of the key pattern with SCAN MATCH, node by node on a
// Redis Cluster (its masters, ordered by address), and reads the header
// of each value (its version and kind, see sink.DecodeValue) with GETRANGE, in one round trip per
// page, to tell documents from tombstones. A position is the node's address
// (empty for one server), "|" and its SCAN cursor. SCAN may return a key
// twice; a key stored for the whole scan is returned at least once.
func (r *Store) Scan(ctx context.Context, from string, fn func(sink.ScanPage) error) error {
	if r.err != nil {
		return r.err
	}
	pattern := globEscape(r.prefix) + "*" + globEscape(r.suffix)
	nodes, err := scanNodes(ctx, r.c)
	if err != nil {
		return err
	}
	i := 0
	var cursor uint64
	if from != "" {
		node, at, ok := strings.Cut(from, "|")
		c, err := strconv.ParseUint(at, 10, 64)
		if !ok || err != nil {
			return fmt.Errorf("sink: redis scan: %q: %w", from, sink.ErrBadPosition)
		}
		if i = slices.IndexFunc(nodes, func(n scanNode) bool { return n.addr == node }); i < 0 {
			return fmt.Errorf("sink: redis scan: node %q of the position is not among the nodes now (%d): start the scan again", node, len(nodes))
		}
		cursor = c
	}
	for ; i < len(nodes); i++ {
		n := nodes[i]
		for {
			keys, next, err := n.c.Scan(ctx, cursor, pattern, scanPageSize).Result()
			if err != nil {
				return fmt.Errorf("sink: redis SCAN %s: %w", pattern, err)
			}
			page, err := r.classify(ctx, n.c, keys)
			if err != nil {
				return err
			}
			page.At = n.addr + "|" + strconv.FormatUint(cursor, 10)
			switch {
			case next != 0:
				page.Next = n.addr + "|" + strconv.FormatUint(next, 10)
			case i+1 < len(nodes):
				page.Next = nodes[i+1].addr + "|0"
			}
			if err := fn(page); err != nil {
				return err
			}
			if next == 0 {
				break
			}
			cursor = next
		}
		cursor = 0
	}
	return nil
}

// classify turns keys into the ids of documents and of tombstones, reading
// the header of each value in one pipeline. Keys gone since the SCAN, or
// holding something else than a value of this store, are left out.
func (r *Store) classify(ctx context.Context, c redis.Cmdable, keys []string) (sink.ScanPage, error) {
	var page sink.ScanPage
	if len(keys) == 0 {
		return page, nil
	}
	kinds := make([]*redis.StringCmd, len(keys))
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			kinds[i] = p.GetRange(ctx, k, 0, sink.ValueHeaderLen-1)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) && !redis.HasErrorPrefix(err, "WRONGTYPE") {
		return page, fmt.Errorf("sink: redis: reading %d keys: %w", len(keys), err)
	}
	for i, k := range keys {
		if len(k) < len(r.prefix)+len(r.suffix) || !strings.HasPrefix(k, r.prefix) || !strings.HasSuffix(k, r.suffix) {
			continue
		}
		id := k[len(r.prefix) : len(k)-len(r.suffix)]
		header, err := kinds[i].Result()
		switch {
		case err != nil, len(header) < sink.ValueHeaderLen: // gone since the SCAN, or not a value
		case sink.IsTombstoneValue([]byte(header)):
			page.Deleted = append(page.Deleted, id)
		default:
			page.IDs = append(page.IDs, id)
		}
	}
	return page, nil
}

// scanNode is one Store node to SCAN: the server, or each cluster master.
type scanNode struct {
	addr string
	c    *redis.Client
}

// scanNodes lists the nodes to scan, in a stable order (by address).
func scanNodes(ctx context.Context, c redis.UniversalClient) ([]scanNode, error) {
	switch c := c.(type) {
	case *redis.Client:
		return []scanNode{{addr: "", c: c}}, nil
	case *redis.ClusterClient:
		var mu sync.Mutex
		var nodes []scanNode
		err := c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			nodes = append(nodes, scanNode{addr: n.Options().Addr, c: n})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("sink: redis cluster: %w", err)
		}
		slices.SortFunc(nodes, func(a, b scanNode) int { return strings.Compare(a.addr, b.addr) })
		return nodes, nil
	}
	return nil, fmt.Errorf("sink: redis: cannot SCAN a %T: use a *redis.Client or *redis.ClusterClient", c)
}

// globEscape escapes the characters SCAN MATCH treats as a pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
