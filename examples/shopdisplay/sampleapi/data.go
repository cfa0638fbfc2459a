package sampleapi

import (
	"fmt"
	"math"
	"strconv"
)

// Shop is what GET /shops/{id} answers.
type Shop struct {
	ID           int          `json:"id"`
	Name         string       `json:"name"`
	Category     string       `json:"category"`
	Location     Location     `json:"location"`
	OpeningHours OpeningHours `json:"openingHours"`
	Open         bool         `json:"open"`
	OwnerID      int          `json:"ownerId"`
	Rating       Rating       `json:"rating"`
	Version      int64        `json:"version"`
}

// Location is a point on the map, in degrees.
type Location struct {
	Lat float64 `json:"lat"`
	Lon float64 `json:"lon"`
}

// OpeningHours are a shop's hours per weekday: "11:00-22:00" or "closed".
type OpeningHours struct {
	Mon string `json:"mon"`
	Tue string `json:"tue"`
	Wed string `json:"wed"`
	Thu string `json:"thu"`
	Fri string `json:"fri"`
	Sat string `json:"sat"`
	Sun string `json:"sun"`
}

// Rating is a shop's customer rating: the average of Count ratings, 1 to 5.
type Rating struct {
	Average float64 `json:"average"`
	Count   int     `json:"count"`
}

// Owner is what GET /owners/{id} answers.
type Owner struct {
	ID           int    `json:"id"`
	BusinessName string `json:"businessName"`
	Phone        string `json:"phone"`
	Version      int64  `json:"version"`
}

// Menu is what GET /shops/{id}/menu/summary answers.
type Menu struct {
	TopItems      []string `json:"topItems"`
	MinOrderPrice float64  `json:"minOrderPrice"`
}

// Ads is what GET /ads?shopId={id} answers. ActiveRank is nil when the shop
// has no active campaign.
type Ads struct {
	ShopID     int  `json:"shopId"`
	ActiveRank *int `json:"activeRank"`
}

// Hash kinds: every entity kind draws from its own stream of numbers.
const (
	kindShop uint64 = iota + 1
	kindOwner
	kindMenu
	kindAds
)

// mix is the splitmix64 finalizer: a cheap, well-spread 64-bit hash.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// hash is the deterministic number behind entity id of kind at revision rev.
func (a *API) hash(kind uint64, id, rev int) uint64 {
	return mix(mix(mix(a.seed^kind*0x9e3779b97f4a7c15)+uint64(id)) + uint64(rev))
}

var (
	adjectives = []string{"Golden", "Happy", "Little", "Red", "Blue", "Green", "Lucky", "Silver", "Spicy", "Sunny", "Crispy", "Royal", "Urban", "Corner", "Jade", "Old Town"}
	nouns      = []string{"Dragon", "Tiger", "Garden", "Spoon", "Oven", "Lantern", "Harbor", "Fox", "Bowl", "Table", "Leaf", "Moon", "Star", "Olive", "Pepper", "Lotus"}
	categories = []struct {
		name, word string
		items      []string
	}{
		{"pizza", "Pizzeria", []string{"Margherita", "Diavola", "Quattro Formaggi", "Calzone", "Tiramisu"}},
		{"burger", "Burgers", []string{"Cheeseburger", "Bacon Burger", "Veggie Burger", "Fries", "Milkshake"}},
		{"sushi", "Sushi Bar", []string{"Salmon Nigiri", "California Roll", "Tuna Maki", "Miso Soup", "Edamame"}},
		{"korean", "Korean BBQ", []string{"Bibimbap", "Bulgogi", "Kimchi Jjigae", "Tteokbokki", "Japchae"}},
		{"thai", "Thai Kitchen", []string{"Pad Thai", "Green Curry", "Tom Yum", "Som Tam", "Mango Sticky Rice"}},
		{"indian", "Curry House", []string{"Butter Chicken", "Palak Paneer", "Biryani", "Garlic Naan", "Samosa"}},
		{"mexican", "Taqueria", []string{"Tacos al Pastor", "Burrito", "Quesadilla", "Guacamole", "Churros"}},
		{"vegan", "Greens", []string{"Buddha Bowl", "Falafel Wrap", "Lentil Soup", "Tofu Stir-fry", "Carrot Cake"}},
		{"bakery", "Bakery", []string{"Croissant", "Sourdough", "Cinnamon Roll", "Bagel", "Cheesecake"}},
		{"chicken", "Fried Chicken", []string{"Chicken Wings", "Chicken Burger", "Nuggets", "Coleslaw", "Corn on the Cob"}},
	}
	cities = []Location{
		{52.52, 13.405},      // Berlin
		{37.5665, 126.978},   // Seoul
		{38.7223, -9.1393},   // Lisbon
		{30.2672, -97.7431},  // Austin
		{35.6762, 139.6503},  // Tokyo
		{19.4326, -99.1332},  // Mexico City
		{19.076, 72.8777},    // Mumbai
		{-37.8136, 144.9631}, // Melbourne
	}
	surnames = []string{"Kim", "Müller", "Silva", "Garcia", "Tanaka", "Patel", "Smith", "Nguyen", "Rossi", "Okafor", "Cohen", "Novak"}
	suffixes = []string{"Foods GmbH", "Hospitality Ltd", "& Sons", "Restaurants Inc.", "Gastro Group", "Kitchens LLC"}
)

