package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/fastflow/fastflow/log"
)

// topicExists asks the cluster for topic's metadata, without creating it.
func topicExists(ctx context.Context, cl *kgo.Client, topic string) error {
	md := kmsg.NewPtrMetadataRequest()
	md.AllowAutoTopicCreation = false
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	md.Topics = append(md.Topics, mt)
	resp, err := md.RequestWith(ctx, cl)
	switch {
	case err != nil:
		return fmt.Errorf("topic %s: %w", topic, err)
	case len(resp.Topics) != 1:
		return fmt.Errorf("topic %s: metadata of %d topics", topic, len(resp.Topics))
	case resp.Topics[0].ErrorCode == kerr.UnknownTopicOrPartition.Code:
		return fmt.Errorf("topic %q does not exist on the cluster: create it first", topic)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		return fmt.Errorf("topic %s: %w", topic, err)
	}
	return nil
}

// ensureTopic creates a topic unless it exists.
func ensureTopic(ctx context.Context, cl *kgo.Client, name string, partitions int32, configs map[string]string) error {
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = int32(kafkaIOTimeout / time.Millisecond)
	t := kmsg.NewCreateTopicsRequestTopic()
	t.Topic, t.NumPartitions, t.ReplicationFactor = name, partitions, -1
	for k, v := range configs {
		c := kmsg.NewCreateTopicsRequestTopicConfig()
		c.Name, c.Value = k, kmsg.StringPtr(v)
		t.Configs = append(t.Configs, c)
	}
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return err
	}
	return nil
}

// endOffsets lists a topic's partitions' high watermarks.
func endOffsets(ctx context.Context, cl *kgo.Client, topic string) (map[int32]int64, error) {
	md := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	md.Topics = append(md.Topics, mt)
	mresp, err := md.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	if len(mresp.Topics) != 1 {
		return nil, fmt.Errorf("metadata of %s: %d topics", topic, len(mresp.Topics))
	}
	if err := kerr.ErrorForCode(mresp.Topics[0].ErrorCode); err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	var parts []int32
	for _, p := range mresp.Topics[0].Partitions {
		parts = append(parts, p.Partition)
	}
	return listOffsets(ctx, cl, topic, parts, -1)
}

// listOffsets asks for each partition's offset at ts (-1 latest, -2
// earliest, else the first record at or after ts ms; the end if none).
func listOffsets(ctx context.Context, cl *kgo.Client, topic string, parts []int32, ts int64) (map[int32]int64, error) {
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for _, p := range parts {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, ts
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return nil, fmt.Errorf("offsets of %s/%d: %w", topic, p.Partition, err)
			}
			out[p.Partition] = p.Offset
		}
	}
	if ts >= 0 {
		// No record at or after ts: the end.
		var missing []int32
		for _, p := range parts {
			if out[p] < 0 {
				missing = append(missing, p)
			}
		}
		if len(missing) > 0 {
			ends, err := listOffsets(ctx, cl, topic, missing, -1)
			if err != nil {
				return nil, err
			}
			for p, o := range ends {
				out[p] = o
			}
		}
	}
	return out, nil
}

// startOffsets is where partitions without a checkpoint start: the
// group's committed offset, else the source's start.
func startOffsets(ctx context.Context, cl *kgo.Client, src *KafkaSource, parts []int32, start log.Start) (map[int32]int64, error) {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = src.Group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic, rt.Partitions = src.Topic, parts
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, fmt.Errorf("committed offsets of group %s: %w", src.Group, err)
	}
	out := map[int32]int64{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode == 0 && p.Offset >= 0 {
				out[p.Partition] = p.Offset
			}
		}
	}
	var rest []int32
	for _, p := range parts {
		if _, ok := out[p]; !ok {
			rest = append(rest, p)
		}
	}
	if len(rest) == 0 {
		return out, nil
	}
	earliest, err := listOffsets(ctx, cl, src.Topic, rest, -2)
	if err != nil {
		return nil, err
	}
	var resolved map[int32]int64
	switch start.Kind {
	case log.StartLatest:
		resolved, err = listOffsets(ctx, cl, src.Topic, rest, -1)
	case log.StartTime:
		resolved, err = listOffsets(ctx, cl, src.Topic, rest, start.TimeMs)
	case log.StartOffset:
		ends, lerr := listOffsets(ctx, cl, src.Topic, rest, -1)
		resolved, err = map[int32]int64{}, lerr
		for _, p := range rest {
			resolved[p] = max(earliest[p], min(start.Offset, ends[p]))
		}
	default:
		resolved = earliest
	}
	if err != nil {
		return nil, err
	}
	for _, p := range rest {
		out[p] = resolved[p]
	}
	return out, nil
}
