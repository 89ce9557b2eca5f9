package kafka

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/fastflow/fastflow/log"
)

// Snappy as the Java client's snappy-java writes it: the xerial header,
// then chunks, each a length and a snappy block.
func TestDecompressXerialSnappy(t *testing.T) {
	want := bytes.Repeat([]byte("fastflow records "), 5000)
	framed := append([]byte{}, xerialMagic...)
	framed = binary.BigEndian.AppendUint32(framed, 1) // version
	framed = binary.BigEndian.AppendUint32(framed, 1) // compatible version
	for rest := want; len(rest) > 0; {
		n := min(len(rest), 32<<10)
		block := snappy.Encode(nil, rest[:n])
		framed = binary.BigEndian.AppendUint32(framed, uint32(len(block)))
		framed = append(framed, block...)
		rest = rest[n:]
	}
	got, err := decompress(2, framed, maxUncompressed)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("xerial: %v, %d bytes, want %d", err, len(got), len(want))
	}
	if _, err := decompress(2, framed[:len(framed)-7], maxUncompressed); err == nil {
		t.Fatal("a truncated xerial chunk decoded")
	}
	raw, err := decompress(2, snappy.Encode(nil, want), maxUncompressed)
	if err != nil || !bytes.Equal(raw, want) {
		t.Fatalf("raw snappy: %v", err)
	}
}

// A snappy block claiming a huge decompressed size is refused before
// anything is allocated for it.
func TestDecompressRefusesSnappyBomb(t *testing.T) {
	bomb := binary.AppendUvarint(nil, 1<<40) // the decoded length a block declares
	bomb = append(bomb, 0x00, 'x')
	if _, err := decompress(2, bomb, maxUncompressed); err == nil {
		t.Fatal("a block declaring 1 TiB decoded")
	}
	if _, err := decompress(2, binary.AppendUvarint(nil, maxUncompressed+1), maxUncompressed); !errors.Is(err, errTooLarge) {
		t.Fatalf("a block over the limit: %v", err)
	}
}

// zstdBatch is a record batch of one record whose value is n zero bytes,
// compressed with zstd: ~n/30000 bytes that expand to n.
func zstdBatch(t *testing.T, n int) []byte {
	r := kmsg.Record{Value: make([]byte, n)}
	r.Length = int32(len(r.AppendTo(nil)) - 1)
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := kmsg.RecordBatch{Magic: 2, Attributes: 4, FirstTimestamp: 1795341600000, MaxTimestamp: 1795341600000,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 1, Records: enc.EncodeAll(r.AppendTo(nil), nil)}
	out := b.AppendTo(nil)
	binary.BigEndian.PutUint32(out[8:], uint32(len(out)-12))
	binary.BigEndian.PutUint32(out[17:], crc32.Checksum(out[21:], castagnoli))
	return out
}

// TestProduceDecompressionBudget: a Produce request's compressed batches
// may expand to 256 MiB together, not each: eight batches of a few KiB,
// each claiming 100 MiB, are refused with MESSAGE_TOO_LARGE once the
// budget is spent, without 800 MiB decoded first (and then refused for
// max_record_bytes) (the allocation is
// measured: the server runs in this process).
func TestProduceDecompressionBudget(t *testing.T) {
	addr, _ := startServer(t, map[string]int32{"t": 2})
	one := zstdBatch(t, 100<<20)
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 9, -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "t"
	for p := range int32(2) { // partitions are appended side by side with acks=all: one budget still
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition, rp.Records = p, bytes.Repeat(one, 4)
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	frame := requestFrame(req, 1)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	body, err := roundTrip(conn, frame)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	resp := kmsg.NewPtrProduceResponse()
	resp.Version = 9
	if err := resp.ReadFrom(body[5:]); err != nil {
		t.Fatal(err)
	}
	// Partition 0's third batch goes past the budget; partition 1's
	// first claims more than what is left, in its frame header.
	for _, p := range resp.Topics[0].Partitions {
		if p.ErrorCode != kerr.MessageTooLarge.Code || p.ErrorMessage == nil || !strings.Contains(*p.ErrorMessage, "expand to more than 256 MiB") {
			t.Fatalf("partition %d: error %d %v", p.Partition, p.ErrorCode, *p.ErrorMessage)
		}
	}
	if mib := (after.TotalAlloc - before.TotalAlloc) >> 20; mib > 500 { // 200: two batches
		t.Fatalf("the request allocated %d MiB", mib)
	}
}

// gzip and lz4 past the limit are refused, not cut to it (a cut batch
// would read as corrupt, or worse, as fewer records).
func TestDecompressLimit(t *testing.T) {
	want := bytes.Repeat([]byte("fastflow "), 1000)
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(want)
	w.Close()
	var lz bytes.Buffer
	lw := lz4.NewWriter(&lz)
	lw.Write(want)
	lw.Close()
	for codec, b := range map[int16][]byte{1: gz.Bytes(), 3: lz.Bytes()} {
		if got, err := decompress(codec, b, len(want)); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("codec %d at the limit: %v, %d bytes", codec, err, len(got))
		}
		if _, err := decompress(codec, b, len(want)-1); !errors.Is(err, errTooLarge) {
			t.Fatalf("codec %d past the limit: %v", codec, err)
		}
	}
}

