package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Browser is Debian's chromium run headless, one process per call, each
// with a profile of its own (so parallel tests do not share one).
type Browser struct {
	path string
	t    testing.TB
}

// Chromium finds Debian's chromium; the test fails, saying how to get it,
// when it is not installed (`make test` installs it: scripts/testenv.sh up).
func Chromium(t testing.TB) *Browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed: run `make testenv` (scripts/testenv.sh up installs Debian's chromium), or `apt-get install chromium`")
	}
	return &Browser{path: path, t: t}
}

func (b *Browser) run(args ...string) []byte {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	all := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
		"--user-data-dir=" + b.t.TempDir(),
	}, args...)
	cmd := exec.CommandContext(ctx, b.path, all...)
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.t.Fatalf("chromium %v: %v\n%s", args, err, stderr.b)
	}
	return out
}

// DOM loads url and returns the document as the browser built it, after
// its load event.
func (b *Browser) DOM(url string) string {
	b.t.Helper()
	return string(b.run("--dump-dom", url))
}

// Screenshot loads url and saves a PNG of a width×height window to path.
func (b *Browser) Screenshot(url, path string, width, height int) {
	b.t.Helper()
	b.run("--window-size="+strconv.Itoa(width)+","+strconv.Itoa(height), "--screenshot="+path, url)
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		b.t.Fatalf("chromium wrote no screenshot to %s: %v", path, err)
	}
}

// ArtifactDir is where tests keep what a person may want to look at after
// a run (screenshots): $READSIDE_TEST_ARTIFACTS, else .artifacts at the
// module's root. It is created when missing.
func ArtifactDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("READSIDE_TEST_ARTIFACTS")
	if dir == "" {
		root, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
				break
			}
			parent := filepath.Dir(root)
			if parent == root {
				t.Fatal("no go.mod above the test's directory: set READSIDE_TEST_ARTIFACTS")
			}
			root = parent
		}
		dir = filepath.Join(root, ".artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// limitedBuffer keeps the first 64 KB written to it.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 64<<10 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
