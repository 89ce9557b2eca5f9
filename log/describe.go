package log

import (
	"maps"
	"slices"
	"time"
)

// TopicInfo is a topic as `fastflow topic describe` prints it and the
// server's topics API returns it.
type TopicInfo struct {
	Topic      string          `json:"topic"`
	ID         string          `json:"id,omitempty"` // Topic.ID, as kafka-topics --describe shows TopicId
	Partitions int32           `json:"partitions"`
	Config     *ConfigInfo     `json:"config,omitempty"`
	Parts      []PartitionInfo `json:"partition_offsets,omitempty"`
}

// ConfigInfo is a topic's configuration in text: durations as Go writes
// them ("168h0m0s"), -1 for unlimited.
type ConfigInfo struct {
	Retention       string `json:"retention"`
	RetentionBytes  int64  `json:"retention_bytes"`
	SegmentBytes    int64  `json:"segment_bytes"`
	Cleanup         string `json:"cleanup_policy"`
	MaxRecordBytes  int    `json:"max_record_bytes"`
	TimestampType   string `json:"timestamp_type"`
	DeleteRetention string `json:"delete_retention"`
}

// PartitionInfo is a partition's offsets and size.
type PartitionInfo struct {
	Partition      int32 `json:"partition"`
	LogStartOffset int64 `json:"log_start_offset"`
	HighWatermark  int64 `json:"high_watermark"`
	SizeBytes      int64 `json:"size_bytes"`
	Segments       int   `json:"segments"`
}

// Describe returns the topic's configuration and, with offsets, each
// partition's offsets and size (a partition that does not open is left
// out).
func (t *Topic) Describe(offsets bool) TopicInfo {
	cfg := t.Config()
	d := TopicInfo{Topic: t.Name(), ID: t.ID(), Partitions: t.Partitions(), Config: &ConfigInfo{
		Retention: durationText(cfg.Retention), RetentionBytes: cfg.RetentionBytes,
		SegmentBytes: cfg.SegmentBytes, Cleanup: cfg.Cleanup, MaxRecordBytes: cfg.MaxRecordBytes,
		TimestampType: cfg.TimestampType, DeleteRetention: durationText(cfg.DeleteRetention),
	}}
	if offsets {
		for id := range t.Partitions() {
			p, err := t.Partition(id)
			if err != nil {
				continue
			}
			d.Parts = append(d.Parts, PartitionInfo{Partition: id, LogStartOffset: p.LogStartOffset(),
				HighWatermark: p.HighWatermark(), SizeBytes: p.Size(), Segments: p.Segments()})
		}
	}
	return d
}

func durationText(d time.Duration) string {
	if d < 0 {
		return "-1"
	}
	return d.String()
}

// GroupPartition is a consumer group's position in one partition, as
// `fastflow group describe` prints it and the server's groups API returns
// it: Committed and Lag are nil where the group committed nothing.
type GroupPartition struct {
	Group         string `json:"group"`
	Topic         string `json:"topic"`
	Partition     int32  `json:"partition"`
	Committed     *int64 `json:"committed"`
	LogStart      int64  `json:"log_start_offset"`
	HighWatermark int64  `json:"high_watermark"`
	Lag           *int64 `json:"lag"`
	// Member consumes the partition: a fastflow consumer's member ID, or
	// a Kafka client's, with its client ID and host, as its group's leader
	// assigned it (kafka-consumer-groups --describe's CONSUMER-ID,
	// CLIENT-ID and HOST).
	Member     string `json:"member,omitempty"`
	ClientID   string `json:"client_id,omitempty"`
	ClientHost string `json:"client_host,omitempty"`
}

// Describe returns the group's position in every partition of every topic
// it committed to or has members on, by topic and partition; none for a
// group that does not exist (nothing committed, no members). Topics
// deleted since are left out.
func (g *Group) Describe() ([]GroupPartition, error) {
	offs, err := g.Offsets()
	if err != nil {
		return nil, err
	}
	members, err := g.Members()
	if err != nil {
		return nil, err
	}
	topics := map[string]map[int32]int64{}
	for _, o := range offs {
		if topics[o.Topic] == nil {
			topics[o.Topic] = map[int32]int64{}
		}
		topics[o.Topic][o.Partition] = o.Offset
	}
	for _, m := range members {
		if topics[m.Topic] == nil {
			topics[m.Topic] = map[int32]int64{}
		}
	}
	var rows []GroupPartition
	for _, name := range slices.Sorted(maps.Keys(topics)) {
		t, err := g.l.Topic(name)
		if err != nil {
			continue // deleted since
		}
		owners, err := g.Owners(name)
		if err != nil {
			return nil, err
		}
		for id := range t.Partitions() {
			p, err := t.Partition(id)
			if err != nil {
				return nil, err
			}
			row := GroupPartition{Group: g.name, Topic: name, Partition: id, LogStart: p.LogStartOffset(),
				HighWatermark: p.HighWatermark(), Member: owners[id]}
			for _, m := range members {
				if k := m.Kafka; k != nil && m.Topic == name && slices.Contains(k.Partitions, id) {
					row.Member, row.ClientID, row.ClientHost = k.MemberID, k.ClientID, k.ClientHost
				}
			}
			if o, ok := topics[name][id]; ok && o >= 0 { // a negative offset is none (Group.Committed)
				lag := max(0, row.HighWatermark-o)
				row.Committed, row.Lag = &o, &lag
			}
			rows = append(rows, row)
		}
	}
	return rows, nil
}