// TestAppendBatchMatchesKmsg: appendBatch writes records byte for byte as
// kmsg.Record encodes them (and the batch as kmsg.RecordBatch does), for
// null and empty keys, values and header values, lengths that take one to
// three varint bytes, timestamps before the batch's first, and offsets
// with the gaps compaction leaves.
func TestAppendBatchMatchesKmsg(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	bytesOf := func() []byte {
		switch rng.IntN(5) {
		case 0:
			return nil
		case 1:
			return []byte{}
		case 2:
			return bytes.Repeat([]byte{'x'}, 60+rng.IntN(10)) // one varint byte or two
		case 3:
			return bytes.Repeat([]byte{'y'}, 8180+rng.IntN(20)) // two or three
		}
		return fmt.Appendf(nil, "v%d", rng.IntN(1000))
	}
	for n := range 300 {
		recs := make([]log.Record, 1+rng.IntN(8))
		off, ts := rng.Int64N(1<<40), 1795341600000+rng.Int64N(1<<20)
		for i := range recs {
			r := &recs[i]
			r.Offset, r.TimestampMs, r.Key, r.Value = off, ts+rng.Int64N(1<<30)-1<<29, bytesOf(), bytesOf()
			for range rng.IntN(3) {
				r.Headers = append(r.Headers, log.Header{Key: fmt.Appendf(nil, "h%d", rng.IntN(100)), Value: bytesOf()})
			}
			off += 1 + rng.Int64N(1<<uint(rng.IntN(30)))
		}
		logAppend := n%2 == 0
		got := appendBatch([]byte("prefix"), recs, logAppend)
		if want := kmsgBatch([]byte("prefix"), recs, logAppend); !bytes.Equal(got, want) {
			t.Fatalf("batch %d of %d records: %d bytes, kmsg writes %d", n, len(recs), len(got), len(want))
		}
		if size := batchSize(recs); len(got)-len("prefix") != size {
			t.Fatalf("batch %d: %d bytes, batchSize says %d", n, len(got)-len("prefix"), size)
		}
	}
}

// batchSize is the size of recs as appendBatch encodes them (batchFit).
func batchSize(recs []log.Record) int {
	_, size := batchFit(recs, math.MaxInt)
	return size
}

