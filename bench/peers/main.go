// Command peers measures fastflow against what a user would run instead,
// on the same generated events and the same machine, in one run: NATS
// JetStream embedded in-process (file storage) for ingest and reading, and
// the pipeline a user writes by hand — a JetStream consumer, encoding/json,
// a map of windows, sort-based percentiles — for the api-health windows.
// The results of the two pipelines are compared before their speeds are.
//
// It lives in its own module so that fastflow's go.mod does not carry
// nats-server. `make bench-peers` runs it:
//
//	cd bench/peers && go run . -events 1000000
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"sort"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fastflow/fastflow/bench"
	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/log/producer"
	"github.com/fastflow/fastflow/pipeline"
	"github.com/fastflow/fastflow/pipeline/demo"
)

func main() {
	events := flag.Int("events", 1_000_000, "events")
	partitions := flag.Int("partitions", 6, "fastflow partitions")
	asJSON := flag.Bool("json", false, "print the rows as JSON (for bench/cmd/benchmd)")
	out := flag.String("out", "", "also write the rows as JSON to this file")
	runs := flag.Int("runs", 3, "runs of each read and pipeline measure (the median is reported)")
	flag.Parse()
	rows, err := Compare(context.Background(), *events, int32(*partitions), max(1, *runs))
	if err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
	doc := map[string]any{"events": *events, "rows": rows}
	if *asJSON {
		json.NewEncoder(os.Stdout).Encode(doc)
		return
	}
	if *out != "" {
		b, _ := json.Marshal(doc)
		if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "peers:", err)
			os.Exit(1)
		}
	}
	h := bench.Machine()
	fmt.Printf("peers: %d events on %s (%d logical cores, GOMAXPROCS %d), %s\n", *events, h.CPU, h.LogicalCores, h.GOMAXPROCS, time.Now().UTC().Format(time.RFC3339))
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "measure\tfastflow\tpeer\tratio\tpeer is\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%.0f/s\t%.0f/s\t%.2fx\t%s\t\n", r.What, r.Fastflow, r.Peer, r.Fastflow/r.Peer, r.PeerIs)
	}
	tw.Flush()
}

// Row is one line of the comparison.
type Row struct {
	What     string  `json:"what"`
	Fastflow float64 `json:"fastflow"` // per second
	Peer     float64 `json:"peer"`
	PeerIs   string  `json:"peer_is"`
}

