package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Tests against real components: Prometheus, Alertmanager and Chromium,
// from Debian's packages (.ci/run installs them). Each starts its own
// processes on 127.0.0.1, bounded in time, and stops them.

// need returns the path of a program the test needs: in CI a missing one
// fails the test, elsewhere it skips it.
func need(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed (.ci/run installs it)", names[0])
	}
	t.Skipf("%s is not installed", names[0])
	return ""
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs a process until the test ends (SIGTERM, then SIGKILL) and
// returns what it prints.
func start(t *testing.T, cmd *exec.Cmd) *syncBuffer {
	t.Helper()
	logs := new(syncBuffer)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(cmd.Path), tail(logs.String(), 3000))
		}
	})
	return logs
}

// announcedHTTP and announcedKafka are how serve and demo say where they
// listen.
var (
	announcedHTTP  = regexp.MustCompile(`(?:listening on|dashboard at) (http://[^/\s]+)/`)
	announcedKafka = regexp.MustCompile(`Kafka protocol on ([^\s,]+)`)
)

// announced waits until logs say where the server listens: its HTTP base
// URL, and with kafka its Kafka address.
func announced(t *testing.T, logs *syncBuffer, kafka bool) (base, kafkaAddr string) {
	t.Helper()
	waitForOr(t, func() bool {
		text := logs.String()
		h, k := announcedHTTP.FindStringSubmatch(text), announcedKafka.FindStringSubmatch(text)
		if h == nil || kafka && k == nil {
			return false
		}
		base = h[1]
		if k != nil {
			kafkaAddr = k[1]
		}
		return true
	}, logs.String)
	return base, kafkaAddr
}

