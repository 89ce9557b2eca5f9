package log

import (
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
)

// Options configure a Log. The zero value of every field is its default.
type Options struct {
	// Logger receives warnings (recovery, retention) and errors of
	// background work. Nil discards.
	Logger *slog.Logger
	// LockTimeout bounds how long the first Append to a partition waits
	// for another process that writes it to finish. Default 10s.
	LockTimeout time.Duration
	// Linger is how long records appended with AcksNone may wait in memory
	// before they are written. Default 5ms, as Kafka's linger.ms.
	Linger time.Duration
	// CleanupInterval is how often retention and compaction run in the
	// background, on the partitions this process writes; they run once
	// more when the Log is closed. Default 1m; negative disables both
	// (Cleanup can still be called).
	CleanupInterval time.Duration
	// Now returns the current time; tests set it. Default time.Now.
	Now func() time.Time
}

func (o *Options) withDefaults() Options {
	c := *o
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.LockTimeout == 0 {
		c.LockTimeout = 10 * time.Second
	}
	if c.Linger == 0 {
		c.Linger = 5 * time.Millisecond
	}
	if c.CleanupInterval == 0 {
		c.CleanupInterval = time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Cleanup policies, Kafka's cleanup.policy values.
const (
	CleanupDelete  = "delete"
	CleanupCompact = "compact"
)

// Timestamp types, Kafka's message.timestamp.type values.
const (
	TimestampCreate = "CreateTime"
	TimestampAppend = "LogAppendTime"
)

// Defaults of TopicConfig.
const (
	DefaultRetention       = 168 * time.Hour
	DefaultSegmentBytes    = 16 << 20
	DefaultMaxRecordBytes  = 1 << 20
	DefaultDeleteRetention = 24 * time.Hour
)

// TopicConfig is a topic's configuration. The zero value of every field is
// its default; Partitions is required.
type TopicConfig struct {
	// Partitions is the number of partitions; it only grows (AddPartitions).
	Partitions int32 `json:"partitions"`
	// Retention deletes closed segments whose newest record is older than
	// this. Default 168h; negative keeps everything. Kafka's retention.ms.
	Retention time.Duration `json:"retention"`
	// RetentionBytes deletes the oldest closed segments of a partition while
	// it would still hold this many bytes without them. Default 0:
	// unlimited. Kafka's retention.bytes.
	RetentionBytes int64 `json:"retention_bytes,omitempty"`
	// SegmentBytes is the size at which a partition rolls to a new segment
	// file. Default 16 MiB. Kafka's segment.bytes (whose default, 1 GiB,
	// suits a broker; retention and compaction work in whole segments, and
	// small ones keep them fine-grained on small disks).
	SegmentBytes int64 `json:"segment_bytes"`
	// Cleanup is "delete" (retention) or "compact" (keep the latest record
	// per key). Default "delete". Kafka's cleanup.policy.
	Cleanup string `json:"cleanup_policy"`
	// MaxRecordBytes bounds one record (key, value and headers). Default
	// 1 MiB. Kafka's max.message.bytes.
	MaxRecordBytes int `json:"max_record_bytes"`
	// TimestampType is "CreateTime" (the producer's) or "LogAppendTime".
	// Default CreateTime. Kafka's message.timestamp.type.
	TimestampType string `json:"timestamp_type"`
	// DeleteRetention is how long a tombstone (null value) survives
	// compaction, measured from its timestamp. Default 24h. Kafka's
	// delete.retention.ms.
	DeleteRetention time.Duration `json:"delete_retention"`
}

// WithDefaults returns c with every zero field set to its default.
func (c TopicConfig) WithDefaults() TopicConfig {
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = DefaultSegmentBytes
	}
	if c.Cleanup == "" {
		c.Cleanup = CleanupDelete
	}
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if c.TimestampType == "" {
		c.TimestampType = TimestampCreate
	}
	if c.DeleteRetention == 0 {
		c.DeleteRetention = DefaultDeleteRetention
	}
	return c
}

// Validate reports the first invalid field.
func (c TopicConfig) Validate() error {
	switch {
	case c.Partitions < 1 || c.Partitions > 1<<16:
		return fmt.Errorf("partitions must be between 1 and 65536, not %d", c.Partitions)
	case c.RetentionBytes < 0:
		return fmt.Errorf("retention_bytes must not be negative")
	case c.SegmentBytes < 4096 || c.SegmentBytes > 1<<30:
		return fmt.Errorf("segment_bytes must be between 4 KiB and 1 GiB, not %d", c.SegmentBytes)
	case c.Cleanup != CleanupDelete && c.Cleanup != CleanupCompact:
		return fmt.Errorf("cleanup_policy must be %q or %q, not %q", CleanupDelete, CleanupCompact, c.Cleanup)
	case c.MaxRecordBytes < 1 || c.MaxRecordBytes > 64<<20:
		return fmt.Errorf("max_record_bytes must be between 1 and 64 MiB, not %d", c.MaxRecordBytes)
	case c.TimestampType != TimestampCreate && c.TimestampType != TimestampAppend:
		return fmt.Errorf("timestamp_type must be %q or %q, not %q", TimestampCreate, TimestampAppend, c.TimestampType)
	case c.DeleteRetention < 0:
		return fmt.Errorf("delete_retention must not be negative")
	}
	return nil
}

// ParseDuration parses a duration as the CLI and pipeline files write it:
// a Go duration (90s, 168h) or a number of days (7d).
func ParseDuration(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(d, 64)
		if err != nil {
			return 0, err
		}
		return time.Duration(n * 24 * float64(time.Hour)), nil
	}
	return time.ParseDuration(s)
}

// ParseRetention parses a retention: a positive ParseDuration, or -1 (also
// "unlimited" or "forever") to keep everything.
func ParseRetention(s string) (time.Duration, error) {
	switch s {
	case "-1", "unlimited", "forever":
		return -1, nil
	}
	v, err := ParseDuration(s)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration (e.g. 168h, 7d, or -1)", s)
	}
	return v, nil
}

// ParseSize parses a byte size as the CLI and pipeline files write it:
// 1048576, 1MiB, 500MB, 10GiB.
func ParseSize(s string) (int64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil || n > 1<<62 {
		return 0, fmt.Errorf("%q is not a size (e.g. 1048576, 1MiB, 10GB)", s)
	}
	return int64(n), nil
}

// ParseTimestampType parses a topic's timestamp type: create or CreateTime
// (the producer's), append or LogAppendTime (the log's).
func ParseTimestampType(s string) (string, error) {
	switch s {
	case "create", TimestampCreate:
		return TimestampCreate, nil
	case "append", TimestampAppend:
		return TimestampAppend, nil
	}
	return "", fmt.Errorf("%q is not a timestamp type: use create or append", s)
}

var topicName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// ValidTopicName reports whether name is a legal topic name, by Kafka's
// rule: 1 to 249 of [a-zA-Z0-9._-], and not "." or "..".
func ValidTopicName(name string) bool {
	return topicName.MatchString(name) && name != "." && name != ".."
}
