package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/fastflow/fastflow/bench"
	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/partition"
)

// The tests run the real CLI: the test binary re-executes itself as
// fastflow when this variable is set.
const asCLI = "FASTFLOW_TEST_AS_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(asCLI) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// cli runs fastflow with args on data dir dir.
type cli struct {
	t   *testing.T
	dir string
}

func newCLI(t *testing.T) *cli { return &cli{t: t, dir: t.TempDir()} }

func (c *cli) cmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), asCLI+"=1", "FASTFLOW_DATA="+c.dir)
	return cmd
}

// cmdNoSpace is cmd run under a file-size limit of 0 (ulimit -S -f 0):
// every write that would grow a file fails with EFBIG, a full disk as a
// write sees it. The soft limit can be lifted again with unix.Prlimit on
// the command's pid (sh execs the command: the same process).
func (c *cli) cmdNoSpace(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "sh", append([]string{"-c", `ulimit -S -f 0 && exec "$0" "$@"`, os.Args[0]}, args...)...)
	cmd.Env = c.cmd(ctx).Env
	return cmd
}

type result struct {
	stdout, stderr string
	code           int
}

func (c *cli) run(stdin string, args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := c.cmd(ctx, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

// ok runs a command that must succeed.
func (c *cli) ok(stdin string, args ...string) string {
	c.t.Helper()
	r := c.run(stdin, args...)
	if r.code != 0 {
		c.t.Fatalf("fastflow %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

type consumed struct {
	Topic     string          `json:"topic"`
	Partition int32           `json:"partition"`
	Offset    int64           `json:"offset"`
	Timestamp int64           `json:"timestamp"`
	Key       *string         `json:"key"`
	Value     json.RawMessage `json:"value"`
}

func parseConsumed(t *testing.T, out string) []consumed {
	t.Helper()
	var recs []consumed
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var r consumed
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("consume printed a line that is not JSON: %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// events returns n JSON event lines keyed by "service", with malformed
// lines mixed in, and what produce should report.
func events(n int, seed uint64) (string, map[string][]string) {
	rng := rand.New(rand.NewPCG(seed, 2))
	services := []string{"payments", "search", "auth", "checkout", "inventory"}
	var b strings.Builder
	byKey := map[string][]string{}
	for i := 0; i < n; i++ {
		var line string
		switch {
		case i%97 == 13:
			line = "this line is not JSON"
		case i%89 == 7:
			line = fmt.Sprintf(`{"no_service":%d}`, i)
		default:
			s := services[rng.IntN(len(services))]
			line = fmt.Sprintf(`{"ts":%d,"service":%q,"status":%q,"response_time":%.1f}`,
				1795341600000+int64(i)*10, s, []string{"ok", "error"}[rng.IntN(2)], rng.Float64()*500)
			byKey[s] = append(byKey[s], line)
		}
		byKey[""] = append(byKey[""], line)
		b.WriteString(line + "\n")
		if i%500 == 0 {
			b.WriteString("\n") // empty lines are skipped
		}
	}
	return b.String(), byKey
}

func TestProduceConsumeRoundTrip(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "events", "--partitions", "6")
	in, byKey := events(5000, 1)
	file := filepath.Join(t.TempDir(), "events.jsonl")
	os.WriteFile(file, []byte(in), 0o644)
	out := c.ok("", "produce", "events", "--key-field", "service", "--timestamp-field", "ts", file)
	var sum produceSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("summary %q: %v", out, err)
	}
	noKey := 0
	for _, l := range byKey[""] {
		if !strings.Contains(l, `"service"`) {
			noKey++
		}
	}
	if sum.Records != 5000 || sum.NoKey != int64(noKey) || len(sum.Partitions) != 6 || sum.Bytes < int64(len(in))-6000 {
		t.Fatalf("summary %+v, want 5000 records, %d without key", sum, noKey)
	}

	recs := parseConsumed(t, c.ok("", "consume", "events"))
	if len(recs) != 5000 {
		t.Fatalf("consumed %d records", len(recs))
	}
	next := map[int32]int64{}
	gotByKey := map[string][]string{}
	perPart := map[string]int64{}
	for _, r := range recs {
		if r.Offset != next[r.Partition] {
			t.Fatalf("partition %d: offset %d, want %d (dense from 0)", r.Partition, r.Offset, next[r.Partition])
		}
		next[r.Partition]++
		perPart[fmt.Sprint(r.Partition)]++
		if r.Topic != "events" {
			t.Fatalf("topic %q", r.Topic)
		}
		if r.Key != nil {
			if want := partition.ForKey([]byte(*r.Key), 6); r.Partition != want {
				t.Fatalf("key %q on partition %d, murmur2 says %d", *r.Key, r.Partition, want)
			}
			gotByKey[*r.Key] = append(gotByKey[*r.Key], string(r.Value))
			var v struct{ Ts int64 }
			json.Unmarshal(r.Value, &v)
			if r.Timestamp != v.Ts {
				t.Fatalf("timestamp %d, field says %d", r.Timestamp, v.Ts)
			}
		} else if !strings.HasPrefix(string(r.Value), `"`) && !strings.Contains(string(r.Value), "no_service") {
			t.Fatalf("record without key: %s", r.Value)
		}
	}
	for p, n := range perPart {
		if sum.Partitions[p] != n {
			t.Fatalf("summary says partition %s got %d, consumed %d", p, sum.Partitions[p], n)
		}
	}
	// Per key, the same records in the same order.
	for k, lines := range byKey {
		if k == "" {
			continue
		}
		if strings.Join(gotByKey[k], "\n") != strings.Join(lines, "\n") {
			t.Fatalf("key %s: records differ", k)
		}
	}
	// --partition, --from OFFSET, --max.
	recs = parseConsumed(t, c.ok("", "consume", "events", "--partition", "2", "--from", "5", "--max", "3"))
	if len(recs) != 3 || recs[0].Partition != 2 || recs[0].Offset != 5 || recs[2].Offset != 7 {
		t.Fatalf("--partition 2 --from 5 --max 3: %+v", recs)
	}
	// --from OFFSET over partitions that keys filled unevenly: each from
	// that offset, a shorter one from its end (kafka-consumer-groups'
	// --to-offset), not an error.
	lo, hi := int64(math.MaxInt64), int64(0)
	for _, n := range sum.Partitions {
		lo, hi = min(lo, n), max(hi, n)
	}
	from := (lo + hi) / 2
	if lo >= from {
		t.Fatalf("partitions not uneven enough for --from: %v", sum.Partitions)
	}
	want := 0
	for _, n := range sum.Partitions {
		want += int(max(n-from, 0))
	}
	recs = parseConsumed(t, c.ok("", "consume", "events", "--from", strconv.FormatInt(from, 10)))
	if len(recs) != want {
		t.Fatalf("--from %d over partitions of %v: %d records, want %d", from, sum.Partitions, len(recs), want)
	}
	for _, r := range recs {
		if r.Offset < from {
			t.Fatalf("--from %d returned offset %d", from, r.Offset)
		}
	}
	// --from RFC3339: the first record at or after that time, per partition.
	at := time.UnixMilli(1795341600000 + 2500*10).UTC().Format(time.RFC3339Nano)
	for _, r := range parseConsumed(t, c.ok("", "consume", "events", "--from", at)) {
		if r.Key != nil && r.Timestamp < 1795341600000+2500*10 {
			t.Fatalf("--from %s returned a record at %d", at, r.Timestamp)
		}
	}
	if recs := parseConsumed(t, c.ok("", "consume", "events", "--from", "latest")); len(recs) != 0 {
		t.Fatalf("--from latest without --follow printed %d records", len(recs))
	}
}

func TestProduceFromStdinWithKeyAndPartition(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "t", "--partitions", "3")
	c.ok("a\nb\r\nc\n", "produce", "t", "--key", "fixed", "--acks", "1")
	c.ok("d\ne", "produce", "t", "--partition", "0", "--acks", "0") // no final newline
	recs := parseConsumed(t, c.ok("", "consume", "t"))
	want := partition.ForKey([]byte("fixed"), 3)
	var vals []string
	for _, r := range recs {
		vals = append(vals, string(r.Value))
		if string(r.Value) == `"d"` || string(r.Value) == `"e"` {
			if r.Partition != 0 || r.Key != nil {
				t.Fatalf("--partition 0: %+v", r)
			}
		} else if r.Partition != want || *r.Key != "fixed" {
			t.Fatalf("--key fixed: %+v", r)
		}
	}
	if len(recs) != 5 {
		t.Fatalf("consumed %v", vals)
	}
}

// TestProduceFullDisk: produce meets a write error (a file-size limit on
// the process, the kernel's EFBIG: a full disk as a write sees it) part
// way through a file. It exits 1 with a one-line error, and its summary
// counts exactly what the topic then holds: with acks=1 and all, the
// records of appends that succeeded; with acks=0, what it queued, less
// what it reports lost.
func TestProduceFullDisk(t *testing.T) {
	var in strings.Builder
	for i := range 40000 {
		fmt.Fprintf(&in, `{"ts":%d,"service":"svc-%d","pad":"%s"}`+"\n", 1795341600000+i, i%7, strings.Repeat("x", i%50))
	}
	for _, acks := range []string{"all", "1", "0"} {
		t.Run("acks="+acks, func(t *testing.T) {
			c := newCLI(t)
			c.ok("", "topic", "create", "events", "--partitions", "3")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := c.cmd(ctx, "produce", "events", "--key-field", "service", "--acks", acks)
			stdin, _ := cmd.StdinPipe()
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// The limit before any record arrives: 300 KiB a file, about
			// half of what each partition would get.
			lim := unix.Rlimit{Cur: 300 << 10, Max: unix.RLIM_INFINITY}
			if err := unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_FSIZE, &lim, nil); err != nil {
				t.Fatal(err)
			}
			io.WriteString(stdin, in.String()) // fails once produce stops reading
			stdin.Close()
			err := cmd.Wait()
			stderr := strings.TrimSpace(errb.String())
			lastLine := stderr[strings.LastIndex(stderr, "\n")+1:]
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(lastLine, "file too large") {
				t.Fatalf("produce: %v, stderr:\n%s", err, stderr)
			}
			var sum struct{ Records, Lost int64 }
			if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
				t.Fatalf("summary %q: %v", out.String(), err)
			}
			if (acks == "0") != (sum.Lost > 0) || sum.Records == 0 {
				t.Fatalf("summary %s", out.String())
			}
			held := int64(len(parseConsumed(t, c.ok("", "consume", "events"))))
			if held != sum.Records-sum.Lost {
				t.Fatalf("the topic holds %d records; produce's summary: %s", held, out.String())
			}
			t.Logf("%s; %s", strings.TrimSpace(out.String()), lastLine)
		})
	}
}

// TestConsumeGroupFullDisk: a group consumer that cannot write its
// membership (no byte may be written: ulimit -f 0, a full disk as a write
// sees it) fails with the error, where it used to join with an empty
// member file, subscribed to nothing, and exit 0 having printed nothing.
// consume prints a JSON line for any record: a value that is JSON embedded
// as it is, one that is not as a string of its text, including those
// fastjson's validator takes but a strict parser does not (a raw control
// character before an escape in a string).
func TestConsumePrintsJSONForAnyValue(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "events", "--partitions", "1")
	values := []string{`{"a":"ok\n"}`, "{\"a\":\"\x17\\n\"}", "{\"a\\n\x01\":1}", "[\"\x1f\\\\\"]", `{"a":NaN}`, "not json", "{\"a\":\"\xff\"}"}
	file := filepath.Join(t.TempDir(), "values.jsonl")
	os.WriteFile(file, []byte(strings.Join(values, "\n")+"\n"), 0o644)
	c.ok("", "produce", "events", file)
	recs := parseConsumed(t, c.ok("", "consume", "events")) // each line by encoding/json
	if len(recs) != len(values) {
		t.Fatalf("%d records consumed, %d produced", len(recs), len(values))
	}
	for i, r := range recs {
		want := strings.ToValidUTF8(values[i], "\ufffd")
		if json.Valid([]byte(values[i])) && utf8.ValidString(values[i]) { // JSON text is UTF-8
			if string(r.Value) != want {
				t.Errorf("record %d: value %s, want %s embedded", i, r.Value, want)
			}
			continue
		}
		var s string
		if err := json.Unmarshal(r.Value, &s); err != nil || s != want {
			t.Errorf("record %d: value %s, want the string %q", i, r.Value, want)
		}
	}
}

func TestConsumeGroupFullDisk(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "events", "--partitions", "2")
	c.ok("a\nb\nc\n", "produce", "events")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := c.cmdNoSpace(ctx, "consume", "events", "--group", "g")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(errb.String(), "join group g") ||
		!strings.Contains(errb.String(), "file too large") {
		t.Fatalf("consume --group under ulimit -f 0: %v, stdout %q, stderr %q", err, out.String(), errb.String())
	}
	// With space, the group consumes everything.
	if recs := parseConsumed(t, c.ok("", "consume", "events", "--group", "g")); len(recs) != 3 {
		t.Fatalf("then consumed %d records", len(recs))
	}
}

