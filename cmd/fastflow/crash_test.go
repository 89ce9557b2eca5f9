package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sys/unix"

	"github.com/fastflow/fastflow/partition"
)

// The write paths of `serve` — HTTP ingest and Kafka Produce — killed with
// SIGKILL while clients write: every record the server acknowledged is in
// the log afterwards, at the offset it was acknowledged with, and the log
// takes writes again. acks=1 is "written to the OS", which survives a
// process crash; acks=all also a power failure (not tested here).

// ackedRecord is a record the server acknowledged.
type ackedRecord struct {
	partition int32
	offset    int64
	value     string
}

// killServeWhileWriting starts `serve` with args, runs write (which
// acknowledges records through acked until it fails) until some records
// are acknowledged, kills the server with SIGKILL, and checks that every
// acknowledged record is in the log; then that a new serve takes writes.
func killServeWhileWriting(t *testing.T, c *cli, args []string, ready func(), write func(acked func(...ackedRecord)) error) {
	t.Helper()
	srv, exited := startServeToKill(t, c, args...)
	ready()

	var mu sync.Mutex
	var acked []ackedRecord
	done := make(chan error, 1)
	go func() {
		done <- write(func(rs ...ackedRecord) {
			mu.Lock()
			acked = append(acked, rs...)
			mu.Unlock()
		})
	}()
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 3000 })
	killServe(t, srv, exited, done, "writer")

	// What the log holds now, read by a new process.
	stored := map[[2]int64]string{}
	for _, r := range parseConsumed(t, c.ok("", "consume", "ev", "--from", "earliest")) {
		var s string
		if json.Unmarshal(r.Value, &s) != nil {
			s = string(r.Value)
		}
		stored[[2]int64{int64(r.Partition), r.Offset}] = s
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range acked {
		if got, ok := stored[[2]int64{int64(a.partition), a.offset}]; !ok || got != a.value {
			t.Fatalf("acknowledged %s at %d/%d; after SIGKILL the log holds %q there (present: %v)", a.value, a.partition, a.offset, got, ok)
		}
	}
	t.Logf("%d records acknowledged before SIGKILL, all in the log (%d records in all)", len(acked), len(stored))
	// The log takes writes again: a torn tail, if any, is cut.
	c.ok(`{"after":"restart"}`+"\n", "produce", "ev", "--key", "k")
}

// startServeToKill starts `serve` with args; exited is closed once it has
// exited. The test's end kills it, if it has not.
func startServeToKill(t *testing.T, c *cli, args ...string) (srv *exec.Cmd, exited chan struct{}) {
	t.Helper()
	srv = c.cmd(context.Background(), append([]string{"serve"}, args...)...)
	var logs syncBuffer
	srv.Stdout, srv.Stderr = &logs, &logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited = make(chan struct{})
	go func() { srv.Wait(); close(exited) }()
	t.Cleanup(func() { srv.Process.Kill(); <-exited })
	return srv, exited
}

// killServe kills srv with SIGKILL and waits for it to exit, and for the
// client writing to it to end (done) as it notices.
func killServe(t *testing.T, srv *exec.Cmd, exited chan struct{}, done chan error, client string) {
	t.Helper()
	srv.Process.Signal(syscall.SIGKILL)
	<-exited
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the %s did not notice the server's death within 30 s", client)
	}
}

func TestServeKillLosesNoAcknowledgedIngest(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "ev", "--partitions", "3")
	addr := freePort(t)
	base := "http://" + addr
	client := &http.Client{Timeout: 10 * time.Second}
	killServeWhileWriting(t, c, []string{"--http", addr},
		func() {
			waitFor(t, func() bool {
				resp, err := http.Get(base + "/healthz")
				if err == nil {
					resp.Body.Close()
				}
				return err == nil && resp.StatusCode == 200
			})
		},
		func(acked func(...ackedRecord)) error {
			for batch := 0; ; batch++ {
				var body strings.Builder
				var values []string
				for i := range 50 {
					v := fmt.Sprintf("b%d-r%d", batch, i)
					values = append(values, v)
					fmt.Fprintf(&body, "{\"k\":\"key-%d\",\"v\":%q}\n", i%7, v)
				}
				acks := []string{"1", "all"}[batch%2]
				resp, err := client.Post(base+"/topics/ev/records?key_field=k&acks="+acks, "application/x-ndjson", strings.NewReader(body.String()))
				if err != nil {
					return err
				}
				var reply struct {
					Records []struct {
						Partition int32
						Offset    int64
					}
				}
				err = json.NewDecoder(resp.Body).Decode(&reply)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					return fmt.Errorf("status %d: %v", resp.StatusCode, err)
				}
				for i, r := range reply.Records {
					line := fmt.Sprintf("{\"k\":\"key-%d\",\"v\":%q}", i%7, values[i])
					acked(ackedRecord{r.Partition, r.Offset, line})
				}
			}
		})
}

