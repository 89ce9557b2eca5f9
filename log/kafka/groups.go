package kafka

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/fastflow/fastflow/log"
)

// The classic consumer group protocol (KIP-62, KIP-345, KIP-394), as
// Kafka's GroupCoordinator runs it, for one broker:
//
//	Empty ──join──▶ PreparingRebalance ──all joined / rebalance timeout──▶
//	CompletingRebalance ──leader's SyncGroup──▶ Stable
//
// A JoinGroup parks until every known member has rejoined (or the
// rebalance timeout drops the ones that did not); the leader then gets
// every member's subscription, computes the assignment client-side and
// hands it over in its SyncGroup, which releases the others' SyncGroups.
// Any join, leave or expired session in Stable or CompletingRebalance
// starts a new rebalance; members learn of it from REBALANCE_IN_PROGRESS
// on their next heartbeat.
//
// Membership lives in memory (a broker restart is a coordinator failover:
// clients rejoin), and is announced in the data directory (a member file
// per member and topic, log.Group.Announce) so that fastflow's group
// commands see it. Committed offsets are the log's group offsets, on disk
// and shared with `fastflow consume --group`. A group has Kafka clients'
// members or fastflow consumers, not both: each assigns partitions its own
// way, so a member of the other kind is refused (Kafka's
// INCONSISTENT_GROUP_PROTOCOL for a member of another protocol type).

// groupState is a group's place in the rebalance protocol.
type groupState int

const (
	stateEmpty groupState = iota
	statePreparingRebalance
	stateCompletingRebalance
	stateStable
)

// String is the state's name as DescribeGroups and ListGroups report it.
func (s groupState) String() string {
	return [...]string{"Empty", "PreparingRebalance", "CompletingRebalance", "Stable"}[s]
}

// coordinator runs every group on this broker. Group operations are rare
// (joins, heartbeats every few seconds, commits), so one mutex guards them.
type coordinator struct {
	l      *log.Log
	logger *slog.Logger
	mu     sync.Mutex
	// groups are those with members or a rebalance in flight.
	groups map[string]*group
	// initialDelay holds the first rebalance of an empty group open this
	// long for more members to arrive (group.initial.rebalance.delay.ms).
	initialDelay time.Duration
	now          func() time.Time
}

type group struct {
	name         string
	state        groupState
	generation   int32
	protocolType string
	protocol     string
	leader       string
	members      map[string]*member
	// pending are member IDs handed out with MEMBER_ID_REQUIRED, waiting
	// for the client's second JoinGroup, with the time they expire.
	pending map[string]time.Time
	// rebalanceDeadline is when a PreparingRebalance completes even if not
	// every member has rejoined; notBefore holds an empty group's first
	// rebalance open for initialDelay.
	rebalanceDeadline time.Time
	notBefore         time.Time
}

type member struct {
	id, instanceID     string
	clientID, host     string
	protocolType       string
	protocols          []kmsg.JoinGroupRequestProtocol
	session, rebalance time.Duration
	lastSeen           time.Time
	assignment         []byte
	// join is set while the member's JoinGroup waits for the rebalance to
	// complete; sync while its SyncGroup waits for the leader's.
	join chan *kmsg.JoinGroupResponse
	sync chan *kmsg.SyncGroupResponse
	// announced publishes the member in the data directory, one per
	// topic it subscribes to (announce).
	announced []*log.Announcement
}

func newCoordinator(l *log.Log, logger *slog.Logger) *coordinator {
	return &coordinator{l: l, logger: logger, groups: map[string]*group{}, now: time.Now}
}

// start runs the janitor that completes rebalances at their deadline and
// expires members whose session timed out, until ctx is done.
func (c *coordinator) start(ctx context.Context) {
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				c.tick()
			}
		}
	}()
}

func (c *coordinator) tick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for name, g := range c.groups {
		for id, exp := range g.pending {
			if now.After(exp) {
				delete(g.pending, id)
			}
		}
		for id, m := range g.members {
			// A member parked in JoinGroup is alive by definition; the
			// rebalance timeout, not the session, bounds it.
			if m.join == nil && now.Sub(m.lastSeen) > m.session {
				c.remove(g, id)
			}
		}
		if g.state == statePreparingRebalance && !now.Before(g.rebalanceDeadline) {
			// Members that did not rejoin in time are out.
			for id, m := range g.members {
				if m.join == nil {
					withdraw(m)
					delete(g.members, id)
				}
			}
			c.maybeComplete(g)
		} else if g.state == statePreparingRebalance {
			c.maybeComplete(g)
		}
		if g.state == stateEmpty && len(g.pending) == 0 {
			delete(c.groups, name)
		}
	}
}

