package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/log/kafka"
	"github.com/fastflow/fastflow/partition"
)

// The Kafka source and sink against a real Kafka protocol broker:
// fastflow's own listener (log/kafka) over a log on 127.0.0.1. Franz-go,
// which the source and sink use, is the client.

// broker serves topic events (4 partitions) over the Kafka protocol.
func broker(t *testing.T) (string, *log.Log) {
	t.Helper()
	l, err := log.Open(t.TempDir(), log.Options{CleanupInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateTopic("events", log.TopicConfig{Partitions: 4, Retention: -1}); err != nil {
		t.Fatal(err)
	}
	return serveLog(t, l), l
}

// serveLog serves l over the Kafka protocol until the test ends, then
// closes it.
func serveLog(tb testing.TB, l *log.Log) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { kafka.New(l, kafka.Options{}).Serve(ctx, ln); close(done) }()
	tb.Cleanup(func() { cancel(); <-done; l.Close() })
	return ln.Addr().String()
}

const kafkaPipeline = `
pipelines:
  - name: kp
    source: %s
    time: {field: ts, unit: ms}
    group_by: [service]
    window: {type: tumbling, size: 1m}
    metrics:
      - {name: n, agg: count}
      - {name: p90, agg: percentile, field: ms, q: 0.9}
      - {name: total, agg: sum, field: ms}
    alerts:
      - {name: busy, when: 'n > 12', for: 2}
    sinks: [%s]
`

// kafkaSessions makes the Kafka tests' pipeline a session pipeline
// (kafkaWindows), for the test that sets it.
var kafkaSessions bool

// kafkaWindows is the Kafka tests' pipeline with session windows of gap
// 20s instead of tumbling minutes where kafkaSessions says so: a
// service's events of one minute are one session (its events are 1.7 s
// apart, and over 20 s from the next minute's).
func kafkaWindows(yaml string) string {
	if !kafkaSessions {
		return yaml
	}
	return strings.Replace(yaml, "{type: tumbling, size: 1m}", "{type: session, gap: 20s}", 1)
}

var kafkaServices = []string{"auth", "billing", "cart", "catalog", "checkout", "search", "payments", "users", "inventory"}

// serviceKey keys the events of service si by the service.
func serviceKey(si, m int) string { return kafkaServices[si] }

// appendEvents appends, keyed by service (so that a service's events are
// on one partition, as the Kafka source requires), events of minutes
// [from, to) after base, and returns how many. keyOf names the service
// of the events of service si in minute m.
func appendEvents(t *testing.T, l *log.Log, base int64, from, to int, keyOf func(si, m int) string) {
	t.Helper()
	tp, _ := l.Topic("events")
	byPart := map[int32][]log.Record{}
	for m := from; m < to; m++ {
		for si := range kafkaServices {
			s := keyOf(si, m)
			for i := 0; i < 5+(si*m)%17; i++ {
				ts := base + int64(m)*60000 + int64(i*1700+si*97)%60000
				v := fmt.Sprintf(`{"ts":%d,"service":%q,"ms":%d}`, ts, s, 10+(i*37+m*11+si)%400)
				p := partition.ForKey([]byte(s), 4)
				byPart[p] = append(byPart[p], log.Record{Key: []byte(s), Value: []byte(v), TimestampMs: ts})
			}
		}
	}
	for p, recs := range byPart {
		part, _ := tp.Partition(p)
		if _, err := part.Append(recs, log.AcksLeader); err != nil {
			t.Fatal(err)
		}
	}
}

// appendFlush appends an event at minute m on every partition (with a key
// of its own, left out of comparisons): at the end, it closes every
// window before m.
func appendFlush(t *testing.T, l *log.Log, base int64, m int) {
	t.Helper()
	tp, _ := l.Topic("events")
	for p := int32(0); p < 4; p++ {
		key := ""
		for i := 0; ; i++ {
			if key = fmt.Sprintf("zz-flush-%d", i); partition.ForKey([]byte(key), 4) == p {
				break
			}
		}
		ts := base + int64(m)*60000
		part, _ := tp.Partition(p)
		v := fmt.Sprintf(`{"ts":%d,"service":%q,"ms":1}`, ts, key)
		if _, err := part.Append([]log.Record{{Key: []byte(key), Value: []byte(v), TimestampMs: ts}}, log.AcksLeader); err != nil {
			t.Fatal(err)
		}
	}
}

// collector keeps the result lines of one or more runs.
type collector struct {
	mu    sync.Mutex
	lines []string
}

func (c *collector) observe(r *Result) {
	if strings.Contains(string(r.Line), "zz-flush") {
		return
	}
	c.mu.Lock()
	c.lines = append(c.lines, string(r.Line))
	c.mu.Unlock()
}

func (c *collector) snapshot() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := slices.Clone(c.lines)
	slices.Sort(out)
	return out
}