func TestServeKillLosesNoAcknowledgedKafkaProduce(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "ev", "--partitions", "3")
	addr := freePort(t)
	killServeWhileWriting(t, c, []string{"--http", freePort(t), "--kafka", addr},
		func() { waitKafka(t, addr) },
		func(acked func(...ackedRecord)) error {
			// Not idempotent: franz-go holds an idempotent producer's
			// records for a broker that went away instead of failing them,
			// and the writer must notice the death to end.
			cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("ev"),
				kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DisableIdempotentWrite(), kgo.ProducerLinger(time.Millisecond),
				kgo.RecordRetries(1), kgo.RecordDeliveryTimeout(5*time.Second), kgo.ProduceRequestTimeout(5*time.Second))
			if err != nil {
				return err
			}
			defer cl.Close()
			for i := 0; ; i++ {
				// A few hundred in flight at a time.
				var wg sync.WaitGroup
				var failed error
				var mu sync.Mutex
				for j := range 200 {
					v := fmt.Sprintf("m%d-%d", i, j)
					wg.Add(1)
					cl.Produce(context.Background(), &kgo.Record{Key: []byte(fmt.Sprint(j % 11)), Value: []byte(v)},
						func(r *kgo.Record, err error) {
							defer wg.Done()
							mu.Lock()
							defer mu.Unlock()
							if err != nil {
								failed = err
								return
							}
							acked(ackedRecord{r.Partition, r.Offset, v})
						})
				}
				wg.Wait()
				if failed != nil {
					return failed
				}
			}
		})
}

// TestServeRestartsFailedPipeline: a pipeline of serve that fails — here
// its results topic cannot be written (serve runs under ulimit -S -f 0, a
// full disk as a write sees it) — is restarted from its last checkpoint
// with a growing delay, while serve keeps answering; /api/v1/pipelines and
// /metrics show the restarts and the error. Once writes succeed again the
// pipeline catches up: the results topic holds exactly what a run
// following the log prints. serve used to exit with the pipeline.
func TestServeRestartsFailedPipeline(t *testing.T) {
	c := newCLI(t)
	_, want := followData(t, c, 7)
	cfg := filepath.Join(t.TempDir(), "serve.yaml")
	os.WriteFile(cfg, []byte(apiHealthYAML+"      - {type: topic, topic: api-health.results}\n"), 0o644)
	addr := freePort(t)
	cmd := c.cmdNoSpace(context.Background(), "serve", "--config", cfg, "--http", addr)
	start(t, cmd)
	base := "http://" + addr
	type view struct {
		Restarts  int64  `json:"restarts"`
		LastError string `json:"last_error"`
	}
	pipelines := func() []view {
		var vs []view
		if body, err := getBody(base + "/api/v1/pipelines"); err == nil {
			json.Unmarshal([]byte(body), &vs)
		}
		return vs
	}
	waitForOr(t, func() bool {
		vs := pipelines()
		return len(vs) == 1 && vs[0].Restarts >= 2 && strings.Contains(vs[0].LastError, "file too large")
	}, func() string { return fmt.Sprintf("pipelines: %+v", pipelines()) })
	if body, _ := getBody(base + "/metrics"); !regexp.MustCompile(`fastflow_pipeline_restarts_total\{pipeline="api-health"\} [1-9]`).MatchString(body) {
		t.Fatalf("/metrics has no restarts:\n%s", body)
	}
	lim := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	if err := unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_FSIZE, &lim, nil); err != nil {
		t.Fatal(err)
	}
	results := func() int {
		r := c.run("", "consume", "api-health.results")
		return strings.Count(r.stdout, "\n")
	}
	waitForOr(t, func() bool { return results() >= len(want) }, func() string {
		return fmt.Sprintf("%d results of %d; pipelines %+v", results(), len(want), pipelines())
	})
	if n := results(); n != len(want) {
		t.Fatalf("the results topic holds %d lines, a following run prints %d", n, len(want))
	}
}