// TestConsumeGroupKillLosesNothing: `consume --group` commits what it
// printed, after printing it; killed with SIGKILL at random moments and
// started again, the group's runs together print every record, some twice
// (those printed after the last commit), none skipped.
func TestConsumeGroupKillLosesNothing(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "events", "--partitions", "3")
	const n = 30000
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, "{\"i\":%d,\"pad\":\"%s\"}\n", i, strings.Repeat("x", 40))
	}
	c.ok(in.String(), "produce", "events")
	seen := map[int32]map[int64]bool{}
	note := func(lines []string) {
		for _, r := range parseConsumed(t, strings.Join(lines, "\n")) {
			if seen[r.Partition] == nil {
				seen[r.Partition] = map[int64]bool{}
			}
			seen[r.Partition][r.Offset] = true
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for round := range 3 {
		cmd := c.cmd(ctx, "consume", "events", "--group", "g", "--follow")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The consumer runs ahead of this reader by what the pipe and its
		// buffer hold; it commits only what it wrote.
		rd := bufio.NewReader(stdout)
		var lines []string
		killAt := 500 + rand.IntN(4000)
		for len(lines) < killAt {
			l, err := rd.ReadString('\n')
			if err != nil {
				t.Fatalf("round %d: %v after %d lines", round, err, len(lines))
			}
			lines = append(lines, strings.TrimSuffix(l, "\n"))
		}
		cmd.Process.Signal(syscall.SIGKILL)
		// What it wrote before it died is still in the pipe; a line the
		// kill cut short was not committed.
		for {
			l, err := rd.ReadString('\n')
			if err != nil {
				break
			}
			lines = append(lines, strings.TrimSuffix(l, "\n"))
		}
		cmd.Wait()
		note(lines)
		t.Logf("round %d: killed after %d lines", round, len(lines))
	}
	note(strings.Split(strings.TrimSpace(c.ok("", "consume", "events", "--group", "g")), "\n"))
	total := 0
	for p, offs := range seen {
		for o := range int64(len(offs)) {
			if !offs[o] {
				t.Fatalf("partition %d offset %d never printed: the group committed past it", p, o)
			}
		}
		total += len(offs)
	}
	if total != n {
		t.Fatalf("%d records printed, %d produced", total, n)
	}
}

// TestTopicDeleteWhileServed: `topic delete` refuses a topic that a
// running serve writes (serve would go on acknowledging records into
// deleted files), naming serve's pid; a topic serve has open but does not
// write is deleted, and serve's next POST to it is a 404, not an error
// about a missing lock file.
func TestTopicDeleteWhileServed(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "written", "--partitions", "2")
	c.ok("", "topic", "create", "read", "--partitions", "2")
	base := startHTTP(t, c, "serve")
	post := func(topic string) int {
		t.Helper()
		resp, err := http.Post(base+"/topics/"+topic+"/records", "application/x-ndjson", strings.NewReader(`{"a":1}`+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("written"); code != http.StatusOK {
		t.Fatalf("POST: %d", code)
	}
	r := c.run("", "topic", "delete", "written")
	if r.code != 1 || !strings.Contains(r.stderr, "written by another process (pid ") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Fatalf("topic delete of a topic serve writes: exit %d, %q", r.code, r.stderr)
	}
	recs := parseConsumed(t, c.ok("", "consume", "written"))
	if len(recs) != 1 {
		t.Fatalf("after the refused delete the topic holds %d records", len(recs))
	}
	// produce waits for the partition serve writes (10 s), then says how
	// to produce.
	r = c.run(`{"a":2}`+"\n", "produce", "written", "--partition", fmt.Sprint(recs[0].Partition))
	if r.code != 1 || !strings.Contains(r.stderr, "written by another process (pid ") ||
		!strings.Contains(r.stderr, "send records through it (POST /topics/written/records, or its Kafka listener)") {
		t.Fatalf("produce to a topic serve writes: exit %d, %q", r.code, r.stderr)
	}
	if code := post("written"); code != http.StatusOK {
		t.Fatalf("POST after the refused delete: %d", code)
	}

	if body, err := getBody(base + "/api/v1/topics"); err != nil || !strings.Contains(body, `"read"`) {
		t.Fatalf("GET /api/v1/topics: %v %s", err, body) // serve opens both topics
	}
	c.ok("", "topic", "delete", "read")
	if code := post("read"); code != http.StatusNotFound {
		t.Fatalf("POST to a topic deleted under serve: %d, want 404", code)
	}
}

// TestFollowStopsWhenTopicDeleted: consume --follow, with a group or
// without, stops with a one-line error when another process deletes its
// topic, instead of waiting for ever for records that will not come.
func TestFollowStopsWhenTopicDeleted(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "gone", "--partitions", "2")
	c.ok("a\nb\n", "produce", "gone")
	var followers []*exec.Cmd
	var errs []*syncBuffer
	for _, args := range [][]string{{"consume", "gone", "--follow"}, {"consume", "gone", "--follow", "--group", "g"}} {
		cmd := c.cmd(t.Context(), args...)
		var e syncBuffer
		cmd.Stderr = &e
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		followers, errs = append(followers, cmd), append(errs, &e)
	}
	waitFor(t, func() bool {
		return strings.Contains(c.run("", "group", "describe", "g").stdout, `"committed":2`)
	})
	c.ok("", "topic", "delete", "gone")
	for i, cmd := range followers {
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(errs[i].String(), `unknown topic: "gone" was deleted`) {
				t.Fatalf("follower %d after the delete: %v: %s", i, err, errs[i].String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("follower %d went on after its topic was deleted", i)
		}
	}
}

// TestTopicAddPartitions: topic alter --partitions adds partitions, as
// kafka-topics --alter --partitions does, never removes any; a group
// consumer that follows the topic takes the new partitions up, and a
// following pipeline stops with an error saying to restart it over them.
func TestTopicAddPartitions(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "events", "--partitions", "2")
	c.ok(`{"ts":1795341600000,"service":"a"}`+"\n", "produce", "events", "--partition", "0")
	f := c.follow(t.Context(), "events", "--group", "g", "--follow")
	waitFor(t, func() bool { return len(f.got()) == 1 })
	cfg := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(cfg, []byte(`pipelines:
  - name: p
    source: {topic: events}
    time: {field: ts, unit: ms}
    window: {type: tumbling, size: 1m}
    metrics: [{name: n, agg: count}]
`), 0o644)
	run := c.cmd(t.Context(), "run", cfg, "--checkpoint-interval", "200ms", "--log-level", "info")
	var errs syncBuffer
	run.Stderr = &errs
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(errs.String(), "pipeline running") })
	base := startHTTP(t, c, "serve")
	post := func(partition int) int {
		t.Helper()
		resp, err := http.Post(fmt.Sprintf("%s/topics/events/records?partition=%d", base, partition), "application/x-ndjson", strings.NewReader(`{"ts":1795341600002}`+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(2); code != http.StatusBadRequest {
		t.Fatalf("POST to partition 2 of 2: %d", code)
	}

	var d log.TopicInfo
	json.Unmarshal([]byte(c.ok("", "topic", "alter", "events", "--partitions", "4")), &d)
	if d.Partitions != 4 || len(d.Parts) != 0 {
		t.Fatalf("after alter --partitions 4: %+v", d)
	}
	if r := c.run("", "topic", "alter", "events", "--partitions", "3"); r.code != 2 || !strings.Contains(r.stderr, "can only be added") {
		t.Fatalf("alter --partitions 3: exit %d: %s", r.code, r.stderr)
	}
	c.ok(`{"ts":1795341600001,"service":"b"}`+"\n", "produce", "events", "--partition", "3")
	waitFor(t, func() bool { return len(f.got()) == 2 })
	if r := f.got()[1]; r.Partition != 3 || r.Offset != 0 {
		t.Fatalf("follower read %+v from the new partition", r)
	}
	done := make(chan error, 1)
	go func() { done <- run.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(errs.String(), "topic events has 4 partitions, 2 when the pipeline started: restart it") {
			t.Fatalf("run after the growth: %v\n%s", err, errs.String())
		}
	case <-time.After(30 * time.Second):
		run.Process.Kill()
		t.Fatalf("run went on over 2 of 4 partitions:\n%s", errs.String())
	}
	// serve, which had the topic open, takes the new partitions up.
	if code := post(2); code != http.StatusOK {
		t.Fatalf("POST to partition 2 of 4: %d", code)
	}
	// Restarted, it reads them all.
	if out := c.ok("", "run", cfg, "--until-end"); !strings.Contains(out, `"type":"stats","pipeline":"p","records":3,`) {
		t.Fatalf("run over 4 partitions: %s", out)
	}
}

func TestCLIErrors(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "events", "--partitions", "2")
	f := func(code int, stderr string, args ...string) {
		t.Helper()
		r := c.run("", args...)
		if r.code != code || !strings.Contains(r.stderr, stderr) {
			t.Errorf("fastflow %s: exit %d, stderr %q; want exit %d and %q", strings.Join(args, " "), r.code, r.stderr, code, stderr)
		}
		if lines := strings.Count(strings.TrimSpace(r.stderr), "\n"); code != 0 && lines != 0 {
			t.Errorf("fastflow %s: error is not one line: %q", strings.Join(args, " "), r.stderr)
		}
	}
	f(2, "unknown flag: --bogus", "consume", "events", "--bogus")
	f(2, "unknown command", "frobnicate")
	f(2, "needs a subcommand", "topic")
	f(2, "--partitions is required", "topic", "create", "x")
	f(2, "partitions must be between", "topic", "create", "x", "--partitions", "0")
	f(2, "invalid topic name", "topic", "create", "bad/name", "--partitions", "1")
	f(2, "cleanup_policy must be", "topic", "create", "x", "--partitions", "1", "--cleanup", "shred")
	f(2, "invalid --retention", "topic", "create", "x", "--partitions", "1", "--retention", "soon")
	f(2, "invalid --retention-bytes", "topic", "create", "x", "--partitions", "1", "--retention-bytes", "lots")
	f(1, "already exists", "topic", "create", "events", "--partitions", "1")
	f(1, `topic "nope" does not exist`, "produce", "nope")
	f(1, `topic "nope" does not exist`, "consume", "nope")
	f(1, `topic "nope" does not exist`, "topic", "describe", "nope")
	f(2, "invalid --acks", "produce", "events", "--acks", "2")
	f(2, "cannot be used together", "produce", "events", "--key", "a", "--key-field", "b")
	f(2, "topic events has partitions 0 to 1", "produce", "events", "--partition", "5")
	f(2, "invalid start", "consume", "events", "--from", "yesterday")
	f(2, "cannot be used with --group", "consume", "events", "--group", "g", "--partition", "1")
	f(1, "no committed offset", "consume", "events", "--group", "g", "--from", "none")
	f(1, "does not exist", "group", "describe", "nobody")
	f(2, "--topic and --to are required", "group", "reset", "g")
	f(1, "no such file", "produce", "events", "/does/not/exist")
	f(2, "invalid --log-level", "topic", "list", "--log-level", "loud")

	// fastflow run: configuration errors name file, line and key, exit 2.
	dir := t.TempDir()
	cfg := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	good := "pipelines:\n  - name: p\n    source: {topic: events}\n    window: {type: tumbling, size: 1m}\n    metrics:\n      - {name: n, agg: count}\n"
	f(2, "bad.yaml:6: pipelines[0].metrics[0].agg: unknown \"p95\"", "run", cfg("bad.yaml", strings.Replace(good, "agg: count", "agg: p95", 1)))
	f(2, "missing.yaml:3: pipelines[0].source.topic: topic \"nope\" does not exist", "run", cfg("missing.yaml", strings.Replace(good, "topic: events", "topic: nope", 1)))
	f(2, "unknown key", "run", cfg("key.yaml", good+"    colour: blue\n"))
	f(1, "no such file", "run", filepath.Join(dir, "absent.yaml"))
	f(2, "invalid --checkpoint-interval 0s", "run", cfg("good.yaml", good), "--checkpoint-interval", "0")
	f(2, "invalid argument", "run", cfg("good.yaml", good), "--checkpoint-interval", "often")
	f(2, "accepts 1 arg", "run")
	f(2, "invalid --allow-origin", "serve", "--allow-origin", "app.example.com", "--http", "127.0.0.1:0")
	f(2, "invalid --duration -1s", "demo", "--duration", "-1s", "--http", "127.0.0.1:0") // ran until interrupted
	f(2, "--rate and --speed must be positive", "demo", "--rate", "0", "--http", "127.0.0.1:0")
	// serve: two metrics whose /metrics gauges would share a name.
	twins := good + strings.Replace(good, "pipelines:\n  - name: p", "  - name: P", 1)
	twins = strings.Replace(twins, "name: P", "name: p-q", 1)
	twins = strings.Replace(twins, "  - name: p\n", "  - name: p_q\n", 1)
	f(2, "twins.yaml:11: pipelines[1].metrics[0].name: p-q.n would be fastflow_p_q_n in /metrics, as p_q.n is: rename one",
		"serve", "--config", cfg("twins.yaml", twins), "--http", "127.0.0.1:0")
}

func TestOversizedLines(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "small", "--partitions", "1", "--max-record-bytes", "100")
	in := "short 1\n" + strings.Repeat("x", 101) + "\nshort 2\n" + strings.Repeat("y", 3<<20) + "\nshort 3\n"
	r := c.run(in, "produce", "small")
	if r.code != 1 || !strings.Contains(r.stderr, "2 lines over max_record_bytes (100)") || !strings.Contains(r.stderr, "first: line 2") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	var sum produceSummary
	json.Unmarshal([]byte(r.stdout), &sum)
	if sum.Records != 3 || sum.TooLarge != 2 {
		t.Fatalf("summary %+v", sum)
	}
	recs := parseConsumed(t, c.ok("", "consume", "small"))
	if len(recs) != 3 || string(recs[2].Value) != `"short 3"` {
		t.Fatalf("stored %+v", recs)
	}
	// A key extracted from the line counts too.
	c.ok("", "topic", "create", "tight", "--partitions", "1", "--max-record-bytes", "30")
	r = c.run(`{"k":"aaaaaaaaaa","v":1}`+"\n", "produce", "tight", "--key-field", "k")
	if r.code != 1 || !strings.Contains(r.stderr, "line 1 is over max_record_bytes (30) of tight: not produced") {
		t.Fatalf("key+value over the limit: exit %d %q", r.code, r.stderr)
	}
}