// reference runs the same pipeline over the broker's log directly, in one
// process, --until-end.
func reference(t *testing.T, l *log.Log) []string {
	t.Helper()
	f, err := Parse("ref.yaml", []byte(kafkaWindows(fmt.Sprintf(kafkaPipeline, "{topic: events}", "{type: stdout}"))))
	if err != nil {
		t.Fatal(err)
	}
	var c collector
	if err := Run(context.Background(), l, f, Options{UntilEnd: true, Stdout: io.Discard, Observe: c.observe, NoPin: true}); err != nil {
		t.Fatal(err)
	}
	return c.snapshot()
}

// instance starts the pipeline with the Kafka source in its own data
// directory.
func instance(t *testing.T, addr string, c *collector, sink string) *Runner {
	t.Helper()
	l, err := log.Open(t.TempDir(), log.Options{CleanupInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf("{kafka: {brokers: [%q], topic: events, group: kg}}", addr)
	f, err := Parse("kafka.yaml", []byte(kafkaWindows(fmt.Sprintf(kafkaPipeline, src, sink))))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Start(context.Background(), l, f, Options{Stdout: io.Discard, Observe: c.observe, NoPin: true,
		CheckpointInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(); r.Wait(); l.Close() })
	return r
}

// members returns the group's members and their partition counts, as
// the broker's coordinator knows them.
func members(t *testing.T, addr string) map[string]int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{"kg"}
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil || len(resp.Groups) != 1 || resp.Groups[0].State != "Stable" {
		return nil
	}
	out := map[string]int{}
	for _, m := range resp.Groups[0].Members {
		var a kmsg.ConsumerMemberAssignment
		if err := a.ReadFrom(m.MemberAssignment); err != nil {
			return nil
		}
		n := 0
		for _, tp := range a.Topics {
			n += len(tp.Partitions)
		}
		out[m.MemberID] = n
	}
	return out
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Two fastflow instances in one consumer group split the partitions and,
// together, emit exactly the windows and alerts one instance emits over
// the same records; when one stops, its partitions' open windows and alert
// states move to the other through the checkpoint topic, so nothing is
// lost and nothing is emitted twice.
func TestKafkaSourceSplitsAndMovesState(t *testing.T) {
	kafkaSplitAndMove(t, serviceKey, nil)
}

// TestKafkaSourceMovesSessions is TestKafkaSourceSplitsAndMovesState with
// session windows: a leaving instance's open sessions move through the
// checkpoint topic, and the instance that takes them resumes from the
// lowest of its partitions' watermarks, behind some sessions it emitted.
func TestKafkaSourceMovesSessions(t *testing.T) {
	kafkaSessions = true
	defer func() { kafkaSessions = false }()
	kafkaSplitAndMove(t, serviceKey, nil)
}

// TestKafkaSourceMovesStateForgettingKeys is
// TestKafkaSourceSplitsAndMovesState with keys that live two minutes of
// event time each and a sweep after every round, so that both instances
// forget keys while state moves between them: a moved window's key is
// interned anew by the instance that takes it, whatever ID it had where
// it came from.
func TestKafkaSourceMovesStateForgettingKeys(t *testing.T) {
	// Restored after the instances stop (cleanups run last first): a
	// rebalance while they stop makes new coordinators, which read it.
	t.Cleanup(func(n int) func() { return func() { forgetMinKeys = n } }(forgetMinKeys))
	forgetMinKeys = 0
	forgot := func(s *Snapshot) bool { return s.KeysForgotten > 0 }
	a, b := kafkaSplitAndMove(t, func(si, m int) string { return fmt.Sprintf("%s-%d", kafkaServices[si], m/2) }, forgot)
	// The one that stays forgets the keys whose windows the last events
	// closed (its counters start again with the generation that took the
	// partitions over).
	waitFor(t, "the instance that stayed forgets keys", 30*time.Second, func() bool { return forgot(a.Pipelines()[0].Snapshot()) })
	sa, sb := a.Pipelines()[0].Snapshot(), b.Pipelines()[0].Snapshot()
	t.Logf("keys forgotten: %d by the instance that stayed (%d held), %d by the one that left", sa.KeysForgotten, sa.Keys, sb.KeysForgotten)
}

// kafkaSplitAndMove runs TestKafkaSourceSplitsAndMovesState's scenario
// with events keyed by keyOf and returns the instance that stays (still
// running) and the one that left, which left once its snapshot met
// leaveWhen (if not nil).
func kafkaSplitAndMove(t *testing.T, keyOf func(si, m int) string, leaveWhen func(*Snapshot) bool) (stays, leaves *Runner) {
	addr, bl := broker(t)
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC).UnixMilli()

	var got collector
	// Both also write to a Kafka sink on the broker: across the clean
	// rebalance, each line once.
	sinks := fmt.Sprintf("{type: stdout}, {type: kafka, brokers: [%q], topic: kp.results}", addr)
	a := instance(t, addr, &got, sinks)
	b := instance(t, addr, &got, sinks)
	waitFor(t, "both instances own partitions", 30*time.Second, func() bool {
		m := members(t, addr)
		if len(m) != 2 {
			return false
		}
		for _, n := range m {
			if n != 2 {
				return false
			}
		}
		return true
	})

	// A partition holds the watermark back once it has had an event (as
	// in one instance): an event at the start on each, then the data.
	appendFlush(t, bl, base, 0)
	waitFor(t, "every partition had an event", 30*time.Second, func() bool {
		sa, sb := a.Pipelines()[0].Snapshot(), b.Pipelines()[0].Snapshot()
		return sa != nil && sb != nil && sa.Stats.Events+sb.Stats.Events == 4
	})
	// First half: minutes 0-5; the window of minute 5 stays open.
	appendEvents(t, bl, base, 0, 6, keyOf)
	waitFor(t, "both instances processed their partitions", 30*time.Second, func() bool {
		sa, sb := a.Pipelines()[0].Snapshot(), b.Pipelines()[0].Snapshot()
		return sa != nil && sb != nil && sa.Stats.Events > 0 && sb.Stats.Events > 0 &&
			sa.Stats.Events+sb.Stats.Events == countEvents(bl)
	})

	if leaveWhen != nil {
		waitFor(t, "the instance about to leave meets leaveWhen", 30*time.Second, func() bool {
			return leaveWhen(b.Pipelines()[0].Snapshot())
		})
	}
	// b leaves: its partitions, with their open windows, go to a.
	b.Stop()
	if err := b.Wait(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a owns all four partitions", 30*time.Second, func() bool {
		m := members(t, addr)
		for _, n := range m {
			return len(m) == 1 && n == 4
		}
		return false
	})

	// Second half, then an event at minute 20 on every partition closes
	// every window.
	appendEvents(t, bl, base, 5, 11, keyOf)
	appendFlush(t, bl, base, 20)
	want := reference(t, bl)
	if len(want) < 50 {
		t.Fatalf("reference emitted only %d lines", len(want))
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(got.snapshot()) < len(want) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // anything emitted twice would show now
	have := got.snapshot()
	if !slices.Equal(have, want) {
		t.Fatalf("the instances emitted %d lines, one instance %d; differences:\n%s", len(have), len(want), diffLines(have, want))
	}
	results, err := bl.Topic("kp.results")
	if err != nil {
		t.Fatal(err)
	}
	sunk := func() []string { // as the collector takes them
		var lines []string
		for _, r := range allContents(t, results) {
			if _, v, _ := cut(r); !strings.Contains(v, "zz-flush") {
				lines = append(lines, v)
			}
		}
		slices.Sort(lines)
		return lines
	}
	waitFor(t, "the Kafka sink holds every line", 30*time.Second, func() bool { return len(sunk()) >= len(want) })
	time.Sleep(300 * time.Millisecond)
	inSink := sunk()
	if !slices.Equal(inSink, want) {
		t.Fatalf("the Kafka sink holds %d lines, one instance emits %d; differences:\n%s", len(inSink), len(want), diffLines(inSink, want))
	}
	return a, b
}

func countEvents(l *log.Log) int64 {
	tp, _ := l.Topic("events")
	var n int64
	for p := int32(0); p < 4; p++ {
		part, _ := tp.Partition(p)
		n += part.HighWatermark()
	}
	return n
}

// diffLines lists the lines only one side has.
func diffLines(have, want []string) string {
	var b strings.Builder
	count := map[string]int{}
	for _, l := range have {
		count[l]++
	}
	for _, l := range want {
		count[l]--
	}
	for l, n := range count {
		switch {
		case n > 0:
			fmt.Fprintf(&b, "only the instances (x%d): %s\n", n, l)
		case n < 0:
			fmt.Fprintf(&b, "only one instance (x%d):  %s\n", -n, l)
		}
	}
	return b.String()
}

func firstDiff(have, want []string) string {
	for i := 0; i < max(len(have), len(want)); i++ {
		var h, w string
		if i < len(have) {
			h = have[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if h != w {
			return "instances: " + h + "\none:       " + w
		}
	}
	return ""
}

// A kafka sink writes every result and alert line to a Kafka topic, keyed
// by the group key, in the order they were emitted.
func TestKafkaSinkWritesResults(t *testing.T) {
	addr, _ := broker(t)
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC).UnixMilli()

	l, err := log.Open(t.TempDir(), log.Options{CleanupInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.CreateTopic("events", log.TopicConfig{Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	appendEvents(t, l, base, 0, 4, serviceKey)
	f, err := Parse("sink.yaml", []byte(fmt.Sprintf(kafkaPipeline, "{topic: events}",
		fmt.Sprintf("{type: stdout}, {type: kafka, brokers: [%q], topic: kp.results}", addr))))
	if err != nil {
		t.Fatal(err)
	}
	var stdout strings.Builder
	if err := Run(context.Background(), l, f, Options{UntilEnd: true, Stdout: &stdout, NoPin: true}); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if !strings.Contains(line, `"type":"stats"`) {
			want = append(want, line)
		}
	}

	if len(want) < 30 {
		t.Fatalf("the pipeline emitted only %d lines", len(want))
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("kp.results"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []string
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(got) < len(want) && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			got = append(got, string(r.Value))
			var key struct {
				Key map[string]string `json:"key"`
			}
			if err := json.Unmarshal(r.Value, &key); err != nil || string(r.Key) != fmt.Sprintf(`{"service":%q}`, key.Key["service"]) {
				t.Errorf("record key %s for %s", r.Key, r.Value)
			}
		})
	}
	if !slices.Equal(got, want) {
		t.Fatalf("kafka sink: %d lines, stdout %d; differences:\n%s", len(got), len(want), diffLines(got, want))
	}
}

// A checkpoint written for another definition of the pipeline stops the
// run with an error that says what to do, rather than mixing states.
func TestKafkaSourceRefusesAnotherDefinitionsCheckpoint(t *testing.T) {
	addr, bl := broker(t)
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC).UnixMilli()
	appendEvents(t, bl, base, 0, 2, serviceKey)
	var c collector
	r := instance(t, addr, &c, "{type: stdout}")
	waitFor(t, "the instance processed the events", 30*time.Second, func() bool {
		s := r.Pipelines()[0].Snapshot()
		return s != nil && s.Stats.Events == countEvents(bl)
	})
	r.Stop()
	if err := r.Wait(); err != nil {
		t.Fatal(err)
	}

	l, err := log.Open(t.TempDir(), log.Options{CleanupInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	src := fmt.Sprintf("{kafka: {brokers: [%q], topic: events, group: kg}}", addr)
	changed := strings.Replace(fmt.Sprintf(kafkaPipeline, src, "{type: stdout}"), "size: 1m", "size: 2m", 1)
	f, err := Parse("changed.yaml", []byte(changed))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = Run(ctx, l, f, Options{Stdout: io.Discard, NoPin: true})
	if err == nil || !strings.Contains(err.Error(), "written for another definition of pipeline kp") {
		t.Fatalf("run with a changed window over old checkpoints: %v", err)
	}
}

// bulkBroker serves a log holding about n events over 4 partitions, two
// services per partition; it returns the address and the event count.
func bulkBroker(tb testing.TB, n int) (string, int64) {
	l, err := log.Open(tb.TempDir(), log.Options{CleanupInterval: -1})
	if err != nil {
		tb.Fatal(err)
	}
	tp, err := l.CreateTopic("events", log.TopicConfig{Partitions: 4, Retention: -1})
	if err != nil {
		tb.Fatal(err)
	}
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC).UnixMilli()
	batch := make([]log.Record, 0, 1024)
	for p := int32(0); p < 4; p++ {
		part, _ := tp.Partition(p)
		for i := 0; i < n/4+1; i++ {
			s := kafkaServices[int(p)+4*(i%2)]
			v := fmt.Sprintf(`{"ts":%d,"service":%q,"ms":%d}`, base+int64(i)*10, s, i%500)
			batch = append(batch, log.Record{Key: []byte(s), Value: []byte(v)})
			if len(batch) == cap(batch) || i == n/4 {
				if _, err := part.Append(batch, log.AcksNone); err != nil {
					tb.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		if err := part.Flush(); err != nil {
			tb.Fatal(err)
		}
	}
	return serveLog(tb, l), countEvents(l)
}

// runBulk runs the pipeline from the Kafka source until it has processed
// total records.
func runBulk(tb testing.TB, addr string, total int64, timeout time.Duration) {
	il, err := log.Open(tb.TempDir(), log.Options{CleanupInterval: -1})
	if err != nil {
		tb.Fatal(err)
	}
	defer il.Close()
	src := fmt.Sprintf("{kafka: {brokers: [%q], topic: events, group: bulk}}", addr)
	f, err := Parse("bulk.yaml", []byte(fmt.Sprintf(kafkaPipeline, src, "{type: stdout}")))
	if err != nil {
		tb.Fatal(err)
	}
	r, err := Start(context.Background(), il, f, Options{Stdout: io.Discard, CheckpointInterval: -1, Workers: 2})
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { r.Stop(); r.Wait() }()
	deadline := time.Now().Add(timeout)
	for {
		s := r.Pipelines()[0].Snapshot()
		if s != nil && s.Stats.Records >= total {
			return
		}
		if time.Now().After(deadline) {
			var got int64
			if s != nil {
				got = s.Stats.Records
			}
			tb.Fatalf("processed %d of %d records in %v", got, total, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// Partitions holding far more than their feeds (4 batches of 1,024) on
// two workers: a partition whose worker is behind is paused, never
// blocking the others' deliveries (which the round needs).
func TestKafkaSourceMoreThanFeedsHold(t *testing.T) {
	addr, total := bulkBroker(t, 120000)
	runBulk(t, addr, total, 60*time.Second)
}

// BenchmarkKafkaSource: events/s a pipeline processes from a Kafka source
// (franz-go fetching from fastflow's listener on the same machine), group
// join and checkpoint-topic read included. One op is one event.
func BenchmarkKafkaSource(b *testing.B) {
	addr, total := bulkBroker(b, b.N)
	b.ResetTimer()
	runBulk(b, addr, total, 10*time.Minute)
	b.StopTimer()
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
}
