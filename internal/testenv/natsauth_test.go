package testenv

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestSecureJetStream(t *testing.T) {
	j := StartSecureJetStream(t)
	_, js := j.Connect(t)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "X", Subjects: []string{"x.>"}}); err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(j.URL); err == nil {
		nc.Close()
		t.Fatal("connected without credentials")
	} else {
		t.Log(err)
	}
}
