package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/partition"
)

// Kafka clients that fastflow's team did not write — kcat (librdkafka)
// and kafkajs — against `fastflow serve --kafka`, in real processes on
// 127.0.0.1. What they produce is what `fastflow consume` shows, and the
// other way round; their consumer groups commit the offsets that
// `fastflow group describe` reports.

// serveKafka creates topic with partitions and runs fastflow serve with a
// Kafka listener; it returns the Kafka address.
func serveKafka(t *testing.T, c *cli, topic string, partitions int, extra ...string) string {
	t.Helper()
	c.ok("", "topic", "create", topic, "--partitions", strconv.Itoa(partitions))
	_, addr := startListening(t, c, true, append([]string{"serve"}, extra...)...)
	waitKafka(t, addr)
	return addr
}

func waitKafka(t *testing.T, addr string) {
	t.Helper()
	waitFor(t, func() bool {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
}

// runTool runs an external client with a time bound and returns stdout.
func runTool(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, tail(stderr.String(), 3000))
	}
	return string(out)
}

// kafkaRecord is one record as a Kafka client printed it.
type kafkaRecord struct {
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Key       string `json:"key"`
	Value     string `json:"value"`
}

// checkAgainstCLI checks that the records a Kafka client produced sit on
// the partitions murmur2 gives their keys, and that `fastflow consume`
// shows exactly them, at the offsets the client consumed them at.
func checkAgainstCLI(t *testing.T, c *cli, topic string, partitions int32, got []kafkaRecord, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("client consumed %d records, want %d", len(got), n)
	}
	byPos := map[string]kafkaRecord{}
	for _, r := range got {
		if want := partition.ForKey([]byte(r.Key), partitions); r.Partition != want {
			t.Fatalf("key %q on partition %d, murmur2 says %d", r.Key, r.Partition, want)
		}
		byPos[fmt.Sprint(r.Partition, "/", r.Offset)] = r
	}
	cliRecs := parseConsumed(t, c.ok("", "consume", topic, "--from", "earliest"))
	if len(cliRecs) != n {
		t.Fatalf("fastflow consume shows %d records, want %d", len(cliRecs), n)
	}
	for _, r := range cliRecs {
		k := byPos[fmt.Sprint(r.Partition, "/", r.Offset)]
		var value, s string
		if json.Unmarshal(r.Value, &s) == nil {
			value = s
		} else {
			value = compactJSON(t, r.Value)
		}
		if r.Key == nil || *r.Key != k.Key || value != compactJSON(t, json.RawMessage(k.Value)) && value != k.Value {
			t.Fatalf("fastflow consume: %d/%d key %v value %s; the Kafka client saw key %q value %q", r.Partition, r.Offset, r.Key, r.Value, k.Key, k.Value)
		}
	}
}

// parseClientRecords parses what a Kafka client printed: a kafkaRecord a
// line.
func parseClientRecords(t *testing.T, client, out string) []kafkaRecord {
	t.Helper()
	var recs []kafkaRecord
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r kafkaRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%s printed %q: %v", client, line, err)
		}
		recs = append(recs, r)
	}
	return recs
}

func compactJSON(t *testing.T, b json.RawMessage) string {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return string(b)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

// checkCommitted checks that a group committed every partition to its end.
func checkCommitted(t *testing.T, c *cli, group string, partitions int) {
	t.Helper()
	out := c.ok("", "group", "describe", group)
	lines := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var d struct {
			Partition *int32 `json:"partition"`
			Committed int64  `json:"committed"`
			Lag       int64  `json:"lag"`
		}
		if json.Unmarshal([]byte(line), &d) != nil || d.Partition == nil {
			continue
		}
		lines++
		if d.Lag != 0 || d.Committed == 0 {
			t.Fatalf("group %s: %s", group, line)
		}
	}
	if lines != partitions {
		t.Fatalf("group %s describes %d partitions, want %d:\n%s", group, lines, partitions, out)
	}
}

