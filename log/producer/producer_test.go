package producer

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/partition"
)

func TestFieldsExtract(t *testing.T) {
	f := func(fields Fields, line, wantKey string, wantTs int64, wantBad bool) {
		t.Helper()
		key, ts, bad := fields.Extract([]byte(line))
		k := "<nil>"
		if key != nil {
			k = string(key)
		}
		if k != wantKey || ts != wantTs || bad != wantBad {
			t.Errorf("Extract(%s) = %s, %d, %v; want %s, %d, %v", line, k, ts, bad, wantKey, wantTs, wantBad)
		}
	}
	kf := Fields{KeyField: "service"}
	f(kf, `{"service":"payments","x":1}`, "payments", 0, false)
	f(kf, `{"service":"pay\"ments"}`, `pay"ments`, 0, false)
	f(kf, `{"service":42}`, "42", 0, false)
	f(kf, `{"service":true}`, "true", 0, false)
	f(kf, `{"service":{"a":1}}`, `{"a":1}`, 0, false)
	f(kf, `{"service":null}`, "<nil>", 0, false)
	f(kf, `{"other":1}`, "<nil>", 0, false)
	f(kf, `not json`, "<nil>", 0, false)
	f(kf, `[1,2]`, "<nil>", 0, false)
	// A repeated name: its last value, as pipelines read it.
	f(kf, `{"service":"a","service":"b"}`, "b", 0, false)
	f(kf, `{"service":"a","s\u0065rvice":"b"}`, "b", 0, false)
	// A dotted name is a path, as a pipeline's group_by host.name: so that a
	// pipeline grouped by a nested field can have its records keyed by it
	// (co-partitioning); a member named with the dots is taken first.
	nf := Fields{KeyField: "host.name", TimeField: "meta.t"}
	f(nf, `{"host":{"name":"h1","ip":1},"meta":{"t":1795341600123}}`, "h1", 1795341600123, false)
	f(nf, `{"host.name":"flat","host":{"name":"h1"},"meta":{"t":1795341600123}}`, "flat", 1795341600123, false)
	f(nf, `{"host":"h1","meta":[1795341600123]}`, "<nil>", 0, true)
	f(nf, `{"host":{"name":null},"meta":{"t":null}}`, "<nil>", 0, true)
	f(Fields{KeyField: "hosts.1.name"}, `{"hosts":[{"name":"a"},{"name":"b"}]}`, "b", 0, false)
	f(Fields{KeyField: "host.name"}, `{"host":{"name":"a","name":"b"}}`, "b", 0, false)
	tf := Fields{KeyField: "s", TimeField: "ts"}
	f(tf, `{"s":"a","ts":1795341600123}`, "a", 1795341600123, false)
	f(tf, `{"s":"a","ts":"2026-11-22T10:20:00.5Z"}`, "a", 1795342800500, false)
	f(tf, `{"s":"a","ts":"yesterday"}`, "a", 0, true)
	f(tf, `{"s":"a"}`, "a", 0, true)
	f(tf, `garbage`, "<nil>", 0, true)
	f(tf, `{"s":"a","ts":1,"ts":1795341600123}`, "a", 1795341600123, false)
	// RFC 3339's variants, as pipelines take them (pipeline.parseRFC3339Ms).
	f(tf, `{"s":"a","ts":"2026-11-22t10:20:00.5z"}`, "a", 1795342800500, false)
	f(tf, `{"s":"a","ts":"2026-11-22 10:20:00.1239+01:00"}`, "a", 1795339200123, false)
	f(tf, `{"s":"a","ts":"2026-11-22 10:20:00"}`, "a", 0, true)
	// fastjson parses more than JSON; a line whose key or time is not
	// JSON text (RFC 8259) is not JSON, as pipelines judge it: no key, no
	// time; an object or an array whole, as pipelines' group keys. Values
	// not read are not checked. An object or array key is its text as
	// written.
	for _, notJSON := range []string{`"a\0"`, "\"a\tb\"", `01`, `NaN`, `.5`, `1.`, `-`, `"\u00"`, `["\x",01]`, `{"a":NaN}`, "[\"\x17\\n\"]"} {
		f(kf, `{"service":`+notJSON+`}`, "<nil>", 0, false)
		f(tf, `{"s":"a","ts":`+notJSON+`}`, "<nil>", 0, true)
	}
	f(kf, `{"service":"a\u0062\n","x":"\0"}`, "ab\n", 0, false)
	f(kf, `{"service":{"k\u0031":[1.5e3,"q\"x"]}}`, `{"k\u0031":[1.5e3,"q\"x"]}`, 0, false)
	// A line nested deeper than fastjson parses is not parsed at all: its
	// refusal would cost ~1.8 ms and 1,210 allocations a line.
	deep := `{"service":"a","x":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + "}"
	f(kf, deep, "<nil>", 0, false)
	f(tf, deep, "<nil>", 0, true)
	if a := testing.AllocsPerRun(10, func() { kf.Extract([]byte(deep)) }); a > 1 { // the []byte
		t.Errorf("a line nested too deep: %v allocations", a)
	}
}

// newTopic creates a topic of n partitions in a fresh log, closed when
// the test ends.
func newTopic(t *testing.T, name string, n int32) *log.Topic {
	t.Helper()
	l, err := log.Open(t.TempDir(), log.Options{CleanupInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	tp, err := l.CreateTopic(name, log.TopicConfig{Partitions: n})
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

func TestProducerRoutesAndCounts(t *testing.T) {
	tp := newTopic(t, "events", 4)
	pr, err := New(tp, Options{Acks: log.AcksAll, Partition: -1, BatchRecords: 7})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		var key []byte
		if i%10 != 0 {
			key = fmt.Appendf(nil, "svc-%d", i%13)
		}
		if err := pr.Add(key, fmt.Appendf(nil, `{"i":%d}`, i), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := pr.Close(); err != nil {
		t.Fatal(err)
	}
	st := pr.Stats()
	if st.Records != 1000 || st.NoKey != 100 {
		t.Fatalf("stats %+v", st)
	}
	var total int64
	for id := int32(0); id < 4; id++ {
		p, _ := tp.Partition(id)
		if p.HighWatermark() != st.PerPartition[id] {
			t.Fatalf("partition %d holds %d, stats say %d", id, p.HighWatermark(), st.PerPartition[id])
		}
		total += p.HighWatermark()
		r, _ := p.NewReader(0)
		recs, _ := r.Read(make([]log.Record, 0, 2000))
		for _, rc := range recs {
			if rc.Key != nil && partition.ForKey(rc.Key, 4) != id {
				t.Fatalf("key %s on partition %d", rc.Key, id)
			}
		}
	}
	if total != 1000 {
		t.Fatalf("%d records stored", total)
	}
	// Null keys were spread, not all on one partition.
	for id, n := range st.PerPartition {
		if n == 0 {
			t.Fatalf("partition %d got nothing", id)
		}
	}
}

// TestProducerTakesUpAddedPartitions: partitions added while a producer
// runs are taken up at its next refresh: keys hash over the new count,
// null-key batches go round every partition.
func TestProducerTakesUpAddedPartitions(t *testing.T) {
	tp := newTopic(t, "events", 2)
	pr, err := New(tp, Options{Acks: log.AcksLeader, Partition: -1, BatchRecords: 8})
	if err != nil {
		t.Fatal(err)
	}
	add := func(from, to int) {
		for i := from; i < to; i++ {
			var key []byte
			if i%2 == 0 {
				key = fmt.Appendf(nil, "k%d", i%40)
			}
			if err := pr.Add(key, fmt.Appendf(nil, "%d", i), 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := pr.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	add(0, 400)
	if err := tp.AddPartitions(4); err != nil {
		t.Fatal(err)
	}
	pr.nextRefresh = time.Time{} // as if a second had passed
	pr.refresh()
	add(400, 800)
	if err := pr.Close(); err != nil {
		t.Fatal(err)
	}
	perPart, nullPerPart := make([]int, 4), make([]int, 4)
	for id := range int32(4) {
		p, _ := tp.Partition(id)
		r, err := p.NewReader(0)
		if err != nil {
			t.Fatal(err)
		}
		var recs []log.Record
		for r.Offset() < p.HighWatermark() {
			got, err := r.Read(make([]log.Record, 0, 1000))
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, got...)
		}
		r.Close()
		for _, rec := range recs {
			var i int
			fmt.Sscan(string(rec.Value), &i)
			n := int32(2)
			if i >= 400 {
				n = 4
			}
			if rec.Key != nil && partition.ForKey(rec.Key, n) != id {
				t.Fatalf("record %d (key %s) on partition %d, murmur2 over %d says %d", i, rec.Key, id, n, partition.ForKey(rec.Key, n))
			}
			if i >= 400 {
				perPart[id]++
				if rec.Key == nil {
					nullPerPart[id]++
				}
			}
		}
	}
	for id, n := range perPart {
		if n == 0 {
			t.Fatalf("after the partitions were added, partition %d got nothing: %v", id, perPart)
		}
	}
	for id, n := range nullPerPart { // the sticky partitioner goes round all four
		if n == 0 {
			t.Fatalf("after the partitions were added, partition %d got no record without a key: %v", id, nullPerPart)
		}
	}
	if st := pr.Stats(); st.Records != 800 || len(st.PerPartition) != 4 {
		t.Fatalf("stats %+v", st)
	}
}

// TestProducerHeaders: AddHeaders stores the record's headers, copied (the
// caller's buffers are reused at once), a null header value as null.
func TestProducerHeaders(t *testing.T) {
	tp := newTopic(t, "out", 1)
	pr, err := New(tp, Options{Acks: log.AcksLeader, Partition: -1, BatchRecords: 3})
	if err != nil {
		t.Fatal(err)
	}
	hv := []byte("p0")
	for i := range 10 {
		hv[1] = byte('0' + i)
		hs := []log.Header{{Key: []byte("src"), Value: hv}, {Key: []byte("none")}}
		if i%2 == 1 {
			hs = nil
		}
		if err := pr.AddHeaders([]byte("k"), fmt.Appendf(nil, "v%d", i), hs, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := pr.Close(); err != nil {
		t.Fatal(err)
	}
	p, _ := tp.Partition(0)
	r, _ := p.NewReader(0)
	recs, _ := r.Read(nil)
	if len(recs) != 10 {
		t.Fatalf("%d records", len(recs))
	}
	for i, rc := range recs {
		switch {
		case i%2 == 1 && len(rc.Headers) != 0:
			t.Fatalf("record %d: headers %q", i, rc.Headers)
		case i%2 == 0 && (len(rc.Headers) != 2 || string(rc.Headers[0].Key) != "src" || string(rc.Headers[0].Value) != fmt.Sprintf("p%d", i) ||
			string(rc.Headers[1].Key) != "none" || rc.Headers[1].Value != nil):
			t.Fatalf("record %d: headers %q", i, rc.Headers)
		}
	}
}

// TestProducerEmptyKeyIsNotNull: an empty key is stored as empty, not
// null, also as a batch's first record (its arena still empty).
func TestProducerEmptyKeyIsNotNull(t *testing.T) {
	tp := newTopic(t, "keys", 1)
	pr, err := New(tp, Options{Acks: log.AcksLeader, Partition: 0})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range [][]byte{{}, nil, {}} {
		if err := pr.Add(key, nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := pr.Close(); err != nil {
		t.Fatal(err)
	}
	p, _ := tp.Partition(0)
	r, _ := p.NewReader(0)
	defer r.Close()
	recs, _ := r.Read(nil)
	if len(recs) != 3 || recs[0].Key == nil || recs[1].Key != nil || recs[2].Key == nil {
		t.Fatalf("records %+v", recs)
	}
}
