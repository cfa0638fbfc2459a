package sampleapi

import (
	"context"
	"fmt"
	"math/rand/v2"

	"golang.org/x/time/rate"
)

// Publish publishes the zero-payload event subject and returns once the
// event is stored, or with the reason it could not be.
type Publish func(ctx context.Context, subject string) error

// Changer changes random entities of an API at a steady rate and announces
// each change with its event, as the domain services of a live app would.
type Changer struct {
	api     *API
	perSec  float64
	publish Publish
	rnd     *rand.Rand
	// OnChange, when set, is called after each published change (for logs).
	OnChange func(subject string)
}

// NewChanger returns a Changer of api making perSecond changes a second
// (none when perSecond ≤ 0), announcing them through publish. Its choices
// are drawn from seed, so a run can be repeated.
func NewChanger(api *API, perSecond float64, publish Publish, seed uint64) *Changer {
	return &Changer{api: api, perSec: perSecond, publish: publish, rnd: rand.New(rand.NewPCG(seed, 0x5eed))}
}

// Run changes entities until ctx ends, then returns nil. Each change is
// published, with ctx, before the next is made. A change whose publish fails
// has no event: a publish error stops Run and is returned, unless ctx ended,
// which can cut the last publish short (a publish func that must finish
// what it started can use context.WithoutCancel). Re-issuing the event
// repairs the read side. Run is not safe to call twice at once.
func (c *Changer) Run(ctx context.Context) error {
	if c.perSec <= 0 {
		<-ctx.Done()
		return nil
	}
	lim := rate.NewLimiter(rate.Limit(c.perSec), 1)
	for {
		// Wait fails only when ctx ends before the next change is due.
		if err := lim.Wait(ctx); err != nil {
			return nil
		}
		subject, err := c.Change()
		if err != nil {
			return err
		}
		if err := c.publish(ctx, subject); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("sampleapi: publishing %s: %w", subject, err)
		}
		if c.OnChange != nil {
			c.OnChange(subject)
		}
	}
}

// Change makes one random change, without publishing it, and returns its
// event's subject: a shop changes (35%), its ads (25%) or its menu (20%),
// an owner changes (15%), or a shop is deleted (5%; changing it later
// re-creates it). Like Run, it is not safe for concurrent use.
func (c *Changer) Change() (string, error) {
	shop := 1 + c.rnd.IntN(c.api.Shops())
	switch n := c.rnd.IntN(100); {
	case n < 35:
		return c.api.ChangeShop(shop)
	case n < 60:
		return c.api.ChangeAds(shop)
	case n < 80:
		return c.api.ChangeMenu(shop)
	case n < 95:
		return c.api.ChangeOwner(c.rnd.IntN(c.api.Owners()))
	default:
		return c.api.DeleteShop(shop)
	}
}