// kmsgBatch is appendBatch through kmsg: a RecordBatch whose records kmsg
// encodes one by one.
func kmsgBatch(dst []byte, recs []log.Record, logAppend bool) []byte {
	first := recs[0]
	b := kmsg.RecordBatch{FirstOffset: first.Offset, Magic: 2, LastOffsetDelta: int32(recs[len(recs)-1].Offset - first.Offset),
		FirstTimestamp: first.TimestampMs, MaxTimestamp: first.TimestampMs, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
		NumRecords: int32(len(recs))}
	if logAppend {
		b.Attributes |= attrLogAppend
	}
	for _, r := range recs {
		b.MaxTimestamp = max(b.MaxTimestamp, r.TimestampMs)
		kr := kmsg.Record{TimestampDelta64: r.TimestampMs - first.TimestampMs, OffsetDelta: int32(r.Offset - first.Offset), Key: r.Key, Value: r.Value}
		for _, h := range r.Headers {
			kr.Headers = append(kr.Headers, kmsg.Header{Key: string(h.Key), Value: h.Value})
		}
		enc := kr.AppendTo(nil) // Length 0: a one-byte prefix
		b.Records = binary.AppendVarint(b.Records, int64(len(enc)-1))
		b.Records = append(b.Records, enc[1:]...)
	}
	start := len(dst)
	dst = b.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start+8:], uint32(len(dst)-start-12))
	binary.BigEndian.PutUint32(dst[start+17:], crc32.Checksum(dst[start+21:], castagnoli))
	return dst
}

// TestGrowBatchesDoubles: a fetch's buffer grows only when the next batch
// does not fit, and then to at least twice its capacity, so that filling
// it copies under twice what it holds (append grew large slices by 1.25x:
// ~4 times).
func TestGrowBatchesDoubles(t *testing.T) {
	out := make([]byte, 0, 64<<10)
	grows, copied := 0, 0
	for len(out) < 16<<20 {
		c := cap(out)
		next := growBatches(out, 150<<10)
		if cap(next) != c {
			if len(out)+150<<10 <= c {
				t.Fatalf("grew from %d at length %d for %d bytes that fit", c, len(out), 150<<10)
			}
			if cap(next) < 2*c {
				t.Fatalf("grew from %d to %d, want at least %d", c, cap(next), 2*c)
			}
			grows, copied = grows+1, copied+len(out)
		}
		out = next[:len(out)+150<<10]
	}
	if copied > 2*len(out) {
		t.Fatalf("filling %d bytes copied %d in %d grows", len(out), copied, grows)
	}
}

// TestBatchBufHoldsTheSize: a fetch's buffer holds the size asked for from
// the start, whether the pool has a smaller one or none.
func TestBatchBufHoldsTheSize(t *testing.T) {
	small := make([]byte, 0, 64<<10)
	batchBufs.Put(&small)
	for range 3 {
		if b := batchBuf(1 << 20); cap(b) < 1<<20 || len(b) != 0 {
			t.Fatalf("batchBuf(1 MiB): len %d, cap %d", len(b), cap(b))
		}
	}
	if b := batchBuf(0); cap(b) < 64<<10 {
		t.Fatalf("batchBuf(0): cap %d, want at least 64 KiB", cap(b))
	}
}

// TestFetchSizeGuess: the buffer a fetch starts with holds what it finds
// (so it is not grown, copying) without being far larger, from the start,
// the middle and the end of a partition, and never past the limit.
func TestFetchSizeGuess(t *testing.T) {
	l, err := log.Open(t.TempDir(), log.Options{CleanupInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	tp, err := l.CreateTopic("g", log.TopicConfig{Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := tp.Partition(0)
	recs := make([]log.Record, 1000)
	for i := range recs {
		recs[i] = log.Record{TimestampMs: 1795341600123, Key: []byte("payments-001"), Value: fmt.Appendf(nil, `{"n":%d,"pad":"%0120d"}`, i, i)}
	}
	for range 20 {
		if _, err := p.Append(recs, log.AcksLeader); err != nil {
			t.Fatal(err)
		}
	}
	for _, from := range []int64{0, 7000, 19990} {
		b, err := readBatches(p, from, math.MaxInt32, false)
		if err != nil {
			t.Fatal(err)
		}
		if guess := fetchSize(p, from, math.MaxInt32); guess < len(b) || guess > len(b)*5/4 {
			t.Errorf("from %d: guessed %d bytes, the fetch has %d", from, guess, len(b))
		}
	}
	if guess := fetchSize(p, 0, 4096); guess != 4096 {
		t.Errorf("guessed %d bytes past a 4096-byte limit", guess)
	}
	if guess := fetchSize(p, 20000, 1<<20); guess != 0 {
		t.Errorf("guessed %d bytes at the end", guess)
	}
}
