// Package version tells which build of Readside is running: the version and
// commit stamped at link time, else what the Go toolchain recorded, and the Go
// version. The commands print it for -version and export it as the
// readside_build_info metric.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Stamped at link time, the only values a package variable may hold here:
//
//	go build -ldflags "-X github.com/readside/readside/internal/version.version=v1.2.0 \
//	  -X github.com/readside/readside/internal/version.commit=$(git rev-parse HEAD)"
//
// The Dockerfile passes its VERSION and COMMIT build arguments this way.
var (
	version string
	commit  string
)

// Info is one build's identity.
type Info struct {
	Version   string // the -X version; else the main module's version ("(devel)" for a build from a work tree)
	Commit    string // the -X commit; else vcs.revision (with "-dirty" for modified files); else "unknown"
	GoVersion string // the Go toolchain that built the binary
}

// Get returns the running binary's Info. Values stamped with -X win; the
// rest come from runtime/debug.ReadBuildInfo, which records the VCS
// revision when the binary is built from a git work tree without
// -buildvcs=false.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(version, commit, bi)
}

func resolve(version, commit string, bi *debug.BuildInfo) Info {
	i := Info{Version: version, Commit: commit, GoVersion: runtime.Version()}
	if bi != nil {
		if bi.GoVersion != "" {
			i.GoVersion = bi.GoVersion
		}
		if i.Version == "" {
			i.Version = bi.Main.Version
		}
		if i.Commit == "" {
			var rev string
			var modified bool
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					modified = s.Value == "true"
				}
			}
			if rev != "" && modified {
				rev += "-dirty"
			}
			i.Commit = rev
		}
	}
	if i.Version == "" {
		i.Version = "(devel)"
	}
	if i.Commit == "" {
		i.Commit = "unknown"
	}
	return i
}

// Line is what -version prints: "NAME VERSION (commit COMMIT, GOVERSION)".
func (i Info) Line(name string) string {
	return fmt.Sprintf("%s %s (commit %s, %s)", name, i.Version, i.Commit, i.GoVersion)
}

// Collector returns the gauge readside_build_info{version,commit,goversion},
// always 1: joined on its labels, it tells which build each process runs,
// e.g. during a rollout. Register it on the registry main owns.
func (i Info) Collector() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "readside_build_info",
		Help:        "Always 1; its labels tell the version, commit and Go version of the running binary.",
		ConstLabels: prometheus.Labels{"version": i.Version, "commit": i.Commit, "goversion": i.GoVersion},
	})
	g.Set(1)
	return g
}