func TestKcatAgainstKafkaListener(t *testing.T) {
	kcat := need(t, "kcat", "kafkacat")
	c := newCLI(t)
	// A partition has one writing process at a time: the CLI writes this
	// topic before the server starts.
	c.ok("", "topic", "create", "from-cli", "--partitions", "2")
	c.ok("{\"from\":\"cli\"}\n", "produce", "from-cli", "--key", "cli-key")
	addr := serveKafka(t, c, "orders", 3, "--kafka-auto-create", "2")

	md := runTool(t, "", kcat, "-b", addr, "-L")
	if !strings.Contains(md, `topic "orders" with 3 partitions`) || !strings.Contains(md, "broker 0 at "+addr) {
		t.Fatalf("kcat -L:\n%s", md)
	}

	// Keyed messages, with the Java client's partitioner (librdkafka's
	// default is CRC32-based; murmur2_random is the Java-compatible one).
	const n = 60
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, "user-%d:{\"i\":%d}\n", i%11, i)
	}
	runTool(t, in.String(), kcat, "-b", addr, "-P", "-t", "orders", "-K:", "-X", "partitioner=murmur2_random")

	// Consume them back with partitions, offsets and keys.
	out := runTool(t, "", kcat, "-b", addr, "-C", "-t", "orders", "-o", "beginning", "-e", "-q",
		"-f", `{"partition":%p,"offset":%o,"key":"%k","value":%s}\n`)
	var recs []kafkaRecord
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r struct {
			kafkaRecord
			Value json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("kcat printed %q: %v", line, err)
		}
		r.kafkaRecord.Value = string(r.Value)
		recs = append(recs, r.kafkaRecord)
	}
	checkAgainstCLI(t, c, "orders", 3, recs, n)

	// Records produced by the CLI reach kcat.
	out = runTool(t, "", kcat, "-b", addr, "-C", "-t", "from-cli", "-o", "beginning", "-e", "-q", "-f", "%p %o %k %s\n")
	if want := fmt.Sprintf(`%d 0 cli-key {"from":"cli"}`, partition.ForKey([]byte("cli-key"), 2)); strings.TrimSpace(out) != want {
		t.Fatalf("kcat does not see the CLI's record:\n%s", out)
	}

	// A consumer group: kcat -G reads everything and commits.
	out = runTool(t, "", kcat, "-b", addr, "-G", "kcat-group", "-o", "beginning", "-e", "-q", "-f", "%p %o\n", "orders")
	if got := len(strings.Split(strings.TrimSpace(out), "\n")); got != n {
		t.Fatalf("kcat -G consumed %d records, want %d:\n%s", got, n, out)
	}
	checkCommitted(t, c, "kcat-group", 3)

	// With --kafka-auto-create, producing to a new topic creates it.
	runTool(t, "hello\n", kcat, "-b", addr, "-P", "-t", "brand-new")
	if out := c.ok("", "topic", "describe", "brand-new"); !strings.Contains(out, `"partitions":2`) {
		t.Fatalf("auto-created topic: %s", out)
	}
}

// TestKcatGroupRebalanceLosesNoCommit: a second kcat joins the group of a
// first that has consumed everything. librdkafka commits the revoked
// partitions' offsets as the rebalance begins (its auto-commit timer is
// set far off here, so that commit is the only one); the listener must
// take it, as Kafka does while a group prepares a rebalance, or the
// partitions' next owners consume every record again (they did: all 2,000
// twice).
func TestKcatGroupRebalanceLosesNoCommit(t *testing.T) {
	kcat := need(t, "kcat", "kafkacat")
	c := newCLI(t)
	addr := serveKafka(t, c, "events", 4)
	const n = 2000
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, `{"k":"key-%d","i":%d}`+"\n", i%37, i)
	}
	c.ok(in.String(), "produce", "events", "--key-field", "k")
	type member struct {
		cmd         *exec.Cmd
		out, stderr syncBuffer
		done        chan struct{}
	}
	join := func() *member {
		m := &member{done: make(chan struct{})}
		m.cmd = exec.Command(kcat, "-u", "-b", addr, "-G", "g", "-X", "auto.offset.reset=earliest",
			"-X", "auto.commit.interval.ms=600000", "-f", "%p %o\n", "events")
		m.cmd.Stdout, m.cmd.Stderr = &m.out, &m.stderr
		if err := m.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { m.cmd.Wait(); close(m.done) }()
		t.Cleanup(func() { m.cmd.Process.Kill(); <-m.done })
		return m
	}
	a := join()
	waitForOr(t, func() bool { return len(a.out.lines()) >= n }, func() string { return a.stderr.String() })
	b := join()
	// Both hold partitions of the new generation.
	waitForOr(t, func() bool {
		return strings.Count(a.stderr.String(), "assigned:") >= 2 && strings.Contains(b.stderr.String(), "assigned:")
	}, func() string { return "a: " + a.stderr.String() + "\nb: " + b.stderr.String() })
	time.Sleep(time.Second) // what they would consume again, they would consume now
	for _, m := range []*member{a, b} {
		m.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-m.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("kcat did not stop: %s", m.stderr.String())
		}
	}
	seen := map[string]int{}
	for _, line := range append(a.out.lines(), b.out.lines()...) {
		seen[line]++
		if seen[line] == 2 {
			t.Errorf("record %s consumed twice", line)
		}
	}
	if len(seen) != n {
		t.Fatalf("consumed %d distinct records, want %d", len(seen), n)
	}
	if strings.Contains(a.stderr.String(), "COMMITFAIL") {
		t.Fatalf("a commit failed: %s", a.stderr.String())
	}
	checkCommitted(t, c, "g", 4)
}

