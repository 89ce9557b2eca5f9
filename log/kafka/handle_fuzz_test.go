package kafka

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/fastflow/fastflow/log"
)

// FuzzHandle goes one step past FuzzParseRequest: every request that
// decodes is handled by a server over a real log (a topic "t" of two
// partitions with records, a group "g"), and its response encoded. A
// request is untrusted input that decodes fine with any field's value —
// a negative partition, count or size, a topic or group name of any
// bytes — and the handlers run without a recover: a panic there would end
// the whole serve process, not one connection. Seeds are a valid request
// of every API served, which the fuzzer mutates field by field.
func FuzzHandle(f *testing.F) {
	for i, req := range handleSeeds() {
		f.Add(requestFrame(req, int32(i))[4:])
	}
	l, err := log.Open(f.TempDir(), log.Options{CleanupInterval: -1})
	if err != nil {
		f.Fatal(err)
	}
	defer l.Close()
	tp, err := l.CreateTopic("t", log.TopicConfig{Partitions: 2})
	if err != nil {
		f.Fatal(err)
	}
	for p := range int32(2) {
		part, _ := tp.Partition(p)
		if _, err := part.Append([]log.Record{{Key: []byte("k"), Value: []byte(`{"a":1}`)}, {Value: []byte("v")}}, log.AcksLeader); err != nil {
			f.Fatal(err)
		}
	}
	s := New(l, Options{AutoCreatePartitions: 2})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.host, s.port = "127.0.0.1", 9092
	s.groups.start(ctx)
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) < 8 {
			return
		}
		r, err := parseRequest(body)
		if err != nil || tooBig(r.Request) {
			return
		}
		r.host = "127.0.0.1"
		// Fetch and JoinGroup may wait (max wait, a rebalance): a short
		// context bounds them.
		hctx, hcancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer hcancel()
		if resp := s.handle(hctx, r); resp != nil {
			appendResponse(nil, r.corr, resp)
		}
	})
}

// tooBig reports a request that would create more partitions than a fuzz
// iteration should spend time on (the log allows 65,536 a topic).
func tooBig(r kmsg.Request) bool {
	switch req := r.(type) {
	case *kmsg.CreateTopicsRequest:
		for _, t := range req.Topics {
			if t.NumPartitions > 8 || len(t.ReplicaAssignment) > 8 {
				return true
			}
		}
	case *kmsg.CreatePartitionsRequest:
		for _, t := range req.Topics {
			if t.Count > 8 {
				return true
			}
		}
	}
	return false
}