func TestTopicCommands(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "b", "--partitions", "2", "--retention", "7d", "--retention-bytes", "1GiB")
	c.ok("", "topic", "create", "a", "--partitions", "1", "--cleanup", "compact", "--segment-bytes", "64KiB")
	out := c.ok("", "topic", "list")
	if out != `{"topic":"a","partitions":1}`+"\n"+`{"topic":"b","partitions":2}`+"\n" {
		t.Fatalf("topic list: %q", out)
	}
	c.ok("1\n2\n3\n", "produce", "b", "--partition", "1")
	var d log.TopicInfo
	json.Unmarshal([]byte(c.ok("", "topic", "describe", "b")), &d)
	if d.Config.Retention != "168h0m0s" || d.Config.RetentionBytes != 1<<30 || len(d.Parts) != 2 || d.Parts[1].HighWatermark != 3 || d.Parts[1].SizeBytes == 0 {
		t.Fatalf("describe: %+v %+v", d.Config, d.Parts)
	}
	idB := d.ID
	json.Unmarshal([]byte(c.ok("", "topic", "describe", "a")), &d)
	if len(idB) != 22 || len(d.ID) != 22 || d.ID == idB {
		t.Fatalf("topic ids %q and %q: want two of 22 characters (16 bytes in base64)", idB, d.ID)
	}
	if d.Config.Cleanup != "compact" || d.Config.SegmentBytes != 64<<10 {
		t.Fatalf("describe a: %+v", d.Config)
	}
	c.ok("", "topic", "delete", "b")
	if out := c.ok("", "topic", "list"); out != `{"topic":"a","partitions":1}`+"\n" {
		t.Fatalf("after delete: %q", out)
	}
	if r := c.run("", "consume", "b"); r.code != 1 {
		t.Fatalf("consume deleted topic: %+v", r)
	}
	// A topic whose topic.json is damaged on disk is reported, and the
	// others are still listed.
	c.ok("", "topic", "create", "c", "--partitions", "3")
	if err := os.WriteFile(filepath.Join(c.dir, "topics", "a", "topic.json"), []byte(`{"partitions":`), 0o644); err != nil {
		t.Fatal(err)
	}
	r := c.run("", "topic", "list")
	if r.code != 1 || r.stdout != `{"topic":"c","partitions":3}`+"\n" || !strings.Contains(r.stderr, `topic "a"`) || !strings.Contains(r.stderr, "1 topic(s) could not be read: a") {
		t.Fatalf("topic list with a's topic.json damaged: %+v", r)
	}
}

