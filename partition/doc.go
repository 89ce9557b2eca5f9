// Package partition decides where records go and who processes them.
//
// ForKey is the Java Kafka client's default partitioner, bit for bit:
// (murmur2(key) & 0x7fffffff) % partitions, so a key produced through
// fastflow lands on the same partition number it would in Kafka, and a
// Kafka client producing to fastflow sees its usual placement. Records
// without a key are spread by a Sticky partitioner, which, like Kafka's
// since KIP-480, keeps one partition for a whole batch and then moves on,
// so null-key traffic still produces large batches.
//
// Assign splits partitions over workers (pipeline cores, or consumer group
// members): each worker owns whole partitions, which is what lets a worker
// keep per-partition state without locks.
//
// Everything here is pure computation; the functions are safe for
// concurrent use, a Sticky is not (one per producer goroutine).
package partition