// TestServeTwiceRefused: a second serve of the same pipelines on one data
// directory exits at once naming the first (it does not wait, restarting,
// for the first to go: pipelines restart on failures, not on this).
func TestServeTwiceRefused(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "events", "--partitions", "1")
	cfg := filepath.Join(t.TempDir(), "serve.yaml")
	os.WriteFile(cfg, []byte(apiHealthYAML), 0o644)
	startHTTP(t, c, "serve", "--config", cfg)
	waitFor(t, func() bool { // the first holds the pipeline's lock
		b, _ := os.ReadFile(filepath.Join(c.dir, "pipelines", "api-health.lock"))
		return len(b) > 0
	})
	if r := c.run("", "serve", "--config", cfg, "--http", freePort(t)); r.code != 1 ||
		!strings.Contains(r.stderr, "pipeline api-health: already running on this data directory (pid ") {
		t.Fatalf("second serve: exit %d\n%s", r.code, r.stderr)
	}
}

// TestCheckpointOfAnotherDefinitionRefused: after the pipeline's window
// changed, its checkpoint is refused, naming the file to delete, by run
// and by serve alike: serve exits at once rather than restarting a
// pipeline that cannot start (a mistake to report, not a failure to
// outlast); once the file is deleted, serve starts.
func TestCheckpointOfAnotherDefinitionRefused(t *testing.T) {
	c := newCLI(t)
	cfg, want := followData(t, c, 8)
	runFollowing(t, c, cfg, syscall.SIGTERM, func(got []string) bool { return len(got) >= len(want)/2 })
	changed := filepath.Join(t.TempDir(), "changed.yaml")
	os.WriteFile(changed, []byte(strings.Replace(apiHealthYAML, "size: 1m", "size: 2m", 1)), 0o644)
	msg := "was written for another definition of pipeline api-health"
	if r := c.run("", "run", changed); r.code != 1 || !strings.Contains(r.stderr, msg) {
		t.Fatalf("run with a changed window: exit %d, %s", r.code, r.stderr)
	}
	if r := c.run("", "serve", "--config", changed, "--http", freePort(t)); r.code != 1 || !strings.Contains(r.stderr, msg) {
		t.Fatalf("serve with a changed window: exit %d\n%s", r.code, r.stderr)
	}
	os.Remove(filepath.Join(c.dir, "pipelines", "api-health.checkpoint"))
	startHTTP(t, c, "serve", "--config", changed)
}

