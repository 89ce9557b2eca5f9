package kafka

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

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

// produce appends each partition's batches. acks maps to the log's: 0
// (no response at all), 1 (written to the OS), -1 (fsynced, group commit).
// Batches of an idempotent producer are deduplicated by sequence.
func (s *Server) produce(req *kmsg.ProduceRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	var acks log.Acks
	switch req.Acks {
	case 0:
		acks = log.AcksNone
	case 1:
		acks = log.AcksLeader
	case -1:
		acks = log.AcksAll
	}
	// With acks=all each partition waits for its own fsync: partitions
	// of one request are appended side by side, so that the request
	// waits for the slowest fsync, not for their sum.
	var wg sync.WaitGroup
	budget := maxDecoded
	resp.Topics = make([]kmsg.ProduceResponseTopic, len(req.Topics))
	for i, rt := range req.Topics {
		st := &resp.Topics[i]
		*st = kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		t, terr := s.log.Topic(rt.Topic)
		for j, rp := range rt.Partitions {
			sp := &st.Partitions[j]
			*sp = kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.BaseOffset, sp.LogAppendTime, sp.LogStartOffset = -1, -1, -1
			fail := func(e *kerr.Error, msg string) {
				sp.ErrorCode = e.Code
				if req.Version >= 8 && msg != "" {
					sp.ErrorMessage = &msg
				}
			}
			var p *log.Partition
			err := terr
			if err == nil {
				p, err = t.Partition(rp.Partition)
			}
			switch {
			case req.Acks != 0 && req.Acks != 1 && req.Acks != -1:
				fail(kerr.InvalidRequiredAcks, "acks must be 0, 1 or -1")
			case err != nil:
				fail(kerr.UnknownTopicOrPartition, err.Error())
			default:
				// Decoded here, one partition after another, so that what
				// the request's batches expand to stays within one budget.
				batches, err := decodeBatches(rp.Records, &budget)
				if err != nil {
					code := kerr.CorruptMessage
					if errors.Is(err, errTooLarge) {
						code = kerr.MessageTooLarge
					}
					fail(code, err.Error())
					continue
				}
				appendAt := func() {
					s.produceBatches(p, batches, acks, sp, fail)
					if sp.ErrorCode == 0 && t.Config().TimestampType == log.TimestampAppend {
						sp.LogAppendTime = time.Now().UnixMilli()
					}
				}
				if acks == log.AcksAll && len(req.Topics)+len(rt.Partitions) > 2 {
					wg.Add(1)
					go func() { defer wg.Done(); appendAt() }()
				} else {
					appendAt()
				}
			}
		}
	}
	wg.Wait()
	if req.Acks == 0 {
		return nil
	}
	return resp
}

func (s *Server) produceBatches(p *log.Partition, batches []producedBatch, acks log.Acks, sp *kmsg.ProduceResponseTopicPartition, fail func(*kerr.Error, string)) {
	first := int64(-1)
	for i := range batches {
		b := &batches[i]
		if len(b.records) == 0 {
			continue
		}
		base, err := s.pids.append(p, b, acks)
		switch {
		case errors.Is(err, errOutOfOrderSequence):
			fail(kerr.OutOfOrderSequenceNumber, err.Error())
			return
		case errors.Is(err, errUnknownProducer):
			fail(kerr.UnknownProducerID, err.Error())
			return
		case errors.Is(err, log.ErrRecordTooLarge):
			fail(kerr.MessageTooLarge, err.Error())
			return
		case errors.Is(err, log.ErrUnknownTopic): // deleted by another process
			fail(kerr.UnknownTopicOrPartition, err.Error())
			return
		case err != nil:
			fail(kerr.KafkaStorageError, err.Error())
			return
		}
		if first < 0 {
			first = base
		}
	}
	sp.BaseOffset = first
	sp.LogStartOffset = p.LogStartOffset()
}