// TestKcatGroupSeenByCLI: a Kafka client's group member, through serve's
// listener, is seen by fastflow's group commands, as kafka-consumer-groups
// sees it: describe shows which member consumes which partition, list
// counts it, reset refuses while it is there, and `consume --group`
// cannot join its group (each kind of member is assigned partitions its
// own way: mixed, both would consume every partition).
func TestKcatGroupSeenByCLI(t *testing.T) {
	kcat := need(t, "kcat", "kafkacat")
	const g = "orders service:v2" // as in Kafka, a group's name is any string
	c := newCLI(t)
	addr := serveKafka(t, c, "events", 3)
	var in strings.Builder
	for i := range 300 {
		fmt.Fprintf(&in, `{"i":%d}`+"\n", i)
	}
	c.ok(in.String(), "produce", "events")
	cmd := exec.Command(kcat, "-u", "-b", addr, "-G", g, "-X", "client.id=kcat-test",
		"-X", "auto.offset.reset=earliest", "-f", "%p %o\n", "events")
	var out, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	waitForOr(t, func() bool { return len(out.lines()) >= 300 }, func() string { return stderr.String() })

	var member string
	for _, line := range strings.Split(strings.TrimSpace(c.ok("", "group", "describe", g)), "\n") {
		var row struct {
			Partition  int32  `json:"partition"`
			Member     string `json:"member"`
			ClientID   string `json:"client_id"`
			ClientHost string `json:"client_host"`
		}
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("describe: %q: %v", line, err)
		}
		if row.Member == "" || row.ClientID != "kcat-test" || !strings.Contains(row.ClientHost, "127.0.0.1") ||
			member != "" && row.Member != member {
			t.Fatalf("describe: partition %d: %s", row.Partition, line)
		}
		member = row.Member
	}
	if list := c.ok("", "group", "list"); !strings.Contains(list, `"group":"orders service:v2","members":1,"state":"Stable"`) {
		t.Fatalf("group list: %s", list)
	}
	if r := c.run("", "group", "reset", g, "--topic", "events", "--to", "earliest"); r.code != 1 ||
		!strings.Contains(r.stderr, `active members on events (e.g. Kafka client "kcat-test" from 127.0.0.1`) {
		t.Fatalf("reset under a Kafka member: exit %d: %s", r.code, r.stderr)
	}
	if r := c.run("", "consume", "events", "--group", g); r.code != 1 || !strings.Contains(r.stderr, "Kafka client members") {
		t.Fatalf("consume --group into a Kafka group: exit %d: %s", r.code, r.stderr)
	}
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("kcat did not stop: %s", stderr.String())
	}
	// Gone with it: the group can be reset now.
	waitForOr(t, func() bool {
		return c.run("", "group", "reset", g, "--topic", "events", "--to", "earliest").code == 0
	}, func() string { return c.run("", "group", "describe", g).stdout })
}

