package latest

import "testing"

func TestOfferKeepsTheNewest(t *testing.T) {
	ch := make(chan int, 1)
	Offer(ch, 1)
	Offer(ch, 2)
	Offer(ch, 3)
	if got := <-ch; got != 3 {
		t.Fatalf("got %d, want the newest value 3", got)
	}
	select {
	case v := <-ch:
		t.Fatalf("a second value %d was left behind", v)
	default:
	}
}
