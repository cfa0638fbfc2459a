package query

import (
	"strconv"
	"testing"
)

// A request id must never read as a number: the OpenAPI document says it is
// a string, and clients that guess types took "23161444881e-3" (a hex prefix
// of digits and an e, then the counter) for 2.3e7.
func TestRequestIDsNeverReadAsNumbers(t *testing.T) {
	for _, random := range [][]byte{
		{0x23, 0x16, 0x14, 0x44, 0x88, 0x1e}, // the prefix CI drew
		{0x00, 0x00, 0x00, 0x00, 0x00, 0x00},
		{0x12, 0x34, 0x56, 0x78, 0x90, 0x0e},
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	} {
		g := &requestIDs{prefix: requestIDPrefix(random)}
		for range 40 {
			id := g.next()
			if _, err := strconv.ParseFloat(id, 64); err == nil {
				t.Errorf("request id %q reads as a number", id)
			}
			if !safeToken(id) {
				t.Errorf("request id %q is not a safe token", id)
			}
		}
	}
}