// remove takes a member out and rebalances the rest.
func (c *coordinator) remove(g *group, id string) {
	m := g.members[id]
	if m == nil {
		return
	}
	withdraw(m)
	delete(g.members, id)
	if m.join != nil {
		resp := &kmsg.JoinGroupResponse{ErrorCode: kerr.UnknownMemberID.Code, Generation: -1}
		m.join <- resp
		m.join = nil
	}
	if m.sync != nil {
		m.sync <- &kmsg.SyncGroupResponse{ErrorCode: kerr.UnknownMemberID.Code}
		m.sync = nil
	}
	if g.state == stateStable || g.state == stateCompletingRebalance {
		c.prepareRebalance(g)
	}
	c.maybeComplete(g) // the last member gone: Empty at once

}

// prepareRebalance opens a rebalance: members must rejoin within the
// largest rebalance timeout among them. SyncGroups waiting for an
// assignment that will not come get REBALANCE_IN_PROGRESS.
func (c *coordinator) prepareRebalance(g *group) {
	for _, m := range g.members {
		if m.sync != nil {
			m.sync <- &kmsg.SyncGroupResponse{ErrorCode: kerr.RebalanceInProgress.Code}
			m.sync = nil
		}
	}
	now := c.now()
	if g.state == stateEmpty && c.initialDelay > 0 {
		g.notBefore = now.Add(c.initialDelay)
	}
	g.state = statePreparingRebalance
	var timeout time.Duration
	for _, m := range g.members {
		timeout = max(timeout, m.rebalance)
	}
	g.rebalanceDeadline = now.Add(max(timeout, c.initialDelay))
}

// maybeComplete finishes a PreparingRebalance once every member has
// rejoined: a new generation, a protocol all members support, a leader,
// and the JoinGroup responses.
func (c *coordinator) maybeComplete(g *group) {
	if g.state != statePreparingRebalance {
		return
	}
	for _, m := range g.members {
		if m.join == nil {
			return
		}
	}
	if c.now().Before(g.notBefore) && len(g.members) > 0 {
		return
	}
	g.generation++
	if len(g.members) == 0 {
		g.state, g.leader, g.protocol = stateEmpty, "", ""
		return
	}
	g.protocol = chooseProtocol(g.members)
	if _, ok := g.members[g.leader]; !ok {
		g.leader = ""
		for _, id := range sortedMembers(g) {
			g.leader = id
			break
		}
	}
	g.state = stateCompletingRebalance
	var all []kmsg.JoinGroupResponseMember
	for _, id := range sortedMembers(g) {
		m := g.members[id]
		jm := kmsg.NewJoinGroupResponseMember()
		jm.MemberID = id
		if m.instanceID != "" {
			iid := m.instanceID
			jm.InstanceID = &iid
		}
		jm.ProtocolMetadata = protocolMetadata(m, g.protocol)
		all = append(all, jm)
	}
	for id, m := range g.members {
		resp := &kmsg.JoinGroupResponse{Generation: g.generation, LeaderID: g.leader, MemberID: id}
		pt, p := g.protocolType, g.protocol
		resp.ProtocolType, resp.Protocol = &pt, &p
		if id == g.leader {
			resp.Members = all
		}
		m.join <- resp
		m.join = nil
		m.lastSeen = c.now()
	}
}

