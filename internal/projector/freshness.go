package projector

import (
	"time"

	"github.com/readside/readside/internal/stream"
)

// Freshness is what the Monitor learnt at its last rounds: each durable
// consumer's backlog now and over the last minutes, and each projection's
// dead letters.
type Freshness struct {
	At        time.Time            // of the last round
	Consumers []stream.ConsumerLag // the last round, by projection then kind
	// History holds the rounds of the last HistoryWindow by consumer name,
	// oldest first.
	History     map[string][]stream.ConsumerLag
	DeadLetters []stream.DeadLetters // by projection
}

// HistoryWindow is how far back Freshness.History goes.
const HistoryWindow = 15 * time.Minute

// Freshness returns a copy of what the Monitor last learnt; safe for
// concurrent use.
func (m *Monitor) Freshness() Freshness {
	return Freshness{}
}