// TestIngestFullDisk: an HTTP ingest whose records span partitions, one of
// which cannot be written (a file-size limit on serve, the kernel's EFBIG:
// a full disk as a write sees it), stores the others' records and answers
// 507 with every record's offset (-1 where it was not stored) and each
// failed partition's error, so that a client retries only what is missing.
// The failed write reached the file in part; none of it is served, and
// once space is back the partition's offsets go on densely.
func TestIngestFullDisk(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "events", "--partitions", "3")
	addr := freePort(t)
	srv := c.cmd(context.Background(), "serve", "--http", addr)
	start(t, srv)
	base := "http://" + addr
	waitHealthy(t, base)
	type reply struct {
		Error   string `json:"error"`
		Records []struct {
			Partition int32 `json:"partition"`
			Offset    int64 `json:"offset"`
		} `json:"records"`
		Failed          int               `json:"failed"`
		PartitionErrors map[string]string `json:"partition_errors"`
	}
	post := func(query, body string) (int, reply) {
		t.Helper()
		resp, err := http.Post(base+"/topics/events/records"+query, "application/x-ndjson", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r reply
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, r
	}
	// Partition 0 well past the limit set below, 1 and 2 well under it.
	var big strings.Builder
	for i := range 500 {
		fmt.Fprintf(&big, `{"n":%d,"pad":"%s"}`+"\n", i, strings.Repeat("x", 200))
	}
	if code, r := post("?partition=0", big.String()); code != 200 {
		t.Fatalf("filling partition 0: %d %+v", code, r)
	}
	keys := map[int32][]string{} // 10 keys for each partition
	for i := 0; len(keys[0]) < 10 || len(keys[1]) < 10 || len(keys[2]) < 10; i++ {
		k := fmt.Sprint("k", i)
		if p := partition.ForKey([]byte(k), 3); len(keys[p]) < 10 {
			keys[p] = append(keys[p], k)
		}
	}
	batch := func(round string) (string, map[string]int32) {
		var b strings.Builder
		where := map[string]int32{}
		for p := range int32(3) {
			for _, k := range keys[p] {
				fmt.Fprintf(&b, `{"k":%q,"round":%q}`+"\n", k, round)
				where[k] = p
			}
		}
		return b.String(), where
	}
	// A file-size limit 100 bytes over partition 0's segment, far over
	// partitions 1's and 2's: partition 0's write of 10 records (~400
	// bytes) reaches the file in part, then fails.
	var desc struct {
		PartitionOffsets []struct {
			SizeBytes int64 `json:"size_bytes"`
			Segments  int   `json:"segments"`
		} `json:"partition_offsets"`
	}
	if err := json.Unmarshal([]byte(c.ok("", "topic", "describe", "events")), &desc); err != nil || desc.PartitionOffsets[0].Segments != 1 {
		t.Fatalf("describe: %v %+v", err, desc)
	}
	lim := unix.Rlimit{Cur: uint64(desc.PartitionOffsets[0].SizeBytes) + 100, Max: unix.RLIM_INFINITY}
	if err := unix.Prlimit(srv.Process.Pid, unix.RLIMIT_FSIZE, &lim, nil); err != nil {
		t.Fatal(err)
	}
	body, _ := batch("full")
	code, r := post("?key_field=k", body)
	if code != http.StatusInsufficientStorage || r.Failed != 10 || len(r.Records) != 30 ||
		!strings.Contains(r.PartitionErrors["0"], "file too large") || len(r.PartitionErrors) != 1 ||
		!strings.HasPrefix(r.Error, "10 of 30 records not stored: ") {
		t.Fatalf("ingest with partition 0 full: %d %+v", code, r)
	}
	for i, rec := range r.Records {
		want := int64(-1)
		if rec.Partition != 0 {
			want = int64(i % 10) // partitions 1 and 2 were empty
		}
		if rec.Offset != want {
			t.Fatalf("record %d: %+v, want offset %d", i, rec, want)
		}
	}
	lim.Cur = unix.RLIM_INFINITY
	if err := unix.Prlimit(srv.Process.Pid, unix.RLIMIT_FSIZE, &lim, nil); err != nil {
		t.Fatal(err)
	}
	// The client retries what was not stored.
	var retry strings.Builder
	for _, k := range keys[0] {
		fmt.Fprintf(&retry, `{"k":%q,"round":"retry"}`+"\n", k)
	}
	if code, r := post("?key_field=k", retry.String()); code != 200 || r.Records[0].Offset != 500 || r.Records[9].Offset != 509 {
		t.Fatalf("retry: %d %+v", code, r)
	}
	got := parseConsumed(t, c.ok("", "consume", "events"))
	count := map[int32]int{}
	for _, rec := range got {
		count[rec.Partition]++
		var v struct {
			K, Round string
		}
		json.Unmarshal(rec.Value, &v)
		if rec.Partition == 0 && rec.Offset >= 500 && v.Round != "retry" || rec.Partition != 0 && v.Round != "full" {
			t.Fatalf("%d/%d holds %s", rec.Partition, rec.Offset, rec.Value)
		}
	}
	if count[0] != 510 || count[1] != 10 || count[2] != 10 {
		t.Fatalf("the topic holds %v records per partition, want 510, 10, 10", count)
	}
}