// TestKafkajsDescribesConsumeGroup: Kafka's admin APIs, through the
// listener, show a group of `fastflow consume --group` members as Kafka
// shows one: Stable, each member with the partitions it consumes (what
// kafka-consumer-groups --describe prints), Empty once they have left.
func TestKafkajsDescribesConsumeGroup(t *testing.T) {
	node, dir := needKafkajs(t)
	c := newCLI(t)
	addr := serveKafka(t, c, "events", 2)
	describe := func() string {
		t.Helper()
		out, err := runCmd(exec.Command(node, filepath.Join(dir, "describegroup.js"), addr, "audit"), 90*time.Second)
		if err != nil {
			t.Fatalf("kafkajs: %v\n%s", err, out)
		}
		return strings.TrimSpace(out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := c.follow(ctx, "events", "--group", "audit", "--follow")
	b := c.follow(ctx, "events", "--group", "audit", "--follow")
	// Once they have split the partitions, one each.
	var got string
	waitForOr(t, func() bool {
		got = describe()
		var d struct {
			State, ProtocolType string
			Listed              []string
			Members             []struct {
				ClientID   string           `json:"clientId"`
				Assignment map[string][]int `json:"assignment"`
			}
		}
		if json.Unmarshal([]byte(got), &d) != nil || d.State != "Stable" || d.ProtocolType != "consumer" ||
			fmt.Sprint(d.Listed) != "[consumer]" || len(d.Members) != 2 {
			return false
		}
		held := map[int]int{}
		for _, m := range d.Members {
			if m.ClientID != "fastflow consume" || len(m.Assignment) != 1 || len(m.Assignment["events"]) != 1 {
				return false
			}
			held[m.Assignment["events"][0]]++
		}
		return held[0] == 1 && held[1] == 1
	}, func() string { return got })
	for _, f := range []*follower{a, b} {
		f.cmd.Process.Signal(syscall.SIGINT)
		<-f.done
		f.cmd.Wait()
	}
	if got := describe(); got != `{"state":"Empty","protocolType":"consumer","listed":["consumer"],"members":[]}` {
		t.Fatalf("after the members left: %s", got)
	}
}

// TestKafkajsResetOffsets: kafkajs's admin.setOffsets and
// admin.resetOffsets (as its docs show them) through the listener. Kafka
// stores any committed offset, and resetOffsets commits -2 (earliest) for
// kafkajs's consumers to resolve as they start; the listener had refused
// it with OFFSET_OUT_OF_RANGE, and resetOffsets failed. fastflow's own
// group commands take a negative offset as none, as the Java client does.
func TestKafkajsResetOffsets(t *testing.T) {
	node, dir := needKafkajs(t)
	c := newCLI(t)
	addr := serveKafka(t, c, "events", 2)
	var in strings.Builder
	for i := range 20 {
		fmt.Fprintf(&in, "{\"i\":%d}\n", i)
	}
	c.ok(in.String(), "produce", "events", "--partition", "0")
	c.ok(in.String(), "produce", "events", "--partition", "1")
	const g = "reset me"
	out, err := runCmd(exec.Command(node, filepath.Join(dir, "resetoffsets.js"), addr, "events", g), 90*time.Second)
	if err != nil {
		t.Fatalf("kafkajs: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(out); got != `{"set":["3","4"],"reset":["-2","-2"]}` {
		t.Fatalf("kafkajs fetchOffsets: %s", got)
	}
	for _, line := range strings.Split(strings.TrimSpace(c.ok("", "group", "describe", g)), "\n") {
		var row log.GroupPartition
		if err := json.Unmarshal([]byte(line), &row); err != nil || row.Committed != nil || row.Lag != nil {
			t.Fatalf("describe after the reset: %s", line)
		}
	}
	// consume --group starts by its start policy (earliest).
	if got := strings.Count(c.ok("", "consume", "events", "--group", g), "\n"); got != 40 {
		t.Fatalf("consume --group after the reset printed %d records, want 40", got)
	}
}

// needKafkajs returns node and the kafkajs test directory, or skips (fails
// in CI) if kafkajs is not installed.
func needKafkajs(t *testing.T) (node, dir string) {
	t.Helper()
	node = need(t, "node")
	dir, _ = filepath.Abs("testdata/kafkajs")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "kafkajs")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("kafkajs is not installed: npm ci --prefix cmd/fastflow/testdata/kafkajs (.ci/run does)")
		}
		t.Skip("kafkajs is not installed: npm ci --prefix cmd/fastflow/testdata/kafkajs")
	}
	return node, dir
}

func TestKafkajsAgainstKafkaListener(t *testing.T) {
	node, dir := needKafkajs(t)
	c := newCLI(t)
	// The listeners come from the configuration file's serve: section.
	cfg := filepath.Join(t.TempDir(), "fastflow.yaml")
	os.WriteFile(cfg, []byte("topics:\n  - {name: js, partitions: 4}\nserve:\n  http: 127.0.0.1:0\n  kafka: 127.0.0.1:0\n"), 0o644)
	_, addr := announced(t, start(t, c.cmd(context.Background(), "serve", "--config", cfg)), true)
	waitKafka(t, addr)

	const n = 80
	cmd := exec.Command(node, filepath.Join(dir, "roundtrip.js"), addr, "js", "js-group", strconv.Itoa(n))
	cmd.Env = append(os.Environ(), "KAFKAJS_NO_PARTITIONER_WARNING=1")
	out, err := runCmd(cmd, 90*time.Second)
	if err != nil {
		t.Fatalf("kafkajs: %v\n%s", err, out)
	}
	recs := parseClientRecords(t, "kafkajs", out)
	checkAgainstCLI(t, c, "js", 4, recs, n)
	checkCommitted(t, c, "js-group", 4)
	var d log.TopicInfo
	json.Unmarshal([]byte(c.ok("", "topic", "describe", "js")), &d)
	if d.Config.Retention != "24h0m0s" || d.Partitions != 4 {
		t.Fatalf("after kafkajs's alterConfigs retention.ms=86400000: %+v", d.Config)
	}
}

