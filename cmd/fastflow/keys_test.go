package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serveUsers serves a pipeline "users" that counts each user's events in
// windows of a second, over a 2-partition topic "events"; it returns the
// server's base URL.
func serveUsers(t *testing.T, c *cli) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "fastflow.yaml")
	os.WriteFile(cfg, []byte(`topics:
  - {name: events, partitions: 2}
pipelines:
  - name: users
    source: {topic: events, start: earliest}
    time: {field: ts, unit: ms, max_out_of_order: 100ms, idle_timeout: 1s}
    group_by: [user]
    window: {type: tumbling, size: 1s}
    metrics:
      - {name: n, agg: count}
`), 0o644)
	return startHTTP(t, c, "serve", "--config", cfg)
}

// TestServeForgetsKeys: a pipeline grouped by a field of unbounded
// cardinality, served for a while. /metrics shows the pipeline forgetting
// the keys nothing holds any more (the engine's key table), and the
// per-key gauges bounded by the server's store.
func TestServeForgetsKeys(t *testing.T) {
	c := newCLI(t)
	base := serveUsers(t, c)
	// 80,000 users, two events each, 500 a second of event time.
	const users = 80_000
	t0 := int64(1795341600000)
	for from := 0; from < users; from += 10_000 {
		var b strings.Builder
		for u := from; u < from+10_000; u++ {
			for i := range 2 {
				fmt.Fprintf(&b, `{"ts":%d,"user":"user-%06d"}`+"\n", t0+int64(u)*2+int64(i), u)
			}
		}
		resp, err := http.Post(base+"/topics/events/records", "application/x-ndjson", strings.NewReader(b.String()))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("ingest: %d", resp.StatusCode)
		}
	}
	metric := func(body, name string) float64 {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\{pipeline="users"\} (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			return -1
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	var body string
	waitLong(t, "records processed and keys forgotten", 60*time.Second, func() bool {
		body, _ = getBody(base + "/metrics")
		return metric(body, "fastflow_pipeline_records_total") == 2*users && metric(body, "fastflow_pipeline_keys_forgotten_total") > 0
	})
	keys, forgotten := metric(body, "fastflow_pipeline_keys"), metric(body, "fastflow_pipeline_keys_forgotten_total")
	series := strings.Count(body, "\nfastflow_users_n{")
	t.Logf("%d users: %v keys held, %v forgotten, %d gauge series", users, keys, forgotten, series)
	// The first sweep comes at 65,536 keys and frees all but the keys of
	// the windows still open; the store keeps at most 10,000 keys.
	if keys > 30_000 || forgotten < 40_000 || series > 10_000 || series == 0 {
		t.Fatalf("%d users: %v keys held, %v forgotten, %d gauge series", users, keys, forgotten, series)
	}
}

// forgetYAML groups by user: keys that come and go, more of them than
// the 65,536 at which a pipeline starts forgetting keys.
const forgetYAML = `pipelines:
  - name: api-health
    source: {topic: events, start: earliest}
    time: {field: ts, unit: ms, max_out_of_order: 200ms, allowed_lateness: 1s}
    group_by: [user]
    window: {type: tumbling, size: 1s}
    metrics:
      - {name: n, agg: count}
      - {name: errors, agg: count, where: 'status == "error"'}
      - {name: slowest, agg: max, field: rt}
    alerts:
      - {name: erroring, when: 'errors >= 1', for: 2}
    sinks:
      - {type: stdout}
`

// TestRunSigtermRestartForgettingKeys is TestRunSigtermRestart over
// 160,000 users that each come for a moment: both the uninterrupted
// following run and the restarted one forget keys as they go (and the
// checkpoint holds only the keys still in use), and the two runs together
// print exactly what one uninterrupted run prints.
func TestRunSigtermRestartForgettingKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	c := newCLI(t)
	cfg, want := forgetData(t, c)
	checkStopRestart(t, c, cfg, want)
}

// forgetData produces 160,000 users, two events each (and late ones),
// into a 3-partition topic of c keyed by user, with events an hour later
// on every partition; it returns the pipelines file and what a following
// run prints: all but the stats line and the windows of those last events.
func forgetData(t *testing.T, c *cli) (cfg string, want []string) {
	t.Helper()
	const users = 160_000
	t0 := int64(1795341600000)
	var lines []string
	for i := range 2 * users {
		u, ts := i/2, t0+int64(i)*2
		if i%97 == 0 {
			ts -= 1500 // late, and too late when the window is past its lateness
		}
		status := "ok"
		if u%10 == 0 {
			status = "error"
		}
		lines = append(lines, fmt.Sprintf(`{"ts":%d,"user":"u%d","status":%q,"rt":%d}`, ts, u, status, i%1000))
	}
	// Then an hour later, on every partition: the others' windows close.
	last := t0 + 2*2*users + 3600_000
	for u := range 12 {
		lines = append(lines, fmt.Sprintf(`{"ts":%d,"user":"last-%d","status":"ok","rt":1}`, last, u))
	}
	dir := t.TempDir()
	events := filepath.Join(dir, "events.jsonl")
	cfg = filepath.Join(dir, "users.yaml")
	os.WriteFile(events, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	os.WriteFile(cfg, []byte(forgetYAML), 0o644)
	c.ok("", "topic", "create", "events", "--partitions", "3")
	c.ok("", "produce", "events", "--key-field", "user", events)
	lastWindow := time.UnixMilli(last).UTC().Format(time.RFC3339)
	for _, l := range strings.Split(strings.TrimSpace(c.ok("", "run", cfg, "--until-end")), "\n") {
		if !strings.Contains(l, `"type":"stats"`) && !strings.Contains(l, `"window_start":"`+lastWindow) {
			want = append(want, l)
		}
	}
	if n := strings.Count(strings.Join(want, "\n"), `"state":"firing"`); n == 0 || len(want) < users {
		t.Fatalf("%d lines, %d alerts firing", len(want), n)
	}
	return cfg, want
}
