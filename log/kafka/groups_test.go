package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/fastflow/fastflow/log"
)

// fakeGroups is a coordinator on a clock the test moves.
type fakeGroups struct {
	*coordinator
	mu  sync.Mutex
	now time.Time
}

func newFakeGroups(t *testing.T) *fakeGroups {
	l, err := log.Open(t.TempDir(), log.Options{CleanupInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f := &fakeGroups{coordinator: newCoordinator(l, slog.New(slog.DiscardHandler)), now: time.Unix(1795341600, 0)}
	f.coordinator.now = func() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }
	return f
}

func (f *fakeGroups) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
	f.tick()
}

// joinAsync sends a JoinGroup v7 (the member ID handshake included when
// id is empty) and returns a channel with its eventual response.
func (f *fakeGroups) joinAsync(t *testing.T, id, meta string) (string, <-chan *kmsg.JoinGroupResponse) {
	t.Helper()
	req := func(id string) *kmsg.JoinGroupRequest {
		r := kmsg.NewPtrJoinGroupRequest()
		r.Version, r.Group, r.MemberID, r.ProtocolType = 7, "g", id, "consumer"
		r.SessionTimeoutMillis, r.RebalanceTimeoutMillis = 10000, 30000
		r.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte(meta)}}
		return r
	}
	if id == "" {
		resp := f.join(context.Background(), req(""), "client", "127.0.0.1").(*kmsg.JoinGroupResponse)
		if resp.ErrorCode != kerr.MemberIDRequired.Code || resp.MemberID == "" {
			t.Fatalf("first join: %v", kerr.ErrorForCode(resp.ErrorCode))
		}
		id = resp.MemberID
	}
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	go func() { ch <- f.join(context.Background(), req(id), "client", "127.0.0.1").(*kmsg.JoinGroupResponse) }()
	return id, ch
}

func (f *fakeGroups) syncGroup(id string, gen int32, assign map[string]string) *kmsg.SyncGroupResponse {
	r := kmsg.NewPtrSyncGroupRequest()
	r.Version, r.Group, r.MemberID, r.Generation = 5, "g", id, gen
	r.ProtocolType, r.Protocol = kmsg.StringPtr("consumer"), kmsg.StringPtr("range")
	for m, a := range assign {
		r.GroupAssignment = append(r.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: m, MemberAssignment: []byte(a)})
	}
	return f.sync(context.Background(), r).(*kmsg.SyncGroupResponse)
}

func (f *fakeGroups) beat(id string, gen int32) int16 {
	r := kmsg.NewPtrHeartbeatRequest()
	r.Version, r.Group, r.MemberID, r.Generation = 4, "g", id, gen
	return f.heartbeat(r).(*kmsg.HeartbeatResponse).ErrorCode
}

func (f *fakeGroups) state() string {
	r := kmsg.NewPtrDescribeGroupsRequest()
	r.Groups = []string{"g"}
	return f.describeGroups(r).(*kmsg.DescribeGroupsResponse).Groups[0].State
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("no response")
	}
	var zero T
	return zero
}

// pending reports whether a JoinGroup is still parked.
func pending[T any](ch <-chan T) bool {
	select {
	case v := <-ch:
		_ = v
		return false
	case <-time.After(50 * time.Millisecond):
		return true
	}
}

