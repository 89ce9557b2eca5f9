package kafka

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/fastflow/fastflow/log"
)

// The offset APIs of the group coordinator: OffsetCommit, OffsetFetch and
// OffsetDelete over the log's group offsets (log.Group), which fastflow's
// own consumers share.

// offsetCommit stores the offsets as they are given, as Kafka does, any
// of them: kafkajs's admin.resetOffsets commits -1 (latest) and -2
// (earliest) for its consumers to resolve as they start, and a consumer
// that reads a negative offset back takes it as none (the Java client,
// and fastflow's own: log.Group.Committed).
func (c *coordinator) offsetCommit(req *kmsg.OffsetCommitRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	code := int16(0)
	grp, err := c.l.Group(req.Group)
	if err != nil {
		code = kerr.InvalidGroupID.Code
	} else {
		code = c.checkMember(req.Group, req.Generation, req.MemberID)
	}
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		topic, terr := c.l.Topic(t.Topic)
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, code
			switch {
			case code != 0:
			case terr != nil || p.Partition < 0 || p.Partition >= topic.Partitions():
				rp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case p.Metadata != nil && javaLength(*p.Metadata) > maxOffsetMetadata:
				rp.ErrorCode = kerr.OffsetMetadataTooLarge.Code
			default:
				meta := ""
				if p.Metadata != nil {
					meta = *p.Metadata
				}
				if err := grp.CommitMetadata(t.Topic, p.Partition, p.Offset, meta); err != nil {
					rp.ErrorCode = kerr.KafkaStorageError.Code
				}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// javaLength is s's length as Java's String.length counts it: UTF-16 code
// units.
func javaLength(s string) int {
	n := 0
	for _, r := range s {
		n++
		if r > 0xFFFF {
			n++
		}
	}
	return n
}

func (c *coordinator) offsetFetch(req *kmsg.OffsetFetchRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	grp, err := c.l.Group(req.Group)
	if err != nil {
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return resp
	}
	topics := req.Topics
	if topics == nil {
		// Every committed offset of the group.
		offs, err := grp.Offsets()
		if err != nil {
			resp.ErrorCode = kerr.KafkaStorageError.Code
			return resp
		}
		byTopic := map[string]int{}
		for _, o := range offs {
			i, ok := byTopic[o.Topic]
			if !ok {
				i = len(topics)
				byTopic[o.Topic] = i
				topics = append(topics, kmsg.OffsetFetchRequestTopic{Topic: o.Topic})
			}
			topics[i].Partitions = append(topics[i].Partitions, o.Partition)
		}
	}
	for _, t := range topics {
		rt := kmsg.NewOffsetFetchResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetFetchResponseTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch = p, -1, -1
			empty := ""
			rp.Metadata = &empty
			c, ok, err := grp.CommittedOffset(t.Topic, p)
			switch {
			case err != nil:
				rp.ErrorCode = kerr.KafkaStorageError.Code
			case ok:
				rp.Offset, rp.Metadata = c.Offset, &c.Metadata
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// offsetDelete deletes a group's committed offsets in the given
// partitions, Kafka's OffsetDelete (kafka-consumer-groups
// --delete-offsets): GROUP_SUBSCRIBED_TO_TOPIC for a topic a member here
// or a `fastflow consume --group` member consumes, GROUP_ID_NOT_FOUND
// for a group with nothing committed and no members.
func (c *coordinator) offsetDelete(req *kmsg.OffsetDeleteRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
	c.mu.Lock()
	defer c.mu.Unlock()
	grp, err := c.l.Group(req.Group)
	if err != nil {
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return resp
	}
	if offs, err := grp.Offsets(); err == nil && len(offs) == 0 && c.groups[req.Group] == nil {
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		return resp
	}
	for _, rt := range req.Topics {
		st := kmsg.NewOffsetDeleteResponseTopic()
		st.Topic = rt.Topic
		var code int16
		var parts []int32
		for _, rp := range rt.Partitions {
			parts = append(parts, rp.Partition)
		}
		if c.subscribed(req.Group, rt.Topic) {
			code = kerr.GroupSubscribedToTopic.Code
		} else if err := grp.DeleteOffsets(rt.Topic, parts...); errors.Is(err, log.ErrGroupSubscribed) {
			code = kerr.GroupSubscribedToTopic.Code
		} else if err != nil {
			code = kerr.KafkaStorageError.Code
		}
		for _, p := range parts {
			sp := kmsg.NewOffsetDeleteResponseTopicPartition()
			sp.Partition, sp.ErrorCode = p, code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
