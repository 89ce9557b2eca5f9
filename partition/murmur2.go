package partition

// Murmur2 is the 32-bit murmur2 hash exactly as the Java Kafka client
// computes it for keyed records (Utils.murmur2 in
// https://github.com/apache/kafka/blob/3.7.0/clients/src/main/java/org/apache/kafka/common/utils/Utils.java#L480),
// returned as the Java int it is there.
func Murmur2(data []byte) int32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	length := len(data)
	h := uint32(seed) ^ uint32(length)
	n4 := length / 4
	for i := 0; i < n4; i++ {
		i4 := i * 4
		k := uint32(data[i4]) | uint32(data[i4+1])<<8 | uint32(data[i4+2])<<16 | uint32(data[i4+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	// The fall-through switch of the Java original.
	tail := data[n4*4:]
	switch len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// ForKey returns the partition Kafka's default partitioner picks for a
// non-null key: toPositive(murmur2(key)) % partitions. partitions must be
// positive.
func ForKey(key []byte, partitions int32) int32 {
	return (Murmur2(key) & 0x7fffffff) % partitions
}
