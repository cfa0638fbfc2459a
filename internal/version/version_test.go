package version

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestResolve(t *testing.T) {
	vcs := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"},
	}}
	for _, tc := range []struct {
		name            string
		version, commit string
		bi              *debug.BuildInfo
		want            Info
	}{
		{"stamped wins", "v1.2.0", "f00", vcs, Info{"v1.2.0", "f00", "go1.26.8"}},
		{"vcs settings", "", "", vcs, Info{"(devel)", "abc123-dirty", "go1.26.8"}},
		{"module version", "", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.3.0"}}, Info{"v1.3.0", "unknown", "go1.26.8"}},
		{"nothing recorded", "", "", &debug.BuildInfo{GoVersion: "go1.26.8"}, Info{"(devel)", "unknown", "go1.26.8"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := resolve(tc.version, tc.commit, tc.bi); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestLine(t *testing.T) {
	got := Info{"v1.2.0", "f00", "go1.26.8"}.Line("projector")
	if want := "projector v1.2.0 (commit f00, go1.26.8)"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(Info{"v1.2.0", "f00", "go1.26.8"}.Collector())
	want := `# HELP readside_build_info Always 1; its labels tell the version, commit and Go version of the running binary.
# TYPE readside_build_info gauge
readside_build_info{commit="f00",goversion="go1.26.8",version="v1.2.0"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "readside_build_info"); err != nil {
		t.Fatal(err)
	}
}
