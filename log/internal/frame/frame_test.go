package frame

import (
	"bytes"
	"fmt"
	"testing"
)

type rec struct {
	od      int32
	ts      int64
	key     []byte
	value   []byte
	headers [][2][]byte
}

func build(b *Builder, base int64, recs []rec) []byte {
	b.Reset(base, 0)
	for _, r := range recs {
		b.Add(r.od, r.ts, r.key, r.value, len(r.headers))
		for _, h := range r.headers {
			b.AddHeader(h[0], h[1])
		}
	}
	return b.Finish()
}

func TestRoundTrip(t *testing.T) {
	recs := []rec{
		{0, 1795341600123, []byte("payments"), []byte(`{"a":1}`), nil},
		{1, 1795341600100, nil, []byte("not json"), [][2][]byte{{[]byte("trace"), []byte("abc")}, {[]byte("n"), nil}}},
		{3, 1795341600200, []byte("k"), nil, nil},   // tombstone, offsets may skip
		{4, 1795341600200, []byte{}, []byte{}, nil}, // empty, not null
	}
	var b Builder
	out := build(&b, 41, recs)
	if err := Verify(out); err != nil {
		t.Fatal(err)
	}
	var d Decoder
	if err := d.Init(out); err != nil {
		t.Fatal(err)
	}
	if d.BaseOffset != 41 || d.Count != 4 || d.LastOffset() != 45 || d.MaxTimestamp != 1795341600200 || d.FirstTimestamp != 1795341600123 {
		t.Fatalf("header %+v", d.Header)
	}
	i := 0
	for d.Next() {
		r := recs[i]
		if d.Offset != 41+int64(r.od) || d.TimestampMs != r.ts {
			t.Errorf("record %d: offset %d ts %d", i, d.Offset, d.TimestampMs)
		}
		if (d.Key == nil) != (r.key == nil) || !bytes.Equal(d.Key, r.key) {
			t.Errorf("record %d: key %q, want %q", i, d.Key, r.key)
		}
		if (d.Value == nil) != (r.value == nil) || !bytes.Equal(d.Value, r.value) {
			t.Errorf("record %d: value %q, want %q", i, d.Value, r.value)
		}
		hi := d.Headers()
		j := 0
		for hi.Next() {
			h := r.headers[j]
			if !bytes.Equal(hi.Key, h[0]) || !bytes.Equal(hi.Value, h[1]) || (hi.Value == nil) != (h[1] == nil) {
				t.Errorf("record %d header %d: %q=%q", i, j, hi.Key, hi.Value)
			}
			j++
		}
		if j != len(r.headers) {
			t.Errorf("record %d: %d headers, want %d", i, j, len(r.headers))
		}
		i++
	}
	if d.Err() != nil || i != len(recs) {
		t.Fatalf("decoded %d records, err %v", i, d.Err())
	}
}

func TestCorruptionDetected(t *testing.T) {
	var b Builder
	out := build(&b, 0, []rec{{0, 1, []byte("k"), []byte("value"), nil}})
	for i := 4; i < len(out); i++ {
		for bit := 0; bit < 8; bit++ {
			c := bytes.Clone(out)
			c[i] ^= 1 << bit
			if Verify(c) == nil {
				t.Fatalf("flip of byte %d bit %d not detected", i, bit)
			}
		}
	}
	if Verify(out[:len(out)-1]) == nil {
		t.Fatal("truncated batch verified")
	}
	if Verify(out[:10]) != ErrShort {
		t.Fatal("short batch not ErrShort")
	}
}

func TestAddRawKeepsRecords(t *testing.T) {
	var b, c Builder
	src := build(&b, 100, []rec{
		{0, 10, []byte("a"), []byte("1"), [][2][]byte{{[]byte("h"), []byte("v")}}},
		{1, 5, []byte("b"), []byte("2"), nil},
		{2, 20, []byte("a"), []byte("3"), nil},
	})
	var d Decoder
	if err := d.Init(src); err != nil {
		t.Fatal(err)
	}
	c.Reset(100, 0)
	for d.Next() {
		if string(d.Key) == "a" && string(d.Value) == "1" {
			continue // compacted away
		}
		c.AddRaw(int32(d.Offset-100), d.TimestampMs, d.Raw())
	}
	out := c.Finish()
	if err := Verify(out); err != nil {
		t.Fatal(err)
	}
	d.Init(out)
	var got []string
	for d.Next() {
		got = append(got, fmt.Sprintf("%d/%d/%s=%s", d.Offset, d.TimestampMs, d.Key, d.Value))
	}
	if want := "[101/5/b=2 102/20/a=3]"; fmt.Sprint(got) != want {
		t.Fatalf("got %v, want %v", got, want)
	}
	if d.LastOffset() != 102 || d.MaxTimestamp != 20 {
		t.Fatalf("header %+v", d.Header)
	}
}

