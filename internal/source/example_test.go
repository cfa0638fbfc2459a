package source_test

import (
	"fmt"

	"github.com/readside/readside/internal/source"
)

func ExampleTemplate_Expand() {
	t, err := source.ParseTemplate("https://shops.example/v1/shops/{id}/owners/{shop.ownerId}?fields={fields}")
	if err != nil {
		panic(err)
	}
	fmt.Println(t.Vars())

	values := map[string]string{
		"id":           "42",
		"shop.ownerId": "../admin", // stays one path segment
		"fields":       "name,address&x=1",
	}
	u, err := t.Expand(func(name string) (string, bool) {
		v, ok := values[name]
		return v, ok
	})
	fmt.Println(u, err)

	values["id"] = ".."
	_, err = t.Expand(func(name string) (string, bool) {
		v, ok := values[name]
		return v, ok
	})
	fmt.Println(err != nil)
	// Output:
	// [id shop.ownerId fields]
	// https://shops.example/v1/shops/42/owners/..%2Fadmin?fields=name%2Caddress%26x%3D1 <nil>
	// true
}
