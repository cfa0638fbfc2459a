package query

import "net/http"

// openAPI serves the OpenAPI 3.1 document generated from the definitions.
func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(s.openAPIDoc())
}

// openAPIDoc is generated in openapi_gen.go.
func (s *Server) openAPIDoc() []byte { return []byte(`{"openapi":"3.1.0"}`) }