// stable brings two members to a stable generation; a leads.
func stableTwo(t *testing.T, f *fakeGroups) (a, b string, gen int32) {
	a, ja := f.joinAsync(t, "", "A")
	ra := recv(t, ja)
	if ra.ErrorCode != 0 || ra.LeaderID != a || len(ra.Members) != 1 || ra.Generation != 1 {
		t.Fatalf("a alone: %+v", ra)
	}
	if r := f.syncGroup(a, 1, map[string]string{a: "all"}); r.ErrorCode != 0 || string(r.MemberAssignment) != "all" {
		t.Fatalf("a's sync: %+v", r)
	}
	b, jb := f.joinAsync(t, "", "B")
	if !pending(jb) {
		t.Fatal("b's join completed before a rejoined")
	}
	if c := f.beat(a, 1); c != kerr.RebalanceInProgress.Code {
		t.Fatalf("a's heartbeat during the rebalance: %v", kerr.ErrorForCode(c))
	}
	_, ja = f.joinAsync(t, a, "A")
	ra, rb := recv(t, ja), recv(t, jb)
	if ra.Generation != 2 || rb.Generation != 2 || ra.LeaderID != a || rb.LeaderID != a || len(ra.Members) != 2 || len(rb.Members) != 0 {
		t.Fatalf("generation 2: a %+v, b %+v", ra, rb)
	}
	syncB := make(chan *kmsg.SyncGroupResponse, 1)
	go func() { syncB <- f.syncGroup(b, 2, nil) }()
	if !pending(syncB) {
		t.Fatal("b's sync answered before the leader's")
	}
	if r := f.syncGroup(a, 2, map[string]string{a: "p0", b: "p1"}); string(r.MemberAssignment) != "p0" {
		t.Fatalf("a's assignment %q", r.MemberAssignment)
	}
	if r := recv(t, syncB); r.ErrorCode != 0 || string(r.MemberAssignment) != "p1" {
		t.Fatalf("b's sync: %+v", r)
	}
	if s := f.state(); s != "Stable" {
		t.Fatalf("state %s", s)
	}
	return a, b, 2
}

