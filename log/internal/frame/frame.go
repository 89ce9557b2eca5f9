// Package frame encodes and decodes fastflow's record batches: the unit
// that the log writes as one tidwall/wal entry.
//
// Like Kafka's RecordBatch v2, a batch carries a fixed header and then its
// records, and a CRC32C (Castagnoli; Go's hash/crc32 uses the SSE4.2 or
// ARMv8 CRC instructions when the CPU has them) over everything after the
// CRC field, so a flipped bit or a torn write is detected rather than
// served. One entry per batch instead of one per record is what makes the
// wal fast: per-entry costs (length prefix, index slot, bookkeeping) are
// paid once per batch.
//
// Layout, little endian:
//
//	0  uint32 crc32c of bytes [4:]
//	4  uint8  magic (1)
//	5  uint8  attributes (bit 0: timestamps are LogAppendTime)
//	6  uint16 reserved, 0
//	8  int64  base offset
//	16 int32  last offset delta
//	20 int32  record count
//	24 int64  first timestamp (unix ms)
//	32 int64  max timestamp (unix ms)
//	40 records
//
// Each record:
//
//	uvarint offset delta (from the base offset; compaction keeps offsets, so deltas may skip)
//	varint  timestamp delta (from the first timestamp)
//	varint  key length, -1 for a null key; key bytes
//	varint  value length, -1 for a null value (a tombstone); value bytes
//	uvarint header count; per header: uvarint key length, key, varint value length (-1 null), value
//
// Slices returned by the decoder point into the batch passed in; they are
// valid as long as that buffer is.
package frame

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
)

// HeaderSize is the size of the fixed batch header.
const HeaderSize = 40

const magic = 1

// AttrLogAppendTime marks a batch whose timestamps were set by the log at
// append time rather than by the producer (Kafka's LogAppendTime).
const AttrLogAppendTime = 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	// ErrShort is returned for a batch shorter than its header or whose
	// records run past its end.
	ErrShort = errors.New("frame: batch truncated")
	// ErrCRC is returned when a batch's checksum does not match its bytes.
	ErrCRC = errors.New("frame: checksum mismatch")
	// ErrMagic is returned for an unknown batch version.
	ErrMagic = errors.New("frame: unknown batch magic")
	// ErrMalformed is returned when a batch's records do not decode.
	ErrMalformed = errors.New("frame: malformed record")
)

// Header is a decoded batch header.
type Header struct {
	Attributes      uint8
	BaseOffset      int64
	LastOffsetDelta int32
	Count           int32
	FirstTimestamp  int64
	MaxTimestamp    int64
}

// LastOffset is the offset of the batch's last record.
func (h *Header) LastOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) }

// ParseHeader decodes the fixed header of b without checking the CRC.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, ErrShort
	}
	if b[4] != magic {
		return Header{}, ErrMagic
	}
	return Header{
		Attributes:      b[5],
		BaseOffset:      int64(binary.LittleEndian.Uint64(b[8:])),
		LastOffsetDelta: int32(binary.LittleEndian.Uint32(b[16:])),
		Count:           int32(binary.LittleEndian.Uint32(b[20:])),
		FirstTimestamp:  int64(binary.LittleEndian.Uint64(b[24:])),
		MaxTimestamp:    int64(binary.LittleEndian.Uint64(b[32:])),
	}, nil
}

// Verify checks b's header and CRC.
func Verify(b []byte) error {
	if len(b) < HeaderSize {
		return ErrShort
	}
	if b[4] != magic {
		return ErrMagic
	}
	if crc32.Checksum(b[4:], castagnoli) != binary.LittleEndian.Uint32(b) {
		return ErrCRC
	}
	return nil
}

// Builder encodes one batch. The zero value is ready to use; Reset starts
// a batch. A Builder reuses its buffer: the slice Finish returns is valid
// until the next Reset. It cannot be used from concurrent goroutines.
type Builder struct {
	buf      []byte
	start    int  // of the batch in buf
	borrowed bool // buf is a ResetAppend caller's
	base     int64
	count    int32
	last     int32
	firstTs  int64
	maxTs    int64
	attrs    uint8
}

// Reset starts a new batch whose offsets are relative to base.
func (b *Builder) Reset(base int64, attrs uint8) {
	if b.borrowed || cap(b.buf) < HeaderSize {
		b.buf = make([]byte, 0, 4096) // never write over a ResetAppend caller's bytes
	}
	b.ResetAppend(b.buf[:0], base, attrs)
	b.borrowed = false
}

