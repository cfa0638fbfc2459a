package storeapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/readside/readside/internal/sink"
)

// What a Client's stores keep: the contracts of the stores they reach.
var (
	_ sink.Reader    = (*Store)(nil)
	_ sink.Scanner   = (*Store)(nil)
	_ sink.Counter   = (*Store)(nil)
	_ sink.Sampler   = (*Store)(nil)
	_ sink.Reindexer = (*Store)(nil)
)

// ErrNotSupported is wrapped by the error of a call the store behind the
// API does not support (the answer 501): the embedded docs store cannot
// re-index itself, Redis cannot count. Callers say what the backend cannot
// do, or take another way (sample a Scan).
var ErrNotSupported = sink.ErrNotSupported

// Error is a problem the projector answered.
type Error struct {
	URL    string // the projector's base URL
	Status int
	Detail string
}

func (e *Error) Error() string {
	return fmt.Sprintf("projector at %s: %s (%d %s)", e.URL, e.Detail, e.Status, http.StatusText(e.Status))
}

// Unwrap is ErrNotSupported for a 501.
func (e *Error) Unwrap() error {
	if e.Status == http.StatusNotImplemented {
		return ErrNotSupported
	}
	return nil
}

// Client reaches the stores a projector serves with Handler. It is safe for
// concurrent use. Every call's deadline is its context's.
type Client struct {
	base string
	hc   *http.Client
}

// NewClient is a client of the store API at baseURL (the projector's admin
// address, "http://127.0.0.1:9464"), sending with hc (nil:
// http.DefaultClient). hc's Timeout bounds every request, a re-index
// included: leave it 0 and give the calls contexts.
func NewClient(baseURL string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), hc: hc}
}

// Docs is the doc store of projection.
func (c *Client) Docs(projection string) *Store { return c.store(projection, "docs") }

// Index is the search index of projection.
func (c *Client) Index(projection string) *Store { return c.store(projection, "index") }

func (c *Client) store(projection, store string) *Store {
	return &Store{c: c, path: "/stores/v1/" + url.PathEscape(projection) + "/" + store}
}

// Refs is the reverse lookups of projection.
func (c *Client) Refs(projection string) *Refs {
	return &Refs{c: c, path: "/stores/v1/" + url.PathEscape(projection) + "/refs"}
}

// Store is one store behind the API. It keeps the contracts sink.Reader,
// Scanner, Counter, Sampler and Reindexer; a call the store itself does not
// support fails with an error wrapping ErrNotSupported.
type Store struct {
	c    *Client
	path string
}

// Get returns what is stored for id, or sink.ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (sink.Stored, error) {
	return sink.GetOne(ctx, s, id)
}

// stored is a sink.Stored as get answers it.
type stored struct {
	Version int64           `json:"version"`
	Deleted bool            `json:"deleted"`
	Body    json.RawMessage `json:"body"`
	BuiltAt time.Time       `json:"builtAt"`
}

// GetMany returns what is stored for ids, in their order, nil where nothing
// is: one request per MaxGet ids. Bodies are byte for byte as stored.
func (s *Store) GetMany(ctx context.Context, ids []string) ([]*sink.Stored, error) {
	out := make([]*sink.Stored, 0, len(ids))
	for start := 0; start < len(ids); start += MaxGet {
		chunk := ids[start:min(start+MaxGet, len(ids))]
		var got struct {
			Docs []*stored `json:"docs"`
		}
		if err := s.c.do(ctx, http.MethodPost, s.path+"/get", nil, idsBody{IDs: chunk}, &got); err != nil {
			return nil, err
		}
		if len(got.Docs) != len(chunk) {
			return nil, fmt.Errorf("projector at %s: %d documents answered for %d ids", s.c.base, len(got.Docs), len(chunk))
		}
		for _, d := range got.Docs {
			if d == nil {
				out = append(out, nil)
				continue
			}
			st := &sink.Stored{Version: d.Version, Deleted: d.Deleted, BuiltAt: d.BuiltAt}
			if len(d.Body) > 0 {
				st.Body = d.Body
			}
			out = append(out, st)
		}
	}
	return out, nil
}

