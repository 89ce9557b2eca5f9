package log

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/fastflow/fastflow/log/atomicfile"
)

// Group is a consumer group: committed offsets per (topic, partition),
// kept durably in the data directory, and the members currently consuming.
//
// On disk, under groups/NAME/ (the name escaped: GroupDirName):
//
//	offsets/TOPIC/PARTITION  the committed offset (JSON), replaced atomically
//	members/ID               one file per live member, flock-held by it (a Kafka
//	                         client's, one per topic, by the process whose Kafka
//	                         listener serves it: Announce)
//	owners/TOPIC/PARTITION   flock-held by the member consuming that partition
//
// flock locks vanish with their process, however it ends, so a member
// killed with SIGKILL leaves the group at once and its partitions move to
// the others; the owner locks make sure two members never consume one
// partition at the same time while they rebalance.
type Group struct {
	l    *Log
	name string
	dir  string
}

// Group returns the named consumer group; it exists once something is
// committed or a member joins.
func (l *Log) Group(name string) (*Group, error) {
	if !ValidGroupName(name) {
		return nil, fmt.Errorf("invalid group name %q: a group name is 1 to 255 bytes of UTF-8, a byte other than a-z A-Z 0-9 . _ - counting 3", name)
	}
	return &Group{l: l, name: name, dir: filepath.Join(l.dir, "groups", GroupDirName(name))}, nil
}

// ValidGroupName reports whether name can be a consumer group's. As in
// Kafka, a group name is any text but the empty one (a client's choice:
// "orders service", "app:v2"): UTF-8, as Kafka's are Java strings (and
// as Prometheus takes a label value: /metrics failed whole on a group
// named with a byte 0xff); its directory's name, GroupDirName, must fit a
// file name's 255 bytes.
func ValidGroupName(name string) bool {
	return name != "" && utf8.ValidString(name) && len(GroupDirName(name)) <= 255
}

