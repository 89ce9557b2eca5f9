package kafka

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
	"unsafe"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/fastflow/fastflow/log"
)

// Kafka's RecordBatch v2 ("magic 2"), the only format current clients
// produce: a 61-byte header — base offset, length, leader epoch, magic,
// CRC32C over everything after the CRC, attributes (compression codec in
// the low 3 bits, timestamp type, transactional, control), last offset
// delta, first and max timestamps, producer ID, epoch and first sequence,
// record count — then the records, possibly compressed as a whole.

const batchHeaderBytes = 61

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Attributes of a batch.
const (
	codecMask        = 0x07
	attrLogAppend    = 0x08
	attrTransaction  = 0x10
	attrControlBatch = 0x20
)

var errCorruptBatch = errors.New("corrupt record batch")

// producedBatch is one batch of a Produce request, decoded.
type producedBatch struct {
	kmsg.RecordBatch
	records []log.Record
}

// decodeBatches decodes the record batches of a Produce partition. It
// checks each batch's CRC and decompresses it. What the batches take once
// decoded comes from *budget, the bytes the request's batches may still
// take (maxDecoded for a request): what compressed batches expand to (a
// few KiB of zstd can claim 256 MiB, and a request can hold thousands of
// batches), and recordCost a record and headerCost a header, for the
// records are decoded to log.Records before any is appended (a request of
// 20 M empty records, 17 MB of zstd, took the server to 2.9 GB; a batch
// claiming 200 M records in 200 MB of zeros, 21 KB of zstd, allocated 16
// GB for them before the first failed to decode).
func decodeBatches(raw []byte, budget *int) ([]producedBatch, error) {
	var out []producedBatch
	for len(raw) > 0 {
		if len(raw) < 12 {
			return nil, fmt.Errorf("%w: %d trailing bytes", errCorruptBatch, len(raw))
		}
		length := int(int32(binary.BigEndian.Uint32(raw[8:12])))
		if length < batchHeaderBytes-12 || length > len(raw)-12 {
			return nil, fmt.Errorf("%w: length %d of %d bytes", errCorruptBatch, length, len(raw)-12)
		}
		one := raw[:12+length]
		raw = raw[12+length:]
		var b producedBatch
		if err := b.RecordBatch.ReadFrom(one); err != nil {
			return nil, fmt.Errorf("%w: %v", errCorruptBatch, err)
		}
		if b.Magic != 2 {
			return nil, fmt.Errorf("%w: magic %d (only v2 batches are supported)", errCorruptBatch, b.Magic)
		}
		if crc32.Checksum(one[21:], castagnoli) != uint32(b.CRC) {
			return nil, fmt.Errorf("%w: CRC mismatch", errCorruptBatch)
		}
		if b.Attributes&(attrTransaction|attrControlBatch) != 0 {
			return nil, fmt.Errorf("transactional batches are not supported")
		}
		codec := b.Attributes & codecMask
		recs, err := decompress(codec, b.Records, *budget)
		if errors.Is(err, errTooLarge) {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errCorruptBatch, err)
		}
		if codec != 0 {
			*budget -= len(recs) // decompress stopped at *budget
		}
		if b.NumRecords < 0 || int(b.NumRecords) > len(recs) {
			return nil, fmt.Errorf("%w: %d records in %d bytes", errCorruptBatch, b.NumRecords, len(recs))
		}
		if err := charge(budget, int(b.NumRecords)*recordCost); err != nil {
			return nil, err
		}
		b.records = make([]log.Record, 0, b.NumRecords)
		for i := int32(0); i < b.NumRecords; i++ {
			l, n := binary.Varint(recs)
			if n <= 0 || l < 0 || int64(len(recs)-n) < l {
				return nil, fmt.Errorf("%w: record %d: length", errCorruptBatch, i)
			}
			r := log.Record{TimestampMs: b.FirstTimestamp}
			if err := readRecord(recs[n:n+int(l)], &r, budget); err != nil {
				if errors.Is(err, errTooLarge) {
					return nil, err
				}
				return nil, fmt.Errorf("%w: record %d: %v", errCorruptBatch, i, err)
			}
			recs = recs[n+int(l):]
			b.records = append(b.records, r)
		}
		out = append(out, b)
	}
	return out, nil
}