// TestProduceAppliesRetentionAndCompaction: a topic written only by
// `fastflow produce` runs, each shorter than the background cleaner's
// minute, still keeps to its retention and is compacted, as a Kafka
// broker's topic would be; consumers reading below the new start reset.
func TestProduceAppliesRetentionAndCompaction(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "logs", "--partitions", "1", "--retention-bytes", "64KiB", "--segment-bytes", "16KiB")
	c.ok("", "topic", "create", "users", "--partitions", "1", "--cleanup", "compact", "--segment-bytes", "16KiB")
	line := func(i int) string {
		return fmt.Sprintf(`{"user":"u%d","n":%d,"pad":"%s"}`, i%20, i, strings.Repeat("x", 80))
	}
	var all []string
	for run := 0; run < 5; run++ {
		var b strings.Builder
		for i := 0; i < 1000; i++ {
			l := line(run*1000 + i)
			all = append(all, l)
			b.WriteString(l + "\n")
		}
		c.ok(b.String(), "produce", "logs")
		c.ok(b.String(), "produce", "users", "--key-field", "user")
	}
	var d log.TopicInfo
	json.Unmarshal([]byte(c.ok("", "topic", "describe", "logs")), &d)
	p := d.Parts[0]
	// Each run's 1,000 records (~110 KB) go in one batch, which a segment
	// never splits: 64 KiB are kept in the last one or two.
	if p.HighWatermark != 5000 || p.LogStartOffset < 3000 {
		t.Fatalf("retention-bytes 64KiB, 16KiB segments, after 5 produce runs: %+v", p)
	}
	recs := parseConsumed(t, c.ok("", "consume", "logs", "--from", "earliest"))
	if len(recs) != int(5000-p.LogStartOffset) || recs[0].Offset != p.LogStartOffset || string(recs[len(recs)-1].Value) != all[4999] {
		t.Fatalf("consume from earliest after retention: %d records from %d", len(recs), recs[0].Offset)
	}
	r := c.run("", "consume", "logs", "--from", "0")
	if recs := parseConsumed(t, r.stdout); r.code != 0 || len(recs) == 0 || recs[0].Offset != p.LogStartOffset || !strings.Contains(r.stderr, "no longer in the log") {
		t.Fatalf("consume --from 0 below the log start %d: %+v", p.LogStartOffset, r)
	}
	// Compaction: the latest record of each of the 20 users survives.
	latest := map[string]string{}
	recs = parseConsumed(t, c.ok("", "consume", "users", "--from", "earliest"))
	for _, r := range recs {
		latest[*r.Key] = string(r.Value)
	}
	if len(recs) >= 4000 || len(latest) != 20 || latest["u19"] != all[4999] {
		t.Fatalf("compacted topic: %d records, %d keys, u19 = %s", len(recs), len(latest), latest["u19"])
	}
}

