package deploy

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// nonroot is the user distroless's :nonroot images run as.
const nonroot = 65532

// The image cannot be built here (no Docker daemon, no registry for the base images):
// this checks the Dockerfile another way. Its go build line, run as written with
// VERSION and COMMIT given, makes every command; each is a static binary (no program
// interpreter, no dynamic section: it runs on distroless static, which has no libc),
// runs as the non-root user the image runs as, and prints the version and commit given
// and the Go version, exiting 0. The final stage is distroless static, nonroot.
func TestDockerfile(t *testing.T) {
	d := readDockerfile(t)
	if !strings.HasPrefix(d.base, "gcr.io/distroless/static") || !strings.HasSuffix(d.base, ":nonroot") {
		t.Errorf("final stage FROM %s, want gcr.io/distroless/static...:nonroot", d.base)
	}
	if d.user != "65532:65532" {
		t.Errorf("final stage USER %q, want 65532:65532 (distroless's nonroot)", d.user)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "version.version=${VERSION}", "version.commit=${COMMIT}"} {
		if !strings.Contains(d.build, want) {
			t.Errorf("the go build line lacks %s: %s", want, d.build)
		}
	}
	if len(d.commands) != 3 {
		t.Errorf("the image builds %v, want ./cmd/projector ./cmd/queryapi ./cmd/replay", d.commands)
	}

	dir := binaryDir(t)
	for _, pkg := range d.commands {
		name := filepath.Base(pkg)
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			f, err := elf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
					t.Errorf("%s has a %s program header: not static", name, p.Type)
				}
			}
			if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
				t.Errorf("%s needs shared libraries %v", name, libs)
			}
			if ldd, err := exec.LookPath("ldd"); err == nil {
				out, _ := exec.Command(ldd, path).CombinedOutput()
				if !strings.Contains(string(out), "not a dynamic executable") && !strings.Contains(string(out), "statically linked") {
					t.Errorf("ldd %s: %s, want not a dynamic executable", name, out)
				}
			}

			flag := "-version"
			if name == "replay" {
				flag = "--version"
			}
			cmd := exec.Command(path, flag)
			cmd.Env = []string{} // the image sets none
			uid := os.Geteuid()
			if uid == 0 { // as the image runs it; a non-root tester runs it as itself
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nonroot, Gid: nonroot}}
				uid = nonroot
			}
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s %s as uid %d: %v", name, flag, uid, err)
			}
			want := name + " " + testVersion + " (commit " + testCommit + ", " + runtime.Version() + ")\n"
			if string(out) != want {
				t.Errorf("%s %s as uid %d printed %q, want %q", name, flag, uid, out, want)
			}
		})
	}
}

// The build context leaves out what the image does not need and what would make every
// build miss the cache: VCS data, the demo's and the tests' state.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for l := range strings.SplitSeq(string(b), "\n") {
		have[strings.TrimSpace(l)] = true
	}
	for _, want := range []string{".git", ".demo", "readside-data", "deploy"} {
		if !have[want] {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
}
