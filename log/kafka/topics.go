package kafka

import (
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sys/unix"

	"github.com/fastflow/fastflow/log"
)

func (s *Server) broker() kmsg.MetadataResponseBroker {
	b := kmsg.NewMetadataResponseBroker()
	b.NodeID, b.Host, b.Port = nodeID, s.host, s.port
	return b
}

// metadata answers with the one broker and the requested topics (all of
// them for a null list), every partition led by it. Internal topics are
// not listed unless asked for by name.
func (s *Server) metadata(req *kmsg.MetadataRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	resp.Brokers = []kmsg.MetadataResponseBroker{s.broker()}
	cid := clusterID
	resp.ClusterID = &cid
	resp.ControllerID = nodeID
	var names []string
	if req.Topics == nil {
		all, _ := s.log.Topics()
		for _, n := range all {
			if !log.IsInternal(n) {
				names = append(names, n)
			}
		}
	} else {
		for _, t := range req.Topics {
			if t.Topic != nil {
				names = append(names, *t.Topic)
			}
		}
	}
	for _, name := range names {
		mt := kmsg.NewMetadataResponseTopic()
		n := name
		mt.Topic = &n
		t, err := s.log.Topic(name)
		if err == nil {
			// Partitions another process added, or its deletion.
			if rerr := t.Reload(); errors.Is(rerr, log.ErrUnknownTopic) {
				err = rerr
			}
		}
		if errors.Is(err, log.ErrUnknownTopic) && s.opts.AutoCreatePartitions > 0 && req.Topics != nil &&
			(req.Version < 4 || req.AllowAutoTopicCreation) && log.ValidTopicName(name) && !log.IsInternal(name) {
			t, err = s.log.CreateTopic(name, log.TopicConfig{Partitions: s.opts.AutoCreatePartitions})
			if errors.Is(err, log.ErrTopicExists) {
				t, err = s.log.Topic(name)
			}
		}
		if err != nil {
			mt.ErrorCode = kerr.UnknownTopicOrPartition.Code
			if !log.ValidTopicName(name) {
				mt.ErrorCode = kerr.InvalidTopicException.Code
			}
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		mt.IsInternal, mt.TopicID = log.IsInternal(name), topicID(t)
		for p := int32(0); p < t.Partitions(); p++ {
			mp := kmsg.NewMetadataResponseTopicPartition()
			mp.Partition, mp.Leader, mp.LeaderEpoch = p, nodeID, 0
			mp.Replicas, mp.ISR = []int32{nodeID}, []int32{nodeID}
			mt.Partitions = append(mt.Partitions, mp)
		}
		resp.Topics = append(resp.Topics, mt)
	}
	return resp
}

func (s *Server) listOffsets(req *kmsg.ListOffsetsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		t, terr := s.log.Topic(rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition, sp.Timestamp, sp.Offset, sp.LeaderEpoch = rp.Partition, -1, -1, 0
			p := partitionOf(t, terr, rp.Partition)
			if p == nil {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			switch rp.Timestamp {
			case -1: // latest
				sp.Offset = p.HighWatermark()
			case -2: // earliest
				sp.Offset = p.LogStartOffset()
			case -3: // max timestamp (KIP-734): the first record with the largest timestamp
				o, ts, err := p.OffsetOfMaxTimestamp()
				if err != nil {
					sp.ErrorCode = kerr.KafkaStorageError.Code
				}
				sp.Offset, sp.Timestamp = o, ts
			default:
				o, err := p.OffsetForTime(rp.Timestamp)
				if err != nil {
					sp.ErrorCode = kerr.KafkaStorageError.Code
				} else if o < p.HighWatermark() {
					// Kafka answers with the found record's timestamp.
					sp.Offset, sp.Timestamp = o, rp.Timestamp
					if ts, ok := timestampAt(p, o); ok {
						sp.Timestamp = ts
					}
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func (s *Server) createTopics(req *kmsg.CreateTopicsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		parts := rt.NumPartitions
		if parts == -1 {
			parts = 1 // Kafka's num.partitions default
		}
		fail := func(e *kerr.Error, msg string) {
			st.ErrorCode, st.ErrorMessage = e.Code, &msg
			st.NumPartitions, st.ReplicationFactor = -1, -1
			resp.Topics = append(resp.Topics, st)
		}
		if parts <= 0 {
			fail(kerr.InvalidPartitions, "the number of partitions must be positive")
			continue
		}
		if rt.ReplicationFactor > 1 || len(rt.ReplicaAssignment) > 0 {
			fail(kerr.InvalidReplicationFactor, "fastflow is a single broker: replication factor 1 (or -1)")
			continue
		}
		cfg := log.TopicConfig{Partitions: parts}
		bad := ""
		for _, c := range rt.Configs {
			if c.Value == nil {
				continue // the default
			}
			if err := setTopicConfig(&cfg, c.Name, c.Value); err != nil {
				bad = err.Error()
			}
		}
		if bad != "" {
			fail(kerr.InvalidConfig, bad)
			continue
		}
		if req.ValidateOnly {
			if err := cfg.WithDefaults().Validate(); err != nil {
				fail(kerr.InvalidConfig, err.Error())
				continue
			}
		} else if t, err := s.log.CreateTopic(rt.Topic, cfg); err == nil {
			st.TopicID = topicID(t)
		} else {
			msg := err.Error()
			st.ErrorMessage = &msg
			switch {
			case errors.Is(err, log.ErrTopicExists):
				st.ErrorCode = kerr.TopicAlreadyExists.Code
			case !log.ValidTopicName(rt.Topic):
				st.ErrorCode = kerr.InvalidTopicException.Code
			default:
				st.ErrorCode = kerr.InvalidConfig.Code
			}
		}
		st.NumPartitions, st.ReplicationFactor = parts, 1
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// topicID is t's ID (log.Topic.ID, 16 random bytes) as Kafka's Metadata
// (v10+) and CreateTopics (v7) carry a topic's UUID, so that a client
// tells a topic from another of the same name created since; zero for a
// topic without one.
func topicID(t *log.Topic) [16]byte {
	var id [16]byte
	if b, err := base64.RawURLEncoding.DecodeString(t.ID()); err == nil && len(b) == len(id) {
		copy(id[:], b)
	}
	return id
}

// createPartitions adds partitions to topics, Kafka's CreatePartitions
// (kafka-topics --alter --partitions, an admin client's
// createPartitions): INVALID_PARTITIONS for a count not above the
// current one, INVALID_REPLICA_ASSIGNMENT for an assignment naming
// another broker than this one, UNKNOWN_TOPIC_OR_PARTITION for a topic
// that does not exist; validate_only checks and changes nothing.
func (s *Server) createPartitions(req *kmsg.CreatePartitionsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewCreatePartitionsResponseTopic()
		st.Topic = rt.Topic
		fail := func(e *kerr.Error, msg string) {
			st.ErrorCode, st.ErrorMessage = e.Code, &msg
		}
		t, err := s.log.Topic(rt.Topic)
		if err == nil {
			err = t.Reload()
		}
		switch {
		case errors.Is(err, log.ErrUnknownTopic):
			fail(kerr.UnknownTopicOrPartition, err.Error())
		case err != nil:
			fail(kerr.KafkaStorageError, err.Error())
		case rt.Count <= t.Partitions():
			fail(kerr.InvalidPartitions, fmt.Sprintf("topic %s has %d partitions: partitions can only be added", rt.Topic, t.Partitions()))
		case rt.Assignment != nil && !onThisBroker(rt.Assignment):
			fail(kerr.InvalidReplicaAssignment, "fastflow is a single broker: replicas may only be broker 0")
		case req.ValidateOnly:
			cfg := t.Config()
			cfg.Partitions = rt.Count
			if err := cfg.Validate(); err != nil {
				fail(kerr.InvalidPartitions, err.Error())
			}
		default:
			var refused *log.ConfigError
			if err := t.AddPartitions(rt.Count); errors.As(err, &refused) {
				fail(kerr.InvalidPartitions, err.Error())
			} else if errors.Is(err, log.ErrUnknownTopic) {
				fail(kerr.UnknownTopicOrPartition, err.Error())
			} else if err != nil {
				fail(kerr.KafkaStorageError, err.Error())
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// onThisBroker reports whether a CreatePartitions assignment puts every
// replica on this broker.
func onThisBroker(assignment []kmsg.CreatePartitionsRequestTopicAssignment) bool {
	for _, a := range assignment {
		for _, r := range a.Replicas {
			if r != nodeID {
				return false
			}
		}
	}
	return true
}

func (s *Server) deleteTopics(req *kmsg.DeleteTopicsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	names := req.TopicNames
	for _, t := range req.Topics {
		if t.Topic != nil {
			names = append(names, *t.Topic)
		}
	}
	for _, name := range names {
		st := kmsg.NewDeleteTopicsResponseTopic()
		n := name
		st.Topic = &n
		switch err := s.log.DeleteTopic(name); {
		case err == nil:
		case errors.Is(err, log.ErrUnknownTopic):
			st.ErrorCode = kerr.UnknownTopicOrPartition.Code
		default: // another process writes it (log.ErrLocked), or the files could not be removed
			st.ErrorCode = kerr.UnknownServerError.Code
			msg := err.Error()
			st.ErrorMessage = &msg
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// deleteRecords moves partitions' log-start offsets (kafka-delete-records,
// an admin client's deleteRecords). As Kafka, it refuses a compacted
// topic (POLICY_VIOLATION) and an offset past the high watermark
// (OFFSET_OUT_OF_RANGE); -1 means the high watermark.
func (s *Server) deleteRecords(req *kmsg.DeleteRecordsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewDeleteRecordsResponseTopic()
		st.Topic = rt.Topic
		topic, terr := s.log.Topic(rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewDeleteRecordsResponseTopicPartition()
			sp.Partition, sp.LowWatermark = rp.Partition, -1
			p := partitionOf(topic, terr, rp.Partition)
			var oor *log.OffsetOutOfRangeError
			switch {
			case p == nil:
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case topic.Config().Cleanup == log.CleanupCompact:
				sp.ErrorCode = kerr.PolicyViolation.Code
			default:
				start, err := p.DeleteRecords(rp.Offset)
				switch {
				case errors.As(err, &oor):
					sp.ErrorCode = kerr.OffsetOutOfRange.Code
				case err != nil:
					sp.ErrorCode = kerr.KafkaStorageError.Code
				default:
					sp.LowWatermark = start
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// partitionOf returns partition id of topic t, which was looked up with
// error terr; nil if the topic or the partition does not exist.
func partitionOf(t *log.Topic, terr error, id int32) *log.Partition {
	if terr != nil {
		return nil
	}
	p, err := t.Partition(id)
	if err != nil {
		return nil
	}
	return p
}

// describeLogDirs reports the data directory as the broker's one log
// directory, with each requested partition's size (all of them when the
// request lists no topics), Kafka's DescribeLogDirs (kafka-log-dirs, and
// the topic sizes admin UIs show); v4+ adds the file system's total and
// usable bytes.
func (s *Server) describeLogDirs(req *kmsg.DescribeLogDirsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeLogDirsResponse)
	dir := kmsg.NewDescribeLogDirsResponseDir()
	dir.Dir = s.log.Dir()
	var fs unix.Statfs_t
	if unix.Statfs(s.log.Dir(), &fs) == nil {
		dir.TotalBytes, dir.UsableBytes = int64(fs.Blocks)*int64(fs.Bsize), int64(fs.Bavail)*int64(fs.Bsize)
	} else {
		dir.TotalBytes, dir.UsableBytes = -1, -1
	}
	want := req.Topics
	if want == nil { // all of them
		names, err := s.log.Topics()
		if err != nil {
			dir.ErrorCode = kerr.KafkaStorageError.Code
		}
		for _, name := range names {
			want = append(want, kmsg.DescribeLogDirsRequestTopic{Topic: name})
		}
	}
	for _, rt := range want {
		t, err := s.log.Topic(rt.Topic)
		if err != nil {
			continue // Kafka leaves out what it does not host
		}
		parts := rt.Partitions
		if req.Topics == nil {
			for id := range t.Partitions() {
				parts = append(parts, id)
			}
		}
		st := kmsg.NewDescribeLogDirsResponseDirTopic()
		st.Topic = rt.Topic
		for _, id := range parts {
			p, err := t.Partition(id)
			if err != nil {
				continue
			}
			sp := kmsg.NewDescribeLogDirsResponseDirTopicPartition()
			sp.Partition, sp.Size = id, p.Size()
			st.Partitions = append(st.Partitions, sp)
		}
		dir.Topics = append(dir.Topics, st)
	}
	resp.Dirs = append(resp.Dirs, dir)
	return resp
}

func (s *Server) findCoordinator(req *kmsg.FindCoordinatorRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	resp.NodeID, resp.Host, resp.Port = nodeID, s.host, s.port
	if req.CoordinatorType == 1 { // transactions
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
	}
	return resp
}

// timestampAt is the timestamp of the record at offset o.
func timestampAt(p *log.Partition, o int64) (int64, bool) {
	r, err := p.NewReader(o)
	if err != nil {
		return 0, false
	}
	defer r.Close()
	recs, err := r.Read(make([]log.Record, 0, 1))
	for _, rec := range recs {
		if rec.Offset == o {
			return rec.TimestampMs, err == nil
		}
	}
	return 0, false
}