// TestServeKilledWhileIngestingWritesResultsOnce: serve runs SPEC's
// pipeline (with tumbling, then hopping windows) with a results topic, a
// dead-letter and a late topic while a client posts events in chunks, and
// is killed with SIGKILL at random moments and started again. Records came in while each killed server
// read, so its restart cuts its rounds elsewhere; still, no record is in
// the three topics twice (each restart skipped what the killed server
// wrote after its checkpoint), the dead-letter and late topics hold what
// a run over the final log counts, and every window's last line in the
// results topic has the metrics that run gives it (nothing lost).
func TestServeKilledWhileIngestingWritesResultsOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	for _, window := range []string{"{type: tumbling, size: 1m}", "{type: hopping, size: 3m, advance: 1m}", "{type: session, gap: 2s}"} {
		t.Run(window, func(t *testing.T) { checkServeKilledWhileIngesting(t, window) })
	}
}

func checkServeKilledWhileIngesting(t *testing.T, windowYAML string) {
	c := newCLI(t)
	dir := t.TempDir()
	lines := genEvents(24000, 21)
	_, plain := writeRunFiles(t, dir, lines)
	yaml := strings.Replace(apiHealthYAML, "{type: tumbling, size: 1m}", windowYAML, 1)
	cfg := filepath.Join(dir, "serve.yaml")
	os.WriteFile(cfg, []byte("topics:\n  - {name: events, partitions: 3}\n"+yaml+
		"      - {type: topic, topic: api-health.results}\n    dlq: true\n    late_topic: true\n"), 0o644)
	addr := freePort(t)
	base := "http://" + addr
	var srv *exec.Cmd
	exited := make(chan struct{})
	startServe := func() {
		srv = c.cmd(context.Background(), "serve", "--config", cfg, "--http", addr)
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		exited = make(chan struct{})
		go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(srv, exited)
		waitHealthy(t, base)
	}
	startServe()
	defer func() { srv.Process.Kill(); <-exited }()
	rng := rand.New(rand.NewPCG(21, 1))
	kills := 0
	for i := 0; i < len(lines); i += 2000 {
		body := strings.Join(lines[i:min(i+2000, len(lines))], "\n") + "\n"
		resp, err := http.Post(base+"/topics/events/records?key_field=service", "application/x-ndjson", strings.NewReader(body))
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("POST: %v %v", err, resp)
		}
		resp.Body.Close()
		if rng.IntN(2) == 0 {
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
			srv.Process.Signal(syscall.SIGKILL)
			<-exited
			kills++
			startServe()
		}
	}
	// Everything read, then stopped.
	waitFor(t, func() bool {
		body, err := getBody(base + "/api/v1/pipelines")
		return err == nil && strings.Contains(body, fmt.Sprintf(`"records":%d,`, len(lines)))
	})
	srv.Process.Signal(syscall.SIGTERM)
	<-exited
	t.Logf("%d kills", kills)

	// The reference: a run over the final log (24,000 records: each chunk
	// posted once).
	os.WriteFile(plain, []byte(yaml), 0o644)
	ref := strings.Split(strings.TrimSpace(c.ok("", "run", plain, "--until-end")), "\n")
	topics := map[string][]string{}
	for _, topic := range []string{"api-health.results", "api-health.dlq", "api-health.late"} {
		topics[topic] = consumedValues(t, c, topic)
	}
	checkResultsOnce(t, ref, len(lines), topics, !strings.Contains(windowYAML, "session"))
}

