// Package latest hands on only the newest value: a one-slot channel whose unread value is
// replaced by the next one. Watchers use it so the decision loop never acts on a stale state and
// a slow reader never blocks a writer.
package latest

// Offer puts v in ch (capacity 1), replacing a value the reader has not taken yet. It assumes a
// single writer per channel; with several, a value could be lost between their two steps.
func Offer[T any](ch chan T, v T) {
	for {
		select {
		case ch <- v:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}
