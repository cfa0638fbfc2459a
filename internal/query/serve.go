package query

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Serve serves h on ln with the timeouts a public read API needs, until ctx
// ends; then it lets the requests under way finish (at most requestTimeout
// and 5s more) and returns. requestTimeout is the API's (Options).
func Serve(ctx context.Context, ln net.Listener, h http.Handler, requestTimeout time.Duration, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      requestTimeout + 5*time.Second,
		IdleTimeout:       90 * time.Second,
		// Room for the longest valid request line and more: the API
		// itself answers a request target or header fields over its limits
		// with a problem (414, 431); net/http's own plain-text 431 is left
		// for requests over a megabyte.
		MaxHeaderBytes: 1 << 20,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), requestTimeout+5*time.Second)
	defer cancel()
	return srv.Shutdown(shut)
}