// TestTopicAlter: `topic alter` changes the settings given and keeps the
// others, refuses bad values with exit 2 and changes nothing then, and the
// next writer follows the new settings (here produce's retention pass).
func TestTopicAlter(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "logs", "--partitions", "1", "--segment-bytes", "16KiB", "--retention", "7d")
	var b strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&b, `{"n":%d,"pad":"%s"}`+"\n", i, strings.Repeat("x", 80))
	}
	c.ok(b.String(), "produce", "logs")
	var d log.TopicInfo
	json.Unmarshal([]byte(c.ok("", "topic", "alter", "logs", "--retention-bytes", "64KiB", "--max-record-bytes", "2MiB")), &d)
	if d.Config.RetentionBytes != 64<<10 || d.Config.MaxRecordBytes != 2<<20 || d.Config.Retention != "168h0m0s" || d.Config.SegmentBytes != 16<<10 {
		t.Fatalf("after alter: %+v", d.Config)
	}
	for _, bad := range []struct{ args, msg string }{
		{"", "nothing to change"},
		{"--segment-bytes 1", "segment_bytes must be between"},
		{"--retention soon", `invalid --retention: "soon"`},
		{"--cleanup shred", "cleanup_policy"},
		{"--partitions 1", "partitions can only be added"},
	} {
		r := c.run("", append([]string{"topic", "alter", "logs"}, strings.Fields(bad.args)...)...)
		if r.code != 2 || !strings.Contains(r.stderr, bad.msg) || strings.Count(r.stderr, "\n") != 1 {
			t.Fatalf("topic alter logs %s: exit %d, %q; want exit 2 and one line with %q", bad.args, r.code, r.stderr, bad.msg)
		}
	}
	if r := c.run("", "topic", "alter", "nope", "--retention", "1h"); r.code != 1 || !strings.Contains(r.stderr, `topic "nope" does not exist`) {
		t.Fatalf("alter an unknown topic: %+v", r)
	}
	c.ok(b.String(), "produce", "logs")
	json.Unmarshal([]byte(c.ok("", "topic", "describe", "logs")), &d)
	if p := d.Parts[0]; d.Config.RetentionBytes != 64<<10 || p.HighWatermark != 2000 || p.LogStartOffset == 0 {
		t.Fatalf("retention-bytes 64KiB after alter, 2000 records: %+v %+v", d.Config, p)
	}
}

