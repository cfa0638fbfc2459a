package benchkit

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readside/readside/internal/testenv"
)

const howToStart = "start the test services with `make testenv`"

func TestIsLocal(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:6391": true, "localhost:6391": true, "[::1]:6391": true, "127.0.0.1": true,
		"10.0.0.7:6379": false, "redis.internal:6379": false,
	} {
		if got := isLocal(addr); got != want {
			t.Errorf("isLocal(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestNamespace(t *testing.T) {
	a, err := Namespace("bench")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Namespace("bench")
	if len(a) != len("bench")+6 || !strings.HasPrefix(a, "bench") || a == b {
		t.Errorf("Namespace: %q, then %q", a, b)
	}
}

func TestConnectSaysHowToStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, cfg := range []StoresConfig{
		{RedisAddr: closed, ElasticURL: testenv.ElasticURL(), HowToStart: howToStart},
		{RedisAddr: testenv.RedisAddr(), ElasticURL: "http://" + closed, HowToStart: howToStart},
	} {
		s, err := Connect(context.Background(), cfg)
		if err == nil {
			s.Close()
			t.Errorf("Connect(%+v) succeeded", cfg)
			continue
		}
		if !strings.Contains(err.Error(), closed+" does not answer") || !strings.HasSuffix(err.Error(), howToStart) {
			t.Errorf("Connect: %v", err)
		}
	}
}

// Clean deletes what is under the namespace and nothing else.
func TestStoresClean(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var esRequests atomic.Int64
	s, err := Connect(ctx, StoresConfig{
		RedisAddr: testenv.RedisAddr(), ElasticURL: testenv.ElasticURL(), HowToStart: howToStart,
		WrapElastic: func(next http.RoundTripper) http.RoundTripper {
			return roundTripper(func(r *http.Request) (*http.Response, error) {
				esRequests.Add(1)
				return next.RoundTrip(r)
			})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if esRequests.Load() == 0 {
		t.Error("WrapElastic's transport saw no request")
	}
	if d := s.Describe(); !strings.Contains(d, "Redis ") || !strings.Contains(d, testenv.ElasticURL()) {
		t.Errorf("Describe = %q", d)
	}
	ns, err := Namespace("bktest")
	if err != nil {
		t.Fatal(err)
	}
	other := "x" + ns // does not start with ns
	for _, k := range []string{ns + ":1", ns + "-a:2", other} {
		if err := s.Redis.Set(ctx, k, "v", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	defer s.Redis.Del(context.Background(), other)
	for _, index := range []string{ns + "-shops-1", other} {
		res, err := s.Elastic.Indices.Create(index, s.Elastic.Indices.Create.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.IsError() {
			t.Fatalf("creating %s: %s", index, res.Status())
		}
	}
	defer s.DeleteIndices(context.Background(), other)

	if err := s.Clean(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if keys, err := s.Redis.Keys(ctx, ns+"*").Result(); err != nil || len(keys) > 0 {
		t.Errorf("keys left under %s: %q (%v)", ns, keys, err)
	}
	if n, err := s.Redis.Exists(ctx, other).Result(); err != nil || n != 1 {
		t.Errorf("Clean deleted %s too (%v)", other, err)
	}
	for index, want := range map[string]int{ns + "-shops-1": 404, other: 200} {
		res, err := s.Elastic.Indices.Exists([]string{index}, s.Elastic.Indices.Exists.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("index %s: %s, want %d", index, res.Status(), want)
		}
	}
	// Nothing left to clean is no error.
	if err := s.Clean(ctx, ns); err != nil {
		t.Errorf("cleaning again: %v", err)
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
