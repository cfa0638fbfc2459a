package elasticindex

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/readside/readside/internal/sink"
)

func TestItemError(t *testing.T) {
	tests := []struct {
		status    int64
		typ       string
		wantErr   bool
		permanent bool
	}{
		{200, "", false, false},
		{201, "", false, false},
		{409, "version_conflict_engine_exception", false, false}, // stale: dropped
		{429, "es_rejected_execution_exception", true, false},
		{500, "internal_server_error", true, false},
		{503, "unavailable_shards_exception", true, false},
		{404, "index_not_found_exception", true, false}, // the alias is missing
		{400, "document_parsing_exception", true, true},
		{400, "mapper_parsing_exception", true, true},
		{400, "illegal_argument_exception", true, true},
		{413, "", true, true},
		{0, "", true, false},
	}
	for _, tt := range tests {
		err := itemError(tt.status, tt.typ, "why")
		if (err != nil) != tt.wantErr || sink.IsPermanent(err) != tt.permanent {
			t.Errorf("itemError(%d, %s) = %v, want error %v permanent %v", tt.status, tt.typ, err, tt.wantErr, tt.permanent)
		}
		if err != nil && (!strings.Contains(err.Error(), tt.typ) || !strings.Contains(err.Error(), "why")) {
			t.Errorf("itemError(%d, %s) = %q, want the type and the reason", tt.status, tt.typ, err)
		}
	}
}

func TestBulkFailures(t *testing.T) {
	sent := []int{0, 2, 3, 5} // items 1 and 4 of the docs were not sent
	tests := []struct {
		name      string
		resp      string
		wantItems []int // indices in the docs that failed
		permanent []int
		wantErr   bool
	}{
		{name: "all ok", resp: `{"errors":false,"items":[{"index":{"status":201}},{"index":{"status":200}},{"index":{"status":201}},{"index":{"status":201}}]}`},
		{name: "ok without items (trusted)", resp: `{"errors":false}`},
		{name: "conflicts are not errors", resp: `{"errors":true,"items":[{"index":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"v"}}},{"index":{"status":201}},{"index":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"v"}}},{"index":{"status":200}}]}`},
		{
			name:      "mixed",
			resp:      `{"errors":true,"items":[{"index":{"status":201}},{"index":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},{"index":{"status":400,"error":{"type":"document_parsing_exception","reason":"failed to parse"}}},{"index":{"status":503,"error":{"type":"unavailable_shards_exception","reason":"x"}}}]}`,
			wantItems: []int{2, 3, 5},
			permanent: []int{3},
		},
		{name: "fewer items than sent", resp: `{"errors":true,"items":[{"index":{"status":201}}]}`, wantErr: true},
		{name: "more items than sent", resp: `{"errors":true,"items":[{"index":{"status":201}},{"index":{"status":201}},{"index":{"status":201}},{"index":{"status":201}},{"index":{"status":201}}]}`, wantErr: true},
		{name: "no items", resp: `{"errors":true}`, wantErr: true},
	}
	for _, tt := range tests {
		var failed sink.Failures
		failed.Add(1, &sink.PermanentError{}) // from validation, kept
		_, err := bulkFailures([]byte(tt.resp), sent, 1, &failed)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: err = %v, want error %v", tt.name, err, tt.wantErr)
			continue
		}
		if tt.wantErr {
			continue
		}
		if len(failed) != len(tt.wantItems)+1 {
			t.Errorf("%s: failed = %v, want items %v and 1", tt.name, failed, tt.wantItems)
		}
		for _, i := range tt.wantItems {
			if failed[i] == nil {
				t.Errorf("%s: item %d did not fail", tt.name, i)
			}
		}
		for _, i := range tt.wantItems {
			isPerm := false
			for _, p := range tt.permanent {
				isPerm = isPerm || p == i
			}
			if sink.IsPermanent(failed[i]) != isPerm {
				t.Errorf("%s: item %d permanent = %v, want %v", tt.name, i, !isPerm, isPerm)
			}
		}
	}
}