// Compare runs every measure on n generated events: ingest once (it
// fills the stores), reading and the pipelines runs times each, keeping
// the median rate (one run of a shared 2-vCPU VM can be a third off).
func Compare(ctx context.Context, n int, partitions int32, runs int) ([]Row, error) {
	dir, err := os.MkdirTemp("", "fastflow-peers-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	keys, values := generate(n)

	// NATS JetStream, embedded, file storage.
	ns, js, err := startNATS(dir)
	if err != nil {
		return nil, err
	}
	defer ns.Shutdown()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"events.>"}, Storage: jetstream.FileStorage})
	if err != nil {
		return nil, err
	}
	natsPub, err := timeIt(n, func() error { return publishNATS(js, keys, values) })
	if err != nil {
		return nil, fmt.Errorf("nats publish: %w", err)
	}
	natsRead, err := medianRate(runs, n, func() error { return readNATS(ctx, stream, n, func([]byte) {}) })
	if err != nil {
		return nil, fmt.Errorf("nats read: %w", err)
	}
	var byHand *naive
	natsPipe, err := medianRate(runs, n, func() error {
		byHand = newNaive()
		return readNATS(ctx, stream, n, byHand.add)
	})
	if err != nil {
		return nil, fmt.Errorf("hand-written pipeline: %w", err)
	}

	// fastflow: the same events, produced (acks=1: written to the OS, as
	// JetStream's file store acknowledges before its periodic fsync), read,
	// and processed by the api-health pipeline.
	l, err := log.Open(dir+"/fastflow", log.Options{CleanupInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	t, err := l.CreateTopic("events", log.TopicConfig{Partitions: partitions, Retention: -1})
	if err != nil {
		return nil, err
	}
	ffAppend, err := timeIt(n, func() error {
		pr, err := producer.New(t, producer.Options{Acks: log.AcksLeader, Partition: -1})
		if err != nil {
			return err
		}
		for i := range values {
			if err := pr.Add(keys[i], values[i], 0); err != nil {
				return err
			}
		}
		return pr.Close()
	})
	if err != nil {
		return nil, err
	}
	ffRead, err := medianRate(runs, n, func() error { return readFastflow(t) })
	if err != nil {
		return nil, err
	}
	f, err := pipeline.Parse("api-health.yaml", demo.Config)
	if err != nil {
		return nil, err
	}
	f.Topics = nil
	var windows atomic.Int64
	var requests atomic.Int64
	ffPipe, err := medianRate(runs, n, func() error {
		windows.Store(0)
		requests.Store(0)
		return pipeline.Run(ctx, l, f, pipeline.Options{UntilEnd: true, Stdout: io.Discard, Observe: func(r *pipeline.Result) {
			if !r.Alert {
				windows.Add(1)
				var w struct {
					Metrics struct {
						RequestCount int64 `json:"request_count"`
					}
				}
				json.Unmarshal(r.Line, &w)
				requests.Add(w.Metrics.RequestCount)
			}
		}})
	})
	if err != nil {
		return nil, err
	}
	// Equal results first.
	nw, nr := byHand.result()
	if int64(nw) != windows.Load() || int64(nr) != requests.Load() {
		return nil, fmt.Errorf("the pipelines disagree: fastflow %d windows, %d requests; hand-written %d windows, %d requests",
			windows.Load(), requests.Load(), nw, nr)
	}
	return []Row{
		{"ingest (records)", ffAppend, natsPub, "NATS JetStream async publish, file storage"},
		{"read (records)", ffRead, natsRead, "JetStream pull consumer, batches of 1000"},
		{"api-health pipeline (events)", ffPipe, natsPipe, "JetStream consumer + encoding/json + map + sort"},
	}, nil
}

// medianRate runs f runs times and returns the median of n per second.
func medianRate(runs, n int, f func() error) (float64, error) {
	rates := make([]float64, runs)
	for i := range rates {
		r, err := timeIt(n, f)
		if err != nil {
			return 0, err
		}
		rates[i] = r
	}
	sort.Float64s(rates)
	return rates[runs/2], nil
}

func timeIt(n int, f func() error) (float64, error) {
	begin := time.Now()
	if err := f(); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(begin).Seconds(), nil
}

// generate makes the events: the demo's generator, seeded, 1,000 per
// second of event time (as fastflow bench).
func generate(n int) (keys, values [][]byte) {
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	gen := demo.NewGenerator(start, 1)
	for i := 0; i < n; i++ {
		v, svc := gen.Event(nil, start.Add(time.Duration(i)*time.Millisecond), 2*time.Second)
		keys = append(keys, []byte(svc))
		values = append(values, v)
	}
	return keys, values
}

func startNATS(dir string) (*server.Server, jetstream.JetStream, error) {
	ns, err := server.NewServer(&server.Options{JetStream: true, StoreDir: dir + "/nats", DontListen: true, NoLog: true, NoSigs: true})
	if err != nil {
		return nil, nil, err
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		return nil, nil, fmt.Errorf("nats-server did not start")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	return ns, js, err
}

func publishNATS(js jetstream.JetStream, keys, values [][]byte) error {
	for i := range values {
		if _, err := js.PublishAsync("events."+string(keys[i]), values[i]); err != nil {
			return err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
		return nil
	case <-time.After(5 * time.Minute):
		return fmt.Errorf("publish acks did not complete")
	}
}

func readNATS(ctx context.Context, stream jetstream.Stream, n int, each func([]byte)) error {
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	for got := 0; got < n; {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return err
		}
		for msg := range batch.Messages() {
			each(msg.Data())
			got++
		}
		if err := batch.Error(); err != nil {
			return err
		}
	}
	return nil
}

func readFastflow(t *log.Topic) error {
	buf := make([]log.Record, 0, 1024)
	for id := int32(0); id < t.Partitions(); id++ {
		p, err := t.Partition(id)
		if err != nil {
			return err
		}
		r, err := p.NewReader(0)
		if err != nil {
			return err
		}
		for r.Offset() < p.HighWatermark() {
			if buf, err = r.Read(buf[:0]); err != nil {
				return err
			}
		}
		r.Close()
	}
	return nil
}

// naive is the hand-written api-health pipeline: every event decoded with
// encoding/json into a map, one-minute windows per service in a map,
// response times kept and sorted for the percentiles.
type naive struct {
	windows map[string]*naiveWindow
}

type naiveWindow struct {
	count, errors int
	sum, max      float64
	rts           []float64
}

func newNaive() *naive { return &naive{windows: map[string]*naiveWindow{}} }

func (n *naive) add(b []byte) {
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return
	}
	ts, ok := m["ts"].(float64)
	if !ok {
		return
	}
	key := fmt.Sprintf("%v|%d", m["service"], int64(math.Floor(ts/60000)))
	w := n.windows[key]
	if w == nil {
		w = &naiveWindow{}
		n.windows[key] = w
	}
	w.count++
	if m["status"] == "error" {
		w.errors++
	}
	if rt, ok := m["response_time"].(float64); ok {
		w.rts = append(w.rts, rt)
		w.sum += rt
		w.max = math.Max(w.max, rt)
	}
}

// result computes every window's metrics, as the pipeline does at its end,
// and returns the number of windows and of requests.
func (n *naive) result() (windows, requests int) {
	keys := make([]string, 0, len(n.windows))
	for k := range n.windows {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sink float64
	for _, k := range keys {
		w := n.windows[k]
		sort.Float64s(w.rts)
		for _, q := range []float64{0.5, 0.95, 0.99} {
			if len(w.rts) > 0 {
				sink += w.rts[int(math.Ceil(q*float64(len(w.rts))))-1]
			}
		}
		windows++
		requests += w.count
	}
	_ = sink
	return windows, requests
}