// handleSeeds is a valid request of each API served, at its newest
// version served, naming topic "t" and group "g".
func handleSeeds() []kmsg.Request {
	top := func(v int16, r kmsg.Request) kmsg.Request {
		r.SetVersion(v)
		return r
	}
	var reqs []kmsg.Request

	md := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr("t")
	md.Topics = append(md.Topics, mt)
	reqs = append(reqs, top(12, md))

	pr := kmsg.NewPtrProduceRequest()
	pr.Acks, pr.TimeoutMillis = -1, 1000
	prt := kmsg.NewProduceRequestTopic()
	prt.Topic = "t"
	for p := range int32(2) {
		pp := kmsg.NewProduceRequestTopicPartition()
		pp.Partition, pp.Records = p, rawBatch(-1, -1, "v1", `{"a":2}`)
		prt.Partitions = append(prt.Partitions, pp)
	}
	pr.Topics = append(pr.Topics, prt)
	reqs = append(reqs, top(9, pr))

	fr := kmsg.NewPtrFetchRequest()
	fr.MaxWaitMillis, fr.MinBytes, fr.MaxBytes = 10, 1, 1<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "t"
	for p := range int32(2) {
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.Partition, fp.FetchOffset, fp.PartitionMaxBytes = p, 0, 1<<20
		ft.Partitions = append(ft.Partitions, fp)
	}
	fr.Topics = append(fr.Topics, ft)
	reqs = append(reqs, top(12, fr))

	lo := kmsg.NewPtrListOffsetsRequest()
	lot := kmsg.NewListOffsetsRequestTopic()
	lot.Topic = "t"
	lop := kmsg.NewListOffsetsRequestTopicPartition()
	lop.Partition, lop.Timestamp = 1, -2
	lot.Partitions = append(lot.Partitions, lop)
	lo.Topics = append(lo.Topics, lot)
	reqs = append(reqs, top(7, lo))

	ct := kmsg.NewPtrCreateTopicsRequest()
	ctt := kmsg.NewCreateTopicsRequestTopic()
	ctt.Topic, ctt.NumPartitions, ctt.ReplicationFactor = "u", 2, 1
	cc := kmsg.NewCreateTopicsRequestTopicConfig()
	cc.Name, cc.Value = "retention.ms", kmsg.StringPtr("60000")
	ctt.Configs = append(ctt.Configs, cc)
	ct.Topics = append(ct.Topics, ctt)
	reqs = append(reqs, top(7, ct))

	dt := kmsg.NewPtrDeleteTopicsRequest()
	dt.TopicNames = []string{"u"}
	reqs = append(reqs, top(5, dt))

	dr := kmsg.NewPtrDeleteRecordsRequest()
	drt := kmsg.NewDeleteRecordsRequestTopic()
	drt.Topic = "t"
	drp := kmsg.NewDeleteRecordsRequestTopicPartition()
	drp.Partition, drp.Offset = 0, 1
	drt.Partitions = append(drt.Partitions, drp)
	dr.Topics = append(dr.Topics, drt)
	reqs = append(reqs, top(2, dr))

	dc := kmsg.NewPtrDescribeConfigsRequest()
	dcr := kmsg.NewDescribeConfigsRequestResource()
	dcr.ResourceType, dcr.ResourceName = kmsg.ConfigResourceTypeTopic, "t"
	dc.Resources = append(dc.Resources, dcr)
	reqs = append(reqs, top(4, dc))

	ia := kmsg.NewPtrIncrementalAlterConfigsRequest()
	iar := kmsg.NewIncrementalAlterConfigsRequestResource()
	iar.ResourceType, iar.ResourceName = kmsg.ConfigResourceTypeTopic, "t"
	iac := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	iac.Name, iac.Value = "retention.ms", kmsg.StringPtr("-1")
	iar.Configs = append(iar.Configs, iac)
	ia.Resources = append(ia.Resources, iar)
	reqs = append(reqs, top(1, ia))

	ac := kmsg.NewPtrAlterConfigsRequest()
	acr := kmsg.NewAlterConfigsRequestResource()
	acr.ResourceType, acr.ResourceName = kmsg.ConfigResourceTypeTopic, "t"
	acc := kmsg.NewAlterConfigsRequestResourceConfig()
	acc.Name, acc.Value = "cleanup.policy", kmsg.StringPtr("delete")
	acr.Configs = append(acr.Configs, acc)
	ac.Resources = append(ac.Resources, acr)
	reqs = append(reqs, top(2, ac))

	dl := kmsg.NewPtrDescribeLogDirsRequest()
	dlt := kmsg.NewDescribeLogDirsRequestTopic()
	dlt.Topic, dlt.Partitions = "t", []int32{0, 1}
	dl.Topics = append(dl.Topics, dlt)
	reqs = append(reqs, top(4, dl))

	cp := kmsg.NewPtrCreatePartitionsRequest()
	cpt := kmsg.NewCreatePartitionsRequestTopic()
	cpt.Topic, cpt.Count = "t", 3
	cp.Topics = append(cp.Topics, cpt)
	reqs = append(reqs, top(3, cp))

	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorKey = "g"
	reqs = append(reqs, top(3, fc))

	ip := kmsg.NewPtrInitProducerIDRequest()
	ip.ProducerID, ip.ProducerEpoch = -1, -1
	reqs = append(reqs, top(4, ip))

	oc := kmsg.NewPtrOffsetCommitRequest()
	oc.Group, oc.Generation = "g", -1
	oct := kmsg.NewOffsetCommitRequestTopic()
	oct.Topic = "t"
	ocp := kmsg.NewOffsetCommitRequestTopicPartition()
	ocp.Partition, ocp.Offset = 1, 1
	oct.Partitions = append(oct.Partitions, ocp)
	oc.Topics = append(oc.Topics, oct)
	reqs = append(reqs, top(8, oc))

	of := kmsg.NewPtrOffsetFetchRequest()
	of.Group = "g"
	oft := kmsg.NewOffsetFetchRequestTopic()
	oft.Topic, oft.Partitions = "t", []int32{0, 1}
	of.Topics = append(of.Topics, oft)
	reqs = append(reqs, top(7, of))

	reqs = append(reqs, top(4, kmsg.NewPtrListGroupsRequest()))
	dg := kmsg.NewPtrDescribeGroupsRequest()
	dg.Groups = []string{"g"}
	reqs = append(reqs, top(5, dg))

	jg := kmsg.NewPtrJoinGroupRequest()
	jg.Group, jg.SessionTimeoutMillis, jg.RebalanceTimeoutMillis, jg.ProtocolType = "g", 6000, 6000, "consumer"
	jp := kmsg.NewJoinGroupRequestProtocol()
	jp.Name, jp.Metadata = "range", (&kmsg.ConsumerMemberMetadata{Topics: []string{"t"}}).AppendTo(nil)
	jg.Protocols = append(jg.Protocols, jp)
	reqs = append(reqs, top(7, jg))

	sg := kmsg.NewPtrSyncGroupRequest()
	sg.Group, sg.Generation, sg.MemberID = "g", 1, "m"
	sga := kmsg.NewSyncGroupRequestGroupAssignment()
	sga.MemberID = "m"
	sg.GroupAssignment = append(sg.GroupAssignment, sga)
	reqs = append(reqs, top(5, sg))

	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Group, hb.Generation, hb.MemberID = "g", 1, "m"
	reqs = append(reqs, top(4, hb))

	lg := kmsg.NewPtrLeaveGroupRequest()
	lg.Group = "g"
	lgm := kmsg.NewLeaveGroupRequestMember()
	lgm.MemberID = "m"
	lg.Members = append(lg.Members, lgm)
	reqs = append(reqs, top(4, lg))

	dgs := kmsg.NewPtrDeleteGroupsRequest()
	dgs.Groups = []string{"g"}
	reqs = append(reqs, top(2, dgs))

	od := kmsg.NewPtrOffsetDeleteRequest()
	od.Group = "g"
	odt := kmsg.NewOffsetDeleteRequestTopic()
	odt.Topic = "t"
	odp := kmsg.NewOffsetDeleteRequestTopicPartition()
	odp.Partition = 0
	odt.Partitions = append(odt.Partitions, odp)
	od.Topics = append(od.Topics, odt)
	reqs = append(reqs, top(0, od))

	reqs = append(reqs, top(3, &kmsg.ApiVersionsRequest{ClientSoftwareName: "x", ClientSoftwareVersion: "1"}))
	return reqs
}
