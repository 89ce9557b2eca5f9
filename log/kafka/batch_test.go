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
	got, err := decompress(2, framed, maxDecoded)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("xerial: %v, %d bytes, want %d", err, len(got), len(want))
	}
	if _, err := decompress(2, framed[:len(framed)-7], maxDecoded); err == nil {
		t.Fatal("a truncated xerial chunk decoded")
	}
	raw, err := decompress(2, snappy.Encode(nil, want), maxDecoded)
	if err != nil || !bytes.Equal(raw, want) {
		t.Fatalf("raw snappy: %v", err)
	}
}

// A snappy block claiming a huge decompressed size is refused before
// anything is allocated for it.
func TestDecompressRefusesSnappyBomb(t *testing.T) {
	bomb := binary.AppendUvarint(nil, 1<<40) // the decoded length a block declares
	bomb = append(bomb, 0x00, 'x')
	if _, err := decompress(2, bomb, maxDecoded); err == nil {
		t.Fatal("a block declaring 1 TiB decoded")
	}
	if _, err := decompress(2, binary.AppendUvarint(nil, maxDecoded+1), maxDecoded); !errors.Is(err, errTooLarge) {
		t.Fatalf("a block over the limit: %v", err)
	}
}

// zstdBatch is a record batch of one record whose value is n zero bytes,
// compressed with zstd: ~n/30000 bytes that expand to n.
func zstdBatch(t *testing.T, n int) []byte {
	r := kmsg.Record{Value: make([]byte, n)}
	r.Length = int32(len(r.AppendTo(nil)) - 1)
	return zstdBatchOf(t, r.AppendTo(nil), 1)
}

// zstdBatchOf is a batch of n records, recs (encoded), compressed with
// zstd.
func zstdBatchOf(t *testing.T, recs []byte, n int32) []byte {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := kmsg.RecordBatch{Magic: 2, Attributes: 4, FirstTimestamp: 1795341600000, MaxTimestamp: 1795341600000,
		LastOffsetDelta: n - 1, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: n, Records: enc.EncodeAll(recs, nil)}
	out := b.AppendTo(nil)
	binary.BigEndian.PutUint32(out[8:], uint32(len(out)-12))
	binary.BigEndian.PutUint32(out[17:], crc32.Checksum(out[21:], castagnoli))
	return out
}

