package kafka

import (
	"errors"
	"slices"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/fastflow/fastflow/log"
)

// The admin APIs of the group coordinator: ListGroups, DescribeGroups
// and DeleteGroups, over the groups in memory (Kafka clients' members)
// and those the log knows (fastflow's consumers, committed offsets).

// deleteGroups deletes groups and their committed offsets, Kafka's
// DeleteGroups (kafka-consumer-groups --delete): NON_EMPTY_GROUP while the
// group has members here or through `fastflow consume --group`,
// GROUP_ID_NOT_FOUND for a group with nothing to delete.
func (c *coordinator) deleteGroups(req *kmsg.DeleteGroupsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	for _, name := range req.Groups {
		rg := kmsg.NewDeleteGroupsResponseGroup()
		rg.Group = name
		rg.ErrorCode = c.deleteGroup(name)
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

func (c *coordinator) deleteGroup(name string) int16 {
	// Under the lock, so that no member joins between the check and the
	// deletion.
	c.mu.Lock()
	defer c.mu.Unlock()
	if g := c.groups[name]; g != nil && (len(g.members) > 0 || len(g.pending) > 0) {
		return kerr.NonEmptyGroup.Code
	}
	grp, err := c.l.Group(name)
	if err != nil {
		return kerr.InvalidGroupID.Code
	}
	switch err := grp.Delete(); {
	case errors.Is(err, log.ErrGroupNotEmpty):
		return kerr.NonEmptyGroup.Code
	case errors.Is(err, log.ErrUnknownGroup):
		if c.groups[name] == nil {
			return kerr.GroupIDNotFound.Code
		}
	case err != nil:
		return kerr.KafkaStorageError.Code
	}
	delete(c.groups, name)
	return 0
}

// subscribed reports whether a member of group here consumes topic, by its
// consumer protocol metadata. c.mu is held.
func (c *coordinator) subscribed(group, topic string) bool {
	g := c.groups[group]
	if g == nil {
		return false
	}
	for _, m := range g.members {
		var meta kmsg.ConsumerMemberMetadata
		if meta.ReadFrom(protocolMetadata(m, g.protocol)) != nil {
			return true // not a consumer we can read: take it as subscribed
		}
		if slices.Contains(meta.Topics, topic) {
			return true
		}
	}
	return false
}

// knownGroups is every group with members in memory or offsets on disk,
// with its state.
func (c *coordinator) knownGroups() (map[string]*group, error) {
	onDisk, err := c.l.Groups()
	if err != nil {
		return nil, err
	}
	out := map[string]*group{}
	for _, name := range onDisk {
		g, err := c.consumerGroup(name)
		if err != nil {
			return nil, err
		}
		out[name] = g
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, g := range c.groups {
		snap := *g
		snap.members = map[string]*member{}
		for id, m := range g.members {
			mm := *m
			snap.members[id] = &mm
		}
		out[name] = &snap
	}
	return out, nil
}

// consumerGroup describes a group of the data directory as the listener
// shows one it has no Kafka members of: Empty, or, with `fastflow consume
// --group` members, Stable with those members (client ID "fastflow
// consume", assignment strategy "fastflow"), each with the partitions it
// holds in the consumer protocol's encoding, so that kafka-consumer-groups
// --describe shows who consumes what, as `fastflow group describe` does.
func (c *coordinator) consumerGroup(name string) (*group, error) {
	g := &group{name: name, protocolType: "consumer", members: map[string]*member{}}
	grp, err := c.l.Group(name)
	if err != nil {
		return g, nil
	}
	members, err := grp.ConsumerMembers()
	if err != nil || len(members) == 0 {
		return g, err
	}
	owners := map[string]map[int32]string{}
	for _, mi := range members {
		if owners[mi.Topic] == nil {
			if owners[mi.Topic], err = grp.Owners(mi.Topic); err != nil {
				return nil, err
			}
		}
		meta := kmsg.NewConsumerMemberMetadata()
		meta.Topics = []string{mi.Topic}
		asg := kmsg.NewConsumerMemberAssignment()
		at := kmsg.ConsumerMemberAssignmentTopic{Topic: mi.Topic}
		for p, owner := range owners[mi.Topic] {
			if owner == mi.ID {
				at.Partitions = append(at.Partitions, p)
			}
		}
		slices.Sort(at.Partitions)
		asg.Topics = append(asg.Topics, at)
		g.members[mi.ID] = &member{id: mi.ID, clientID: "fastflow consume", host: mi.Host, protocolType: "consumer",
			protocols:  []kmsg.JoinGroupRequestProtocol{{Name: "fastflow", Metadata: meta.AppendTo(nil)}},
			assignment: asg.AppendTo(nil)}
	}
	g.state, g.protocol = stateStable, "fastflow"
	return g, nil
}

func (c *coordinator) listGroups(req *kmsg.ListGroupsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	groups, err := c.knownGroups()
	if err != nil {
		resp.ErrorCode = kerr.KafkaStorageError.Code
		return resp
	}
	names := make([]string, 0, len(groups))
	for n := range groups {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		g := groups[n]
		if len(req.StatesFilter) > 0 && !contains(req.StatesFilter, g.state.String()) {
			continue
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group, lg.ProtocolType, lg.GroupState = n, g.protocolType, g.state.String()
		resp.Groups = append(resp.Groups, lg)
	}
	return resp
}

func (c *coordinator) describeGroups(req *kmsg.DescribeGroupsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	groups, err := c.knownGroups()
	for _, name := range req.Groups {
		dg := kmsg.NewDescribeGroupsResponseGroup()
		dg.Group = name
		g := groups[name]
		switch {
		case err != nil:
			dg.ErrorCode = kerr.KafkaStorageError.Code
		case g == nil:
			dg.State = "Dead" // what Kafka answers for a group it does not know
		default:
			dg.State, dg.ProtocolType = g.state.String(), g.protocolType
			if g.state == stateStable {
				dg.Protocol = g.protocol
			}
			for _, id := range sortedMembers(g) {
				m := g.members[id]
				dm := kmsg.NewDescribeGroupsResponseGroupMember()
				dm.MemberID, dm.ClientID, dm.ClientHost = id, m.clientID, m.host
				if m.instanceID != "" {
					iid := m.instanceID
					dm.InstanceID = &iid
				}
				if g.state == stateStable {
					dm.ProtocolMetadata = protocolMetadata(m, g.protocol)
					dm.MemberAssignment = m.assignment
				}
				dg.Members = append(dg.Members, dm)
			}
		}
		resp.Groups = append(resp.Groups, dg)
	}
	return resp
}
