package ring

import (
	"context"
	"sync"
	"testing"
	"time"
	"unsafe"
)

func TestRingOrderAndBounds(t *testing.T) {
	r := New[int](5)
	if r.Cap() != 8 {
		t.Fatalf("cap %d", r.Cap())
	}
	for i := 0; i < 8; i++ {
		if !r.Push(i) {
			t.Fatalf("push %d refused", i)
		}
	}
	if r.Push(8) {
		t.Fatal("push into a full ring")
	}
	for i := 0; i < 8; i++ {
		if v, ok := r.Pop(); !ok || v != i {
			t.Fatalf("pop %d: %v %v", i, v, ok)
		}
	}
	if _, ok := r.Pop(); ok {
		t.Fatal("pop from an empty ring")
	}
}

// One producer, one consumer, parking on empty: every item arrives once,
// in order. Run with -race.
func TestRingConcurrent(t *testing.T) {
	r := New[int](16)
	const n = 200000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			if i%10000 == 0 {
				time.Sleep(time.Microsecond) // let the consumer park sometimes
			}
			if err := r.PushWait(context.Background(), i); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for want := 0; want < n; {
		v, ok := r.Pop()
		if !ok {
			if err := r.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if v != want {
			t.Fatalf("got %d, want %d", v, want)
		}
		want++
	}
	wg.Wait()
}

func TestRingWaitCancel(t *testing.T) {
	r := New[int](2)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Wait(ctx); err == nil {
		t.Fatal("Wait on an empty ring returned without the context")
	}
}

func TestRingAllocs(t *testing.T) {
	r := New[*int](64)
	x := 1
	if a := testing.AllocsPerRun(1000, func() {
		r.Push(&x)
		r.Pop()
	}); a != 0 {
		t.Fatalf("push+pop allocates %v", a)
	}
}

// TestRingLayout: what each side writes per item (head, tail and their
// caches) and what both read per item (the parked flags) are three
// groups, each at least a cache line from the next and from the fields
// around the ring, so that no two share a line wherever the ring lands.
// With a flag next to head, every push read a line the consumer had just
// written: BenchmarkSPSC 28-45 ns an item against 16 apart.
func TestRingLayout(t *testing.T) {
	var r Ring[int]
	groups := [][2]uintptr{ // first byte, end
		{0, 0}, // what comes before the ring
		{unsafe.Offsetof(r.head), unsafe.Offsetof(r.tailCache) + 8},
		{unsafe.Offsetof(r.tail), unsafe.Offsetof(r.headCache) + 8},
		{unsafe.Offsetof(r.consParked), unsafe.Offsetof(r.prodParked) + 1},
		{unsafe.Offsetof(r.mask), unsafe.Sizeof(r)},
	}
	for i := 1; i < len(groups); i++ {
		if gap := int(groups[i][0]) - int(groups[i-1][1]); gap < cacheLine {
			t.Errorf("group %d starts %d bytes after group %d ends, want >= %d", i, gap, i-1, cacheLine)
		}
	}
}

// BenchmarkSPSC moves b.N items from a producer goroutine to a consumer
// through the ring; BenchmarkChannel does the same through a buffered
// channel of the same size, the baseline.
func BenchmarkSPSC(b *testing.B) {
	r := New[int](1024)
	b.ReportAllocs()
	done := make(chan struct{})
	go func() {
		ctx := context.Background()
		for got := 0; got < b.N; {
			if _, ok := r.Pop(); ok {
				got++
				continue
			}
			r.Wait(ctx)
		}
		close(done)
	}()
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		r.PushWait(ctx, i)
	}
	<-done
}

func BenchmarkChannel(b *testing.B) {
	c := make(chan int, 1024)
	b.ReportAllocs()
	done := make(chan struct{})
	go func() {
		for got := 0; got < b.N; got++ {
			<-c
		}
		close(done)
	}()
	for i := 0; i < b.N; i++ {
		c <- i
	}
	<-done
}
