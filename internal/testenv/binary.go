package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Binary is the command in the test's own directory, built once per run of
// the package's tests (go test puts its own go first on PATH). Remove, in
// TestMain after the tests, deletes it.
type Binary struct {
	name string
	pkg  string // the package to build, relative to the test's directory
	once sync.Once
	dir  string
	path string
	err  error
}

// NewBinary is the command of the test's directory, to be called name.
func NewBinary(name string) *Binary { return &Binary{name: name, pkg: "."} }

// NewBinaryOf is the command in pkg, a directory relative to the test's
// (such as "../projector"), to be called name.
func NewBinaryOf(name, pkg string) *Binary { return &Binary{name: name, pkg: pkg} }

// Path builds the command the first time and returns its path; the test
// fails when it does not build.
func (b *Binary) Path(t testing.TB) string {
	t.Helper()
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "readside-"+b.name+"-test-"); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, b.name)
		start := time.Now()
		if out, err := exec.Command("go", "build", "-o", b.path, b.pkg).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		t.Logf("built %s in %s", b.name, time.Since(start).Round(time.Millisecond))
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// Remove deletes the built command, if any.
func (b *Binary) Remove() {
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

// FreeAddr is a loopback address nothing listens on now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