func (f *fakeGroups) commit(id string, gen int32, offset int64) int16 {
	r := kmsg.NewPtrOffsetCommitRequest()
	r.Version, r.Group, r.MemberID, r.Generation = 8, "g", id, gen
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = "t"
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = 0, offset
	rt.Partitions = append(rt.Partitions, rp)
	r.Topics = append(r.Topics, rt)
	return f.offsetCommit(r).(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
}

// A commit's metadata is at most 4096 characters as Java counts them
// (Kafka's offset.metadata.max.bytes): past it the partition's commit is
// OFFSET_METADATA_TOO_LARGE and its committed offset stays as it was.
func TestOffsetMetadataBound(t *testing.T) {
	f := newFakeGroups(t)
	if _, err := f.l.CreateTopic("t", log.TopicConfig{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	commit := func(meta string) []kmsg.OffsetCommitResponseTopicPartition {
		r := kmsg.NewPtrOffsetCommitRequest()
		r.Version, r.Group, r.Generation = 8, "g", -1 // a standalone consumer
		r.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{
			{Partition: 0, Offset: int64(len(meta)), Metadata: &meta}, {Partition: 1, Offset: 1}}}}
		return f.offsetCommit(r).(*kmsg.OffsetCommitResponse).Topics[0].Partitions
	}
	emoji := strings.Repeat("\U0001F600", 2048) // 4096 UTF-16 units, 8192 bytes
	for _, meta := range []string{strings.Repeat("m", 4096), emoji} {
		if ps := commit(meta); ps[0].ErrorCode != 0 || ps[1].ErrorCode != 0 {
			t.Fatalf("%d bytes of metadata: %v", len(meta), kerr.ErrorForCode(ps[0].ErrorCode))
		}
	}
	for _, meta := range []string{strings.Repeat("m", 4097), emoji + "m"} {
		if ps := commit(meta); ps[0].ErrorCode != kerr.OffsetMetadataTooLarge.Code || ps[1].ErrorCode != 0 {
			t.Fatalf("%d bytes of metadata: %v, %v", len(meta), kerr.ErrorForCode(ps[0].ErrorCode), kerr.ErrorForCode(ps[1].ErrorCode))
		}
	}
	g, _ := f.l.Group("g")
	if c, ok, _ := g.CommittedOffset("t", 0); !ok || c.Offset != int64(len(emoji)) || c.Metadata != emoji {
		t.Fatalf("committed %d, %d bytes of metadata", c.Offset, len(c.Metadata))
	}
}

// Offset commits around a rebalance follow Kafka's classic group: while
// the group prepares a rebalance, a member commits with its current
// generation (an eager consumer commits as its partitions are revoked,
// before it rejoins: refused, the next owner would consume those records
// again); once the new generation is joined but not synced, a commit is
// REBALANCE_IN_PROGRESS; an old generation's commit is ILLEGAL_GENERATION.
func TestCommitDuringRebalance(t *testing.T) {
	f := newFakeGroups(t)
	if _, err := f.l.CreateTopic("t", log.TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	a, b, gen := stableTwo(t, f)
	if c := f.commit(a, gen, 10); c != 0 {
		t.Fatalf("stable: %v", kerr.ErrorForCode(c))
	}
	_, jc := f.joinAsync(t, "", "C") // a third member: the group prepares a rebalance
	for deadline := time.Now().Add(10 * time.Second); f.state() != "PreparingRebalance"; {
		if time.Now().After(deadline) {
			t.Fatalf("state %s after a third member's join", f.state())
		}
		time.Sleep(time.Millisecond)
	}
	if c := f.commit(a, gen, 20); c != 0 {
		t.Fatalf("a's commit on revoke, while the group prepares a rebalance: %v", kerr.ErrorForCode(c))
	}
	_, ja := f.joinAsync(t, a, "A")
	_, jb := f.joinAsync(t, b, "B")
	ra, rb, rc := recv(t, ja), recv(t, jb), recv(t, jc)
	if ra.Generation != gen+1 || rb.Generation != gen+1 || rc.Generation != gen+1 {
		t.Fatalf("generations %d %d %d", ra.Generation, rb.Generation, rc.Generation)
	}
	if s := f.state(); s != "CompletingRebalance" {
		t.Fatalf("state %s", s)
	}
	if c := f.commit(a, gen+1, 30); c != kerr.RebalanceInProgress.Code {
		t.Fatalf("a's commit before the new generation's sync: %v", kerr.ErrorForCode(c))
	}
	if c := f.commit(b, gen, 30); c != kerr.IllegalGeneration.Code {
		t.Fatalf("b's commit with the old generation: %v", kerr.ErrorForCode(c))
	}
	grp, _ := f.l.Group("g")
	if off, _, _ := grp.Committed("t", 0); off != 20 {
		t.Fatalf("committed %d, want 20 (the commit on revoke)", off)
	}
}

// A member that stops heartbeating is dropped when its session times out,
// and the others are told to rejoin; the survivor leads the next
// generation.
func TestGroupSessionTimeout(t *testing.T) {
	f := newFakeGroups(t)
	a, b, gen := stableTwo(t, f)
	for range 3 { // b heartbeats, a does not
		f.advance(3 * time.Second)
		if c := f.beat(b, gen); c != 0 {
			t.Fatalf("b's heartbeat at gen %d: %v", gen, kerr.ErrorForCode(c))
		}
	}
	f.advance(2 * time.Second) // a's 10 s session is over
	if c := f.beat(b, gen); c != kerr.RebalanceInProgress.Code {
		t.Fatalf("after a's session expired, b's heartbeat: %v", kerr.ErrorForCode(c))
	}
	if c := f.beat(a, gen); c != kerr.UnknownMemberID.Code {
		t.Fatalf("a's heartbeat after expiry: %v", kerr.ErrorForCode(c))
	}
	_, jb := f.joinAsync(t, b, "B")
	rb := recv(t, jb)
	if rb.Generation != gen+1 || rb.LeaderID != b || len(rb.Members) != 1 {
		t.Fatalf("b alone: %+v", rb)
	}
}

// A member that does not rejoin within the rebalance timeout is left out
// of the new generation.
func TestGroupRebalanceTimeout(t *testing.T) {
	f := newFakeGroups(t)
	a, b, gen := stableTwo(t, f)
	c, jc := f.joinAsync(t, "", "C")
	_, ja := f.joinAsync(t, a, "A")
	f.advance(10 * time.Second)
	if !pending(ja) || !pending(jc) {
		t.Fatal("the rebalance completed without b")
	}
	f.advance(25 * time.Second) // past the 30 s rebalance timeout
	ra, rc := recv(t, ja), recv(t, jc)
	if ra.Generation != gen+1 || rc.Generation != gen+1 || len(ra.Members) != 2 || rc.LeaderID != a {
		t.Fatalf("without b: a %+v, c %+v", ra, rc)
	}
	if code := f.beat(b, gen); code != kerr.UnknownMemberID.Code {
		t.Fatalf("b after the timeout: %v", kerr.ErrorForCode(code))
	}
	_ = c
}

// Leaving rebalances the rest at once; commits check generation and
// member; committed offsets are the log's.
func TestGroupLeaveAndCommits(t *testing.T) {
	f := newFakeGroups(t)
	if _, err := f.l.CreateTopic("t", log.TopicConfig{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	a, b, gen := stableTwo(t, f)
	commit := func(id string, gen int32, p int32, off int64) int16 {
		r := kmsg.NewPtrOffsetCommitRequest()
		r.Version, r.Group, r.MemberID, r.Generation = 8, "g", id, gen
		r.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: p, Offset: off,
			Metadata: kmsg.StringPtr(fmt.Sprint("by ", id))}}}}
		return f.offsetCommit(r).(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
	}
	if c := commit(a, gen, 0, 42); c != 0 {
		t.Fatalf("commit: %v", kerr.ErrorForCode(c))
	}
	if c := commit(a, gen-1, 0, 7); c != kerr.IllegalGeneration.Code {
		t.Fatalf("commit from an old generation: %v", kerr.ErrorForCode(c))
	}
	if c := commit("stranger", gen, 0, 7); c != kerr.UnknownMemberID.Code {
		t.Fatalf("commit from a non-member: %v", kerr.ErrorForCode(c))
	}
	if c := commit(a, gen, 5, 7); c != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("commit to a partition that does not exist: %v", kerr.ErrorForCode(c))
	}
	g, _ := f.l.Group("g")
	if off, ok, _ := g.Committed("t", 0); !ok || off != 42 {
		t.Fatalf("log's committed offset %d %v", off, ok)
	}
	fr := kmsg.NewPtrOffsetFetchRequest()
	fr.Version, fr.Group = 7, "g"
	fresp := f.offsetFetch(fr).(*kmsg.OffsetFetchResponse)
	if len(fresp.Topics) != 1 || fresp.Topics[0].Partitions[0].Offset != 42 || *fresp.Topics[0].Partitions[0].Metadata != "by "+a {
		t.Fatalf("OffsetFetch all: %+v", fresp)
	}

	lr := kmsg.NewPtrLeaveGroupRequest()
	lr.Version, lr.Group = 4, "g"
	lr.Members = []kmsg.LeaveGroupRequestMember{{MemberID: b}}
	if r := f.leave(lr).(*kmsg.LeaveGroupResponse); r.ErrorCode != 0 || r.Members[0].ErrorCode != 0 {
		t.Fatalf("leave: %+v", r)
	}
	if c := f.beat(a, gen); c != kerr.RebalanceInProgress.Code {
		t.Fatalf("a after b left: %v", kerr.ErrorForCode(c))
	}
	_, ja := f.joinAsync(t, a, "A")
	if r := recv(t, ja); r.Generation != gen+1 || len(r.Members) != 1 {
		t.Fatalf("a alone: %+v", r)
	}
	lr.Members = []kmsg.LeaveGroupRequestMember{{MemberID: a}}
	f.leave(lr)
	if s := f.state(); s != "Empty" {
		t.Fatalf("state after everyone left: %s", s)
	}
	// A standalone consumer may commit to an empty group.
	if c := commit("", -1, 1, 9); c != 0 {
		t.Fatalf("standalone commit: %v", kerr.ErrorForCode(c))
	}
	lg := f.listGroups(kmsg.NewPtrListGroupsRequest()).(*kmsg.ListGroupsResponse)
	if len(lg.Groups) != 1 || lg.Groups[0].Group != "g" {
		t.Fatalf("ListGroups: %+v", lg)
	}
}