func sortedMembers(g *group) []string {
	ids := make([]string, 0, len(g.members))
	for id := range g.members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// chooseProtocol picks the protocol (assignor) every member supports,
// preferring what most members list first, as Kafka's vote does.
func chooseProtocol(members map[string]*member) string {
	count := map[string]int{}
	for _, m := range members {
		for _, p := range m.protocols {
			count[p.Name]++
		}
	}
	votes := map[string]int{}
	for _, m := range members {
		for _, p := range m.protocols {
			if count[p.Name] == len(members) {
				votes[p.Name]++
				break
			}
		}
	}
	best, bestVotes := "", -1
	for name, v := range votes {
		if v > bestVotes || v == bestVotes && name < best {
			best, bestVotes = name, v
		}
	}
	return best
}

func protocolMetadata(m *member, name string) []byte {
	for _, p := range m.protocols {
		if p.Name == name {
			return p.Metadata
		}
	}
	return nil
}

// supportsCommon reports whether a joining member shares a protocol with
// the group's members.
func supportsCommon(g *group, protocols []kmsg.JoinGroupRequestProtocol) bool {
	if len(g.members) == 0 {
		return true
	}
	for _, p := range protocols {
		all := true
		for _, m := range g.members {
			if !hasProtocol(m, p.Name) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func hasProtocol(m *member, name string) bool {
	for _, p := range m.protocols {
		if p.Name == name {
			return true
		}
	}
	return false
}

func newMemberID(clientID string) string {
	var b [16]byte
	rand.Read(b[:])
	return clientID + "-" + hex.EncodeToString(b[:])
}

func (c *coordinator) group(name string) *group {
	g := c.groups[name]
	if g == nil {
		g = &group{name: name, members: map[string]*member{}, pending: map[string]time.Time{}}
		c.groups[name] = g
	}
	return g
}

// join handles JoinGroup: it parks until the rebalance completes.
func (c *coordinator) join(ctx context.Context, req *kmsg.JoinGroupRequest, clientID, host string) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
	fail := func(code int16) kmsg.Response {
		resp.ErrorCode, resp.Generation = code, -1
		return resp
	}
	if req.Group == "" {
		return fail(kerr.InvalidGroupID.Code)
	}
	if _, err := c.l.Group(req.Group); err != nil {
		return fail(kerr.InvalidGroupID.Code)
	}
	session := time.Duration(req.SessionTimeoutMillis) * time.Millisecond
	if session < 1*time.Second || session > 30*time.Minute {
		// group.min/max.session.timeout.ms: 6 s and 30 min in Kafka; a
		// local broker allows down to 1 s for fast tests.
		return fail(kerr.InvalidSessionTimeout.Code)
	}
	rebalance := session
	if req.Version >= 1 {
		rebalance = time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond
	}
	if req.ProtocolType == "" || len(req.Protocols) == 0 {
		return fail(kerr.InconsistentGroupProtocol.Code)
	}
	instanceID := ""
	if req.InstanceID != nil {
		instanceID = *req.InstanceID
	}

	c.mu.Lock()
	g := c.group(req.Group)
	if g.protocolType != "" && len(g.members) > 0 && (g.protocolType != req.ProtocolType || !supportsCommon(g, req.Protocols)) {
		c.mu.Unlock()
		return fail(kerr.InconsistentGroupProtocol.Code)
	}
	id := req.MemberID
	if id == "" {
		if instanceID != "" {
			// A static member coming back under a new incarnation
			// replaces its old one.
			for mid, m := range g.members {
				if m.instanceID == instanceID {
					c.remove(g, mid)
				}
			}
		}
		id = newMemberID(clientID)
		if req.Version >= 4 && instanceID == "" {
			// KIP-394: hand out the ID, and let the client join with it.
			g.pending[id] = c.now().Add(session)
			c.mu.Unlock()
			resp.MemberID = id
			return fail(kerr.MemberIDRequired.Code)
		}
	} else if _, ok := g.members[id]; !ok {
		if _, ok := g.pending[id]; !ok {
			c.mu.Unlock()
			resp.MemberID = id
			return fail(kerr.UnknownMemberID.Code)
		}
	}
	delete(g.pending, id)
	m := g.members[id]
	isNew := m == nil
	changed := isNew || !sameProtocols(m.protocols, req.Protocols)
	if isNew {
		m = &member{id: id}
	}
	m.instanceID, m.clientID, m.host = instanceID, clientID, host
	m.protocolType, m.protocols = req.ProtocolType, req.Protocols
	if changed {
		c.announce(g.name, m)
	}
	if isNew {
		// Checked once the member is announced: a fastflow consumer
		// joining at the same moment sees it and is refused, or is seen
		// here.
		if c.hasConsumers(g.name) {
			withdraw(m)
			c.mu.Unlock()
			return fail(kerr.InconsistentGroupProtocol.Code)
		}
		g.members[id] = m
	}
	m.session, m.rebalance = session, rebalance
	m.lastSeen = c.now()
	g.protocolType = req.ProtocolType
	if m.join != nil {
		// The same member joining twice: the older request loses.
		m.join <- &kmsg.JoinGroupResponse{ErrorCode: kerr.RebalanceInProgress.Code, Generation: -1}
	}
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	m.join = ch
	if g.state == stateStable && !changed && id != g.leader {
		// A follower rejoining with the same subscription, in a stable
		// group, gets the current generation back without a rebalance.
		m.join = nil
		pt, p := g.protocolType, g.protocol
		resp.Generation, resp.LeaderID, resp.MemberID = g.generation, g.leader, id
		resp.ProtocolType, resp.Protocol = &pt, &p
		c.mu.Unlock()
		return resp
	}
	if g.state != statePreparingRebalance {
		c.prepareRebalance(g)
	}
	c.maybeComplete(g)
	c.mu.Unlock()

	select {
	case r := <-ch:
		r.Version = req.Version
		return r
	case <-ctx.Done():
		return fail(kerr.CoordinatorNotAvailable.Code)
	}
}

// announce publishes m in the data directory (log.Group.Announce), once
// per topic its subscription names (one, unnamed, for a protocol other
// than the consumer protocol), replacing what it announced before. A
// member that cannot be announced (a full disk) stays in the group; the
// CLI just does not see it. c.mu is held.
func (c *coordinator) announce(group string, m *member) {
	withdraw(m)
	grp, err := c.l.Group(group)
	if err != nil {
		return
	}
	topics := []string{""}
	var meta kmsg.ConsumerMemberMetadata
	if m.protocolType == "consumer" && len(m.protocols) > 0 && meta.ReadFrom(m.protocols[0].Metadata) == nil {
		topics = meta.Topics
	}
	for _, t := range topics {
		a, err := grp.Announce(t, log.KafkaMember{MemberID: m.id, ClientID: m.clientID, ClientHost: m.host})
		if err != nil {
			c.logger.Warn("kafka: cannot announce a group member in the data directory", "group", group, "member", m.id, "err", err)
			continue
		}
		m.announced = append(m.announced, a)
	}
}

// announceAssignment adds to m's announcements the partitions the group's
// leader assigned it (consumer protocol). c.mu is held.
func (c *coordinator) announceAssignment(g *group, m *member) {
	var asg kmsg.ConsumerMemberAssignment
	if g.protocolType != "consumer" || asg.ReadFrom(m.assignment) != nil {
		return
	}
	for _, a := range m.announced {
		info := a.Info()
		info.Partitions = nil
		for _, t := range asg.Topics {
			if t.Topic == a.Topic() {
				info.Partitions = append(info.Partitions, t.Partitions...)
			}
		}
		if err := a.Update(info); err != nil {
			c.logger.Warn("kafka: cannot announce a member's assignment in the data directory", "group", g.name, "member", m.id, "err", err)
		}
	}
}

// withdraw takes m's announcements back.
func withdraw(m *member) {
	for _, a := range m.announced {
		a.Leave()
	}
	m.announced = nil
}

// hasConsumers reports whether group has fastflow consumers' members
// (`fastflow consume --group`), which a Kafka client cannot join. c.mu is
// held.
func (c *coordinator) hasConsumers(group string) bool {
	grp, err := c.l.Group(group)
	if err != nil {
		return false
	}
	members, err := grp.ConsumerMembers()
	return err == nil && len(members) > 0
}

// stop withdraws every member's announcement: the listener is closing, and
// its clients will join again wherever it comes back.
func (c *coordinator) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range c.groups {
		for _, m := range g.members {
			withdraw(m)
		}
	}
}

func sameProtocols(a, b []kmsg.JoinGroupRequestProtocol) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || string(a[i].Metadata) != string(b[i].Metadata) {
			return false
		}
	}
	return true
}

