package testenv

import "github.com/readside/readside/internal/fixture"

// The fake shop API lives in package fixture, so that the benchmark commands
// can run it without linking package testing; tests name it here.

// Shop is the state the fake shop API holds for one shop (fixture.Shop).
type Shop = fixture.Shop

// ShopAPI is the fake shop API (fixture.ShopAPI).
type ShopAPI = fixture.ShopAPI

// NewShopAPI starts a fake shop API; Close it when done.
func NewShopAPI() *ShopAPI { return fixture.NewShopAPI() }

// ShopDefinition is fixture.ShopDefinition: a projection of shops named ns
// reading apiURL.
func ShopDefinition(ns, apiURL string, versioned bool) string {
	return fixture.ShopDefinition(ns, apiURL, versioned)
}