// TestDeleteGroups: DeleteGroups (kafka-consumer-groups --delete) deletes
// an empty group's committed offsets; a group with members here, or with a
// `fastflow consume --group` member, is NON_EMPTY_GROUP; an unknown one
// GROUP_ID_NOT_FOUND.
func TestDeleteGroups(t *testing.T) {
	f := newFakeGroups(t)
	if _, err := f.l.CreateTopic("t", log.TopicConfig{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	a, b, _ := stableTwo(t, f)
	del := func(names ...string) map[string]int16 {
		req := kmsg.NewPtrDeleteGroupsRequest()
		req.Version, req.Groups = 2, names
		out := map[string]int16{}
		for _, g := range f.deleteGroups(req).(*kmsg.DeleteGroupsResponse).Groups {
			out[g.Group] = g.ErrorCode
		}
		return out
	}
	g, _ := f.l.Group("g")
	if err := g.Commit("t", 0, 5); err != nil {
		t.Fatal(err)
	}
	if got := del("g", "never"); got["g"] != kerr.NonEmptyGroup.Code || got["never"] != kerr.GroupIDNotFound.Code {
		t.Fatalf("with members: %v", got)
	}
	lr := kmsg.NewPtrLeaveGroupRequest()
	lr.Version, lr.Group = 4, "g"
	lr.Members = []kmsg.LeaveGroupRequestMember{{MemberID: a}, {MemberID: b}}
	f.leave(lr)
	// A member through the log's own groups (fastflow consume --group).
	c, err := f.l.NewConsumer(log.ConsumerOptions{Topic: "t", Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	if got := del("g"); got["g"] != kerr.NonEmptyGroup.Code {
		t.Fatalf("with a consume --group member: %v", got)
	}
	c.Close()
	if got := del("g"); got["g"] != 0 {
		t.Fatalf("empty: %v", kerr.ErrorForCode(got["g"]))
	}
	if _, ok, _ := g.Committed("t", 0); ok {
		t.Fatal("committed offset survived the group's deletion")
	}
	lg := f.listGroups(kmsg.NewPtrListGroupsRequest()).(*kmsg.ListGroupsResponse)
	if len(lg.Groups) != 0 {
		t.Fatalf("ListGroups after delete: %+v", lg.Groups)
	}
}

// TestOffsetDelete: OffsetDelete (kafka-consumer-groups --delete-offsets)
// deletes a group's committed offsets in a topic's partitions; refused
// with GROUP_SUBSCRIBED_TO_TOPIC while a member here, or a `fastflow
// consume --group` member, consumes the topic; GROUP_ID_NOT_FOUND for a
// group with nothing.
func TestOffsetDelete(t *testing.T) {
	f := newFakeGroups(t)
	for _, name := range []string{"t", "u"} {
		if _, err := f.l.CreateTopic(name, log.TopicConfig{Partitions: 2}); err != nil {
			t.Fatal(err)
		}
	}
	g, _ := f.l.Group("g")
	for _, tp := range []string{"t", "u"} {
		for p := range int32(2) {
			g.Commit(tp, p, 5)
		}
	}
	del := func(group, topic string, parts ...int32) (int16, []int16) {
		req := kmsg.NewPtrOffsetDeleteRequest()
		req.Group = group
		rt := kmsg.NewOffsetDeleteRequestTopic()
		rt.Topic = topic
		for _, p := range parts {
			rp := kmsg.NewOffsetDeleteRequestTopicPartition()
			rp.Partition = p
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		resp := f.offsetDelete(req).(*kmsg.OffsetDeleteResponse)
		var codes []int16
		for _, st := range resp.Topics {
			for _, sp := range st.Partitions {
				codes = append(codes, sp.ErrorCode)
			}
		}
		return resp.ErrorCode, codes
	}
	committed := func(topic string, p int32) bool { _, ok, _ := g.Committed(topic, p); return ok }
	// A member here subscribes to t.
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = []string{"t"}
	_, join := f.joinAsync(t, "", string(meta.AppendTo(nil)))
	if r := recv(t, join); r.ErrorCode != 0 {
		t.Fatalf("join: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	if _, codes := del("g", "t", 0); codes[0] != kerr.GroupSubscribedToTopic.Code || !committed("t", 0) {
		t.Fatalf("offsets of a subscribed topic: %v", codes)
	}
	if _, codes := del("g", "u", 1); codes[0] != 0 || committed("u", 1) || !committed("u", 0) {
		t.Fatalf("u/1: %v", codes)
	}
	// A consume --group member on u, in a group of fastflow consumers (a
	// Kafka client's group refuses one: TestConsumerAndKafkaMembersDoNotMix).
	g2, _ := f.l.Group("g2")
	g2.Commit("u", 0, 5)
	c, err := f.l.NewConsumer(log.ConsumerOptions{Topic: "u", Group: "g2"})
	if err != nil {
		t.Fatal(err)
	}
	if _, codes := del("g2", "u", 0); codes[0] != kerr.GroupSubscribedToTopic.Code {
		t.Fatalf("u/0 with a consume --group member: %v", codes)
	}
	c.Close()
	if _, codes := del("g2", "u", 0); codes[0] != 0 {
		t.Fatalf("u/0: %v", codes)
	}
	if _, ok, _ := g2.Committed("u", 0); ok {
		t.Fatal("u/0 still committed")
	}
	if code, _ := del("nobody", "u", 0); code != kerr.GroupIDNotFound.Code {
		t.Fatalf("unknown group: %v", kerr.ErrorForCode(code))
	}
}

// TestConsumerAndKafkaMembersDoNotMix: a Kafka client's member is
// announced in the data directory, with its subscription and then its
// assignment, so that fastflow's group commands see it, and withdrawn
// when it leaves or the listener stops. A group has Kafka clients'
// members or fastflow consumers, never both: each kind assigns partitions
// its own way, so a member of the other kind is refused (fastflow:
// ErrGroupProtocol; Kafka: INCONSISTENT_GROUP_PROTOCOL).
func TestConsumerAndKafkaMembersDoNotMix(t *testing.T) {
	f := newFakeGroups(t)
	for _, name := range []string{"t", "u"} {
		if _, err := f.l.CreateTopic(name, log.TopicConfig{Partitions: 3}); err != nil {
			t.Fatal(err)
		}
	}
	g, _ := f.l.Group("g")
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = []string{"t", "u"}
	id, join := f.joinAsync(t, "", string(meta.AppendTo(nil)))
	r := recv(t, join)
	if r.ErrorCode != 0 {
		t.Fatalf("join: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	asg := kmsg.NewConsumerMemberAssignment()
	asg.Topics = []kmsg.ConsumerMemberAssignmentTopic{{Topic: "t", Partitions: []int32{0, 1, 2}}, {Topic: "u", Partitions: []int32{2}}}
	if s := f.syncGroup(id, r.Generation, map[string]string{id: string(asg.AppendTo(nil))}); s.ErrorCode != 0 {
		t.Fatalf("sync: %v", kerr.ErrorForCode(s.ErrorCode))
	}
	members, err := g.Members()
	if err != nil || len(members) != 2 {
		t.Fatalf("members %+v, %v", members, err)
	}
	for _, m := range members {
		k := m.Kafka
		want := map[string]string{"t": "[0 1 2]", "u": "[2]"}[m.Topic]
		if k == nil || k.MemberID != id || k.ClientID != "client" || k.ClientHost != "127.0.0.1" || fmt.Sprint(k.Partitions) != want {
			t.Fatalf("member %+v %+v", m, k)
		}
	}
	rows, _ := g.Describe()
	if len(rows) != 6 {
		t.Fatalf("describe: %+v", rows)
	}
	for _, r := range rows {
		owned := r.Topic == "t" || r.Partition == 2
		if (r.Member == id && r.ClientID == "client" && r.ClientHost == "127.0.0.1") != owned || !owned && r.Member != "" {
			t.Fatalf("describe row %+v", r)
		}
	}
	// A fastflow consumer cannot join it; the CLI's checks see it.
	if _, err := f.l.NewConsumer(log.ConsumerOptions{Topic: "t", Group: "g"}); !errors.Is(err, log.ErrGroupProtocol) {
		t.Fatalf("consumer in a Kafka group: %v", err)
	}
	if err := g.Delete(); !errors.Is(err, log.ErrGroupNotEmpty) {
		t.Fatalf("delete: %v", err)
	}
	if cm, _ := g.ConsumerMembers(); len(cm) != 0 {
		t.Fatalf("consumer members %+v", cm)
	}
	// Leaving withdraws it.
	lr := kmsg.NewPtrLeaveGroupRequest()
	lr.Version, lr.Group, lr.MemberID = 2, "g", id
	if code := f.leave(lr).(*kmsg.LeaveGroupResponse).ErrorCode; code != 0 {
		t.Fatalf("leave: %v", kerr.ErrorForCode(code))
	}
	if members, _ := g.Members(); len(members) != 0 {
		t.Fatalf("members after leave: %+v", members)
	}

	// The other way: a fastflow consumer's group refuses a Kafka client.
	c, err := f.l.NewConsumer(log.ConsumerOptions{Topic: "t", Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	jr := kmsg.NewPtrJoinGroupRequest()
	jr.Version, jr.Group, jr.ProtocolType = 3, "g", "consumer" // v3: no member ID handshake
	jr.SessionTimeoutMillis, jr.RebalanceTimeoutMillis = 10000, 30000
	jr.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: meta.AppendTo(nil)}}
	if code := f.join(context.Background(), jr, "client", "127.0.0.1").(*kmsg.JoinGroupResponse).ErrorCode; code != kerr.InconsistentGroupProtocol.Code {
		t.Fatalf("Kafka client joining a consumer's group: %v", kerr.ErrorForCode(code))
	}
	if members, _ := g.Members(); len(members) != 1 || members[0].Kafka != nil {
		t.Fatalf("members: %+v", members)
	}
	c.Close()

	// Stopping the listener withdraws its members.
	_, join = f.joinAsync(t, "", string(meta.AppendTo(nil)))
	if r := recv(t, join); r.ErrorCode != 0 {
		t.Fatalf("join: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	if members, _ := g.Members(); len(members) != 2 {
		t.Fatalf("members: %+v", members)
	}
	f.stop()
	if members, _ := g.Members(); len(members) != 0 {
		t.Fatalf("members after stop: %+v", members)
	}
}

// TestDescribeConsumerGroupMembers: a group of `fastflow consume --group`
// members is Stable to Kafka's admin APIs, with each member and the
// partitions it holds in the consumer protocol's encoding, so that
// kafka-consumer-groups --describe shows who consumes what; Empty once
// they leave.
func TestDescribeConsumerGroupMembers(t *testing.T) {
	f := newFakeGroups(t)
	if _, err := f.l.CreateTopic("u", log.TopicConfig{Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	c, err := f.l.NewConsumer(log.ConsumerOptions{Topic: "u", Group: "cli"})
	if err != nil {
		t.Fatal(err)
	}
	describe := func() kmsg.DescribeGroupsResponseGroup {
		r := kmsg.NewPtrDescribeGroupsRequest()
		r.Groups = []string{"cli"}
		return f.describeGroups(r).(*kmsg.DescribeGroupsResponse).Groups[0]
	}
	list := func() string {
		for _, g := range f.listGroups(kmsg.NewPtrListGroupsRequest()).(*kmsg.ListGroupsResponse).Groups {
			if g.Group == "cli" {
				return g.ProtocolType + " " + g.GroupState
			}
		}
		return "missing"
	}
	dg := describe()
	if dg.State != "Stable" || dg.ProtocolType != "consumer" || dg.Protocol != "fastflow" || len(dg.Members) != 1 || list() != "consumer Stable" {
		t.Fatalf("described %+v; listed %s", dg, list())
	}
	m := dg.Members[0]
	var asg kmsg.ConsumerMemberAssignment
	if err := asg.ReadFrom(m.MemberAssignment); err != nil || m.ClientID != "fastflow consume" ||
		len(asg.Topics) != 1 || asg.Topics[0].Topic != "u" || fmt.Sprint(asg.Topics[0].Partitions) != "[0 1 2]" {
		t.Fatalf("member %+v, assignment %+v, %v", m, asg, err)
	}
	// A standalone Kafka consumer (no member, no generation) may not
	// commit over their offsets, as Kafka refuses it in a non-empty group.
	standalone := func() int16 {
		r := kmsg.NewPtrOffsetCommitRequest()
		r.Version, r.Group, r.Generation = 8, "cli", -1
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = "u"
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = 0, 5
		rt.Partitions = append(rt.Partitions, rp)
		r.Topics = append(r.Topics, rt)
		return f.offsetCommit(r).(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
	}
	if code := standalone(); code != kerr.UnknownMemberID.Code {
		t.Fatalf("standalone commit into a group of consume --group members: %v", kerr.ErrorForCode(code))
	}
	c.Close()
	if code := standalone(); code != 0 {
		t.Fatalf("standalone commit into the empty group: %v", kerr.ErrorForCode(code))
	}
	if dg := describe(); dg.State != "Empty" || len(dg.Members) != 0 || list() != "consumer Empty" {
		t.Fatalf("after the member left: %+v; listed %s", dg, list())
	}
}