func TestCreateBody(t *testing.T) {
	mapping := map[string]any{"dynamic": "strict", "properties": map[string]any{"n": map[string]any{"type": "long"}}}
	e := New(nil, Options{Alias: "shops", Mapping: mapping, Settings: map[string]any{"number_of_shards": 2}})
	b, err := e.createBody()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"aliases":{"shops":{"is_write_index":true}},"mappings":{"dynamic":"strict","properties":{"n":{"type":"long"},"readside_deleted":{"type":"boolean"}}},"settings":{"number_of_shards":2}}`
	if string(b) != want {
		t.Errorf("createBody =\n%s\nwant\n%s", b, want)
	}
	if _, ok := mapping["properties"].(map[string]any)[DeletedField]; ok {
		t.Errorf("createBody changed the caller's mapping")
	}
	if b, err := New(nil, Options{Alias: "a"}).createBody(); err != nil ||
		string(b) != `{"aliases":{"a":{"is_write_index":true}},"mappings":{"properties":{"readside_deleted":{"type":"boolean"}}}}` {
		t.Errorf("createBody without a mapping = %s, %v", b, err)
	}
	if _, err := New(nil, Options{Alias: "a", Mapping: map[string]any{"properties": "x"}}).createBody(); err == nil {
		t.Errorf("createBody accepted properties that are not an object")
	}
}

func FuzzWriteJSONString(f *testing.F) {
	for _, s := range []string{"", "plain-id_42", `"q"`, `a\b`, "line\nbreak", "\x00\x1f", "ü日本😀", "<&>", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return // ids are checked to be valid UTF-8 before
		}
		var b bytes.Buffer
		writeJSONString(&b, s)
		var got string
		if err := json.Unmarshal(b.Bytes(), &got); err != nil || got != s {
			t.Fatalf("writeJSONString(%q) = %s, decodes to %q, %v", s, b.Bytes(), got, err)
		}
	})
}

// TestBulkFailuresRebuild: with the rebuild copy, items come in pairs; the
// doc's own item decides first, a copy failing transiently is transient, a
// copy the new index rejects for good or that finds no rebuild alias is no
// failure.
func TestBulkFailuresRebuild(t *testing.T) {
	sent := []int{0, 1, 2, 3, 4}
	const (
		ok       = `{"index":{"status":201}}`
		stale    = `{"index":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"v"}}}`
		mapping  = `{"index":{"status":400,"error":{"type":"document_parsing_exception","reason":"bad"}}}`
		busy     = `{"index":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"full"}}}`
		noAlias  = `{"index":{"status":404,"error":{"type":"index_not_found_exception","reason":"no such index"}}}`
		response = `{"errors":true,"items":[` +
			ok + `,` + stale + `,` + // 0: done (stale in the new index)
			ok + `,` + busy + `,` + // 1: the new index is busy: transient
			mapping + `,` + busy + `,` + // 2: the alias rejects it: permanent
			stale + `,` + noAlias + `,` + // 3: the rebuild alias is gone: done
			ok + `,` + mapping + `]}` // 4: the new index rejects it for good: left out, done
	)
	var failed sink.Failures
	gone, err := bulkFailures([]byte(response), sent, 2, &failed)
	if err != nil {
		t.Fatal(err)
	}
	if !gone {
		t.Errorf("rebuildGone = false, want true")
	}
	if len(failed) != 2 || failed[1] == nil || failed[2] == nil {
		t.Fatalf("failed = %v, want items 1 and 2", failed)
	}
	if sink.IsPermanent(failed[1]) || !strings.Contains(failed[1].Error(), "rebuild index") {
		t.Errorf("item 1: %v, want a transient rebuild index error", failed[1])
	}
	if !sink.IsPermanent(failed[2]) {
		t.Errorf("item 2: %v, want the alias's permanent error", failed[2])
	}
	if _, err := bulkFailures([]byte(`{"errors":true,"items":[`+ok+`,`+ok+`,`+ok+`]}`), sent[:2], 2, &failed); err == nil {
		t.Errorf("3 items answered for 2 docs × 2: no error")
	}
}