func TestGroupCommitResumeReset(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "g", "--partitions", "2")
	var in strings.Builder
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&in, "%d\n", i)
	}
	c.ok(in.String(), "produce", "g")
	first := parseConsumed(t, c.ok("", "consume", "g", "--group", "app", "--max", "30"))
	rest := parseConsumed(t, c.ok("", "consume", "g", "--group", "app"))
	if len(first) != 30 || len(first)+len(rest) != 100 {
		t.Fatalf("group read %d then %d", len(first), len(rest))
	}
	seen := map[string]bool{}
	for _, r := range append(first, rest...) {
		k := fmt.Sprintf("%d/%d", r.Partition, r.Offset)
		if seen[k] {
			t.Fatalf("%s read twice", k)
		}
		seen[k] = true
	}
	if again := parseConsumed(t, c.ok("", "consume", "g", "--group", "app")); len(again) != 0 {
		t.Fatalf("after commit, read %d again", len(again))
	}
	var rows []log.GroupPartition
	for _, line := range strings.Split(strings.TrimSpace(c.ok("", "group", "describe", "app")), "\n") {
		var r log.GroupPartition
		json.Unmarshal([]byte(line), &r)
		rows = append(rows, r)
	}
	if len(rows) != 2 || *rows[0].Lag != 0 || *rows[0].Committed+*rows[1].Committed != 100 {
		t.Fatalf("describe: %s", c.ok("", "group", "describe", "app"))
	}
	if out := c.ok("", "group", "list"); !strings.Contains(out, `"group":"app"`) || !strings.Contains(out, `"state":"Empty"`) {
		t.Fatalf("group list: %q", out)
	}
	c.ok("", "group", "reset", "app", "--topic", "g", "--to", "earliest")
	if all := parseConsumed(t, c.ok("", "consume", "g", "--group", "app")); len(all) != 100 {
		t.Fatalf("after reset to earliest read %d", len(all))
	}
	c.ok("", "group", "reset", "app", "--topic", "g", "--to", "45")
	got := parseConsumed(t, c.ok("", "consume", "g", "--group", "app"))
	for _, r := range got {
		if r.Offset < 45 {
			t.Fatalf("after reset to 45 read offset %d", r.Offset)
		}
	}
	c.ok("", "group", "reset", "app", "--topic", "g", "--to", "latest")
	if n := parseConsumed(t, c.ok("", "consume", "g", "--group", "app")); len(n) != 0 {
		t.Fatalf("after reset to latest read %d", len(n))
	}
	// Reset is refused while a member consumes the topic.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	follower := c.cmd(ctx, "consume", "g", "--group", "app", "--follow")
	follower.Start()
	waitFor(t, func() bool {
		return strings.Contains(c.ok("", "group", "list"), `"members":1`)
	})
	if r := c.run("", "group", "reset", "app", "--topic", "g", "--to", "earliest"); r.code != 1 || !strings.Contains(r.stderr, "active members") {
		t.Fatalf("reset with an active member: %+v", r)
	}
	follower.Process.Signal(syscall.SIGTERM)
	follower.Wait()
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	waitForOr(t, cond, func() string { return "" })
}

// waitForOr is waitFor that, on a timeout, says what was seen instead.
func waitForOr(t *testing.T, cond func() bool, seen func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met in 30s; %s", seen())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// follower is a `consume --follow` process whose output the test reads.
type follower struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	recs []consumed
	done chan struct{}
}

func (c *cli) follow(ctx context.Context, args ...string) *follower {
	f := &follower{cmd: c.cmd(ctx, append([]string{"consume"}, args...)...), done: make(chan struct{})}
	out, _ := f.cmd.StdoutPipe()
	f.cmd.Stderr = os.Stderr
	if err := f.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() {
		defer close(f.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var r consumed
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				f.mu.Lock()
				f.recs = append(f.recs, r)
				f.mu.Unlock()
			}
		}
	}()
	return f
}

func (f *follower) got() []consumed {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]consumed(nil), f.recs...)
}

// TestFollowAcrossProcesses: consume --follow in one process sees what
// produce processes append, without polling (inotify).
func TestFollowAcrossProcesses(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "live", "--partitions", "2")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := c.follow(ctx, "live", "--follow")
	for i := 0; i < 5; i++ {
		c.ok(fmt.Sprintf("line %d\n", i), "produce", "live", "--partition", fmt.Sprint(i%2))
	}
	waitFor(t, func() bool { return len(f.got()) == 5 })
	f.cmd.Process.Signal(syscall.SIGTERM)
	<-f.done
	if err := f.cmd.Wait(); err != nil {
		t.Fatalf("consume --follow after SIGTERM: %v", err)
	}
}