// produceBatches sends a Produce request (v9, acks=all) of topic t's
// partitions' batches and returns its partitions' responses and what the
// server, running in this process, allocated for it.
func produceBatches(t *testing.T, addr string, batches ...[]byte) ([]kmsg.ProduceResponseTopicPartition, uint64) {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 9, -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "t"
	for p, b := range batches {
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition, rp.Records = int32(p), b
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
	return resp.Topics[0].Partitions, after.TotalAlloc - before.TotalAlloc
}

// TestProduceDecompressionBudget: a Produce request's compressed batches
// may expand to 256 MiB together, not each: eight batches of a few KiB,
// each claiming 100 MiB, are refused with MESSAGE_TOO_LARGE once the
// budget is spent, without 800 MiB decoded first (and then refused for
// max_record_bytes) (the allocation is
// measured: the server runs in this process).
func TestProduceDecompressionBudget(t *testing.T) {
	addr, _ := startServer(t, map[string]int32{"t": 2})
	four := bytes.Repeat(zstdBatch(t, 100<<20), 4)
	// Partitions are appended side by side with acks=all: one budget still.
	parts, alloc := produceBatches(t, addr, four, four)
	// Partition 0's third batch goes past the budget; partition 1's
	// first claims more than what is left, in its frame header.
	for _, p := range parts {
		if p.ErrorCode != kerr.MessageTooLarge.Code || p.ErrorMessage == nil || !strings.Contains(*p.ErrorMessage, "take more than 256 MiB once decompressed and decoded") {
			t.Fatalf("partition %d: error %d %v", p.Partition, p.ErrorCode, *p.ErrorMessage)
		}
	}
	if mib := alloc >> 20; mib > 500 { // 200: two batches
		t.Fatalf("the request allocated %d MiB", mib)
	}
}

// TestProduceDecodeBudget: the records and headers of a request are
// charged to the same budget as they are decoded, before any is
// appended, so that a small request cannot make the server hold
// gigabytes of them: 4 M empty records (40 MB before zstd), a batch that
// claims 20 M records in 20 MB of zeros (1.6 GB of 80-byte log.Records
// made for them before the first failed to decode), a record of 8 M empty
// headers (16 MB; kmsg.Record's decoder made a 40-byte kmsg.Header of
// each first, 320 MB). Each partition gets MESSAGE_TOO_LARGE and nothing
// is stored (the code before stored the first and third, and allocated
// 4.9 GB for the request); a request within the budget is stored whole.
func TestProduceDecodeBudget(t *testing.T) {
	addr, l := startServer(t, map[string]int32{"t": 4})
	empty := func(n int) []byte {
		var recs []byte
		for i := range n {
			body := []byte{0, 0} // attributes, timestamp delta
			body = binary.AppendVarint(body, int64(i))
			body = append(body, 1, 0, 0) // key -1, value empty, no headers
			recs = binary.AppendVarint(recs, int64(len(body)))
			recs = append(recs, body...)
		}
		return recs
	}
	records := zstdBatchOf(t, empty(4<<20), 4<<20)
	claims := zstdBatchOf(t, make([]byte, 20<<20), 20<<20)
	rec := binary.AppendVarint([]byte{0, 0, 0, 1, 0}, 8<<20) // attributes, deltas, key -1, value empty
	for range 8 << 20 {
		rec = append(rec, 0, 0) // key "", value empty
	}
	withHeaders := zstdBatchOf(t, append(binary.AppendVarint(nil, int64(len(rec))), rec...), 1)

	parts, alloc := produceBatches(t, addr, records, claims, withHeaders)
	for _, p := range parts {
		if p.ErrorCode != kerr.MessageTooLarge.Code || p.ErrorMessage == nil || !strings.Contains(*p.ErrorMessage, "take more than 256 MiB") {
			msg := ""
			if p.ErrorMessage != nil {
				msg = *p.ErrorMessage
			}
			t.Errorf("partition %d: error %d %q", p.Partition, p.ErrorCode, msg)
		}
	}
	if mib := alloc >> 20; mib > 600 {
		t.Errorf("the request allocated %d MiB", mib)
	}
	topic, _ := l.Topic("t")
	for i := range int32(3) {
		p, _ := topic.Partition(i)
		if hw := p.HighWatermark(); hw != 0 {
			t.Errorf("partition %d stored %d records", i, hw)
		}
	}

	// 1 M empty records fit: 80 MiB of them.
	parts, _ = produceBatches(t, addr, nil, nil, nil, zstdBatchOf(t, empty(1<<20), 1<<20))
	if p := parts[3]; p.ErrorCode != 0 || p.BaseOffset != 0 {
		t.Fatalf("1 M records: error %d, base offset %d", p.ErrorCode, p.BaseOffset)
	}
	if p, _ := topic.Partition(3); p.HighWatermark() != 1<<20 {
		t.Fatalf("1 M records: %d stored", p.HighWatermark())
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

// FuzzReadRecord: readRecord takes every record kmsg.Record encodes, as
// kmsg.Record decodes it; what it takes of other bytes kmsg.Record reads
// alike; what it refuses beyond kmsg.Record is what Kafka's DefaultRecord
// refuses too (a null header key, bytes past the headers, a header count
// the bytes cannot hold).
func FuzzReadRecord(f *testing.F) {
	f.Add([]byte("k"), []byte(`{"a":1}`), "h", []byte("v"), uint8(2), true, int64(5))
	f.Add([]byte(nil), []byte(nil), "", []byte(nil), uint8(0), false, int64(-3))
	f.Add([]byte{}, []byte{}, "", []byte{}, uint8(1), false, int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, key, value []byte, hkey string, hvalue []byte, headers uint8, encoded bool, delta int64) {
		var raw []byte
		if encoded {
			r := kmsg.Record{TimestampDelta64: delta, OffsetDelta: int32(headers), Key: key, Value: value}
			for i := range int(headers % 8) {
				r.Headers = append(r.Headers, kmsg.Header{Key: hkey + fmt.Sprint(i), Value: hvalue})
			}
			raw = r.AppendTo(nil)
			_, n := binary.Varint(raw)
			raw = raw[n:]
		} else {
			raw = append(append(key, value...), hkey...) // any bytes
		}
		budget := maxDecoded
		got := log.Record{TimestampMs: 1000}
		err := readRecord(raw, &got, &budget)
		var want kmsg.Record
		werr := want.ReadFrom(append(binary.AppendVarint(nil, int64(len(raw))), raw...))
		if encoded && err != nil {
			t.Fatalf("refused a kmsg record: %v", err)
		}
		if err != nil {
			return
		}
		if werr != nil {
			t.Fatalf("took what kmsg refuses (%v)", werr)
		}
		if got.TimestampMs != 1000+want.TimestampDelta64 || !bytes.Equal(got.Key, want.Key) || (got.Key == nil) != (want.Key == nil) ||
			!bytes.Equal(got.Value, want.Value) || (got.Value == nil) != (want.Value == nil) || len(got.Headers) != len(want.Headers) {
			t.Fatalf("got %+v, kmsg %+v", got, want)
		}
		for i, h := range want.Headers {
			g := got.Headers[i]
			if string(g.Key) != h.Key || !bytes.Equal(g.Value, h.Value) || (g.Value == nil) != (h.Value == nil) {
				t.Fatalf("header %d: got %q=%q, kmsg %q=%q", i, g.Key, g.Value, h.Key, h.Value)
			}
		}
		if budget != maxDecoded-len(got.Headers)*headerCost {
			t.Fatalf("budget %d for %d headers", maxDecoded-budget, len(got.Headers))
		}
	})
}

// readRecord refuses what Kafka's DefaultRecord refuses.
func TestReadRecordRefuses(t *testing.T) {
	for name, raw := range map[string][]byte{
		"empty":             {},
		"null header key":   {0, 0, 0, 1, 0, 2, 1, 0},
		"bytes past":        {0, 0, 0, 1, 0, 0, 7},
		"header count":      {0, 0, 0, 1, 0, 4, 0, 0},
		"negative headers":  {0, 0, 0, 1, 0, 1},
		"key past the end":  {0, 0, 0, 8, 'a'},
		"negative key size": {0, 0, 0, 3},
	} {
		budget := maxDecoded
		var r log.Record
		if err := readRecord(raw, &r, &budget); err == nil {
			t.Errorf("%s: took %+v", name, r)
		}
	}
}
