package partition

import (
	"fmt"
	"slices"
	"testing"
)

// Golden vectors from Kafka's UtilsTest.testMurmur2 (the SPEC lists three
// of them); murmur2 must match the Java client bit for bit.
func TestMurmur2KafkaVectors(t *testing.T) {
	f := func(in string, want int32) {
		t.Helper()
		if got := Murmur2([]byte(in)); got != want {
			t.Errorf("Murmur2(%q) = %d, want %d", in, got, want)
		}
	}
	f("21", -973932308)
	f("foobar", -790332482)
	f("a-little-bit-long-string", -985981536)
	f("a-little-bit-longer-string", -1486304829)
	f("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971)
	f("abc", 479470107)
}

func TestForKey(t *testing.T) {
	// toPositive(-973932308) = 1173551340; % 6 = 0.
	f := func(key string, n, want int32) {
		t.Helper()
		if got := ForKey([]byte(key), n); got != want {
			t.Errorf("ForKey(%q, %d) = %d, want %d", key, n, got, want)
		}
	}
	f("21", 6, int32((int64(-973932308)&0x7fffffff)%6))
	f("foobar", 3, int32((int64(-790332482)&0x7fffffff)%3))
	f("abc", 7, 479470107%7)
	f("", 4, int32((int64(Murmur2(nil))&0x7fffffff)%4))
	for n := int32(1); n < 50; n++ {
		for i := 0; i < 100; i++ {
			if p := ForKey(fmt.Appendf(nil, "key-%d", i), n); p < 0 || p >= n {
				t.Fatalf("ForKey out of range: %d of %d", p, n)
			}
		}
	}
}

func TestForKeyAllocs(t *testing.T) {
	key := []byte("payments")
	if a := testing.AllocsPerRun(1000, func() { ForKey(key, 12) }); a != 0 {
		t.Fatalf("ForKey allocates %v times", a)
	}
}

func TestSticky(t *testing.T) {
	s := NewSticky(3)
	var got []int32
	for i := 0; i < 5; i++ {
		got = append(got, s.Partition())
		s.BatchDone()
	}
	if want := []int32{0, 1, 2, 0, 1}; !slices.Equal(got, want) {
		t.Fatalf("sticky order %v, want %v", got, want)
	}
	if p := NewStickyAt(3, 7).Partition(); p != 1 {
		t.Fatalf("NewStickyAt(3, 7) starts at %d, want 1", p)
	}
}

func TestAssign(t *testing.T) {
	f := func(parts int32, members int, want [][]int32) {
		t.Helper()
		got := Assign(parts, members)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("Assign(%d, %d) = %v, want %v", parts, members, got, want)
		}
		for m, ps := range got {
			for _, p := range ps {
				if Owner(p, members) != m {
					t.Errorf("Owner(%d, %d) = %d, want %d", p, members, Owner(p, members), m)
				}
			}
		}
	}
	f(6, 2, [][]int32{{0, 2, 4}, {1, 3, 5}})
	f(3, 1, [][]int32{{0, 1, 2}})
	f(2, 3, [][]int32{{0}, {1}, nil})
	f(7, 3, [][]int32{{0, 3, 6}, {1, 4}, {2, 5}})
}

func BenchmarkForKey(b *testing.B) {
	key := []byte("payments-service-01")
	b.ReportAllocs()
	b.SetBytes(int64(len(key)))
	var sink int32
	for b.Loop() {
		sink += ForKey(key, 12)
	}
	_ = sink
}
