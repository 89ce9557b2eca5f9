// Package bench is fastflow's end-to-end benchmark, `fastflow bench`: on a
// temporary data directory it produces generated events into a topic, runs
// the api-health pipeline over them, and measures ingest, processing and
// event-to-result latency, with the hardware it ran on. The Go benchmarks
// of each package and `make bench` measure the parts; this measures the
// whole, as a user would run it.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/log/producer"
	"github.com/fastflow/fastflow/pipeline"
	"github.com/fastflow/fastflow/pipeline/demo"
)

// Options configure a benchmark. Zero fields take their defaults.
type Options struct {
	Events     int           // events to produce and process; default 1,000,000
	Partitions int32         // of the topic; default 6
	Workers    int           // pipeline workers; default one per CPU
	Acks       log.Acks      // of the producer; default 1 (AcksLeader): set explicitly
	Batch      int           // producer batch size in records; default 1024
	Rate       float64       // latency mode: events per second; default 20,000
	Duration   time.Duration // latency mode: how long; default 10s; negative skips it
	Seed       uint64        // of the generator; default 1
	Dir        string        // data directory; default a temporary one, removed after
	// Progress, if set, is told how far each phase is.
	Progress func(phase string, done, total int64)
}

// Summary is a benchmark's result.
type Summary struct {
	Events     int      `json:"events"`
	Partitions int32    `json:"partitions"`
	Workers    int      `json:"workers"`
	Acks       string   `json:"acks"`
	Batch      int      `json:"batch"`
	Ingest     Ingest   `json:"ingest"`
	Process    Process  `json:"process"`
	Latency    Latency  `json:"latency"`
	PeakRSS    int64    `json:"peak_rss_bytes"`
	Hardware   Hardware `json:"hardware"`
}

// Ingest is the produce phase.
type Ingest struct {
	Seconds       float64 `json:"seconds"`
	Records       int64   `json:"records"`
	Bytes         int64   `json:"bytes"`
	RecordsPerSec float64 `json:"records_per_second"`
	MBPerSec      float64 `json:"mb_per_second"`
}

// Process is the pipeline over what was produced (--until-end).
type Process struct {
	Seconds        float64 `json:"seconds"`
	Records        int64   `json:"records"`
	Events         int64   `json:"events"`
	Windows        int64   `json:"windows"`
	Alerts         int64   `json:"alerts"`
	EventsPerSec   float64 `json:"events_per_second"`
	AllocsPerEvent float64 `json:"allocs_per_event"`
	BytesPerEvent  float64 `json:"bytes_per_event"`
}