// GroupDirName is the name of the directory of the group of that name,
// under groups/: the name, with each byte other than a-z A-Z 0-9 . _ -
// as %XX (and "." and ".." as %2E and %2E%2E). A name Kafka allows for a
// topic is its own directory's name.
func GroupDirName(name string) string {
	switch name {
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// groupName is the group name whose directory dir is, and false if dir
// is no GroupDirName (a NAME~deleted, where a deletion crashed before
// groups went to the trash).
func groupName(dir string) (string, bool) {
	name, err := url.PathUnescape(dir)
	return name, err == nil && ValidGroupName(name) && GroupDirName(name) == dir
}

// Groups lists the consumer groups' names in order.
func (l *Log) Groups() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(l.dir, "groups"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if name, ok := groupName(e.Name()); ok && e.IsDir() {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Name is the group's name.
func (g *Group) Name() string { return g.name }

// Delete deletes the group's committed offsets and the group with them,
// Kafka's DeleteGroups: refused, wrapping ErrGroupNotEmpty, while a member
// of this data directory's groups (fastflow consume --group) is live;
// ErrUnknownGroup if there is no such group. Members of the same group
// through the Kafka listener are the listener's to check (it refuses to
// delete a group it has members of).
func (g *Group) Delete() error {
	if _, err := os.Stat(g.dir); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %q", ErrUnknownGroup, g.name)
	}
	members, err := g.Members()
	if err != nil {
		return err
	}
	if len(members) > 0 {
		return fmt.Errorf("%w: %s has %d (e.g. %s, consuming %s); stop them first", ErrGroupNotEmpty, g.name,
			len(members), members[0], members[0].Topic)
	}
	// Renamed away first, so that the group is gone at once, whole.
	gone, err := g.l.moveToTrash(g.dir, "group")
	if err != nil {
		return err
	}
	return os.RemoveAll(gone)
}

// DeleteOffsets deletes the group's committed offsets in the given
// partitions of topic (all of them if none are given), Kafka's
// OffsetDelete: the group's next member on the topic starts by its start
// policy there. Refused, wrapping ErrGroupSubscribed, while a member of
// this data directory's groups consumes the topic. Partitions with nothing
// committed are no error.
func (g *Group) DeleteOffsets(topic string, partitions ...int32) error {
	members, err := g.Members()
	if err != nil {
		return err
	}
	for _, m := range members {
		if m.Topic == topic {
			return fmt.Errorf("%w: %s consumes %s (e.g. %s); stop it first", ErrGroupSubscribed, g.name, topic, m)
		}
	}
	dir := filepath.Join(g.dir, "offsets", topic)
	if len(partitions) == 0 {
		err = os.RemoveAll(dir)
	} else {
		for _, p := range partitions {
			if e := os.Remove(g.offsetPath(topic, p)); e != nil && !errors.Is(e, os.ErrNotExist) {
				err = e
			}
		}
		os.Remove(dir) // if it is empty now
	}
	if err != nil {
		return err
	}
	if err := atomicfile.SyncDir(filepath.Dir(dir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// CommittedOffset is one committed position: the next offset the group
// will read in that partition (Kafka's convention).
type CommittedOffset struct {
	Topic       string `json:"topic"`
	Partition   int32  `json:"partition"`
	Offset      int64  `json:"offset"`
	CommittedMs int64  `json:"committed_ms"`
	// Metadata is what a Kafka client committed with the offset.
	Metadata string `json:"metadata,omitempty"`
	// TopicID is the ID of the topic committed to (Topic.ID): an offset
	// committed to a topic deleted since does not apply to another of the
	// same name.
	TopicID string `json:"topic_id,omitempty"`
}

// topicID returns the ID of topic as this process knows it, "" if there
// is no such topic.
func (g *Group) topicID(topic string) string {
	if t, err := g.l.Topic(topic); err == nil {
		return t.ID()
	}
	return ""
}

func (g *Group) offsetPath(topic string, partition int32) string {
	return filepath.Join(g.dir, "offsets", topic, strconv.Itoa(int(partition)))
}

// Commit durably records offset as the group's position in a partition.
func (g *Group) Commit(topic string, partition int32, offset int64) error {
	return g.CommitMetadata(topic, partition, offset, "")
}

// CommitMetadata is Commit with the client's metadata string, as Kafka's
// OffsetCommit carries it.
func (g *Group) CommitMetadata(topic string, partition int32, offset int64, metadata string) error {
	path := g.offsetPath(topic, partition)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, _ := json.Marshal(CommittedOffset{Topic: topic, Partition: partition, Offset: offset,
		CommittedMs: g.l.opts.Now().UnixMilli(), Metadata: metadata, TopicID: g.topicID(topic)})
	if err := atomicfile.Write(path, b); err != nil {
		return fmt.Errorf("commit %s %s/%d: %w", g.name, topic, partition, err)
	}
	return nil
}

// Committed returns the group's committed offset in a partition, and
// whether there is one. A negative offset, which a Kafka client may commit
// (kafkajs's admin.resetOffsets commits -1 and -2, for its consumers to
// resolve), is none, as the Java client takes it: the group starts there
// by its start policy.
func (g *Group) Committed(topic string, partition int32) (int64, bool, error) {
	c, ok, err := g.CommittedOffset(topic, partition)
	if c.Offset < 0 {
		return 0, false, err
	}
	return c.Offset, ok, err
}

// CommittedOffset returns the whole commit of a partition, metadata
// included, and whether there is one. An offset committed to a topic that
// was deleted since, and created again (another Topic.ID), is none: as in
// Kafka, which deletes a deleted topic's committed offsets, the group
// starts on the new topic by its start policy instead of skipping its
// first records.
func (g *Group) CommittedOffset(topic string, partition int32) (CommittedOffset, bool, error) {
	b, err := os.ReadFile(g.offsetPath(topic, partition))
	if errors.Is(err, os.ErrNotExist) {
		return CommittedOffset{}, false, nil
	}
	if err != nil {
		return CommittedOffset{}, false, err
	}
	var c CommittedOffset
	if err := json.Unmarshal(b, &c); err != nil {
		return CommittedOffset{}, false, fmt.Errorf("group %s: %s: %w", g.name, g.offsetPath(topic, partition), err)
	}
	if id := g.topicID(topic); c.TopicID != "" && id != "" && c.TopicID != id {
		return CommittedOffset{}, false, nil
	}
	return c, true, nil
}

// Offsets lists every committed offset of the group, by topic and partition.
func (g *Group) Offsets() ([]CommittedOffset, error) {
	root := filepath.Join(g.dir, "offsets")
	topics, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []CommittedOffset
	for _, t := range topics {
		parts, err := os.ReadDir(filepath.Join(root, t.Name()))
		if err != nil {
			return nil, err
		}
		for _, p := range parts {
			id, err := strconv.Atoi(p.Name())
			if err != nil {
				continue // a temporary file
			}
			c, ok, err := g.CommittedOffset(t.Name(), int32(id))
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, c)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out, nil
}

// MemberInfo describes a live member.
type MemberInfo struct {
	ID        string `json:"id"`
	PID       int    `json:"pid"`
	Host      string `json:"host"`
	Topic     string `json:"topic"`
	StartedMs int64  `json:"started_ms"`
	// Kafka is set for a Kafka client's member, which the process PID
	// (serve, its Kafka listener) announced for the client.
	Kafka *KafkaMember `json:"kafka,omitempty"`
}

// String names the member for an error message: the process of a
// fastflow consume, or the Kafka client and the process whose listener it
// is connected to.
func (m MemberInfo) String() string {
	if m.Kafka != nil {
		return fmt.Sprintf("Kafka client %q from %s, through the Kafka listener of pid %d", m.Kafka.ClientID, m.Kafka.ClientHost, m.PID)
	}
	return fmt.Sprintf("pid %d on %s", m.PID, m.Host)
}

// KafkaMember is a Kafka client's membership of a group through the Kafka
// listener, as Announce publishes it: what kafka-consumer-groups
// --describe --members shows.
type KafkaMember struct {
	MemberID   string  `json:"member_id"`
	ClientID   string  `json:"client_id"`
	ClientHost string  `json:"client_host"`
	Partitions []int32 `json:"partitions,omitempty"` // of Topic, as the group's leader assigned them
}

// Announcement is a member this process announced for a Kafka client
// (Group.Announce); Leave withdraws it.
type Announcement struct {
	m *member
}

// Announce publishes a Kafka client's membership of the group on topic,
// so that fastflow's own commands see it: `group describe` and `group
// list` show it, and `group reset`, `group delete` and `consume --group`
// refuse as they do for a fastflow consumer. The member stays announced
// until Leave or the end of this process; the member file also records
// this process's PID and host, and when it was announced.
func (g *Group) Announce(topic string, info KafkaMember) (*Announcement, error) {
	m, err := g.join(MemberInfo{Topic: topic, Kafka: &info})
	if err != nil {
		return nil, err
	}
	return &Announcement{m: m}, nil
}

// Update rewrites the announced member (its assigned partitions, after a
// rebalance). The file is rewritten in place, in one write, padded with
// spaces (JSON's whitespace) to its size so far, never truncated: a
// process reading it meanwhile sees the old text or the new one, not an
// empty file (and Members reads again what does not decode).
func (a *Announcement) Update(info KafkaMember) error {
	a.m.info.Kafka = &info
	b, _ := json.Marshal(a.m.info)
	if fi, err := a.m.file.Stat(); err == nil && fi.Size() > int64(len(b)) {
		b = append(b, bytes.Repeat([]byte{' '}, int(fi.Size())-len(b))...)
	}
	_, err := a.m.file.WriteAt(b, 0)
	return err
}

// Info returns what was announced last.
func (a *Announcement) Info() KafkaMember { return *a.m.info.Kafka }

// Topic is the topic the member was announced on.
func (a *Announcement) Topic() string { return a.m.info.Topic }

// Leave withdraws the announcement.
func (a *Announcement) Leave() { a.m.leave() }

// kafkaMembers returns the members of members that are Kafka clients'
// (kafka true) or fastflow consumers' (kafka false).
func kafkaMembers(members []MemberInfo, kafka bool) []MemberInfo {
	var out []MemberInfo
	for _, m := range members {
		if (m.Kafka != nil) == kafka {
			out = append(out, m)
		}
	}
	return out
}

// ConsumerMembers returns the live members that are fastflow consumers
// (`fastflow consume --group`, a Consumer), not Kafka clients': a Kafka
// group cannot take them in, as Kafka refuses a member of another
// protocol type.
func (g *Group) ConsumerMembers() ([]MemberInfo, error) {
	members, err := g.Members()
	return kafkaMembers(members, false), err
}

// Members lists the live members, sorted by ID, removing the files of
// members that died.
func (g *Group) Members() ([]MemberInfo, error) {
	dir := filepath.Join(g.dir, "members")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []MemberInfo
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		f, err := os.Open(path)
		if err != nil {
			continue // left just now
		}
		// A live member holds an exclusive lock on its file.
		if unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB) == nil {
			os.Remove(path)
			f.Close()
			continue
		}
		var mi MemberInfo
		for try := 0; ; try++ {
			// A file being rewritten (Announcement.Update) may be read
			// half old, half new: read it again.
			mi = MemberInfo{}
			b, _ := os.ReadFile(path)
			if json.Unmarshal(b, &mi) == nil || try == 10 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		mi.ID = e.Name()
		f.Close()
		out = append(out, mi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// member is this process's membership of a group: a locked member file.
type member struct {
	g    *Group
	info MemberInfo // as written in its file; info.ID is the file's name
	file *os.File
}

// join announces info's member: a member file, flock-held by this process
// until leave or its end. ID, PID, Host and StartedMs are filled in.
func (g *Group) join(info MemberInfo) (*member, error) {
	dir := filepath.Join(g.dir, "members")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	var rnd [4]byte
	rand.Read(rnd[:])
	// IDs sort by join time, so that a member that joins later takes the
	// later slot and the earlier members' assignments move least.
	id := fmt.Sprintf("%016x-%d-%s", time.Now().UnixNano(), os.Getpid(), hex.EncodeToString(rnd[:]))
	tmp := filepath.Join(dir, id+".tmp")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	// Locked before it gets its final name, so no one sees it unlocked.
	if !tryLock(f) {
		f.Close()
		return nil, fmt.Errorf("lock member file %s", tmp)
	}
	// What it subscribes to is in the file: a member whose file could not
	// be written (a full disk) would be live but get no partition.
	info.ID, info.PID, info.Host, info.StartedMs = id, os.Getpid(), host, time.Now().UnixMilli()
	b, _ := json.Marshal(info)
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("join group %s: %w", g.name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, id)); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	return &member{g: g, info: info, file: f}, nil
}

func (m *member) leave() {
	os.Remove(filepath.Join(m.g.dir, "members", m.info.ID))
	m.file.Close()
}

// ownerLock takes the lock that gives member partition p of topic,
// without waiting, and writes the member's ID in it; nil if another member
// still holds it.
func (g *Group) ownerLock(topic string, p int32, member string) (*os.File, error) {
	dir := filepath.Join(g.dir, "owners", topic)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(int(p))), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if !tryLock(f) {
		f.Close()
		return nil, nil
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.WriteAt([]byte(member), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("group %s: claim %s/%d: %w", g.name, topic, p, err)
	}
	return f, nil
}

// Owners returns, for each partition of topic being consumed by a member
// of the group right now, that member's ID.
func (g *Group) Owners(topic string) (map[int32]string, error) {
	dir := filepath.Join(g.dir, "owners", topic)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[int32]string{}
	for _, e := range ents {
		id, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		// Held (by its owner) if a shared lock cannot be had.
		if unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB) != nil {
			b, _ := os.ReadFile(f.Name())
			out[int32(id)] = string(b)
		}
		f.Close()
	}
	return out, nil
}

// Owner returns the ID of the member that the assignment gives partition p
// of topic, among members (as Members returns them), or "" if none
// consumes topic. Members of a topic split its partitions round-robin in
// ID order, as partition.Assign does.
func Owner(topic string, p int32, members []MemberInfo) string {
	var ids []string
	for _, m := range members {
		if m.Topic == topic && m.Kafka == nil { // Kafka clients' members are assigned by their leader
			ids = append(ids, m.ID)
		}
	}
	if len(ids) == 0 {
		return ""
	}
	return ids[int(p)%len(ids)]
}