func TestRecordSize(t *testing.T) {
	var b Builder
	b.Reset(0, 0)
	before := b.Len()
	b.Add(5, 0, []byte("key"), bytes.Repeat([]byte("v"), 300), 0)
	if got, want := b.Len()-before, RecordSize(5, 0, []byte("key"), bytes.Repeat([]byte("v"), 300)); got != want {
		t.Fatalf("RecordSize = %d, encoded %d", want, got)
	}
	before = b.Len()
	b.AddHeader([]byte("hk"), nil)
	if got, want := b.Len()-before, HeaderBytes([]byte("hk"), nil); got != want {
		t.Fatalf("HeaderBytes = %d, encoded %d", want, got)
	}
}

func TestBuilderAllocs(t *testing.T) {
	var b Builder
	key, val := []byte("payments"), bytes.Repeat([]byte("x"), 120)
	build := func() {
		b.Reset(0, 0)
		for i := int32(0); i < 64; i++ {
			b.Add(i, 1795341600123, key, val, 0)
		}
		b.Finish()
	}
	build()
	if a := testing.AllocsPerRun(100, build); a != 0 {
		t.Fatalf("building a batch allocates %v times", a)
	}
	out := bytes.Clone(b.Finish())
	var d Decoder
	if a := testing.AllocsPerRun(100, func() {
		d.Init(out)
		for d.Next() {
		}
	}); a != 0 {
		t.Fatalf("decoding allocates %v times", a)
	}
}

// FuzzDecode: arbitrary bytes never panic the decoder, and whatever it
// accepts re-encodes to a batch that decodes the same.
func FuzzDecode(f *testing.F) {
	var b Builder
	f.Add(build(&b, 7, []rec{{0, 1, []byte("k"), []byte("v"), [][2][]byte{{[]byte("h"), nil}}}}))
	f.Add(bytes.Clone(build(&b, 0, []rec{{0, 1, nil, nil, nil}, {2, -5, []byte{}, []byte("x"), nil}})))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		_ = Verify(in)
		var d Decoder
		if d.Init(in) != nil {
			return
		}
		var c Builder
		c.Reset(d.BaseOffset, d.Attributes)
		var n int
		for d.Next() {
			hi := d.Headers()
			for hi.Next() {
			}
			c.Add(int32(d.Offset-d.BaseOffset), d.TimestampMs, d.Key, d.Value, 0)
			n++
		}
		_ = d.Err()
		out := c.Finish()
		if err := Verify(out); err != nil {
			t.Fatalf("re-encoded batch does not verify: %v", err)
		}
		var e Decoder
		e.Init(out)
		m := 0
		for e.Next() {
			m++
		}
		if m != n || e.Err() != nil {
			t.Fatalf("re-encoded %d records, decoded %d (%v)", n, m, e.Err())
		}
	})
}

func BenchmarkBuild(b *testing.B) {
	var bl Builder
	key, val := []byte("payments"), bytes.Repeat([]byte("x"), 120)
	b.ReportAllocs()
	b.SetBytes(int64(64 * (len(key) + len(val))))
	for b.Loop() {
		bl.Reset(0, 0)
		for i := int32(0); i < 64; i++ {
			bl.Add(i, 1795341600123, key, val, 0)
		}
		bl.Finish()
	}
}

// TestResetAppend: batches built in place after other bytes are the bytes
// Reset builds, and the bytes before them are untouched.
func TestResetAppend(t *testing.T) {
	recs := []rec{
		{0, 1795341600123, []byte("payments"), []byte(`{"a":1}`), nil},
		{1, 1795341600100, nil, []byte("v"), [][2][]byte{{[]byte("trace"), []byte("abc")}}},
	}
	var alone Builder
	want := append([]byte(nil), build(&alone, 7, recs)...)
	var b Builder
	buf := []byte("prefix")
	for round := 0; round < 3; round++ {
		b.ResetAppend(buf, 7, 0)
		for _, r := range recs {
			b.Add(r.od, r.ts, r.key, r.value, len(r.headers))
			for _, h := range r.headers {
				b.AddHeader(h[0], h[1])
			}
		}
		if b.Len() != len(want) {
			t.Fatalf("Len %d, want %d", b.Len(), len(want))
		}
		got := b.Finish()
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: the batch built in place differs", round)
		}
		buf = b.Buf()
		if !bytes.HasPrefix(buf, []byte("prefix")) || len(buf) != len("prefix")+(round+1)*len(want) {
			t.Fatalf("round %d: buffer of %d bytes", round, len(buf))
		}
	}
}

// TestResetAfterResetAppend: Reset does not build over the bytes of an
// earlier ResetAppend's caller.
func TestResetAfterResetAppend(t *testing.T) {
	var b Builder
	dst := make([]byte, 0, 1<<10)
	b.ResetAppend(dst, 0, 0)
	b.Add(0, 1, nil, []byte("mine"), 0)
	kept := append([]byte(nil), b.Finish()...)
	owned := b.Buf()
	b.Reset(5, 0)
	b.Add(0, 2, nil, []byte("other"), 0)
	b.Finish()
	if !bytes.Equal(owned[:len(kept)], kept) {
		t.Fatal("Reset wrote over the buffer lent by ResetAppend")
	}
}