// checkResultsOnce checks the topics a pipeline wrote (by name: NAME.dlq,
// NAME.late, or results) against ref, the output of a run over the final
// log of n records: no record twice; the dead-letter and late topics hold
// as many as the run rejected and dropped as late; with lastLines, each
// window's last line in a results topic has the run's metrics. (Not for
// sessions: a following run may emit a session that a late event then
// merges into one starting earlier, a window the run over the whole log,
// its rounds cut elsewhere, never emits.)
func checkResultsOnce(t *testing.T, ref []string, n int, topics map[string][]string, lastLines bool) {
	t.Helper()
	var stats struct {
		Records     int64            `json:"records"`
		Rejected    map[string]int64 `json:"rejected"`
		LateDropped int64            `json:"late_dropped"`
	}
	if err := json.Unmarshal([]byte(ref[len(ref)-1]), &stats); err != nil || stats.Records != int64(n) {
		t.Fatalf("reference stats %s: %v", ref[len(ref)-1], err)
	}
	rejected := int64(0)
	for _, n := range stats.Rejected {
		rejected += n
	}
	type window struct{ key, start string }
	final := func(lines []string) map[window]string {
		m := map[window]string{}
		for _, l := range lines {
			var w struct {
				Type    string          `json:"type"`
				Key     json.RawMessage `json:"key"`
				Start   string          `json:"window_start"`
				Metrics json.RawMessage `json:"metrics"`
			}
			if json.Unmarshal([]byte(l), &w) == nil && w.Type == "window" {
				m[window{string(w.Key), w.Start}] = string(w.Metrics)
			}
		}
		return m
	}
	want := final(ref)
	for topic, values := range topics {
		seen := map[string]bool{}
		for _, v := range values {
			if seen[v] {
				t.Fatalf("%s holds this record twice: %s", topic, v)
			}
			seen[v] = true
		}
		switch {
		case strings.HasSuffix(topic, ".dlq"):
			if int64(len(values)) != rejected {
				t.Fatalf("%s holds %d records, the run rejected %d", topic, len(values), rejected)
			}
		case strings.HasSuffix(topic, ".late"):
			if int64(len(values)) != stats.LateDropped {
				t.Fatalf("%s holds %d records, the run dropped %d as late", topic, len(values), stats.LateDropped)
			}
		case lastLines:
			got := final(values)
			if len(got) == 0 {
				t.Fatalf("no window in %s", topic)
			}
			for w, m := range got {
				if want[w] != m {
					t.Fatalf("%s: window %v: last line's metrics %s, the run over the log gives %s", topic, w, m, want[w])
				}
			}
		}
	}
}

// TestServeKillLosesNoAcknowledgedKafkaCommit: a Kafka client commits a
// group's offsets through serve's listener while serve is killed with
// SIGKILL: afterwards each partition's committed offset is the last one
// acknowledged, or the one whose commit was in flight.
func TestServeKillLosesNoAcknowledgedKafkaCommit(t *testing.T) {
	c := newCLI(t)
	c.ok("", "topic", "create", "ev", "--partitions", "3")
	addr := freePort(t)
	srv, exited := startServeToKill(t, c, "--http", freePort(t), "--kafka", addr)
	waitKafka(t, addr)

	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequestRetries(0), kgo.RequestTimeoutOverhead(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var mu sync.Mutex
	var acked, tried [3]int64 // the offsets of the last commit acknowledged and sent, by partition
	done := make(chan error, 1)
	go func() {
		for o := int64(1); ; o++ {
			p := int32(o % 3)
			req := kmsg.NewPtrOffsetCommitRequest()
			req.Group, req.Generation = "committer", -1 // a group without members, as kafka-consumer-groups --reset-offsets commits
			rt := kmsg.NewOffsetCommitRequestTopic()
			rt.Topic = "ev"
			rp := kmsg.NewOffsetCommitRequestTopicPartition()
			rp.Partition, rp.Offset = p, o
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			mu.Lock()
			tried[p] = o
			mu.Unlock()
			resp, err := req.RequestWith(context.Background(), cl)
			if err == nil {
				err = kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode)
			}
			if err != nil {
				done <- err
				return
			}
			mu.Lock()
			acked[p] = o
			mu.Unlock()
		}
	}()
	killAt := int64(300 + rand.IntN(600))
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return acked[0]+acked[1]+acked[2] >= 3*killAt })
	killServe(t, srv, exited, done, "committer")
	mu.Lock()
	defer mu.Unlock()
	rows := 0
	for _, line := range strings.Split(strings.TrimSpace(c.ok("", "group", "describe", "committer")), "\n") {
		var row struct {
			Partition int32 `json:"partition"`
			Committed int64 `json:"committed"`
		}
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("describe: %q: %v", line, err)
		}
		if p := row.Partition; row.Committed != acked[p] && row.Committed != tried[p] {
			t.Fatalf("partition %d: committed %d after SIGKILL; the last commit acknowledged was %d, the last sent %d", p, row.Committed, acked[p], tried[p])
		}
		rows++
	}
	if rows != 3 {
		t.Fatalf("describe shows %d partitions, want 3", rows)
	}
	t.Logf("commits acknowledged before SIGKILL: %v (last sent %v)", acked, tried)
}
