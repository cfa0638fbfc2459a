package deploy

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// Build arguments the tests give the Dockerfile's build.
const (
	testVersion = "v0.0.0-deploytest"
	testCommit  = "0123456789abcdef"
)

// dockerfile is what the tests read from ../Dockerfile.
type dockerfile struct {
	args     map[string]string // ARG defaults (the last one of each name)
	build    string            // the RUN line that runs go build, continuations joined
	outDir   string            // where that line writes the binaries (its -o)
	commands []string          // the packages it builds: ./cmd/NAME
	base     string            // the final stage's FROM
	user     string            // the final stage's USER
	copyTo   string            // where the final stage copies the binaries
}

var buildLine = regexp.MustCompile(`-o\s+(\S+)\s+((?:\./cmd/\S+\s*)+)$`)

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	f, err := os.Open("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := dockerfile{args: map[string]string{}}
	var lines []string
	var cur string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") || (l == "" && cur == "") {
			continue
		}
		if c, ok := strings.CutSuffix(l, `\`); ok {
			cur += c + " "
			continue
		}
		lines = append(lines, cur+l)
		cur = ""
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		switch strings.ToUpper(instr) {
		case "ARG":
			if k, v, ok := strings.Cut(rest, "="); ok {
				d.args[k] = v
			}
		case "FROM":
			d.base = strings.Fields(rest)[0]
			d.user, d.copyTo = "", ""
		case "USER":
			d.user = rest
		case "COPY":
			if f := strings.Fields(rest); strings.HasPrefix(f[0], "--from=") {
				d.copyTo = f[len(f)-1]
			}
		case "RUN":
			if strings.Contains(rest, "go build") {
				if d.build != "" {
					t.Fatal("Dockerfile: more than one RUN line runs go build")
				}
				d.build = rest
				m := buildLine.FindStringSubmatch(rest)
				if m == nil {
					t.Fatalf("Dockerfile: the go build line does not end in -o DIR ./cmd/...: %s", rest)
				}
				d.outDir, d.commands = m[1], strings.Fields(m[2])
			}
		}
	}
	if d.build == "" {
		t.Fatal("Dockerfile: no RUN line runs go build")
	}
	return d
}

// built are the commands built once, by the Dockerfile's own build line, for every
// test of the package.
var built struct {
	once sync.Once
	dir  string
	err  error
}

// binaryDir builds the Dockerfile's commands (see buildAsDockerfile) once and returns
// the directory holding them, by command name.
func binaryDir(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = buildAsDockerfile(readDockerfile(t))
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.dir
}

// buildAsDockerfile runs the Dockerfile's go build line with sh, as the image build
// does, in the repository's root (the build context) with the build arguments in the
// environment: VERSION and COMMIT the test's, the target this machine's, the rest their
// ARG defaults. The output directory is a fresh one readable by every user, so that a
// non-root user can run what it holds.
func buildAsDockerfile(d dockerfile) (string, error) {
	dir, err := os.MkdirTemp("", "readside-deploy-bin-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	cmd := exec.Command("sh", "-c", strings.ReplaceAll(d.build, d.outDir, dir+"/"))
	cmd.Dir = ".."
	cmd.Env = os.Environ()
	for k, v := range d.args {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, "VERSION="+testVersion, "COMMIT="+testCommit, "TARGETOS="+runtime.GOOS, "TARGETARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("the Dockerfile's build line: %v\n%s\n%s", err, d.build, out)
	}
	return dir, nil
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// flagSpec is a command's flag as its -h tells it.
type flagSpec struct {
	def string // its default, "" when -h shows none
}

// usage is what a daemon's -h says: its flags and the environment variables they read.
type usage struct {
	flags map[string]flagSpec
	env   map[string]bool
}

var (
	flagLine = regexp.MustCompile(`^  -([a-z0-9-]+)`)
	envName  = regexp.MustCompile(`\[\$([A-Z0-9_]+)`)
	defValue = regexp.MustCompile(`\(default "?([^")]*)"?\)\s*$`)
)

// usageOf runs the built command name with -h and parses its flags, their defaults and
// the environment variables they read.
func usageOf(t *testing.T, name string) usage {
	t.Helper()
	out, err := exec.Command(filepath.Join(binaryDir(t), name), "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -h: %v\n%s", name, err, out)
	}
	u := usage{flags: map[string]flagSpec{}, env: map[string]bool{}}
	var last string
	for l := range strings.SplitSeq(string(out), "\n") {
		if m := flagLine.FindStringSubmatch(l); m != nil {
			last = m[1]
			u.flags[last] = flagSpec{}
		}
		for _, m := range envName.FindAllStringSubmatch(l, -1) {
			u.env[m[1]] = true
		}
		if m := defValue.FindStringSubmatch(l); m != nil && last != "" {
			u.flags[last] = flagSpec{def: m[1]}
		}
	}
	if len(u.flags) < 10 || len(u.env) < 10 {
		t.Fatalf("%s -h: found %d flags and %d environment variables, too few: has its usage changed form?\n%s", name, len(u.flags), len(u.env), out)
	}
	return u
}