// TestGroupSplitsAcrossProcesses: two consume --group processes split the
// partitions, each record is printed by exactly one of them, and when one
// is killed with SIGKILL the other takes its partitions over from its
// commits.
func TestGroupSplitsAcrossProcesses(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "work", "--partitions", "4")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := c.follow(ctx, "work", "--group", "pool", "--follow")
	waitFor(t, func() bool { return strings.Contains(c.ok("", "group", "list"), `"members":1`) })
	b := c.follow(ctx, "work", "--group", "pool", "--follow")
	// Settled: the four partitions are held by two different members.
	waitFor(t, func() bool {
		owners := map[string]int{}
		for _, line := range strings.Split(strings.TrimSpace(c.ok("", "group", "describe", "pool")), "\n") {
			var r log.GroupPartition
			json.Unmarshal([]byte(line), &r)
			if r.Member != "" {
				owners[r.Member]++
			}
		}
		return len(owners) == 2 && owners[maxKey(owners)] == 2
	})
	produce := func(from, n int) {
		var in strings.Builder
		for i := from; i < from+n; i++ {
			fmt.Fprintf(&in, `{"id":%d}`+"\n", i)
		}
		c.ok(in.String(), "produce", "work", "--key-field", "id")
	}
	produce(0, 400)
	total := func(fs ...*follower) int {
		n := 0
		for _, f := range fs {
			n += len(f.got())
		}
		return n
	}
	waitFor(t, func() bool { return total(a, b) >= 400 })
	time.Sleep(100 * time.Millisecond)
	seen := map[string]int{}
	parts := map[*follower]map[int32]bool{a: {}, b: {}}
	for _, f := range []*follower{a, b} {
		for _, r := range f.got() {
			seen[fmt.Sprintf("%d/%d", r.Partition, r.Offset)]++
			parts[f][r.Partition] = true
		}
	}
	if len(seen) != 400 || total(a, b) != 400 {
		t.Fatalf("%d distinct records, %d printed; want 400 each", len(seen), total(a, b))
	}
	if len(parts[a]) != 2 || len(parts[b]) != 2 {
		t.Fatalf("partitions: a %v, b %v", parts[a], parts[b])
	}
	// Kill b: a takes its partitions, from b's commits.
	b.cmd.Process.Signal(syscall.SIGKILL)
	b.cmd.Wait()
	produce(400, 400)
	waitFor(t, func() bool { return total(a, b) >= 800 })
	time.Sleep(100 * time.Millisecond)
	got := map[string]int{}
	for _, f := range []*follower{a, b} {
		for _, r := range f.got() {
			got[fmt.Sprintf("%d/%d", r.Partition, r.Offset)]++
		}
	}
	if len(got) != 800 {
		t.Fatalf("%d distinct records after failover", len(got))
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	<-a.done
	a.cmd.Wait()
	var d []string
	for _, line := range strings.Split(strings.TrimSpace(c.ok("", "group", "describe", "pool")), "\n") {
		var r log.GroupPartition
		json.Unmarshal([]byte(line), &r)
		if r.Lag == nil || *r.Lag != 0 {
			d = append(d, line)
		}
	}
	if len(d) > 0 {
		t.Fatalf("lag left after the survivor committed: %v", d)
	}
}

func maxKey(m map[string]int) string {
	best := ""
	for k := range m {
		if best == "" || m[k] > m[best] {
			best = k
		}
	}
	return best
}

