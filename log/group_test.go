package log

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func produceTopic(t *testing.T, l *Log, name string, parts int32, perPart int) {
	t.Helper()
	tp, err := l.CreateTopic(name, TopicConfig{Partitions: parts})
	if err != nil {
		t.Fatal(err)
	}
	for id := int32(0); id < parts; id++ {
		p, _ := tp.Partition(id)
		appendN(t, p, 0, perPart, 25, AcksLeader)
	}
}

// drain reads from c until it is at the end, returning offsets seen per partition.
func drain(t *testing.T, c *Consumer) map[int32][]int64 {
	t.Helper()
	got := map[int32][]int64{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	buf := make([]Record, 0, 64)
	for {
		var err error
		buf, err = c.Read(buf[:0])
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range buf {
			got[r.Partition] = append(got[r.Partition], r.Offset)
		}
		if len(buf) == 0 {
			if c.AtEnd() {
				return got
			}
			if err := c.Wait(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestGroupCommitResume(t *testing.T) {
	dir := t.TempDir()
	l := testLog(t, dir)
	produceTopic(t, l, "g", 3, 100)
	c, err := l.NewConsumer(ConsumerOptions{Topic: "g", Group: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Assigned(); !slices.Equal(got, []int32{0, 1, 2}) {
		t.Fatalf("sole member assigned %v", got)
	}
	// Read 50 records, commit, close.
	buf := make([]Record, 0, 50)
	buf, _ = c.Read(buf)
	if len(buf) != 50 || buf[0].Partition != 0 {
		t.Fatalf("first read: %d records", len(buf))
	}
	if err := c.Commit(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	g, _ := l.Group("app")
	if o, ok, _ := g.Committed("g", 0); !ok || o != 50 {
		t.Fatalf("committed %d %v", o, ok)
	}
	l.Close()

	// A new process resumes at the commits (as Java's commitSync, the
	// commit covered the untouched partitions at their position, 0).
	l = testLog(t, dir)
	defer l.Close()
	c, _ = l.NewConsumer(ConsumerOptions{Topic: "g", Group: "app", Start: Start{Kind: StartLatest}})
	got := drain(t, c)
	if len(got[0]) != 50 || got[0][0] != 50 || len(got[1]) != 100 || len(got[2]) != 100 {
		t.Fatalf("resume read %d/%d/%d", len(got[0]), len(got[1]), len(got[2]))
	}
	c.Commit()
	c.Close()
	groups, _ := l.Groups()
	if !slices.Equal(groups, []string{"app"}) {
		t.Fatalf("groups %v", groups)
	}
	offs, _ := g.Offsets()
	if len(offs) != 3 || offs[0].Offset != 100 || offs[1].Offset != 100 || offs[2].Offset != 100 {
		t.Fatalf("offsets %+v", offs)
	}

	// A new group with policy latest reads nothing old.
	c, _ = l.NewConsumer(ConsumerOptions{Topic: "g", Group: "fresh", Start: Start{Kind: StartLatest}})
	if got := drain(t, c); len(got) != 0 {
		t.Fatalf("latest read %v", got)
	}
	c.Close()

	// Start policy none: an error for a partition never committed.
	if _, err := l.NewConsumer(ConsumerOptions{Topic: "g", Group: "other", Start: Start{Kind: StartNone}}); !errors.Is(err, ErrNoOffset) {
		t.Fatalf("policy none: %v", err)
	}
}

func TestStartPolicies(t *testing.T) {
	l := testLog(t, "")
	defer l.Close()
	produceTopic(t, l, "s", 1, 100)
	f := func(spec string, want int64) {
		t.Helper()
		st, err := ParseStart(spec)
		if err != nil {
			t.Fatal(err)
		}
		c, err := l.NewConsumer(ConsumerOptions{Topic: "s", Start: st})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if pos, _ := c.Position(0); pos != want {
			t.Fatalf("start %q at %d, want %d", spec, pos, want)
		}
	}
	f("earliest", 0)
	f("latest", 100)
	f("42", 42)
	f(time.UnixMilli(1795341600000+60).UTC().Format(time.RFC3339Nano), 60)
	// RFC 3339's variants (section 5.6), as event times and produce's
	// --timestamp-field take them.
	f("2026-11-22 10:00:00.061Z", 61)
	f("2026-11-22t10:00:00.062z", 62)
	f("2026-11-22T11:00:00.063+01:00", 63)
	if _, err := ParseStart("yesterday"); err == nil {
		t.Fatal("ParseStart accepted garbage")
	}
	// An offset past the end starts at the end, one before the log start
	// at the log start (kafka-consumer-groups --to-offset).
	f("1000", 100)
	tp, _ := l.Topic("s")
	p, _ := tp.Partition(0)
	if _, err := p.DeleteRecords(30); err != nil {
		t.Fatal(err)
	}
	f("10", 30)
}

func TestGroupMembersSplitAndRebalance(t *testing.T) {
	l := testLog(t, "")
	defer l.Close()
	produceTopic(t, l, "split", 4, 50)
	opts := ConsumerOptions{Topic: "split", Group: "workers", RebalanceInterval: 10 * time.Millisecond}
	a, err := l.NewConsumer(opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.NewConsumer(opts)
	if err != nil {
		t.Fatal(err)
	}
	// a notices b and gives up half; b takes it once a lets go.
	ga, gb := map[int32][]int64{}, map[int32][]int64{}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && (len(a.Assigned()) != 2 || len(b.Assigned()) != 2) {
		for _, c := range []*Consumer{a, b} {
			c.Read(nil)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !slices.Equal(a.Assigned(), []int32{0, 2}) || !slices.Equal(b.Assigned(), []int32{1, 3}) {
		t.Fatalf("assignments a=%v b=%v", a.Assigned(), b.Assigned())
	}
	for p, o := range drain(t, a) {
		ga[p] = o
	}
	for p, o := range drain(t, b) {
		gb[p] = o
	}
	a.Commit()
	b.Commit()
	// Every record read exactly once between the two (a may have read
	// some of 1 and 3 before b joined: it committed them on release).
	g, _ := l.Group("workers")
	members, _ := g.Members()
	if len(members) != 2 {
		t.Fatalf("%d live members", len(members))
	}
	offs, _ := g.Offsets()
	for _, o := range offs {
		if o.Offset != 50 {
			t.Fatalf("partition %d committed at %d", o.Partition, o.Offset)
		}
	}
	if len(offs) != 4 {
		t.Fatalf("%d partitions committed", len(offs))
	}
	// b leaves: a takes everything back, from b's commits.
	b.Close()
	for p := int32(0); p < 4; p++ {
		tp, _ := l.Topic("split")
		pp, _ := tp.Partition(p)
		appendN(t, pp, 50, 10, 10, AcksLeader)
	}
	time.Sleep(20 * time.Millisecond)
	got := drain(t, a)
	if !slices.Equal(a.Assigned(), []int32{0, 1, 2, 3}) {
		t.Fatalf("after b left a has %v", a.Assigned())
	}
	for p := int32(0); p < 4; p++ {
		if len(got[p]) != 10 || got[p][0] != 50 {
			t.Fatalf("partition %d after rebalance: %v", p, got[p])
		}
	}
	a.Close()
	if members, _ := g.Members(); len(members) != 0 {
		t.Fatalf("members after close: %v", members)
	}
}

// TestGroupDelete: deleting a group removes its committed offsets (a new
// member starts by its start policy); refused while a member is live, and
// for a group that does not exist.
func TestGroupDelete(t *testing.T) {
	l := testLog(t, t.TempDir())
	defer l.Close()
	p := mustPartition(t, l, "d", TopicConfig{Partitions: 1}, 0)
	appendN(t, p, 0, 10, 10, AcksLeader)
	g, _ := l.Group("g")
	if err := g.Commit("d", 0, 7); err != nil {
		t.Fatal(err)
	}
	c, err := l.NewConsumer(ConsumerOptions{Topic: "d", Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Delete(); !errors.Is(err, ErrGroupNotEmpty) {
		t.Fatalf("delete with a live member: %v", err)
	}
	c.Close()
	if err := g.Delete(); err != nil {
		t.Fatal(err)
	}
	if names, _ := l.Groups(); len(names) != 0 {
		t.Fatalf("groups after delete: %v", names)
	}
	if _, ok, err := g.Committed("d", 0); ok || err != nil {
		t.Fatalf("committed offset after delete: %v %v", ok, err)
	}
	if err := g.Delete(); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("delete again: %v", err)
	}
}

// TestAnnounceUpdate: an announced Kafka member is rewritten in place,
// shorter or longer, and always reads back whole.
func TestAnnounceUpdate(t *testing.T) {
	l, err := Open(t.TempDir(), Options{CleanupInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	g, _ := l.Group("g")
	a, err := g.Announce("t", KafkaMember{MemberID: "m-1", ClientID: "c", ClientHost: "h"})
	if err != nil {
		t.Fatal(err)
	}
	for _, parts := range [][]int32{{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, nil, {3}} {
		if err := a.Update(KafkaMember{MemberID: "m-1", ClientID: "c", ClientHost: "h", Partitions: parts}); err != nil {
			t.Fatal(err)
		}
		members, err := g.Members()
		if err != nil || len(members) != 1 || members[0].Kafka == nil || members[0].Topic != "t" ||
			fmt.Sprint(members[0].Kafka.Partitions) != fmt.Sprint(parts) {
			t.Fatalf("after update to %v: %+v, %v", parts, members, err)
		}
	}
	if cm, _ := g.ConsumerMembers(); len(cm) != 0 {
		t.Fatalf("consumer members: %+v", cm)
	}
	a.Leave()
	if members, _ := g.Members(); len(members) != 0 {
		t.Fatalf("after leave: %+v", members)
	}
}

// TestCommittedOffsetsOfADeletedTopic: deleting a topic deletes the
// groups' offsets on it, as Kafka does; and an offset committed to it by
// a process that still had it open, after another deleted it and created
// a topic of the same name (another ID), is no offset there: the group
// starts on the new topic by its start policy instead of skipping its
// first records.
func TestCommittedOffsetsOfADeletedTopic(t *testing.T) {
	dir := t.TempDir()
	open := func() *Log {
		l, err := Open(dir, Options{CleanupInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	a, b := open(), open() // two processes
	produceTopic(t, b, "t", 1, 10)
	if _, err := a.Topic("t"); err != nil {
		t.Fatal(err)
	}
	ga, _ := a.Group("g")
	if err := ga.Commit("t", 0, 7); err != nil {
		t.Fatal(err)
	}
	gb, _ := b.Group("g")
	if o, ok, err := gb.Committed("t", 0); o != 7 || !ok || err != nil {
		t.Fatalf("committed: %d %v %v", o, ok, err)
	}
	tb, _ := b.Topic("t")
	oldID := tb.ID()
	if err := b.DeleteTopic("t"); err != nil {
		t.Fatal(err)
	}
	if offs, err := gb.Offsets(); len(offs) != 0 || err != nil {
		t.Fatalf("offsets after the delete: %+v %v", offs, err)
	}
	nt, err := b.CreateTopic("t", TopicConfig{Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	if nt.ID() == oldID || nt.ID() == "" {
		t.Fatalf("new topic's id %q, old %q", nt.ID(), oldID)
	}
	// a still has the old topic open, and commits to it; it cannot alter
	// the new topic's configuration through it (nor give it its ID).
	if err := ga.Commit("t", 0, 9); err != nil {
		t.Fatal(err)
	}
	ta, _ := a.Topic("t")
	if _, err := ta.AlterConfig(func(c *TopicConfig) error { c.Retention = time.Hour; return nil }); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("AlterConfig through the deleted topic: %v", err)
	}
	if err := nt.Check(); err != nil {
		t.Fatalf("the new topic after the refused alter: %v", err)
	}
	if _, ok, err := gb.Committed("t", 0); ok || err != nil {
		t.Fatalf("offset of the deleted topic applied to the new one: %v %v", ok, err)
	}
	if err := gb.Commit("t", 0, 3); err != nil {
		t.Fatal(err)
	}
	if o, ok, _ := gb.Committed("t", 0); o != 3 || !ok {
		t.Fatalf("new topic's offset: %d %v", o, ok)
	}
}

// A group's name is any string but the empty one, as in Kafka: each is
// kept in a directory of its own under groups/ (its name escaped), listed
// as it was given, and deleted; names whose directory's name would not fit
// a file name are refused, and directories under groups/ that no name
// escapes to (a NAME~deleted left by a crashed deletion, a hand-made
// %2e) are not groups.
func TestGroupNames(t *testing.T) {
	dir := t.TempDir()
	l := testLog(t, dir)
	produceTopic(t, l, "t", 1, 3)
	names := []string{"orders service:v2", ".", "..", "a/b", "../../topics/t", "%41", "é", "\x00\x1b[2J\n",
		"plain-name_1.0", strings.Repeat("g", 255), strings.Repeat(" ", 85)}
	for i, name := range names {
		g, err := l.Group(name)
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		if err := g.Commit("t", 0, int64(i)); err != nil {
			t.Fatalf("%q: %v", name, err)
		}
	}
	for _, junk := range []string{"x~deleted", "%2e", "%4", "%zz", "a%2Fb%", "bad%FF"} {
		if err := os.MkdirAll(filepath.Join(dir, "groups", junk), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	got, err := l.Groups()
	if err != nil {
		t.Fatal(err)
	}
	if want := slices.Sorted(slices.Values(names)); !slices.Equal(got, want) {
		t.Fatalf("Groups: %q, want %q", got, want)
	}
	for i, name := range names {
		g, _ := l.Group(name)
		if off, ok, err := g.Committed("t", 0); err != nil || !ok || off != int64(i) {
			t.Fatalf("%q committed %d %v %v", name, off, ok, err)
		}
		if err := g.Delete(); err != nil {
			t.Fatalf("delete %q: %v", name, err)
		}
	}
	if got, _ := l.Groups(); len(got) != 0 {
		t.Fatalf("Groups after the deletes: %q", got)
	}
	if _, err := l.Topic("t"); err != nil { // "../../topics/t" stayed in groups/
		t.Fatal(err)
	}
	for _, bad := range []string{"", strings.Repeat("g", 256), strings.Repeat(" ", 86), "bad\xffname"} {
		if _, err := l.Group(bad); err == nil || !strings.Contains(err.Error(), "invalid group name") {
			t.Errorf("%d bytes: %v", len(bad), err)
		}
	}
}