// producers deduplicates the batches of idempotent producers: per producer
// and partition, the sequence of the last batch and the base offsets of
// the last five (Kafka keeps five for in-flight retries).
type producers struct {
	mu    sync.Mutex
	next  int64
	state map[pidPartition]*pidState
	// The state of a producer idle for expiry is dropped (Kafka's
	// producer.id.expiration.ms, a day), in sweeps run when the map has
	// doubled since the last one: memory follows the live producers.
	expiry    time.Duration
	nextSweep int
	now       func() time.Time
}

type pidPartition struct {
	pid       int64
	topic     string
	partition int32
}

type pidState struct {
	// mu orders the producer's batches to the partition, held across the
	// append so that a retry waits for the batch it duplicates.
	mu       sync.Mutex
	lastUsed atomic.Int64 // unix ns
	epoch    int16
	recent   []seqOffset // the last batches, oldest first
}

type seqOffset struct {
	first, last int32 // sequences
	base        int64
}

var (
	errOutOfOrderSequence = errors.New("out of order sequence number")
	errUnknownProducer    = errors.New("unknown producer ID")
)

func newProducers() *producers {
	// IDs from the clock: unique across restarts of this process too.
	return &producers{next: time.Now().UnixMilli() << 8, state: map[pidPartition]*pidState{},
		expiry: 24 * time.Hour, nextSweep: 1024, now: time.Now}
}

// sweepLocked drops the state of producers idle for longer than the
// expiry. ps.mu is held.
func (ps *producers) sweepLocked() {
	cutoff := ps.now().Add(-ps.expiry).UnixNano()
	for k, st := range ps.state {
		if st.lastUsed.Load() < cutoff {
			delete(ps.state, k)
		}
	}
	ps.nextSweep = max(1024, 2*len(ps.state))
}

func (ps *producers) newID() int64 {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.next++
	return ps.next
}

// append appends a batch, or returns the base offset it was appended at
// if it is a retry of one of the producer's last batches.
func (ps *producers) append(p *log.Partition, b *producedBatch, acks log.Acks) (int64, error) {
	if b.ProducerID < 0 {
		return p.Append(b.records, acks)
	}
	k := pidPartition{b.ProducerID, p.Topic(), p.ID()}
	last := b.FirstSequence + b.NumRecords - 1
	ps.mu.Lock()
	st := ps.state[k]
	if st == nil {
		if len(ps.state) >= ps.nextSweep {
			ps.sweepLocked()
		}
		st = &pidState{epoch: -1}
		ps.state[k] = st
	}
	st.lastUsed.Store(ps.now().UnixNano())
	ps.mu.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.epoch != b.ProducerEpoch || len(st.recent) == 0 {
		if b.FirstSequence != 0 && st.epoch < 0 {
			// Nothing known of this producer here (the broker restarted,
			// say): the client resets its sequences.
			return -1, errUnknownProducer
		}
		if b.FirstSequence != 0 {
			return -1, errOutOfOrderSequence
		}
		st.epoch, st.recent = b.ProducerEpoch, st.recent[:0]
	} else {
		for _, r := range st.recent {
			if r.first == b.FirstSequence && r.last == last {
				return r.base, nil // a retry: already appended
			}
		}
		want := st.recent[len(st.recent)-1].last + 1
		if want < 0 {
			want = 0 // sequences wrap after MaxInt32
		}
		if b.FirstSequence != want {
			return -1, errOutOfOrderSequence
		}
	}
	// Held under the lock: the batches of one producer and partition are
	// appended in sequence order.
	base, err := p.Append(b.records, acks)
	if err != nil {
		return -1, err
	}
	st.recent = append(st.recent, seqOffset{b.FirstSequence, last, base})
	if len(st.recent) > 5 {
		st.recent = st.recent[1:]
	}
	return base, nil
}

