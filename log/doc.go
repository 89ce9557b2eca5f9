// Package log is fastflow's durable, partitioned append log with Kafka's
// semantics: topics of N partitions, records with keys, dense offsets from
// 0 per partition, timestamps, retention, compaction and consumer groups.
//
// # Usage
//
//	l, err := log.Open("data", log.Options{})
//	t, err := l.CreateTopic("events", log.TopicConfig{Partitions: 6})
//	p, err := t.Partition(partition.ForKey(key, t.Partitions()))
//	base, err := p.Append(records, log.AcksAll)
//	r, err := p.NewReader(base)
//	recs, err = r.Poll(ctx, recs[:0])
//
// # On disk
//
//	DATA/topics/TOPIC/topic.json           the topic's configuration (AlterConfig rewrites it)
//	DATA/topics/TOPIC/P/0000…0001          tidwall/wal segment files
//	DATA/topics/TOPIC/P/state              log-start offset after retention, offset compaction reached
//	DATA/topics/TOPIC/P/lock               flock of the writing process
//	DATA/groups/GROUP/…                    consumer groups (see Group)
//
// Each wal entry is one record batch (package log/internal/frame): a
// header with the base offset, record count and timestamps, the records,
// and a CRC32C over it all. Batching is what makes the wal fast: its
// per-entry costs are paid per batch. The wal index is the batch's ordinal,
// and the log keeps, per segment, a sparse index from offsets and
// timestamps to file positions (an entry every 4 KiB, as Kafka's
// index.interval.bytes), rebuilt by scanning the segments at open.
//
// Segments are written in tidwall/wal's file format by log/internal/wal, a
// fork of tidwall/wal that does not keep the active segment in memory
// (upstream grows a copy of it on every write, which cost more than half
// of the append time and ~5 bytes of garbage per byte written); the fork
// is tested to write byte-identical files. Readers pread the files. wal's
// Open refuses a torn tail, and wal has no checksum, so the log scans the
// last two segments (the one before the tail may be torn after a power
// failure: its fsync runs in the background), verifying CRCs, and cuts a
// torn or corrupt tail back to the last good batch (with a warning naming the partition and the offsets
// dropped) before it hands the files to wal. A damaged batch elsewhere is
// a *CorruptError naming the file and position when it is read.
//
// # Durability
//
// Append's acks are Kafka's: AcksNone returns once queued in memory,
// AcksLeader once written to the OS, AcksAll once fsynced. AcksAll appends
// share fsyncs (group commit): one goroutine syncs the tail segment, through
// its own descriptor so that appends continue meanwhile, for every append
// written before the sync began. A segment that rolls is fsynced in the
// background, as Kafka flushes a rolled segment, and a sync round waits for
// those too; the log fsyncs the directory when a segment was created.
// A write error (a full disk) fails the Append, drops whatever part of it
// reached the files, and leaves the partition as it was, so appends succeed
// again once there is space.
//
// # Concurrency
//
// Log, Topic and Partition are safe for concurrent use. A partition's
// appends are serialized, a batch at a time; readers do not block appends
// and take no lock per record. A Reader or a Consumer belongs to one
// goroutine. The records a Read returns point into the Reader's buffer:
// they are valid until the next call on that Reader. A mapped reader's
// point into a read-only mapping of the file (NewMappedReader): touching
// them after the next call may fault.
//
// Several processes may open one data directory. The first to append to a
// partition becomes its writer (an flock on its lock file); the others
// read its files and follow its appends with inotify. Retention and
// compaction run in the writer, in the background, without touching the
// active segment.
package log