// readRecord decodes a record of a batch, the bytes its length counts,
// into r, adding its timestamp delta to r.TimestampMs; its key, value and
// headers alias b. It reads a record as Kafka's DefaultRecord does, bytes
// left over are an error too, and takes its headers' cost from *budget
// before it makes room for them: a record of 256 MiB can hold 128 M empty
// headers, and kmsg.Record's decoder makes a 40-byte kmsg.Header of each
// first (5 GiB).
func readRecord(b []byte, r *log.Record, budget *int) error {
	if len(b) < 1 {
		return errors.New("no attributes")
	}
	b = b[1:] // attributes: none are defined for records
	delta, n := binary.Varint(b)
	if n <= 0 {
		return errors.New("bad timestamp delta")
	}
	r.TimestampMs += delta
	b = b[n:]
	if _, n = binary.Varint(b); n <= 0 { // offset delta: records are stored in order
		return errors.New("bad offset delta")
	}
	b = b[n:]
	var ok bool
	if r.Key, b, ok = varintBytes(b); !ok {
		return errors.New("bad key")
	}
	if r.Value, b, ok = varintBytes(b); !ok {
		return errors.New("bad value")
	}
	count, n := binary.Varint(b)
	if n <= 0 || count < 0 || count > int64(len(b)-n)/2 { // a header takes 2 bytes at least
		return errors.New("bad header count")
	}
	b = b[n:]
	if count > 0 {
		if err := charge(budget, int(count)*headerCost); err != nil {
			return err
		}
		r.Headers = make([]log.Header, count)
		for i := range r.Headers {
			h := &r.Headers[i]
			if h.Key, b, ok = varintBytes(b); !ok || h.Key == nil {
				return fmt.Errorf("bad header %d key", i)
			}
			if h.Value, b, ok = varintBytes(b); !ok {
				return fmt.Errorf("bad header %d value", i)
			}
		}
	}
	if len(b) > 0 {
		return fmt.Errorf("%d bytes past its headers", len(b))
	}
	return nil
}

// varintBytes reads bytes of a varint length (-1: null) from the start of
// b and returns them (sharing b's memory) and the rest of b.
func varintBytes(b []byte) (v, rest []byte, ok bool) {
	l, n := binary.Varint(b)
	switch {
	case n <= 0 || l < -1 || l > int64(len(b)-n):
		return nil, nil, false
	case l == -1:
		return nil, b[n:], true
	}
	return b[n : n+int(l) : n+int(l)], b[n+int(l):], true
}

// xerialMagic starts snappy data framed the way the Java client's
// (xerial) snappy-java writes it.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

// decompress expands b, compressed with codec, to at most limit bytes
// (errTooLarge past it).
func decompress(codec int16, b []byte, limit int) ([]byte, error) {
	switch codec {
	case 0:
		return b, nil
	case 1:
		r, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		return readLimited(r, limit)
	case 2:
		if bytes.HasPrefix(b, xerialMagic) && len(b) >= 16 {
			var out []byte
			for b = b[16:]; len(b) > 0; {
				if len(b) < 4 {
					return nil, errors.New("truncated xerial chunk")
				}
				n := int(binary.BigEndian.Uint32(b))
				if n > len(b)-4 {
					return nil, errors.New("truncated xerial chunk")
				}
				chunk, err := snappyDecode(b[4:4+n], limit-len(out))
				if err != nil {
					return nil, err
				}
				out = append(out, chunk...)
				b = b[4+n:]
			}
			return out, nil
		}
		return snappyDecode(b, limit)
	case 3:
		return readLimited(lz4.NewReader(bytes.NewReader(b)), limit)
	case 4:
		d, err := zstdDecoder()
		if err != nil {
			return nil, err
		}
		// A frame that says how large it is is refused before decoding;
		// one that does not, once decoded (the decoder itself stops at
		// maxDecoded).
		var h zstd.Header
		if h.Decode(b) == nil && h.HasFCS && h.FrameContentSize > uint64(limit) {
			return nil, errTooLarge
		}
		out, err := d.DecodeAll(b, nil)
		if err == nil && len(out) > limit {
			return nil, errTooLarge
		}
		return out, err
	}
	return nil, fmt.Errorf("unknown compression codec %d", codec)
}

// readLimited reads r to its end, at most limit bytes.
func readLimited(r io.Reader, limit int) ([]byte, error) {
	out, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err == nil && len(out) > limit {
		return nil, errTooLarge
	}
	return out, err
}

var errTooLarge = fmt.Errorf("the record batches of the request take more than %d MiB once decompressed and decoded", maxDecoded>>20)

// charge takes cost from *budget, errTooLarge past it.
func charge(budget *int, cost int) error {
	if cost > *budget {
		return errTooLarge
	}
	*budget -= cost
	return nil
}

// snappyDecode decodes a snappy block, refusing one that claims to
// decompress past limit before allocating for it.
func snappyDecode(b []byte, limit int) ([]byte, error) {
	n, err := snappy.DecodedLen(b)
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, errTooLarge
	}
	return snappy.Decode(nil, b)
}