// startListening runs c's serve or demo with args, on ports the system
// chooses (--http 127.0.0.1:0, and with kafka --kafka 127.0.0.1:0), until
// the test ends, and returns the HTTP base URL and the Kafka address it
// announces. (A port found free beforehand can be taken before the server
// binds it: "address already in use", seen in CI.)
func startListening(t *testing.T, c *cli, kafka bool, args ...string) (base, kafkaAddr string) {
	t.Helper()
	args = append(args, "--http", "127.0.0.1:0")
	if kafka {
		args = append(args, "--kafka", "127.0.0.1:0")
	}
	return announced(t, start(t, c.cmd(context.Background(), args...)), kafka)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// startDemo runs `fastflow demo` on a fresh port and waits for its API.
func startDemo(t *testing.T, extra ...string) string {
	t.Helper()
	return startHTTP(t, newCLI(t), append([]string{"demo", "--duration", "3m"}, extra...)...)
}

// startHTTP runs c's `serve` or `demo` with args on a port the system
// chooses until the test ends, waits for its API, and returns its base
// URL.
func startHTTP(t *testing.T, c *cli, args ...string) string {
	t.Helper()
	base, _ := startListening(t, c, false, args...)
	waitHealthy(t, base)
	return base
}

// waitHealthy waits until the server at base answers /healthz.
func waitHealthy(t *testing.T, base string) {
	t.Helper()
	waitFor(t, func() bool {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
}

func getBody(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// waitLong is waitFor with a longer bound, for things that take the demo
// its first minute.
func waitLong(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func TestPrometheusScrapesMetrics(t *testing.T) {
	prom := need(t, "prometheus")
	base := startDemo(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: fastflow
    static_configs: [{targets: ['%s']}]
`, strings.TrimPrefix(base, "http://"))), 0o644)
	promAddr := freePort(t)
	start(t, exec.Command(prom, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr))
	query := "http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(`fastflow_api_health_p95_response_time{service="payments"}`)
	var found string
	waitLong(t, "Prometheus has the window gauge", 90*time.Second, func() bool {
		body, err := getBody(query)
		if err != nil {
			return false
		}
		var r struct {
			Status string
			Data   struct {
				Result []struct {
					Metric map[string]string
					Value  []any
				}
			}
		}
		if json.Unmarshal([]byte(body), &r) != nil || r.Status != "success" || len(r.Data.Result) == 0 {
			return false
		}
		m := r.Data.Result[0].Metric
		found = fmt.Sprint(m, r.Data.Result[0].Value)
		return m["job"] == "fastflow" && m["service"] == "payments" && m["__name__"] == "fastflow_api_health_p95_response_time"
	})
	t.Logf("Prometheus: %s", found)
	// fastflow's own metrics arrive too.
	own := "http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(`fastflow_pipeline_records_total{pipeline="api-health"}`)
	if body, _ := getBody(own); !strings.Contains(body, `"pipeline":"api-health"`) {
		t.Fatalf("no fastflow_pipeline_records_total in Prometheus: %s", body)
	}
	// And the log's, as from kafka_exporter: the demo's events topic.
	logq := "http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(`sum(fastflow_log_high_watermark{topic="events"}) > 0`)
	if body, _ := getBody(logq); !strings.Contains(body, `"result":[{`) {
		t.Fatalf("no fastflow_log_high_watermark of the events topic in Prometheus: %s", body)
	}
}

// startAlertmanager runs Alertmanager on 127.0.0.1 until the test ends,
// routing every alert to a receiver that sends nothing; it returns its
// address once it is ready.
func startAlertmanager(t *testing.T) string {
	am := need(t, "prometheus-alertmanager", "alertmanager")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	os.WriteFile(cfg, []byte("route: {receiver: blackhole, group_wait: 1s, group_interval: 1s}\nreceivers: [{name: blackhole}]\n"), 0o644)
	addr := freePort(t)
	start(t, exec.Command(am, "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address="))
	waitFor(t, func() bool { _, err := getBody("http://" + addr + "/-/ready"); return err == nil })
	return addr
}

func TestAlertmanagerReceivesDemoAlerts(t *testing.T) {
	amAddr := startAlertmanager(t)
	startDemo(t, "--webhook", "http://"+amAddr+"/api/v2/alerts")
	type amAlert struct {
		Labels   map[string]string
		Status   struct{ State string }
		StartsAt string
		EndsAt   string
	}
	find := func() (amAlert, bool) {
		body, err := getBody("http://" + amAddr + "/api/v2/alerts")
		if err != nil {
			return amAlert{}, false
		}
		var list []amAlert
		json.Unmarshal([]byte(body), &list)
		for _, a := range list {
			if a.Labels["alertname"] == "high-error-rate" && a.Labels["service"] == "payments" {
				return a, true
			}
		}
		return amAlert{}, false
	}
	var firing amAlert
	waitLong(t, "Alertmanager has high-error-rate firing", 90*time.Second, func() bool {
		a, ok := find()
		firing = a
		return ok && a.Status.State == "active"
	})
	if firing.Labels["severity"] != "critical" || firing.Labels["pipeline"] != "api-health" {
		t.Fatalf("alert labels %v", firing.Labels)
	}
	// Resolved: Alertmanager drops an alert from its list once its endsAt has passed.
	waitLong(t, "the alert resolves in Alertmanager", 90*time.Second, func() bool {
		_, ok := find()
		return !ok
	})
	t.Logf("Alertmanager: firing since %s, then resolved", firing.StartsAt)
}

// TestAlertmanagerTakesAnyGroupBy: a pipeline grouped by a nested field
// (host.name), one with a dash (a-b) and one named as an alert's own label
// (severity) sends Alertmanager alerts it takes. Alertmanager refuses a
// whole post holding a label name outside [a-zA-Z_][a-zA-Z0-9_]* (400,
// "invalid label set"): such a pipeline's alerts never arrived.
func TestAlertmanagerTakesAnyGroupBy(t *testing.T) {
	amAddr := startAlertmanager(t)
	c := newCLI(t)
	c.ok("", "topic", "create", "events", "--partitions", "1")
	c.ok(`{"ts":1795341600000,"host":{"name":"h1"},"a-b":"x","severity":"low"}`+"\n", "produce", "events")
	pipes := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(pipes, []byte(`pipelines:
  - name: hosts
    source: {topic: events}
    time: {field: ts}
    group_by: [host.name, a-b, severity]
    window: {type: tumbling, size: 1m}
    metrics:
      - {name: n, agg: count}
    alerts:
      - {name: busy, when: 'n > 0', severity: page}
    sinks:
      - {type: webhook, url: 'http://`+amAddr+`/api/v2/alerts', format: alertmanager}
`), 0o644)
	c.ok("", "run", pipes, "--until-end") // waits for the webhook to deliver
	body, err := getBody("http://" + amAddr + "/api/v2/alerts")
	if err != nil {
		t.Fatal(err)
	}
	var list []struct{ Labels map[string]string }
	json.Unmarshal([]byte(body), &list)
	want := map[string]string{"alertname": "busy", "severity": "page", "pipeline": "hosts", "host_name": "h1", "a_b": "x", "severity_2": "low"}
	if len(list) != 1 || !maps.Equal(list[0].Labels, want) {
		t.Fatalf("Alertmanager holds %s, want one alert labelled %v", body, want)
	}
}

// openPage opens url in a headless browser until the test ends, and
// returns a context for the page's actions, bounded to a minute.
func openPage(t *testing.T, browser, url string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1600, 1250),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	// The first call starts the browser: no timeout on it (chromedp's rule).
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	wctx, cancelWait := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(cancelWait)
	return wctx
}

func TestDashboardInChromium(t *testing.T) {
	browser := need(t, "chromium", "chromium-browser", "google-chrome")
	base := startDemo(t)
	// Let the demo's first incident fire.
	waitLong(t, "an alert in the demo", 90*time.Second, func() bool {
		body, _ := getBody(base + "/api/v1/alerts")
		return strings.Contains(body, "high-error-rate")
	})
	wctx := openPage(t, browser, base+"/")
	// Scripts ran: the charts drew on canvases, the table and the alerts filled in.
	if err := chromedp.Do(wctx,
		chromedp.WaitVisible(chromedp.CSS(`#charts canvas`)),
		chromedp.WaitVisible(chromedp.CSS(`#recent .alert`)),
		chromedp.Sleep(2*time.Second), // a few more windows over the stream
	); err != nil {
		t.Fatal(err)
	}
	value := func(a chromedp.Action[string]) string {
		t.Helper()
		v, err := chromedp.Run(wctx, a)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	charts := value(chromedp.Evaluate[string](`String(document.querySelectorAll("#charts section").length)`))
	keys := value(chromedp.Evaluate[string](`String(document.querySelectorAll("#current tr").length - 1)`))
	alerts := value(chromedp.Text(chromedp.CSS(`#recent`)))
	conn := value(chromedp.Text(chromedp.CSS(`#conn`)))
	// The topics panel: the demo's events topic and the results topic, with their records.
	topics := value(chromedp.Evaluate[string](`[...document.querySelectorAll("#topics tr")].slice(1).map(r => r.cells[0].textContent + "=" + r.cells[2].textContent).join(" ")`))
	if !regexp.MustCompile(`(^| )events=[1-9]`).MatchString(topics) {
		t.Fatalf("topics panel: %q", topics)
	}
	png, err := chromedp.Run(wctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if charts != "9" || keys != "5" || !strings.Contains(alerts, "high-error-rate") || conn != "live" {
		t.Fatalf("dashboard: %s charts, %s keys, stream %q, alerts %q", charts, keys, conn, alerts)
	}
	// The screenshot goes to a temporary directory, or, with
	// FASTFLOW_UPDATE_SCREENSHOT=1, to docs/dashboard.png, the README's.
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	if os.Getenv("FASTFLOW_UPDATE_SCREENSHOT") != "" {
		shot = filepath.Join("..", "..", "docs", "dashboard.png")
	}
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("dashboard: %s charts, %s keys, screenshot %d bytes in %s", charts, keys, len(png), shot)
}

// TestDashboardShowsEventTextAsText: a group-by value is the events'
// text, which anyone who can post an event chooses: the dashboard shows
// <img src=x onerror=...> as those characters, and runs nothing. (It put
// such values into innerHTML as they were: a script in every viewer's
// browser.)
func TestDashboardShowsEventTextAsText(t *testing.T) {
	browser := need(t, "chromium", "chromium-browser", "google-chrome")
	c := newCLI(t)
	base := serveUsers(t, c)
	const evil = `<img src=x onerror="window.pwned=1">`
	user, _ := json.Marshal(evil)
	body := fmt.Sprintf(`{"ts":1795341600000,"user":%s}`+"\n"+`{"ts":1795341610000,"user":"closer"}`+"\n", user)
	resp, err := http.Post(base+"/topics/events/records?partition=0", "application/x-ndjson", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitFor(t, func() bool {
		body, _ := getBody(base + "/api/v1/pipelines/users/windows?last=1")
		return strings.Contains(body, `"type":"window"`)
	})
	wctx := openPage(t, browser, base+"/")
	if err := chromedp.Do(wctx, chromedp.WaitVisible(chromedp.CSS(`#current td`))); err != nil {
		t.Fatal(err)
	}
	got, err := chromedp.Run(wctx, chromedp.Evaluate[string](`JSON.stringify({
		shown: [...document.querySelectorAll("#current td")].some(td => td.textContent === `+string(user)+`),
		img: document.querySelectorAll("img").length,
		pwned: window.pwned === 1})`))
	if err != nil {
		t.Fatal(err)
	}
	if got != `{"shown":true,"img":0,"pwned":false}` {
		t.Fatalf("dashboard with a key %s: %s", evil, got)
	}
}

// TestDashboardKeysThatPrintAlike: keys whose values print alike (the
// string "null" and null, "100" and 100) are rows and lines of their own
// (the page had told keys apart by their label: it merged them into one
// row, the later window over the earlier), and a consumer group whose
// name holds a tab is one row of the lag table (the page split its
// "group<tab>topic" key on tabs).
func TestDashboardKeysThatPrintAlike(t *testing.T) {
	browser := need(t, "chromium", "chromium-browser", "google-chrome")
	c := newCLI(t)
	base := serveUsers(t, c)
	body := `{"ts":1795341600000,"user":"null"}
{"ts":1795341600001,"user":null}
{"ts":1795341600002,"user":"100"}
{"ts":1795341600003,"user":100}
{"ts":1795341610000,"user":"closer"}
`
	resp, err := http.Post(base+"/topics/events/records?partition=0", "application/x-ndjson", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c.ok("", "consume", "events", "--group", "tab\tname", "--max", "1")
	waitFor(t, func() bool {
		body, _ := getBody(base + "/api/v1/pipelines/users/windows?last=1")
		return strings.Count(body, `"type":"window"`) == 4
	})
	wctx := openPage(t, browser, base+"/")
	if err := chromedp.Do(wctx, chromedp.WaitVisible(chromedp.CSS(`#current td`)), chromedp.WaitVisible(chromedp.CSS(`#groups td`))); err != nil {
		t.Fatal(err)
	}
	got, err := chromedp.Run(wctx, chromedp.Evaluate[string](`JSON.stringify({
		rows: [...document.querySelectorAll("#current tr")].slice(1).map(tr => tr.cells[0].textContent).sort(),
		groups: [...document.querySelectorAll("#groups tr")].slice(1).map(tr => [tr.cells[0].textContent, tr.cells[1].textContent])})`))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"rows":["100","100","null","null"],"groups":[["tab\tname","events"]]}`; got != want {
		t.Fatalf("dashboard: %s\nwant %s", got, want)
	}
}

// TestDashboardManyKeys: with more keys than a chart can show, the
// dashboard charts the 10 updated most recently and lists the 50 updated
// most recently, from the windows API and the stream.
func TestDashboardManyKeys(t *testing.T) {
	browser := need(t, "chromium", "chromium-browser", "google-chrome")
	c := newCLI(t)
	base := serveUsers(t, c)
	// 80 users in each of 3 seconds, then the event that closes them.
	var b strings.Builder
	t0 := int64(1795341600000)
	for sec := range 3 {
		for u := range 80 {
			fmt.Fprintf(&b, `{"ts":%d,"user":"user-%02d"}`+"\n", t0+int64(sec*1000+u), u)
		}
	}
	fmt.Fprintf(&b, `{"ts":%d,"user":"late-comer"}`+"\n", t0+10_000)
	resp, err := http.Post(base+"/topics/events/records?partition=0", "application/x-ndjson", strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitFor(t, func() bool {
		body, _ := getBody(base + "/api/v1/pipelines/users/windows?last=1")
		return strings.Count(body, `"type":"window"`) == 80
	})
	wctx := openPage(t, browser, base+"/")
	if err := chromedp.Do(wctx, chromedp.WaitVisible(chromedp.CSS(`#charts canvas`))); err != nil {
		t.Fatal(err)
	}
	count := func(js string) string {
		t.Helper()
		v, err := chromedp.Run(wctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	series := count(`String(document.querySelectorAll("#charts section .u-legend .u-series").length - 1)`)
	rows := count(`String(document.querySelectorAll("#current tr").length - 1)`)
	// The coordinator emits the 80 users' windows of a second in key
	// order: the API gives the 50 updated last, the charts the last 10.
	charted := count(`[...document.querySelectorAll("#charts section .u-legend .u-series .u-label")].slice(1).map(e => e.textContent).join(" ")`)
	want := "user-70 user-71 user-72 user-73 user-74 user-75 user-76 user-77 user-78 user-79"
	if series != "10" || rows != "50" || charted != want {
		t.Fatalf("%s series (%s), %s rows; want 10 (%s), 50", series, charted, rows, want)
	}
}