// TestKafkaPythonAgainstKafkaListener runs kafka-python, a third
// implementation of the protocol (pure Python, Debian's python3-kafka),
// which asks for older versions of most APIs than the other clients do.
func TestKafkaPythonAgainstKafkaListener(t *testing.T) {
	python := needKafkaPython(t)
	c := newCLI(t)
	_, addr := startListening(t, c, true, "serve") // the client creates the topics
	waitKafka(t, addr)
	const n = 90
	script, _ := filepath.Abs("testdata/kafka-python/roundtrip.py")
	out, err := runCmd(exec.Command(python, script, addr, "py", "py group", strconv.Itoa(n)), 90*time.Second)
	if err != nil {
		t.Fatalf("kafka-python: %v\n%s", err, out)
	}
	recs := parseClientRecords(t, "kafka-python", out)
	checkAgainstCLI(t, c, "py", 4, recs, n)
	checkCommitted(t, c, "py group", 4)
	var d log.TopicInfo
	json.Unmarshal([]byte(c.ok("", "topic", "describe", "py")), &d)
	if d.Config.Retention != "24h0m0s" {
		t.Fatalf("after kafka-python's alter_configs retention.ms=86400000: %+v", d.Config)
	}
	json.Unmarshal([]byte(c.ok("", "topic", "describe", "py.more")), &d)
	if d.Partitions != 3 {
		t.Fatalf("after kafka-python's create_partitions to 3: %d partitions", d.Partitions)
	}
}

// needKafkaPython returns a Python interpreter that imports kafka-python:
// Debian's python3-kafka installs it for /usr/bin/python3, which need not
// be the python3 found first on PATH.
func needKafkaPython(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import kafka").Run() == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("kafka-python is not installed (.ci/run installs Debian's python3-kafka)")
	}
	t.Skip("kafka-python is not installed: apt-get install python3-kafka")
	return ""
}

// runCmd runs cmd with a time bound; stdout, and stderr on failure.
func runCmd(cmd *exec.Cmd, d time.Duration) (string, error) {
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return stdout.String() + stderr.String(), err
		}
		return stdout.String(), nil
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		return stdout.String() + stderr.String(), fmt.Errorf("not done within %v", d)
	}
}

func TestServeKafkaFlagErrors(t *testing.T) {
	c := newCLI(t)
	cfg := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(cfg, []byte("topics:\n  - {name: t, partitions: 1}\nserve:\n  kafka: nine-oh-nine-two\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--kafka-advertise", "h:1"}, "--kafka-advertise needs --kafka"},
		{[]string{"serve", "--kafka", "localhost"}, `"localhost" is not a host:port address`},
		{[]string{"serve", "--config", cfg}, `bad.yaml:4: serve.kafka: "nine-oh-nine-two" is not a host:port address`},
		{[]string{"demo", "--kafka", "localhost"}, `"localhost" is not a host:port address`},
	} {
		r := c.run("", tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("fastflow %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.want)
		}
	}
	// A port in use is an error, not a hang.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := c.run("", "serve", "--http", freePort(t), "--kafka", ln.Addr().String())
	if r.code != 1 || !strings.Contains(r.stderr, "listen on "+ln.Addr().String()) || !strings.Contains(r.stderr, "choose another with --kafka") {
		t.Errorf("Kafka port in use: exit %d, %q", r.code, r.stderr)
	}
	r = c.run("", "demo", "--http", ln.Addr().String())
	if r.code != 1 || !strings.Contains(r.stderr, "address already in use (choose another with --http ADDR; port 0 takes any free one)") {
		t.Errorf("HTTP port in use: exit %d, %q", r.code, r.stderr)
	}
}

// TestServeAnnouncesAddresses: serve says on stderr where it listens, so
// that ports the system chooses (127.0.0.1:0) can be found: the HTTP URL
// answers /healthz and the Kafka address takes connections.
func TestServeAnnouncesAddresses(t *testing.T) {
	c := newCLI(t)
	cmd := c.cmd(context.Background(), "serve", "--http", "127.0.0.1:0", "--kafka", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "fastflow serve: listening on ") {
				line <- sc.Text()
			}
		}
		close(line)
	}()
	var got string
	select {
	case got = <-line:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not say where it listens within 30 s")
	}
	m := regexp.MustCompile(`^fastflow serve: listening on (http://127\.0\.0\.1:\d+/), Kafka protocol on (127\.0\.0\.1:\d+)$`).FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("stderr line %q", got)
	}
	resp, err := http.Get(m[1] + "healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%shealthz: %s", m[1], resp.Status)
	}
	conn, err := net.DialTimeout("tcp", m[2], 5*time.Second)
	if err != nil {
		t.Fatalf("Kafka address %s: %v", m[2], err)
	}
	conn.Close()
}