func (s *Server) initProducerID(req *kmsg.InitProducerIDRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	if req.TransactionalID != nil && *req.TransactionalID != "" {
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		resp.ProducerID, resp.ProducerEpoch = -1, -1
		return resp
	}
	resp.ProducerID, resp.ProducerEpoch = s.pids.newID(), 0
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

// describeConfigs reports a topic's configuration under Kafka's names.
func (s *Server) describeConfigs(req *kmsg.DescribeConfigsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, r := range req.Resources {
		sr := kmsg.NewDescribeConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = r.ResourceType, r.ResourceName
		if r.ResourceType != kmsg.ConfigResourceTypeTopic {
			// The broker's own configuration: nothing to report.
			resp.Resources = append(resp.Resources, sr)
			continue
		}
		t, err := s.log.Topic(r.ResourceName)
		if err != nil {
			sr.ErrorCode = kerr.UnknownTopicOrPartition.Code
			resp.Resources = append(resp.Resources, sr)
			continue
		}
		c := t.Config()
		for _, name := range topicConfigOrder {
			if len(r.ConfigNames) > 0 && !contains(r.ConfigNames, name) {
				continue
			}
			cfg := kmsg.NewDescribeConfigsResponseResourceConfig()
			cfg.Name, cfg.Value = name, kmsg.StringPtr(topicConfigs[name].get(c))
			cfg.Source = kmsg.ConfigSourceDynamicTopicConfig
			sr.Configs = append(sr.Configs, cfg)
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return resp
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

// alterConfigs replaces the listed topics' configs, Kafka's legacy
// AlterConfigs: every config not given takes its default.
func (s *Server) alterConfigs(req *kmsg.AlterConfigsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, r := range req.Resources {
		sr := kmsg.NewAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = r.ResourceType, r.ResourceName
		sr.ErrorCode, sr.ErrorMessage = s.alterTopicConfig(r.ResourceType, r.ResourceName, req.ValidateOnly,
			func(cfg *log.TopicConfig) error {
				*cfg = log.TopicConfig{Partitions: cfg.Partitions}.WithDefaults()
				for _, c := range r.Configs {
					if err := setTopicConfig(cfg, c.Name, c.Value); err != nil {
						return err
					}
				}
				return nil
			})
		resp.Resources = append(resp.Resources, sr)
	}
	return resp
}

// incrementalAlterConfigs sets or deletes (reverts to the default) the
// given configs of the listed topics, Kafka's IncrementalAlterConfigs
// (kafka-configs --alter, franz-go's kadm). APPEND and SUBTRACT, for
// list configs, are refused: none of fastflow's is a list.
func (s *Server) incrementalAlterConfigs(req *kmsg.IncrementalAlterConfigsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, r := range req.Resources {
		sr := kmsg.NewIncrementalAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = r.ResourceType, r.ResourceName
		sr.ErrorCode, sr.ErrorMessage = s.alterTopicConfig(r.ResourceType, r.ResourceName, req.ValidateOnly,
			func(cfg *log.TopicConfig) error {
				defaults := log.TopicConfig{Partitions: cfg.Partitions}.WithDefaults()
				for _, c := range r.Configs {
					var err error
					switch c.Op {
					case kmsg.IncrementalAlterConfigOpSet:
						err = setTopicConfig(cfg, c.Name, c.Value)
					case kmsg.IncrementalAlterConfigOpDelete:
						if tc := topicConfigs[c.Name]; tc != nil {
							err = tc.set(cfg, tc.get(defaults))
						}
					default:
						err = fmt.Errorf("%s: operation %v is for list configs, and fastflow's are not lists", c.Name, c.Op)
					}
					if err != nil {
						return err
					}
				}
				return nil
			})
		resp.Resources = append(resp.Resources, sr)
	}
	return resp
}

// alterTopicConfig applies change to a topic's config (with validateOnly,
// only checks it) and returns the error code and message for the
// response.
func (s *Server) alterTopicConfig(typ kmsg.ConfigResourceType, name string, validateOnly bool,
	change func(*log.TopicConfig) error) (int16, *string) {
	fail := func(e *kerr.Error, msg string) (int16, *string) { return e.Code, &msg }
	if typ != kmsg.ConfigResourceTypeTopic {
		return fail(kerr.InvalidRequest, "fastflow alters topic configs only")
	}
	t, err := s.log.Topic(name)
	if err != nil {
		return fail(kerr.UnknownTopicOrPartition, err.Error())
	}
	if validateOnly {
		_, err = t.CheckConfig(change)
	} else {
		_, err = t.AlterConfig(change)
	}
	var refused *log.ConfigError
	switch {
	case errors.As(err, &refused):
		return fail(kerr.InvalidConfig, err.Error())
	case errors.Is(err, log.ErrUnknownTopic): // deleted by another process
		return fail(kerr.UnknownTopicOrPartition, err.Error())
	case err != nil:
		return fail(kerr.KafkaStorageError, err.Error())
	}
	return 0, nil
}

// setTopicConfig sets a Kafka topic config in cfg. Configs without a
// fastflow counterpart are accepted and have no effect, as in
// CreateTopics.
func setTopicConfig(cfg *log.TopicConfig, name string, value *string) error {
	tc := topicConfigs[name]
	if tc == nil {
		return nil
	}
	if value == nil {
		return fmt.Errorf("%s: no value", name)
	}
	if err := tc.set(cfg, *value); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// topicConfig is a Kafka topic config that maps to one of fastflow's:
// how CreateTopics sets it and DescribeConfigs shows it. Other Kafka
// topic configs (min.insync.replicas, compression.type, ...) are accepted
// and have no effect on a single broker that stores batches as it does.
type topicConfig struct {
	set func(*log.TopicConfig, string) error
	get func(log.TopicConfig) string
}

// topicConfigOrder is the order DescribeConfigs lists them in.
var topicConfigOrder = []string{"cleanup.policy", "retention.ms", "retention.bytes", "segment.bytes",
	"max.message.bytes", "message.timestamp.type", "delete.retention.ms"}

var topicConfigs = map[string]*topicConfig{
	"cleanup.policy": {
		set: func(c *log.TopicConfig, v string) error { c.Cleanup = v; return nil },
		get: func(c log.TopicConfig) string { return c.Cleanup },
	},
	"retention.ms": millis(func(c *log.TopicConfig) *time.Duration { return &c.Retention }),
	"retention.bytes": {
		set: number(func(c *log.TopicConfig, n int64) { c.RetentionBytes = max(0, n) }),
		get: func(c log.TopicConfig) string {
			if c.RetentionBytes == 0 {
				return "-1" // unlimited
			}
			return strconv.FormatInt(c.RetentionBytes, 10)
		},
	},
	"segment.bytes": {
		set: number(func(c *log.TopicConfig, n int64) { c.SegmentBytes = n }),
		get: func(c log.TopicConfig) string { return strconv.FormatInt(c.SegmentBytes, 10) },
	},
	"max.message.bytes": {
		set: number(func(c *log.TopicConfig, n int64) { c.MaxRecordBytes = int(n) }),
		get: func(c log.TopicConfig) string { return strconv.Itoa(c.MaxRecordBytes) },
	},
	"message.timestamp.type": {
		set: func(c *log.TopicConfig, v string) error { c.TimestampType = v; return nil },
		get: func(c log.TopicConfig) string {
			if c.TimestampType == log.TimestampAppend {
				return "LogAppendTime"
			}
			return "CreateTime"
		},
	},
	"delete.retention.ms": millis(func(c *log.TopicConfig) *time.Duration { return &c.DeleteRetention }),
}

// number parses a config's value as an integer.
func number(set func(*log.TopicConfig, int64)) func(*log.TopicConfig, string) error {
	return func(c *log.TopicConfig, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", v)
		}
		set(c, n)
		return nil
	}
}

// millis is a duration config in milliseconds; a negative duration is -1.
func millis(field func(*log.TopicConfig) *time.Duration) *topicConfig {
	return &topicConfig{
		set: number(func(c *log.TopicConfig, n int64) { *field(c) = time.Duration(n) * time.Millisecond }),
		get: func(c log.TopicConfig) string {
			d := *field(&c)
			if d < 0 {
				return "-1"
			}
			return strconv.FormatInt(d.Milliseconds(), 10)
		},
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
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