// TestBenchSummaryForPeople: the table printed on a terminal says what
// the process runs on and what the machine does not tell: cpuid's L3 of
// -1 (some VMs) printed as 16 EiB, and cpuid's core counts, a
// hypervisor's, were the only ones shown.
func TestBenchSummaryForPeople(t *testing.T) {
	s := &bench.Summary{Events: 1000, Partitions: 3, Workers: 2, Acks: "1", Batch: 1024}
	s.Hardware = bench.Hardware{CPU: "Some CPU", PhysicalCores: 254, LogicalCores: 254, CPUs: 2, Cores: 2,
		GOMAXPROCS: 2, CacheLine: 64, L1D: 48 << 10, L2: 1 << 20, L3: -1}
	var b bytes.Buffer
	printBench(&b, s)
	for _, want := range []string{"2 CPUs usable (GOMAXPROCS) of 2 on 2 cores", "cpuid 254 physical", "L1d 48 KiB", "L3 ?,"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
	s.Hardware.Cores = 0
	b.Reset()
	printBench(&b, s)
	if !strings.Contains(b.String(), "of 2 on ? cores") {
		t.Errorf("cores unknown:\n%s", b.String())
	}
}

// TestBenchJSON: the end-to-end benchmark runs small and its summary is
// self-consistent.
func TestBenchJSON(t *testing.T) {
	c := newCLI(t)
	out := c.ok("", "bench", "--events", "20000", "--partitions", "3", "--duration", "2s", "--rate", "5000", "--json")
	var s struct {
		Events int
		Ingest struct {
			Records       int64
			Bytes         int64
			RecordsPerSec float64 `json:"records_per_second"`
		}
		Process struct {
			Records, Events, Windows int64
			EventsPerSec             float64 `json:"events_per_second"`
			AllocsPerEvent           float64 `json:"allocs_per_event"`
		}
		Latency struct {
			Events, Results int64
			P50             float64 `json:"p50_ms"`
			P999            float64 `json:"p999_ms"`
		}
		PeakRSS  int64 `json:"peak_rss_bytes"`
		Hardware struct {
			CPU          string
			LogicalCores int `json:"logical_cores"`
			CPUs, Cores  int
		}
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("summary %q: %v", out, err)
	}
	if s.Events != 20000 || s.Ingest.Records != 20000 || s.Process.Records != 20000 || s.Process.Events != 20000 {
		t.Fatalf("events in %d, produced %d, read %d, counted %d", s.Events, s.Ingest.Records, s.Process.Records, s.Process.Events)
	}
	// 20,000 events at 1,000 per event second span 20 s: the minute they
	// start in (and the next, for jittered ones), for 5 services.
	if s.Process.Windows < 5 || s.Ingest.Bytes < 20000*60 || s.Ingest.RecordsPerSec <= 0 || s.Process.EventsPerSec <= 0 {
		t.Fatalf("summary %+v", s)
	}
	if s.Latency.Events < 5000 || s.Latency.Results == 0 || s.Latency.P50 <= 0 || s.Latency.P999 < s.Latency.P50 {
		t.Fatalf("latency %+v", s.Latency)
	}
	if s.PeakRSS <= 0 || s.Hardware.LogicalCores < 1 || s.Hardware.CPU == "" || s.Hardware.CPUs < 1 || s.Hardware.Cores > s.Hardware.CPUs {
		t.Fatalf("machine %+v, rss %d", s.Hardware, s.PeakRSS)
	}
	if r := c.run("", "bench", "--acks", "2"); r.code != 2 {
		t.Fatalf("bad --acks: %+v", r)
	}
}

// TestGroupDelete: `group delete` deletes a group's committed offsets, as
// kafka-consumer-groups --delete does, so that its next member starts by
// its start policy; refused while a member consumes (exit 1, naming it),
// and for a group that does not exist.
func TestGroupDelete(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "jobs", "--partitions", "2")
	c.ok("{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n", "produce", "jobs")
	if n := len(parseConsumed(t, c.ok("", "consume", "jobs", "--group", "workers"))); n != 3 {
		t.Fatalf("first consume: %d records", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := c.follow(ctx, "jobs", "--group", "workers", "--follow")
	waitFor(t, func() bool { return strings.Contains(c.ok("", "group", "list"), `"members":1`) })
	if r := c.run("", "group", "delete", "workers"); r.code != 1 || !strings.Contains(r.stderr, "group has active members: workers has 1") {
		t.Fatalf("delete with a live member: %+v", r)
	}
	if r := c.run("", "group", "delete", "workers", "--topic", "jobs"); r.code != 1 || !strings.Contains(r.stderr, "group has active members on the topic: workers consumes jobs") {
		t.Fatalf("delete the offsets on a topic a member consumes: %+v", r)
	}
	cancel()
	<-f.done
	f.cmd.Wait()
	// The offsets on one topic only.
	c.ok("", "topic", "create", "other", "--partitions", "1")
	c.ok("{\"n\":1}\n", "produce", "other")
	parseConsumed(t, c.ok("", "consume", "other", "--group", "workers"))
	c.ok("", "group", "delete", "workers", "--topic", "other")
	var rows []log.GroupPartition
	for _, line := range strings.Split(strings.TrimSpace(c.ok("", "group", "describe", "workers")), "\n") {
		var r log.GroupPartition
		json.Unmarshal([]byte(line), &r)
		rows = append(rows, r)
	}
	if len(rows) != 2 || rows[0].Topic != "jobs" || rows[0].Committed == nil {
		t.Fatalf("after deleting the offsets on other: %+v", rows)
	}
	c.ok("", "group", "delete", "workers")
	if out := c.ok("", "group", "list"); out != "" {
		t.Fatalf("group list after delete: %q", out)
	}
	// Its committed offsets went with it: a new member starts from earliest.
	if n := len(parseConsumed(t, c.ok("", "consume", "jobs", "--group", "workers", "--from", "earliest"))); n != 3 {
		t.Fatalf("consume after delete: %d records, want all 3 again", n)
	}
	if r := c.run("", "group", "delete", "nobody"); r.code != 1 || !strings.Contains(r.stderr, `unknown group: "nobody"`) {
		t.Fatalf("delete an unknown group: %+v", r)
	}
}

// TestVersion: --version prints the build (version, VCS revision when the
// go command stamped one, Go version and platform) and exits 0.
func TestVersion(t *testing.T) {
	c := newCLI(t)
	out := c.ok("", "--version")
	if !regexp.MustCompile(`^fastflow \S+ (\([0-9a-f]+(-dirty)?\) )?go1\.\S+ \w+/\w+\n$`).MatchString(out) {
		t.Fatalf("--version: %q", out)
	}
}

// TestProduceKeyFieldHeldToJSON: a line whose key or timestamp value is
// not JSON text — fastjson parses "a\0" and 01, a strict parser does not —
// is not JSON, as a pipeline judges it: stored with a null key, counted.
func TestProduceKeyFieldHeldToJSON(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "events", "--partitions", "3")
	in := `{"ts":1795341600000,"service":"a"}
{"ts":1795341600000,"service":"a\0"}
{"ts":01,"service":"a"}
{"ts":1795341600000,"service":"a\u0062"}
`
	var sum produceSummary
	if out := c.ok(in, "produce", "events", "--key-field", "service", "--timestamp-field", "ts"); json.Unmarshal([]byte(out), &sum) != nil || sum.Records != 4 || sum.NoKey != 2 {
		t.Fatalf("summary %s, want 4 records, 2 without a key", out)
	}
	keys := map[string]string{}
	for _, r := range parseConsumed(t, c.ok("", "consume", "events")) {
		k := "<null>"
		if r.Key != nil {
			k = *r.Key
		}
		keys[string(r.Value)] = k
	}
	if want := map[string]string{
		`{"ts":1795341600000,"service":"a"}`:            "a",
		`"{\"ts\":1795341600000,\"service\":\"a\\0\"}"`: "<null>", // not JSON: printed as a string
		`"{\"ts\":01,\"service\":\"a\"}"`:               "<null>",
		`{"ts":1795341600000,"service":"a\u0062"}`:      "ab",
	}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("keys by value %v, want %v", keys, want)
	}
}

// TestProduceTakesUpAddedPartitions: a produce that streams stdin takes up
// partitions another process adds (topic alter --partitions), as a Kafka
// producer does at its next metadata refresh: keys hash over the new
// count from then on.
func TestProduceTakesUpAddedPartitions(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "events", "--partitions", "2")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pr := c.cmd(ctx, "produce", "events", "--key-field", "k")
	stdin, _ := pr.StdinPipe()
	var out, errb bytes.Buffer
	pr.Stdout, pr.Stderr = &out, &errb
	if err := pr.Start(); err != nil {
		t.Fatal(err)
	}
	write := func(round string) {
		t.Helper()
		var b strings.Builder
		for i := range 40 {
			fmt.Fprintf(&b, `{"k":"k%d","round":%q}`+"\n", i, round)
		}
		if _, err := io.WriteString(stdin, b.String()); err != nil {
			t.Fatal(err)
		}
	}
	consumed := func() []consumed { return parseConsumed(t, c.ok("", "consume", "events")) }
	write("before")
	waitFor(t, func() bool { return len(consumed()) == 40 })
	c.ok("", "topic", "alter", "events", "--partitions", "4")
	// Within about a second of records produce looks again.
	waitForOr(t, func() bool {
		write("during")
		for _, r := range consumed() {
			if r.Partition >= 2 {
				return true
			}
		}
		return false
	}, func() string { return "no record on partitions 2 and 3" })
	write("after")
	stdin.Close()
	if err := pr.Wait(); err != nil {
		t.Fatalf("produce: %v: %s", err, errb.String())
	}
	var sum produceSummary
	if json.Unmarshal(out.Bytes(), &sum) != nil || len(sum.Partitions) != 4 {
		t.Fatalf("summary %s", out.String())
	}
	after := 0
	for _, r := range consumed() {
		var v struct{ Round string }
		json.Unmarshal(r.Value, &v)
		n := int32(4)
		if v.Round == "before" {
			n = 2
		}
		if v.Round == "during" {
			continue // either count, as the look falls
		}
		if want := partition.ForKey([]byte(*r.Key), n); r.Partition != want {
			t.Fatalf("%s record with key %s on partition %d, murmur2 over %d says %d", v.Round, *r.Key, r.Partition, n, want)
		}
		if v.Round == "after" {
			after++
		}
	}
	if after != 40 {
		t.Fatalf("%d records of the last round, want 40", after)
	}
}
