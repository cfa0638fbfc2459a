package main

import (
	"testing"

	"github.com/readside/readside/internal/backend"
	"github.com/readside/readside/internal/config"
	"github.com/readside/readside/internal/sink"
	"github.com/readside/readside/internal/storeapi"
	"github.com/readside/readside/internal/testenv"
	"github.com/readside/readside/projections"
)

// With one store embedded, replay reads that one through the projector
// that holds it and the other directly: a rebuild on Elasticsearch needs
// the index's generations, which the projector's store API does not serve,
// and a doc store on Redis is read from Redis, not through the projector.
func TestStoresOfOneEmbedded(t *testing.T) {
	def, err := projections.Parse("shops.yaml", []byte(testenv.ShopDefinition("onembedded", "http://127.0.0.1:1", true)), projections.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                string
		backends            config.Backends
		wantDocs, wantIndex string
		docsRemote          bool // read through the projector
		indexRemote         bool
	}{
		{"embedded docs, Elasticsearch", config.Backends{RedisAddrs: []string{config.Embedded}, ElasticURLs: []string{testenv.ElasticURL()}},
			"embedded-docs", "elasticsearch", true, false},
		{"Redis, embedded search", config.Backends{RedisAddrs: []string{testenv.RedisAddr()}, ElasticURLs: []string{config.Embedded}},
			"redis", "embedded-search", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.backends.DataDir = t.TempDir()
			a := &app{backends: tt.backends, projectorURL: "http://127.0.0.1:1"}
			stores, err := backend.OpenStores(a.backends, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer stores.Close()
			st, err := a.storesOf(stores)(t.Context(), def)
			if err != nil {
				t.Fatal(err)
			}
			if st.DocsName != tt.wantDocs || st.IndexName != tt.wantIndex {
				t.Errorf("stores %s and %s, want %s and %s", st.DocsName, st.IndexName, tt.wantDocs, tt.wantIndex)
			}
			if _, remote := st.Docs.(*storeapi.Store); remote != tt.docsRemote {
				t.Errorf("doc store %T: through the projector %t, want %t", st.Docs, remote, tt.docsRemote)
			}
			if _, remote := st.Index.(*storeapi.Store); remote != tt.indexRemote {
				t.Errorf("index %T: through the projector %t, want %t", st.Index, remote, tt.indexRemote)
			}
			if _, ok := st.Index.(sink.Generations); ok == tt.indexRemote {
				t.Errorf("index %T: generations %t, want %t (rebuild on Elasticsearch swaps them)", st.Index, ok, !tt.indexRemote)
			}
		})
	}
}