// sync handles SyncGroup: the leader's assignment releases every member.
func (c *coordinator) sync(ctx context.Context, req *kmsg.SyncGroupRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
	c.mu.Lock()
	g, m, code := c.memberOf(req.Group, req.MemberID, req.Generation)
	switch {
	case code != 0:
		resp.ErrorCode = code
	case req.ProtocolType != nil && *req.ProtocolType != g.protocolType,
		req.Protocol != nil && *req.Protocol != g.protocol:
		resp.ErrorCode = kerr.InconsistentGroupProtocol.Code
	case g.state == statePreparingRebalance:
		resp.ErrorCode = kerr.RebalanceInProgress.Code
	}
	if resp.ErrorCode != 0 {
		c.mu.Unlock()
		return resp
	}
	m.lastSeen = c.now()
	pt, p := g.protocolType, g.protocol
	if g.state == stateStable {
		c.mu.Unlock()
		resp.ProtocolType, resp.Protocol, resp.MemberAssignment = &pt, &p, m.assignment
		return resp
	}
	// CompletingRebalance.
	if req.MemberID == g.leader {
		for _, mm := range g.members {
			mm.assignment = nil
		}
		for _, a := range req.GroupAssignment {
			if mm := g.members[a.MemberID]; mm != nil {
				mm.assignment = a.MemberAssignment
			}
		}
		for _, mm := range g.members {
			c.announceAssignment(g, mm)
		}
		g.state = stateStable
		for id, mm := range g.members {
			if mm.sync != nil && id != req.MemberID {
				mm.sync <- &kmsg.SyncGroupResponse{ProtocolType: &pt, Protocol: &p, MemberAssignment: mm.assignment}
				mm.sync = nil
			}
		}
		c.mu.Unlock()
		resp.ProtocolType, resp.Protocol, resp.MemberAssignment = &pt, &p, m.assignment
		return resp
	}
	ch := make(chan *kmsg.SyncGroupResponse, 1)
	m.sync = ch
	c.mu.Unlock()
	select {
	case r := <-ch:
		r.Version = req.Version
		return r
	case <-ctx.Done():
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
}

// memberOf finds a member of a group's current generation: else
// UNKNOWN_MEMBER_ID or ILLEGAL_GENERATION. The caller holds c.mu.
func (c *coordinator) memberOf(group, id string, generation int32) (*group, *member, int16) {
	g := c.groups[group]
	if g == nil || g.members[id] == nil {
		return g, nil, kerr.UnknownMemberID.Code
	}
	if generation != g.generation {
		return g, g.members[id], kerr.IllegalGeneration.Code
	}
	return g, g.members[id], 0
}

func (c *coordinator) heartbeat(req *kmsg.HeartbeatRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	c.mu.Lock()
	defer c.mu.Unlock()
	g, m, code := c.memberOf(req.Group, req.MemberID, req.Generation)
	switch {
	case code != 0:
		resp.ErrorCode = code
	case g.state == statePreparingRebalance:
		m.lastSeen = c.now()
		resp.ErrorCode = kerr.RebalanceInProgress.Code
	default:
		m.lastSeen = c.now()
	}
	return resp
}

func (c *coordinator) leave(req *kmsg.LeaveGroupRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[req.Group]
	leaving := req.Members
	if req.Version < 3 {
		leaving = []kmsg.LeaveGroupRequestMember{{MemberID: req.MemberID}}
	}
	for _, lm := range leaving {
		rm := kmsg.NewLeaveGroupResponseMember()
		rm.MemberID, rm.InstanceID = lm.MemberID, lm.InstanceID
		id := lm.MemberID
		if g != nil && id == "" && lm.InstanceID != nil {
			for mid, m := range g.members {
				if m.instanceID == *lm.InstanceID {
					id = mid
				}
			}
		}
		if g == nil || g.members[id] == nil {
			rm.ErrorCode = kerr.UnknownMemberID.Code
		} else {
			c.remove(g, id)
		}
		resp.Members = append(resp.Members, rm)
	}
	if req.Version < 3 {
		resp.ErrorCode = resp.Members[0].ErrorCode
		resp.Members = nil
	}
	return resp
}

// checkMember validates the generation and member of an offset commit: a
// commit from a member of an older generation would rewind partitions
// that moved on to someone else. Kafka's rules (ClassicGroup's
// validateOffsetCommit): while the group prepares a rebalance its members
// still commit with the generation they have, which is how an eager
// consumer commits what it consumed as its partitions are revoked, before
// it rejoins; between the new generation's join and its sync, the
// assignment is not known yet, and a commit gets REBALANCE_IN_PROGRESS.
func (c *coordinator) checkMember(group string, generation int32, memberID string) int16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[group]
	if generation < 0 && memberID == "" {
		// A standalone consumer (assign, not subscribe) commits outside
		// any generation, which only an empty group allows: no member
		// here, nor a `fastflow consume --group` member, whose offsets
		// it would overwrite.
		if g != nil && len(g.members) > 0 || c.hasConsumers(group) {
			return kerr.UnknownMemberID.Code
		}
		return 0
	}
	if g == nil || g.members[memberID] == nil {
		return kerr.UnknownMemberID.Code
	}
	if generation != g.generation {
		return kerr.IllegalGeneration.Code
	}
	if g.state == stateCompletingRebalance {
		return kerr.RebalanceInProgress.Code
	}
	g.members[memberID].lastSeen = c.now()
	return 0
}

// maxOffsetMetadata bounds the metadata a client commits with an offset,
// kept with it in a file per partition: Kafka's offset.metadata.max.bytes,
// 4096 (characters, as Java counts a string's length), past which a commit
// is OFFSET_METADATA_TOO_LARGE.
const maxOffsetMetadata = 4096
