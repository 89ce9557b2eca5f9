package kafka

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/klauspost/compress/snappy"
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
	got, err := decompress(2, framed)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("xerial: %v, %d bytes, want %d", err, len(got), len(want))
	}
	if _, err := decompress(2, framed[:len(framed)-7]); err == nil {
		t.Fatal("a truncated xerial chunk decoded")
	}
	raw, err := decompress(2, snappy.Encode(nil, want))
	if err != nil || !bytes.Equal(raw, want) {
		t.Fatalf("raw snappy: %v", err)
	}
}

// A snappy block claiming a huge decompressed size is refused before
// anything is allocated for it.
func TestDecompressRefusesSnappyBomb(t *testing.T) {
	bomb := binary.AppendUvarint(nil, 1<<40) // the decoded length a block declares
	bomb = append(bomb, 0x00, 'x')
	if _, err := decompress(2, bomb); err == nil {
		t.Fatal("a block declaring 1 TiB decoded")
	}
	if _, err := decompress(2, binary.AppendUvarint(nil, maxUncompressed+1)); !errors.Is(err, errTooLarge) {
		t.Fatalf("a block over the limit: %v", err)
	}
}
