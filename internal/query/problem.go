package query

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Problem is an RFC 9457 problem detail, the body of every error answer.
type Problem struct {
	Type     string           `json:"type"`
	Title    string           `json:"title"`
	Status   int              `json:"status"`
	Detail   string           `json:"detail,omitempty"`
	Instance string           `json:"instance,omitempty"`
	Errors   []ParameterIssue `json:"errors,omitempty"`
	// RequestID is the request's X-Request-Id, for the client to quote: the
	// logs hold what went wrong, under this id.
	RequestID string `json:"requestId,omitempty"`
}

// ParameterIssue is one bad query parameter.
type ParameterIssue struct {
	Parameter string `json:"parameter"`
	Message   string `json:"message"`
}

// Problem types: stable URIs clients can switch on.
const (
	ProblemBadParameter = "https://readside.dev/problems/bad-parameter"
	ProblemNotFound     = "https://readside.dev/problems/not-found"
	ProblemUnavailable  = "https://readside.dev/problems/unavailable"
	ProblemTimeout      = "https://readside.dev/problems/timeout"
	// ProblemOverloaded: the replica sheds load (503 with Retry-After);
	// another replica, or this one a moment later, can answer.
	ProblemOverloaded       = "https://readside.dev/problems/overloaded"
	ProblemMethodNotAllowed = "https://readside.dev/problems/method-not-allowed"
	ProblemTooLarge         = "https://readside.dev/problems/request-too-large"
)

func writeProblem(w http.ResponseWriter, r *http.Request, p Problem) {
	p.Instance = r.URL.Path
	if len(p.Instance) > 1024 {
		p.Instance = p.Instance[:1024]
	}
	p.RequestID = w.Header().Get("X-Request-Id")
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	json.NewEncoder(w).Encode(p)
}

func badRequest(w http.ResponseWriter, r *http.Request, issues []ParameterIssue) {
	detail := issues[0].Parameter + ": " + issues[0].Message
	if len(issues) > 1 {
		detail += " (and " + strconv.Itoa(len(issues)-1) + " more)"
	}
	writeProblem(w, r, Problem{Type: ProblemBadParameter, Title: "Bad query parameter", Status: http.StatusBadRequest, Detail: detail, Errors: issues})
}

func notFound(w http.ResponseWriter, r *http.Request, detail string) {
	writeProblem(w, r, Problem{Type: ProblemNotFound, Title: "Not found", Status: http.StatusNotFound, Detail: detail})
}

func unavailable(w http.ResponseWriter, r *http.Request, detail string, retryAfter time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(retryAfter.Seconds()))))
	writeProblem(w, r, Problem{Type: ProblemUnavailable, Title: "Service unavailable", Status: http.StatusServiceUnavailable, Detail: detail})
}

func timedOut(w http.ResponseWriter, r *http.Request) {
	writeProblem(w, r, Problem{Type: ProblemTimeout, Title: "Request deadline exceeded", Status: http.StatusGatewayTimeout,
		Detail: "the backends did not answer within the request deadline"})
}

func overloaded(w http.ResponseWriter, r *http.Request, detail string) {
	w.Header().Set("Retry-After", strconv.Itoa(int(retryAfterShed.Seconds())))
	writeProblem(w, r, Problem{Type: ProblemOverloaded, Title: "Overloaded", Status: http.StatusServiceUnavailable, Detail: detail})
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	writeProblem(w, r, Problem{Type: ProblemMethodNotAllowed, Title: "Method not allowed", Status: http.StatusMethodNotAllowed,
		Detail: "the API is read-only: use GET (or HEAD)"})
}

func uriTooLong(w http.ResponseWriter, r *http.Request, limit int) {
	writeProblem(w, r, Problem{Type: ProblemTooLarge, Title: "Request target too long", Status: http.StatusRequestURITooLong,
		Detail: "the request target is " + strconv.Itoa(len(r.RequestURI)) + " bytes; at most " + strconv.Itoa(limit) + " are read"})
}

func headersTooLarge(w http.ResponseWriter, r *http.Request) {
	writeProblem(w, r, Problem{Type: ProblemTooLarge, Title: "Request header fields too large", Status: http.StatusRequestHeaderFieldsTooLarge,
		Detail: "the header fields are over " + strconv.Itoa(maxHeaderBytes>>10) + " KB"})
}