// zstdDecoder is shared by every connection: a zstd decoder is costly to
// build and its DecodeAll is safe for concurrent use.
var zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxDecoded), zstd.WithDecoderConcurrency(0))
})

// maxDecoded bounds what the batches of one Produce request take once
// decoded, together: what the compressed ones expand to, and recordCost
// and headerCost for each record and header (the request itself is at
// most MaxRequestBytes). Clients' requests are far smaller: librdkafka and
// the Java client send at most 1 MB (message.max.bytes, max.request.size),
// franz-go buffers at most 50,000 records by default.
const maxDecoded = 256 << 20

// What a decoded record and header take in memory: a log.Record and a
// log.Header.
const (
	recordCost = int(unsafe.Sizeof(log.Record{}))
	headerCost = int(unsafe.Sizeof(log.Header{}))
)

// appendBatch appends recs (consecutive records of one fastflow batch or
// less, offsets increasing) as one uncompressed RecordBatch v2. The
// records are written straight into dst (which a fetch grows beforehand
// to what batchFit says): each record's bytes are copied once, from the
// log.
func appendBatch(dst []byte, recs []log.Record, logAppendTime bool) []byte {
	first, last := recs[0], recs[len(recs)-1]
	maxTs := first.TimestampMs
	for i := range recs {
		maxTs = max(maxTs, recs[i].TimestampMs)
	}
	start := len(dst)
	var b kmsg.RecordBatch
	b.Default()
	b.FirstOffset = first.Offset
	b.Magic = 2
	b.LastOffsetDelta = int32(last.Offset - first.Offset)
	b.FirstTimestamp = first.TimestampMs
	b.MaxTimestamp = maxTs
	b.ProducerID, b.ProducerEpoch, b.FirstSequence = -1, -1, -1
	b.NumRecords = int32(len(recs))
	if logAppendTime {
		b.Attributes |= attrLogAppend
	}
	dst = b.AppendTo(dst) // the header, with no records
	for i := range recs {
		dst = appendRecord(dst, &recs[i], &first)
	}
	// AppendTo wrote Length and CRC as given: fill them in.
	binary.BigEndian.PutUint32(dst[start+8:], uint32(len(dst)-start-12))
	binary.BigEndian.PutUint32(dst[start+17:], crc32.Checksum(dst[start+21:], castagnoli))
	return dst
}

// batchFit returns how many of recs, from the first, appendBatch encodes
// in room bytes, and the size of their batch.
func batchFit(recs []log.Record, room int) (n, size int) {
	size = batchHeaderBytes
	for i := range recs {
		body := recordBodySize(&recs[i], &recs[0])
		if next := size + varintSize(int64(body)) + body; next <= room {
			size = next
		} else {
			return i, size
		}
	}
	return len(recs), size
}

// A record of a RecordBatch v2: its length, then attributes (0), the
// timestamp and offset as deltas from the batch's first record's, key and
// value (length -1: null), and headers (a key, and a value that may be
// null) — lengths and deltas as zigzag varints, as kmsg.Record writes it
// (TestAppendBatchMatchesKmsg).

// recordBodySize is the size of r's record after its length prefix, in a
// batch whose first record is first.
func recordBodySize(r, first *log.Record) int {
	n := 1 + varintSize(r.TimestampMs-first.TimestampMs) + varintSize(r.Offset-first.Offset) +
		nullableSize(r.Key) + nullableSize(r.Value) + varintSize(int64(len(r.Headers)))
	for _, h := range r.Headers {
		n += varintSize(int64(len(h.Key))) + len(h.Key) + nullableSize(h.Value)
	}
	return n
}

func appendRecord(dst []byte, r, first *log.Record) []byte {
	dst = binary.AppendVarint(dst, int64(recordBodySize(r, first)))
	dst = append(dst, 0)
	dst = binary.AppendVarint(dst, r.TimestampMs-first.TimestampMs)
	dst = binary.AppendVarint(dst, r.Offset-first.Offset)
	dst = appendNullable(dst, r.Key)
	dst = appendNullable(dst, r.Value)
	dst = binary.AppendVarint(dst, int64(len(r.Headers)))
	for _, h := range r.Headers {
		dst = binary.AppendVarint(dst, int64(len(h.Key)))
		dst = append(dst, h.Key...)
		dst = appendNullable(dst, h.Value)
	}
	return dst
}

func appendNullable(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	return append(binary.AppendVarint(dst, int64(len(b))), b...)
}

func nullableSize(b []byte) int {
	if b == nil {
		return 1
	}
	return varintSize(int64(len(b))) + len(b)
}

// varintSize is the size of v as a zigzag varint (binary.AppendVarint).
func varintSize(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	n := 1
	for ; u >= 0x80; u >>= 7 {
		n++
	}
	return n
}