// ResetAppend starts a new batch built at the end of dst, so that a caller
// collecting batches in one buffer builds them in place instead of copying
// each. Finish returns the batch; Buf returns dst with the batch after it.
// The Builder appends to dst's array until the next Reset or ResetAppend;
// a later Reset takes a buffer of its own.
func (b *Builder) ResetAppend(dst []byte, base int64, attrs uint8) {
	b.start, b.borrowed = len(dst), true
	b.buf = append(dst, zeroHeader[:]...)
	b.base, b.count, b.last, b.attrs = base, 0, 0, attrs
	b.firstTs, b.maxTs = 0, math.MinInt64
}

// Buf returns the buffer the batch is built in: ResetAppend's dst (empty
// after Reset) followed by the batch so far.
func (b *Builder) Buf() []byte { return b.buf }

var zeroHeader [HeaderSize]byte

// Count is the number of records added since Reset.
func (b *Builder) Count() int32 { return b.count }

// Len is the encoded size of the batch so far.
func (b *Builder) Len() int { return len(b.buf) - b.start }

// Add appends a record at offset base+offsetDelta with headerCount
// headers, which the caller then adds with AddHeader. Offset deltas must
// increase. A nil key or value is encoded as null.
func (b *Builder) Add(offsetDelta int32, timestampMs int64, key, value []byte, headerCount int) {
	if b.count == 0 {
		b.firstTs = timestampMs
	}
	if timestampMs > b.maxTs {
		b.maxTs = timestampMs
	}
	b.buf = binary.AppendUvarint(b.buf, uint64(offsetDelta))
	b.buf = binary.AppendVarint(b.buf, timestampMs-b.firstTs)
	b.buf = appendBytes(b.buf, key)
	b.buf = appendBytes(b.buf, value)
	b.buf = binary.AppendUvarint(b.buf, uint64(headerCount))
	b.count++
	b.last = offsetDelta
}

// AddHeader appends one header to the record added last.
func (b *Builder) AddHeader(key, value []byte) {
	b.buf = binary.AppendUvarint(b.buf, uint64(len(key)))
	b.buf = append(b.buf, key...)
	b.buf = appendBytes(b.buf, value)
}

// AddRaw appends a record copied from another batch by Decoder.Raw,
// re-basing its timestamp delta. It is how compaction keeps survivors
// byte for byte.
func (b *Builder) AddRaw(offsetDelta int32, timestampMs int64, rest []byte) {
	if b.count == 0 {
		b.firstTs = timestampMs
	}
	if timestampMs > b.maxTs {
		b.maxTs = timestampMs
	}
	b.buf = binary.AppendUvarint(b.buf, uint64(offsetDelta))
	b.buf = binary.AppendVarint(b.buf, timestampMs-b.firstTs)
	b.buf = append(b.buf, rest...)
	b.count++
	b.last = offsetDelta
}

// KeepSpan makes the batch end at offset base+lastOffsetDelta even if its
// last records were dropped: compaction keeps every batch's offset range,
// so batches stay contiguous.
func (b *Builder) KeepSpan(lastOffsetDelta int32) {
	if lastOffsetDelta > b.last {
		b.last = lastOffsetDelta
	}
}

// Finish writes the header and CRC and returns the encoded batch.
func (b *Builder) Finish() []byte {
	h := b.buf[b.start : b.start+HeaderSize]
	h[4], h[5], h[6], h[7] = magic, b.attrs, 0, 0
	maxTs := b.maxTs
	if b.count == 0 {
		maxTs = b.firstTs
	}
	binary.LittleEndian.PutUint64(h[8:], uint64(b.base))
	binary.LittleEndian.PutUint32(h[16:], uint32(b.last))
	binary.LittleEndian.PutUint32(h[20:], uint32(b.count))
	binary.LittleEndian.PutUint64(h[24:], uint64(b.firstTs))
	binary.LittleEndian.PutUint64(h[32:], uint64(maxTs))
	binary.LittleEndian.PutUint32(h, crc32.Checksum(b.buf[b.start+4:], castagnoli))
	return b.buf[b.start:]
}

// RecordSize is the encoded size of one record with no headers, for
// callers that check sizes before building.
func RecordSize(offsetDelta int32, tsDelta int64, key, value []byte) int {
	return uvarintLen(uint64(offsetDelta)) + varintLen(tsDelta) + bytesLen(key) + bytesLen(value) + 1
}

// HeaderBytes is the encoded size of one header.
func HeaderBytes(key, value []byte) int {
	return uvarintLen(uint64(len(key))) + len(key) + bytesLen(value)
}

func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	dst = binary.AppendVarint(dst, int64(len(b)))
	return append(dst, b...)
}

func bytesLen(b []byte) int {
	if b == nil {
		return 1
	}
	return varintLen(int64(len(b))) + len(b)
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func varintLen(x int64) int {
	ux := uint64(x) << 1
	if x < 0 {
		ux = ^ux
	}
	return uvarintLen(ux)
}
