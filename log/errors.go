package log

import (
	"errors"
	"fmt"
)

var (
	// ErrClosed is returned by calls on a closed Log, and by a second Close.
	ErrClosed = errors.New("log closed")
	// ErrCorrupt is wrapped by every *CorruptError.
	ErrCorrupt = errors.New("log corrupt")
	// ErrUnknownTopic is returned for a topic that does not exist.
	ErrUnknownTopic = errors.New("unknown topic")
	// ErrTopicExists is returned by CreateTopic for an existing topic.
	ErrTopicExists = errors.New("topic already exists")
	// ErrRecordTooLarge is wrapped by the error for a record above the
	// topic's max_record_bytes.
	ErrRecordTooLarge = errors.New("record too large")
	// ErrLocked is returned when another process writes the partition.
	ErrLocked = errors.New("partition is written by another process")
	// ErrNoOffset is returned for a group with no committed offset when
	// the start policy is "none".
	ErrNoOffset = errors.New("no committed offset")
	// ErrUnknownGroup is returned by Group.Delete for a group that has
	// nothing to delete.
	ErrUnknownGroup = errors.New("unknown group")
	// ErrGroupNotEmpty is wrapped by Group.Delete's error while the group
	// has members, as Kafka's NON_EMPTY_GROUP.
	ErrGroupNotEmpty = errors.New("group has active members")
	// ErrGroupSubscribed is wrapped by Group.DeleteOffsets' error while a
	// member consumes the topic, as Kafka's GROUP_SUBSCRIBED_TO_TOPIC.
	ErrGroupSubscribed = errors.New("group has active members on the topic")
	// ErrGroupProtocol is wrapped by NewConsumer's error for a group that
	// has Kafka clients' members (through serve's Kafka listener): as
	// Kafka refuses a member of another protocol type
	// (INCONSISTENT_GROUP_PROTOCOL), a fastflow consumer cannot share
	// their assignment.
	ErrGroupProtocol = errors.New("group has Kafka client members")
)

// OffsetOutOfRangeError is returned when reading or seeking outside the
// partition's [log-start, high-watermark] range, as Kafka's
// OFFSET_OUT_OF_RANGE.
type OffsetOutOfRangeError struct {
	Topic     string
	Partition int32
	Offset    int64
	Start     int64 // log-start offset
	End       int64 // high watermark
}

func (e *OffsetOutOfRangeError) Error() string {
	return fmt.Sprintf("offset %d out of range for %s/%d: valid offsets are %d to %d", e.Offset, e.Topic, e.Partition, e.Start, e.End)
}

// ErrOffsetOutOfRange is matched by every *OffsetOutOfRangeError.
var ErrOffsetOutOfRange = errors.New("offset out of range")

func (e *OffsetOutOfRangeError) Is(target error) bool { return target == ErrOffsetOutOfRange }
