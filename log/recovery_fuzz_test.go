package log

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/fastflow/fastflow/log/internal/wal"
)

// FuzzRecovery damages the last segment of a partition with arbitrary
// bytes — cut at any point, a byte changed anywhere, garbage appended —
// and reopens it as a writer. It must never panic; what it serves must be
// an exact prefix of what was written; and appends must continue after it.
func FuzzRecovery(f *testing.F) {
	f.Add(uint16(0), uint16(0), byte(0), []byte{})
	f.Add(uint16(3), uint16(100), byte(0x40), []byte{})
	f.Add(uint16(0), uint16(0), byte(0), []byte{0x85, 0x01, 1, 2, 3})
	f.Add(uint16(500), uint16(7), byte(1), []byte("garbage after a cut"))
	f.Add(uint16(0), uint16(9000), byte(0xff), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, cut, flipAt uint16, flip byte, tail []byte) {
		dir := t.TempDir()
		l := testLog(t, dir)
		p := mustPartition(t, l, "fz", TopicConfig{Partitions: 1}, 0)
		appendN(t, p, 0, 120, 12, AcksLeader)
		l.Close()
		seg := filepath.Join(dir, "topics", "fz", "0", wal.SegmentName(1))
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		if int(cut) < len(b) {
			b = b[:len(b)-int(cut)]
		}
		if len(b) > 0 {
			b[int(flipAt)%len(b)] ^= flip
		}
		b = append(b, tail...)
		os.WriteFile(seg, b, 0o644)

		l = testLog(t, dir)
		defer l.Close()
		tp, err := l.Topic("fz")
		if err != nil {
			t.Fatal(err)
		}
		p, err = tp.Partition(0)
		if err != nil {
			return // a clear error is fine; a panic is not
		}
		_, err = p.Append([]Record{{Value: []byte("after")}}, AcksLeader)
		if err != nil {
			return
		}
		got := readAll(t, p, 0)
		n := len(got) - 1
		if n > 120 || string(got[n].Value) != "after" || got[n].Offset != int64(n) {
			t.Fatalf("after recovery: %d records, last %q at %d", len(got), got[n].Value, got[n].Offset)
		}
		for i, r := range got[:n] {
			w := rec(i)
			if r.Offset != int64(i) || !bytes.Equal(r.Value, w.Value) || !bytes.Equal(r.Key, w.Key) {
				t.Fatalf("record %d after recovery is not the one written: %q", i, r.Value)
			}
		}
	})
}