// pick takes an element of list by the bits of h from shift on.
func pick[T any](list []T, h uint64, shift uint) T {
	return list[(h>>shift)%uint64(len(list))]
}

func round(x float64, decimals int) float64 {
	p := math.Pow10(decimals)
	return math.Round(x*p) / p
}

// makeShop derives shop id at revision rev. Its identity (name, category,
// place, hours, owner) never changes; a revision toggles whether it is open
// and moves its rating.
func (a *API) makeShop(id int, st state) Shop {
	h := a.hash(kindShop, id, 0)
	hr := a.hash(kindShop, id, st.rev)
	cat := categories[h%uint64(len(categories))]
	city := pick(cities, h, 8)
	hours := func(day uint) string {
		d := a.hash(kindShop, id, -1-int(day))
		if d%9 == 0 {
			return "closed"
		}
		return fmt.Sprintf("%02d:00-%02d:00", 7+d>>8%5, 20+d>>16%4)
	}
	return Shop{
		ID:       id,
		Name:     pick(adjectives, h, 12) + " " + pick(nouns, h, 16) + " " + cat.word,
		Category: cat.name,
		Location: Location{
			Lat: round(city.Lat+(float64(h>>20%20001)-10000)/100000, 6),
			Lon: round(city.Lon+(float64(h>>36%20001)-10000)/100000, 6),
		},
		OpeningHours: OpeningHours{hours(0), hours(1), hours(2), hours(3), hours(4), hours(5), hours(6)},
		Open:         (h>>52&1 == 1) != (st.rev%2 == 1),
		OwnerID:      id / 10,
		Rating: Rating{
			Average: round(1+float64(hr%41)/10, 1),
			Count:   int(h>>24%3000) + 3*st.rev,
		},
		Version: st.versionOrBase(),
	}
}

// makeOwner derives owner id at revision rev: every revision has another
// business name and phone number.
func (a *API) makeOwner(id int, st state) Owner {
	h := a.hash(kindOwner, id, 0)
	hr := a.hash(kindOwner, id, st.rev)
	name := pick(surnames, h, 0) + " " + pick(suffixes, h, 8)
	if st.rev > 0 {
		name += " #" + strconv.Itoa(st.rev+1)
	}
	return Owner{
		ID:           id,
		BusinessName: name,
		Phone:        fmt.Sprintf("+1-555-%03d-%04d", hr%1000, hr>>16%10000),
		Version:      st.versionOrBase(),
	}
}

// makeMenu derives the menu of shop id at revision rev: every revision has
// another minimum order price and another order of top items.
func (a *API) makeMenu(id int, st state) Menu {
	h := a.hash(kindShop, id, 0) // the shop's category decides the dishes
	m := a.hash(kindMenu, id, 0)
	items := categories[h%uint64(len(categories))].items
	first := int(m%uint64(len(items))) + st.rev
	top := make([]string, 3)
	for i := range top {
		top[i] = items[(first+i)%len(items)]
	}
	return Menu{TopItems: top, MinOrderPrice: 5 + float64((int(m>>8%40)+7*st.rev)%40)*0.5}
}

// makeAds derives the ads of shop id at revision rev: a rank from 1 to 50,
// or no active campaign (about 3 shops in 10); every revision changes it.
func (a *API) makeAds(id int, st state) Ads {
	v := (int(a.hash(kindAds, id, 0)%71) + 13*st.rev) % 71
	ads := Ads{ShopID: id}
	if v < 50 {
		rank := v + 1
		ads.ActiveRank = &rank
	}
	return ads
}