// Latency is the fixed-rate mode: events produced at Rate while the
// pipeline follows the log; for each window result, the wall time from the
// window's end (when the event that closes it is produced) to its emission.
type Latency struct {
	Rate    float64 `json:"rate"`
	Seconds float64 `json:"seconds"`
	Events  int64   `json:"events"`
	Results int64   `json:"results"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	P999Ms  float64 `json:"p999_ms"`
	MaxMs   float64 `json:"max_ms"`
}

func (o *Options) defaults() {
	if o.Events <= 0 {
		o.Events = 1_000_000
	}
	if o.Partitions <= 0 {
		o.Partitions = 6
	}
	if o.Batch <= 0 {
		o.Batch = 1024
	}
	if o.Rate <= 0 {
		o.Rate = 20_000
	}
	if o.Duration == 0 {
		o.Duration = 10 * time.Second
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Progress == nil {
		o.Progress = func(string, int64, int64) {}
	}
}

// Run runs the benchmark.
func Run(ctx context.Context, o Options) (*Summary, error) {
	o.defaults()
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "fastflow-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	l, err := log.Open(dir, log.Options{CleanupInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	s := &Summary{Events: o.Events, Partitions: o.Partitions, Workers: o.Workers, Acks: o.Acks.String(), Batch: o.Batch, Hardware: Machine()}
	if s.Workers <= 0 {
		s.Workers = min(runtime.GOMAXPROCS(0), int(o.Partitions))
	}
	if err := s.ingest(ctx, l, o); err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	if err := s.process(ctx, l, o); err != nil {
		return nil, fmt.Errorf("process: %w", err)
	}
	if o.Duration > 0 {
		if err := s.latency(ctx, l, o); err != nil {
			return nil, fmt.Errorf("latency: %w", err)
		}
	}
	s.PeakRSS = PeakRSS()
	return s, nil
}

// eventStart is the event time of the first generated event: a fixed
// instant, so that runs are comparable.
var eventStart = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func (s *Summary) ingest(ctx context.Context, l *log.Log, o Options) error {
	t, err := l.CreateTopic("events", log.TopicConfig{Partitions: o.Partitions, Retention: -1})
	if err != nil {
		return err
	}
	// Generate first (1,000 events per second of event time), then time the
	// produce alone.
	gen := demo.NewGenerator(eventStart, o.Seed)
	values := make([][]byte, o.Events)
	keys := make([][]byte, o.Events)
	arena := make([]byte, 0, o.Events*112)
	for i := range values {
		start := len(arena)
		var svc string
		arena, svc = gen.Event(arena, eventStart.Add(time.Duration(i)*time.Millisecond), 2*time.Second)
		values[i] = arena[start:len(arena):len(arena)]
		keys[i] = []byte(svc)
	}
	pr, err := producer.New(t, producer.Options{Acks: o.Acks, Partition: -1, BatchRecords: o.Batch})
	if err != nil {
		return err
	}
	begin := time.Now()
	for i := range values {
		if err := pr.Add(keys[i], values[i], 0); err != nil {
			return err
		}
		if i%65536 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			o.Progress("ingest", int64(i), int64(o.Events))
		}
	}
	if err := pr.Close(); err != nil {
		return err
	}
	elapsed := time.Since(begin).Seconds()
	o.Progress("ingest", int64(o.Events), int64(o.Events))
	st := pr.Stats()
	s.Ingest = Ingest{Seconds: elapsed, Records: st.Records, Bytes: st.Bytes,
		RecordsPerSec: float64(st.Records) / elapsed, MBPerSec: float64(st.Bytes) / elapsed / 1e6}
	return nil
}

// apiHealth returns the demo's pipelines file, reading topic.
func apiHealth(topic string) (*pipeline.File, error) {
	f, err := pipeline.Parse("api-health.yaml", demo.Config)
	if err != nil {
		return nil, err
	}
	f.Topics = nil // the benchmark makes its topics
	f.Pipelines[0].Source.Topic = topic
	return f, nil
}

func (s *Summary) process(ctx context.Context, l *log.Log, o Options) error {
	f, err := apiHealth("events")
	if err != nil {
		return err
	}
	var windows, alerts atomic.Int64
	var done atomic.Int64
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				o.Progress("process", done.Load(), int64(o.Events))
			}
		}
	}()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	begin := time.Now()
	r, err := pipeline.Start(ctx, l, f, pipeline.Options{UntilEnd: true, Workers: o.Workers, Stdout: io.Discard,
		Observe: func(res *pipeline.Result) {
			if res.Alert {
				alerts.Add(1)
			} else {
				windows.Add(1)
			}
		}})
	if err != nil {
		close(stop)
		return err
	}
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				if snap := r.Pipelines()[0].Snapshot(); snap != nil {
					done.Store(snap.Stats.Records)
				}
			}
		}
	}()
	err = r.Wait()
	elapsed := time.Since(begin).Seconds()
	runtime.ReadMemStats(&after)
	close(stop)
	if err != nil {
		return err
	}
	o.Progress("process", int64(o.Events), int64(o.Events))
	snap := r.Pipelines()[0].Snapshot()
	s.Process = Process{Seconds: elapsed, Records: snap.Stats.Records, Events: snap.Stats.Events,
		Windows: windows.Load(), Alerts: alerts.Load(), EventsPerSec: float64(snap.Stats.Events) / elapsed}
	if n := float64(snap.Stats.Events); n > 0 {
		s.Process.AllocsPerEvent = float64(after.Mallocs-before.Mallocs) / n
		s.Process.BytesPerEvent = float64(after.TotalAlloc-before.TotalAlloc) / n
	}
	return nil
}

func (s *Summary) latency(ctx context.Context, l *log.Log, o Options) error {
	t, err := l.CreateTopic("latency", log.TopicConfig{Partitions: o.Partitions, Retention: -1})
	if err != nil {
		return err
	}
	f, err := apiHealth("latency")
	if err != nil {
		return err
	}
	// One-second windows closed as soon as an event of the next second
	// arrives, so that a short run emits many results.
	c := f.Pipelines[0]
	c.Window.Size = time.Second
	c.Time.MaxOutOfOrder, c.Time.AllowedLateness = 0, 0
	c.Name = "latency"
	hist := hdr.New(1, 600_000_000, 3) // µs, up to 10 minutes
	var mu sync.Mutex
	var results atomic.Int64
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	warm := time.Now().Add(time.Second) // the start is not steady state
	r, err := pipeline.Start(ctx, l, f, pipeline.Options{Workers: o.Workers, Stdout: io.Discard,
		CheckpointInterval: -1,
		Observe: func(res *pipeline.Result) {
			if res.Alert || time.Now().Before(warm) {
				return
			}
			us := time.Since(time.UnixMilli(res.EndMs)).Microseconds()
			mu.Lock()
			hist.RecordValue(max(1, min(us, 600_000_000)))
			mu.Unlock()
			results.Add(1)
		}})
	if err != nil {
		return err
	}
	gen := demo.NewGenerator(time.Now(), o.Seed+1)
	pr, err := producer.New(t, producer.Options{Acks: o.Acks, Partition: -1, BatchRecords: 64})
	if err != nil {
		return err
	}
	begin := time.Now()
	ticker := time.NewTicker(time.Millisecond)
	var sent int64
	var buf []byte
	for time.Since(begin) < o.Duration && ctx.Err() == nil {
		now := <-ticker.C
		due := int64(o.Rate * now.Sub(begin).Seconds())
		for ; sent < due; sent++ {
			var svc string
			buf, svc = gen.Event(buf[:0], now, 0) // event time is now
			if err := pr.Add([]byte(svc), buf, 0); err != nil {
				return err
			}
		}
		if err := pr.Flush(); err != nil {
			return err
		}
		o.Progress("latency", int64(time.Since(begin)/time.Millisecond), int64(o.Duration/time.Millisecond))
	}
	ticker.Stop()
	pr.Close()
	elapsed := time.Since(begin).Seconds()
	time.Sleep(200 * time.Millisecond) // the last results
	r.Stop()
	if err := r.Wait(); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	ms := func(q float64) float64 { return float64(hist.ValueAtQuantile(q)) / 1000 }
	s.Latency = Latency{Rate: o.Rate, Seconds: elapsed, Events: sent, Results: results.Load(),
		P50Ms: ms(50), P99Ms: ms(99), P999Ms: ms(99.9), MaxMs: float64(hist.Max()) / 1000}
	return nil
}