// TestDemoServesKafka: demo --kafka serves the Kafka protocol as serve
// --kafka does: a franz-go client reads the generated events and the
// pipeline's results from the demo's topics.
func TestDemoServesKafka(t *testing.T) {
	base, kafkaAddr := startListening(t, newCLI(t), true, "demo", "--duration", "3m")
	waitHealthy(t, base)
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.ConsumeTopics("events", "api-health.results"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seen := map[string]bool{}
	for !seen["events"] || !seen["api-health.results"] {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("in a minute, records from %v only", seen)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var v struct {
				Service string
				Type    string
			}
			if json.Unmarshal(r.Value, &v) == nil && (r.Topic == "events" && v.Service != "" || r.Topic == "api-health.results" && v.Type == "window") {
				seen[r.Topic] = true
			}
		})
	}
}

// A pipeline with a Kafka source in its own process, reading a topic of
// another fastflow's Kafka listener, and writing its results back to
// that cluster with a kafka sink: events POSTed to the broker come out
// as windows on the pipeline's stdout and in the results topic; SIGTERM
// checkpoints to the cluster and commits the group's offsets.
func TestRunWithKafkaSourceAndSink(t *testing.T) {
	broker := newCLI(t)
	broker.ok("", "topic", "create", "events", "--partitions", "3")
	brokerURL, kafkaAddr := startListening(t, broker, true, "serve")
	waitKafka(t, kafkaAddr)

	cfg := filepath.Join(t.TempDir(), "scale.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`pipelines:
  - name: per-service
    source: {kafka: {brokers: ['%s'], topic: events, group: edge}}
    time: {field: ts, unit: ms}
    group_by: [service]
    window: {type: tumbling, size: 1m}
    metrics: [{name: n, agg: count}]
    sinks: [{type: stdout}, {type: kafka, brokers: ['%s'], topic: per-service.results}]
`, kafkaAddr, kafkaAddr)), 0o644)
	inst := newCLI(t)
	if r := inst.run("", "run", cfg, "--until-end"); r.code != 2 || !strings.Contains(r.stderr, "a Kafka source follows its consumer group") {
		t.Fatalf("run --until-end with a Kafka source: exit %d, %q", r.code, r.stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := inst.cmd(ctx, "run", cfg)
	var stdout, stderr syncBuffer
	run.Stdout, run.Stderr = &stdout, &stderr
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()

	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC).UnixMilli()
	var body strings.Builder
	for i := range 90 {
		fmt.Fprintf(&body, `{"ts":%d,"service":"svc-%d"}`+"\n", base+int64(i)*1000, i%3)
	}
	for s := range 3 { // a minute later on every service closes the first minute
		fmt.Fprintf(&body, `{"ts":%d,"service":"svc-%d"}`+"\n", base+150000, s)
	}
	resp, err := http.Post(brokerURL+"/topics/events/records?key_field=service", "application/x-ndjson", strings.NewReader(body.String()))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("ingest: %v %v", err, resp)
	}
	resp.Body.Close()
	waitForOr(t, func() bool { return strings.Count(stdout.String(), `"window_start":"2026-11-23T10:01:00Z"`) >= 3 },
		func() string { return "stdout:\n" + stdout.String() + "\nstderr:\n" + stderr.String() })
	run.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		t.Fatalf("run exited with %v: %s", err, stderr.String())
	}
	out := stdout.String()
	if n := strings.Count(out, `"type":"window"`); n != 6 {
		t.Fatalf("%d windows on stdout, want 6:\n%s", n, out)
	}
	for s := range 3 {
		// svc-s has 20 events in the first minute (i < 60, i%3 == s), 10 in
		// the second.
		for _, want := range []string{
			fmt.Sprintf(`"key":{"service":"svc-%d"},"window_start":"2026-11-23T10:00:00Z","window_end":"2026-11-23T10:01:00Z","revision":0,"metrics":{"n":20}`, s),
			fmt.Sprintf(`"key":{"service":"svc-%d"},"window_start":"2026-11-23T10:01:00Z","window_end":"2026-11-23T10:02:00Z","revision":0,"metrics":{"n":10}`, s),
		} {
			if !strings.Contains(out, want) {
				t.Fatalf("stdout lacks %s:\n%s", want, out)
			}
		}
	}
	if !strings.Contains(out, `{"type":"stats","pipeline":"per-service","records":93`) {
		t.Fatalf("no stats line for 93 records:\n%s", out)
	}
	// The results are in the cluster too, and the group committed.
	res := parseConsumed(t, broker.ok("", "consume", "per-service.results"))
	if len(res) != 6 {
		t.Fatalf("results topic holds %d records, want 6", len(res))
	}
	checkCommitted(t, broker, "edge", 3)
}

// TestKafkaSourceKilledWritesResultsOnce: pipelines with a Kafka source
// (fastflow's listener) are SIGKILLed at random moments while a client
// produces events; each restart joins the group once the dead member's
// session has expired, and the member that takes a dead one's partitions
// (the restart, or with two instances the other one) restores them from
// their checkpoints and skips what the killed run wrote after them, from
// those partitions. The Kafka sink's topic (on the broker) holds no
// record twice, and each window's last line there has the metrics of a
// run over the final log. With one instance, its local results,
// dead-letter and late topics hold no record twice either, the last two
// exactly what that run rejects and drops as late; with two, each
// instance's hold no record twice (a partition's dead-letter copies are
// in the data directory of whichever instance processed them).
func TestKafkaSourceKilledWritesResultsOnce(t *testing.T) {
	for _, tc := range []struct {
		instances int
		window    string
	}{{1, "{type: tumbling, size: 1m}"}, {2, "{type: tumbling, size: 1m}"}, {2, "{type: session, gap: 2s}"}} {
		t.Run(fmt.Sprintf("%d instances, %s", tc.instances, tc.window), func(t *testing.T) {
			checkKafkaSourceKilled(t, tc.instances, strings.Replace(apiHealthYAML, "{type: tumbling, size: 1m}", tc.window, 1))
		})
	}
}

// checkKafkaSourceKilled runs TestKafkaSourceKilledWritesResultsOnce's
// scenario with instances instances of yaml (apiHealthYAML's pipeline).
func checkKafkaSourceKilled(t *testing.T, instances int, yaml string) {
	broker := newCLI(t)
	broker.ok("", "topic", "create", "events", "--partitions", "3")
	base, kafkaAddr := startListening(t, broker, true, "serve")
	waitKafka(t, kafkaAddr)

	lines := genEvents(24000, 23)
	kafkaYAML := strings.Replace(yaml, "source: {topic: events, start: earliest}",
		fmt.Sprintf("source: {kafka: {brokers: ['%s'], topic: events, group: g, session_timeout: 2s}, start: earliest}", kafkaAddr), 1)
	cfg := filepath.Join(t.TempDir(), "kafka.yaml")
	os.WriteFile(cfg, []byte(kafkaYAML+fmt.Sprintf("      - {type: kafka, brokers: ['%s'], topic: api-health.results}\n", kafkaAddr)+
		"      - {type: topic, topic: api-health.results}\n    dlq: true\n    late_topic: true\n"), 0o644)

	type instance struct {
		c      *cli
		run    *exec.Cmd
		stderr syncBuffer
		exited chan struct{}
	}
	insts := make([]*instance, instances)
	// runInstance runs an instance and waits until it has partitions (the dead
	// member's session expired), so that it is killed part way through
	// its work, not before it joined.
	runInstance := func(in *instance) {
		in.run = in.c.cmd(context.Background(), "run", cfg, "--checkpoint-interval", "2s", "--log-level", "info")
		in.run.Stderr = &in.stderr
		if err := in.run.Start(); err != nil {
			t.Fatal(err)
		}
		in.exited = make(chan struct{})
		go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(in.run, in.exited)
		n := strings.Count(in.stderr.String(), "pipeline assigned partitions")
		waitForOr(t, func() bool { return strings.Count(in.stderr.String(), "pipeline assigned partitions") > n },
			func() string { return in.stderr.String() })
	}
	for i := range insts {
		insts[i] = &instance{c: newCLI(t)}
		runInstance(insts[i])
		defer func(in *instance) { in.run.Process.Kill(); <-in.exited }(insts[i])
	}
	rng := rand.New(rand.NewPCG(23, uint64(instances)))
	kills := 0
	for i := 0; i < len(lines); i += 2000 {
		body := strings.Join(lines[i:min(i+2000, len(lines))], "\n") + "\n"
		resp, err := http.Post(base+"/topics/events/records?key_field=service", "application/x-ndjson", strings.NewReader(body))
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("POST: %v %v", err, resp)
		}
		resp.Body.Close()
		if rng.IntN(2) == 0 {
			time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
			in := insts[rng.IntN(len(insts))]
			in.run.Process.Signal(syscall.SIGKILL)
			<-in.exited
			kills++
			runInstance(in)
		}
	}
	// Everything read and checkpointed (committed), then stopped.
	deadline := time.Now().Add(90 * time.Second)
	for !groupCaughtUp(broker, "g", 3) {
		if time.Now().After(deadline) {
			t.Fatalf("the group did not catch up in 90 s:\n%s", broker.ok("", "group", "describe", "g"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	skips := 0
	for i, in := range insts {
		in.run.Process.Signal(syscall.SIGTERM)
		<-in.exited
		if code := in.run.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("instance %d exited %d on SIGTERM:\n%s", i, code, in.stderr.String())
		}
		skips += strings.Count(in.stderr.String(), "records written after the checkpoint")
	}
	t.Logf("%d kills; %d replays skipped records a killed run wrote", kills, skips)

	// The reference: a run over the final log.
	plain := filepath.Join(t.TempDir(), "plain.yaml")
	os.WriteFile(plain, []byte(yaml), 0o644)
	ref := strings.Split(strings.TrimSpace(broker.ok("", "run", plain, "--until-end")), "\n")
	topics := map[string][]string{"kafka api-health.results": consumedValues(t, broker, "api-health.results")}
	for i, in := range insts {
		for _, topic := range []string{"api-health.results", "api-health.dlq", "api-health.late"} {
			if instances == 1 {
				topics[topic] = consumedValues(t, in.c, topic)
				continue
			}
			seen := map[string]bool{}
			for _, v := range consumedValues(t, in.c, topic) {
				if seen[v] {
					for j, in := range insts {
						t.Logf("instance %d's log:\n%s", j, in.stderr.String())
					}
					t.Fatalf("instance %d: %s holds this record twice: %s", i, topic, v)
				}
				seen[v] = true
			}
		}
	}
	checkResultsOnce(t, ref, len(lines), topics, !strings.Contains(yaml, "type: session"))
}

// groupCaughtUp reports whether group has committed every one of its
// partitions' ends.
func groupCaughtUp(c *cli, group string, partitions int) bool {
	r := c.run("", "group", "describe", group)
	if r.code != 0 {
		return false
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var d struct {
			Partition *int32 `json:"partition"`
			Lag       int64  `json:"lag"`
		}
		if json.Unmarshal([]byte(line), &d) != nil || d.Partition == nil {
			continue
		}
		if d.Lag != 0 {
			return false
		}
		n++
	}
	return n == partitions
}

func consumedValues(t *testing.T, c *cli, topic string) []string {
	t.Helper()
	var values []string
	for _, r := range parseConsumed(t, c.ok("", "consume", topic)) {
		values = append(values, string(r.Value))
	}
	return values
}

// countingKafkaPipeline writes a pipeline file that counts source's
// events by minute, and returns its path.
func countingKafkaPipeline(t *testing.T, source string) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "counting.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`pipelines:
  - name: counting
    source: %s
    time: {field: ts, unit: ms}
    window: {type: tumbling, size: 1m}
    metrics: [{name: n, agg: count}]
    sinks: [{type: stdout}]
`, source)), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestKafkaSourceSessionTimeoutRefused: a session_timeout the cluster
// refuses (fastflow's listener allows 1 s to 30 min; Kafka 6 s to 30 min
// by default) stops the run with an error naming the key, instead of
// retrying the join for ever.
func TestKafkaSourceSessionTimeoutRefused(t *testing.T) {
	broker := newCLI(t)
	kafkaAddr := serveKafka(t, broker, "events", 2)
	cfg := countingKafkaPipeline(t, fmt.Sprintf("{kafka: {brokers: ['%s'], topic: events, session_timeout: 500ms}}", kafkaAddr))
	r := newCLI(t).run("", "run", cfg)
	if r.code != 1 || !strings.Contains(r.stderr, "source.kafka.session_timeout 500ms: the cluster refuses it") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestKafkaSourceTopicMissing: a Kafka source topic the cluster does not
// have stops the run with an error naming it (a local source does too),
// instead of waiting in the group for partitions that never come; the
// check does not create it.
func TestKafkaSourceTopicMissing(t *testing.T) {
	broker := newCLI(t)
	kafkaAddr := serveKafka(t, broker, "events", 2, "--kafka-auto-create", "2")
	cfg := countingKafkaPipeline(t, fmt.Sprintf("{kafka: {brokers: ['%s'], topic: evnets}}", kafkaAddr))
	r := newCLI(t).run("", "run", cfg)
	if r.code != 1 || !strings.Contains(r.stderr, `source kafka: topic "evnets" does not exist on the cluster`) {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if out := broker.ok("", "topic", "list"); strings.Contains(out, "evnets") {
		t.Fatalf("the check created the topic:\n%s", out)
	}
}

// A terminal table shows a Kafka client's strings (group names, client
// IDs, hosts) as they are unless a terminal would act on them.
func TestShown(t *testing.T) {
	for in, want := range map[string]string{
		"orders service:v2": "orders service:v2",
		"é":                 "é",
		"\x1b[2Jgone":       `"\x1b[2Jgone"`,
		"a\tb":              `"a\tb"`,
		"line\nbreak":       `"line\nbreak"`,
		"\xff":              `"\xff"`,
	} {
		if got := shown(in); got != want {
			t.Errorf("shown(%q) = %s, want %s", in, got, want)
		}
	}
}
