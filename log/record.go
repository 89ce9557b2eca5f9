package log

// Record is one record of a partition. Key and Value are opaque bytes; a nil
// Key is a null key (Kafka's), a nil Value a null value (a tombstone in a
// compacted topic). Fields are laid out as franz-go's kgo.Record names them.
type Record struct {
	// Partition and Offset are set by Append and by readers.
	Partition int32
	Offset    int64
	// TimestampMs is the record's time in unix milliseconds. Append sets a
	// zero timestamp to the current time (as kgo does), and every
	// timestamp when the topic uses LogAppendTime.
	TimestampMs int64
	Key         []byte
	Value       []byte
	Headers     []Header
}

// Header is a record header, Kafka's: a string key and a nullable value.
type Header struct {
	Key   []byte
	Value []byte
}

// Bytes is the record's size as max_record_bytes counts it: key, value and
// header keys and values.
func (r *Record) Bytes() int {
	n := len(r.Key) + len(r.Value)
	for i := range r.Headers {
		n += len(r.Headers[i].Key) + len(r.Headers[i].Value)
	}
	return n
}

// Acks is the durability an append waits for, as Kafka's producer acks.
type Acks int8

const (
	// AcksNone returns once the records are queued in memory: they are
	// written within Options.Linger and lost if the process dies first.
	AcksNone Acks = 0
	// AcksLeader returns once the records are written to the operating
	// system: they survive a crash of the process, not of the machine.
	AcksLeader Acks = 1
	// AcksAll returns once the records are fsynced: they survive power
	// loss. Concurrent AcksAll appends share fsyncs (group commit).
	AcksAll Acks = -1
)

// ParseAcks parses "0", "1", "all" (or "-1").
func ParseAcks(s string) (Acks, bool) {
	switch s {
	case "0":
		return AcksNone, true
	case "1":
		return AcksLeader, true
	case "all", "-1":
		return AcksAll, true
	}
	return 0, false
}

func (a Acks) String() string {
	switch a {
	case AcksNone:
		return "0"
	case AcksLeader:
		return "1"
	}
	return "all"
}