// Scan asks for a page at a time (see sink.Scanner): the store's positions
// pass through as they are. A store whose next position is the one it was
// asked for would never end: that is an error.
func (s *Store) Scan(ctx context.Context, from string, fn func(sink.ScanPage) error) error {
	for {
		var p scanPage
		if err := s.c.do(ctx, http.MethodGet, s.path+"/scan", url.Values{"from": {from}}, nil, &p); err != nil {
			return err
		}
		page := sink.ScanPage{At: p.At, Next: p.Next}
		if len(p.IDs) > 0 {
			page.IDs = p.IDs
		}
		if len(p.Deleted) > 0 {
			page.Deleted = p.Deleted
		}
		if page.IDs != nil || page.Deleted != nil || page.Next != "" {
			if err := fn(page); err != nil {
				return err
			}
		}
		switch p.Next {
		case "":
			return nil
		case from:
			return fmt.Errorf("projector at %s: the scan of %s stays at position %q", s.c.base, s.path, from)
		}
		from = p.Next
	}
}

// Count counts the store's live documents.
func (s *Store) Count(ctx context.Context) (int64, error) {
	var got struct {
		Count int64 `json:"count"`
	}
	err := s.c.do(ctx, http.MethodGet, s.path+"/count", nil, nil, &got)
	return got.Count, err
}

// Sample picks up to n ids at random, n at most MaxSample.
func (s *Store) Sample(ctx context.Context, n int) ([]string, error) {
	var got idsBody
	err := s.c.do(ctx, http.MethodGet, s.path+"/sample", url.Values{"n": {strconv.Itoa(n)}}, nil, &got)
	return got.IDs, err
}

// Reindex has the index re-index itself and returns the documents copied.
// It returns when the re-index is done, which may take minutes; ending ctx
// ends the request, and the re-index with it.
func (s *Store) Reindex(ctx context.Context) (int64, error) {
	var got struct {
		Documents int64 `json:"documents"`
	}
	err := s.c.do(ctx, http.MethodPost, s.path+"/reindex", nil, nil, &got)
	return got.Documents, err
}

// Refs are the reverse lookups of one projection behind the API.
type Refs struct {
	c    *Client
	path string
}

// Users calls fn with each page of the ids of the documents that use
// entity key of source, as the store pages them, until the last page or
// until fn returns an error, which Users returns as it is.
func (r *Refs) Users(ctx context.Context, source, key string, fn func(ids []string) error) error {
	res, err := r.c.send(ctx, http.MethodGet, r.path, url.Values{"source": {source}, "key": {key}}, nil)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	dec := json.NewDecoder(res.Body)
	for {
		var line struct {
			IDs   []string `json:"ids"`
			Error string   `json:"error"`
		}
		switch err := dec.Decode(&line); {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return fmt.Errorf("projector at %s: reading the users of %s %s: %w", r.c.base, source, key, err)
		case line.Error != "": // after a 200: the store failed midway
			return fmt.Errorf("projector at %s: reading the users of %s %s: %s", r.c.base, source, key, line.Error)
		}
		if err := fn(line.IDs); err != nil {
			return err
		}
	}
}

// do sends a request and decodes its 200 answer into out.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	res, err := c.send(ctx, method, path, q, in)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		return fmt.Errorf("projector at %s: %s %s: the answer is not what the store API answers: %w", c.base, method, path, err)
	}
	return nil
}

// send sends a request with in as its JSON body (nil: none) and returns
// the answer when it is 200, else the problem as an *Error.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("storeapi: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("storeapi: the projector at %s does not answer: %w", c.base, err)
	}
	if res.StatusCode == http.StatusOK {
		return res, nil
	}
	defer res.Body.Close()
	return nil, c.problem(res)
}

// problem reads the *Error of an answer other than 200.
func (c *Client) problem(res *http.Response) error {
	e := &Error{URL: c.base, Status: res.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	var p Problem
	ct, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	switch {
	case ct == "application/problem+json" && json.Unmarshal(b, &p) == nil && p.Detail != "":
		e.Detail = p.Detail
	case res.StatusCode == http.StatusNotFound:
		e.Detail = "no store API here: a projector serves it on its -metrics-addr, and only with embedded stores"
	default:
		e.Detail = strings.TrimSpace(strings.ToValidUTF8(string(b[:min(len(b), 200)]), ""))
	}
	return e
}
