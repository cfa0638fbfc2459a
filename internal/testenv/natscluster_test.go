package testenv_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/readside/readside/internal/testenv"
)

// A cluster forms with every server a JetStream peer; a one-replica stream
// lives on one server and is gone while that server is down; restarted on
// its store, the server brings the stream back with its messages. For both
// kinds of server, embedded and processes (killed there as in a crash).
func TestNATSCluster(t *testing.T) {
	for _, kind := range []string{"embedded", "processes"} {
		t.Run(kind, func(t *testing.T) {
			start := time.Now()
			var c *testenv.NATSCluster
			if kind == "embedded" {
				c = testenv.StartNATSCluster(t, 3)
			} else {
				c = testenv.StartNATSClusterProcesses(t, 3)
			}
			t.Logf("3 servers ready in %s", time.Since(start).Round(time.Millisecond))
			if n := strings.Count(c.URLs(), "nats://127.0.0.1:"); n != 3 {
				t.Errorf("URLs %q: want 3", c.URLs())
			}
			if got := c.Server(0) != nil; got != (kind == "embedded") {
				t.Errorf("Server(0) != nil is %v", got)
			}
			_, js := c.Connect(t)
			ctx := context.Background()
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ONE", Subjects: []string{"one.>"}}); err != nil {
				t.Fatal(err)
			}
			if _, err := js.Publish(ctx, "one.x", nil); err != nil {
				t.Fatal(err)
			}
			leader := c.StreamLeader(t, js, "ONE")
			if kind == "embedded" {
				c.Shutdown(leader)
			} else {
				c.Kill(t, leader)
			}
			ictx, cancel := context.WithTimeout(ctx, 3*time.Second)
			_, err := js.Stream(ictx, "ONE")
			cancel()
			if err == nil {
				t.Errorf("the stream answers with its only server n%d down", leader)
			}
			c.Restart(t, leader)
			var info *jetstream.StreamInfo
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
				s, err := js.Stream(ictx, "ONE")
				cancel()
				if err == nil {
					info = s.CachedInfo()
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the stream does not answer 30s after its server's restart: %v", err)
				}
			}
			if info.State.Msgs != 1 {
				t.Errorf("after the restart the stream holds %d messages, want 1", info.State.Msgs)
			}
		})
	}
}
