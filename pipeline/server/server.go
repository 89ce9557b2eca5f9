// Package server is fastflow's long-running server: it runs a file's
// pipelines continuously and serves HTTP ingest into the log, a query API
// over recent results, a server-sent event stream of results and alert
// transitions, Prometheus metrics, and a live dashboard embedded in the
// binary.
//
//	POST /topics/{topic}/records                 ingest JSON lines or a JSON array
//	GET  /api/v1/pipelines                       pipelines, their progress and lag
//	GET  /api/v1/pipelines/{name}/windows?key=&last=N&keys=K
//	GET  /api/v1/alerts                          active alerts and recent transitions
//	GET  /api/v1/stream                          server-sent events: window, alert, progress
//	GET  /metrics                                Prometheus exposition
//	GET  /healthz                                liveness
//	GET  /                                       the dashboard
//
// Results reach the server through a pipeline.Observer; nothing on the
// per-event path waits for HTTP clients.
package server

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grafana/pyroscope-go"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/pipeline"
)

//go:embed web
var webFS embed.FS

// Options configure a Server.
type Options struct {
	// Logger receives the server's and pipelines' warnings; nil discards.
	Logger *slog.Logger
	// Stdout receives stdout sinks' lines; nil discards them.
	Stdout io.Writer
	// Pyroscope, if set, is the URL of a Pyroscope server to stream
	// continuous profiles to.
	Pyroscope string
	// Workers per pipeline (0: one per CPU).
	Workers int
	// CheckpointInterval of the pipelines (0: their default).
	CheckpointInterval time.Duration
	// TrustedOrigins are the web origins ("https://app.example.com") whose
	// pages may POST from a browser; any other page's cross-origin POST is
	// refused (Handler).
	TrustedOrigins []string
}

// Server runs pipelines and serves HTTP.
type Server struct {
	log     *log.Log
	file    *pipeline.File
	opts    Options
	store   *store
	metrics *metrics
	runner  *pipeline.Runner
	started time.Time
	extra   []pipeline.Observer
	// ingestTurn counts ingest requests: each starts its records without
	// a key on the next partition.
	ingestTurn atomic.Uint32
	// closing is closed as Serve stops taking requests: the streams end
	// then (http.Server.Shutdown waits for the requests under way, and a
	// stream lasts as long as its client).
	closing     chan struct{}
	closingOnce sync.Once
}

// OnResult adds an observer of every result (before Serve).
func (s *Server) OnResult(o pipeline.Observer) { s.extra = append(s.extra, o) }

func (s *Server) observe(r *pipeline.Result) {
	s.store.observe(r)
	for _, o := range s.extra {
		o(r)
	}
}

// New prepares a server over l for the pipelines of f (f may have none).
func New(l *log.Log, f *pipeline.File, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Stdout == nil {
		opts.Stdout = io.Discard
	}
	if f == nil {
		f = &pipeline.File{}
	}
	s := &Server{log: l, file: f, opts: opts, store: newStore(f.Pipelines), started: time.Now(), closing: make(chan struct{})}
	s.metrics = newMetrics(s)
	s.store.latency = func(p string, sec float64) { s.metrics.latency.WithLabelValues(p).Observe(sec) }
	return s
}

// Handler returns the server's routes. A POST that a browser sends from
// another site's page (Sec-Fetch-Site, or an Origin other than the host)
// is refused with 403, unless its origin is trusted: the server listens
// on 127.0.0.1, and any web page open in a browser on the machine could
// otherwise write records into its topics (cross-site request forgery).
// Clients that are not browsers send neither header and are not
// affected.
func (s *Server) Handler() http.Handler {
	cop, _ := originProtection(s.opts.TrustedOrigins) // an origin it refuses is left out; serve checks them first (CheckOrigins)
	return cop.Handler(writeDeadline(s.routes()))
}

// CheckOrigins checks origins as Options.TrustedOrigins takes them.
func CheckOrigins(origins []string) error {
	_, err := originProtection(origins)
	return err
}

// originProtection refuses browsers' cross-origin POSTs but from origins;
// err is the first origin it cannot take.
func originProtection(origins []string) (*http.CrossOriginProtection, error) {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross-origin request from a browser refused (serve --allow-origin trusts an origin)")
	}))
	var first error
	for _, o := range origins {
		if err := cop.AddTrustedOrigin(o); err != nil && first == nil {
			first = err
		}
	}
	return cop, first
}

// routes returns the server's routes, unprotected.
func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /topics/{topic}/records", s.ingest)
	mux.HandleFunc("GET /api/v1/pipelines", s.pipelines)
	mux.HandleFunc("GET /api/v1/pipelines/{name}/windows", s.windows)
	mux.HandleFunc("GET /api/v1/alerts", s.alerts)
	mux.HandleFunc("GET /api/v1/topics", s.topics)
	mux.HandleFunc("GET /api/v1/groups", s.groups)
	mux.HandleFunc("GET /api/v1/stream", s.stream)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "uptime_seconds": int(time.Since(s.started).Seconds())})
	})
	static, _ := fs.Sub(webFS, "web")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := webFS.ReadFile("web/index.html")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(b)
	})
	return mux
}

// Serve starts the pipelines and serves HTTP on ln until ctx is done; then
// it stops taking requests, stops the pipelines (which checkpoint) and
// returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.opts.Pyroscope != "" {
		prof, err := pyroscope.Start(pyroscope.Config{ApplicationName: "fastflow", ServerAddress: s.opts.Pyroscope,
			Logger: nil, ProfileTypes: pyroscope.DefaultProfileTypes})
		if err != nil {
			return fmt.Errorf("pyroscope: %w", err)
		}
		defer prof.Stop()
	}
	runner, err := pipeline.Start(ctx, s.log, s.file, pipeline.Options{
		Workers: s.opts.Workers, Stdout: s.opts.Stdout, Logger: s.opts.Logger,
		Observe: s.observe, CheckpointInterval: s.opts.CheckpointInterval,
		// A pipeline that fails restarts from its checkpoint; the server,
		// its ingest and the other pipelines go on.
		RestartDelay: time.Second,
	})
	if err != nil {
		return err
	}
	s.runner = runner
	// A keep-alive connection idle for connIdleTimeout is closed (Kafka's
	// connections.max.idle.ms does the same); a body that stops arriving
	// is cut off by the ingest handler (bodyIdleTimeout); a response not
	// taken responseWriteTimeout after its request, by the write deadline
	// writeDeadline sets (the stream's, streamWriteTimeout per write). No
	// server WriteTimeout: /api/v1/stream's responses last as long as
	// their clients.
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: connIdleTimeout}
	srv.RegisterOnShutdown(func() { s.closingOnce.Do(func() { close(s.closing) }) })
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	go s.progress(ctx)
	var serveErr error
	var failed <-chan struct{} // pipelines end early only by failing
	if len(s.file.Pipelines) > 0 {
		failed = runnerDone(runner)
	}
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	case <-failed:
	}
	// Stop taking requests first (in-flight ones finish), then the pipelines.
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(shutdown)
	runner.Stop()
	if err := runner.Wait(); err != nil {
		return err
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}

func runnerDone(r *pipeline.Runner) <-chan struct{} {
	c := make(chan struct{})
	go func() { r.Wait(); close(c) }()
	return c
}

// progress publishes each pipeline's throughput and lag on the stream
// once a second.
func (s *Server) progress(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := map[string]int64{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range s.pipelineViews() {
			rate := float64(p.Stats.Records - last[p.Name])
			last[p.Name] = p.Stats.Records
			b, _ := json.Marshal(map[string]any{"pipeline": p.Name, "records_per_second": rate, "lag": p.Lag,
				"records": p.Stats.Records, "events": p.Stats.Events, "watermark": p.Watermark})
			s.store.hub.publish("progress", b)
		}
	}
}

// PipelineView is a pipeline as GET /api/v1/pipelines shows it.
type PipelineView struct {
	Name        string           `json:"name"`
	Source      string           `json:"source"`
	GroupBy     []string         `json:"group_by"`
	Window      string           `json:"window"`
	Metrics     []string         `json:"metrics"`
	Alerts      []string         `json:"alerts"`
	Stats       statsView        `json:"stats"`
	Watermark   string           `json:"watermark,omitempty"`
	OpenWindows int              `json:"open_windows"`
	Lag         map[string]int64 `json:"lag"`
	// Restarts counts the pipeline's failures, each followed by a restart
	// from its last checkpoint; LastError is the latest.
	Restarts    int64  `json:"restarts"`
	LastError   string `json:"last_error,omitempty"`
	LastErrorAt string `json:"last_error_at,omitempty"`
}

type statsView struct {
	Records     int64            `json:"records"`
	Events      int64            `json:"events"`
	Rejected    map[string]int64 `json:"rejected"`
	LateDropped int64            `json:"late_dropped"`
	SinkDropped int64            `json:"sink_dropped"`
}

func (s *Server) pipelineViews() []PipelineView {
	out := []PipelineView{}
	if s.runner == nil {
		return out
	}
	for _, p := range s.runner.Pipelines() {
		c := p.Config
		v := PipelineView{Name: c.Name, Source: c.Source.TopicName(), GroupBy: c.GroupBy, Lag: map[string]int64{},
			Stats: statsView{Rejected: map[string]int64{}}}
		if v.GroupBy == nil {
			v.GroupBy = []string{}
		}
		switch c.Window.Type {
		case "hopping":
			v.Window = fmt.Sprintf("hopping %v every %v", c.Window.Size, c.Window.Advance)
		case "session":
			v.Window = fmt.Sprintf("session, gap %v", c.Window.Gap)
		default:
			v.Window = fmt.Sprintf("tumbling %v", c.Window.Size)
		}
		for _, m := range c.Metrics {
			v.Metrics = append(v.Metrics, m.Name)
		}
		v.Alerts = []string{}
		for _, a := range c.Alerts {
			v.Alerts = append(v.Alerts, a.Name)
		}
		if f := p.Failure(); f != nil {
			v.Restarts, v.LastError, v.LastErrorAt = f.Restarts, f.Err.Error(), f.At.UTC().Format(time.RFC3339Nano)
		}
		if snap := p.Snapshot(); snap != nil {
			st := snap.Stats
			v.Stats = statsView{Records: st.Records, Events: st.Events, LateDropped: st.LateDropped, SinkDropped: st.SinkDropped,
				Rejected: map[string]int64{}}
			for r, n := range st.Rejected {
				if n > 0 {
					v.Stats.Rejected[pipeline.RejectReasons[r]] = n
				}
			}
			if snap.Watermark != math.MinInt64 && snap.Watermark != math.MaxInt64 {
				v.Watermark = time.UnixMilli(snap.Watermark).UTC().Format(time.RFC3339Nano)
			}
			v.OpenWindows = snap.OpenWindows
			ids := make([]int, 0, len(snap.Positions))
			for id := range snap.Positions {
				ids = append(ids, int(id))
			}
			sort.Ints(ids)
			for _, id := range ids {
				if hw, ok := snap.HighWater[int32(id)]; ok {
					v.Lag[strconv.Itoa(id)] = max(0, hw-snap.Positions[int32(id)])
				}
			}
		}
		out = append(out, v)
	}
	return out
}

func (s *Server) pipelines(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.pipelineViews())
}

func (s *Server) windows(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	last := 60
	if v := r.URL.Query().Get("last"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > keepWindows {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid last %q: want 1 to %d", v, keepWindows))
			return
		}
		last = n
	}
	keys := 0 // all
	if v := r.URL.Query().Get("keys"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid keys %q: want a count of at least 1", v))
			return
		}
		keys = n
	}
	ws, ok := s.store.windows(name, r.URL.Query().Get("key"), last, keys)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no pipeline %q", name))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"pipeline": name, "windows": ws})
}

func (s *Server) alerts(w http.ResponseWriter, r *http.Request) {
	active, recent := s.store.alerts()
	writeJSON(w, http.StatusOK, map[string]any{"active": active, "recent": recent})
}

// topics serves every topic with its configuration and its partitions'
// offsets and sizes (internal ones, "__...", left out), as `fastflow topic
// describe` prints them.
func (s *Server) topics(w http.ResponseWriter, r *http.Request) {
	writeDescription(w, func() (any, error) { return describeTopics(s.log) })
}

// groups serves every consumer group's committed offset and lag per
// partition, as `fastflow group describe` prints them.
func (s *Server) groups(w http.ResponseWriter, r *http.Request) {
	writeDescription(w, func() (any, error) { return describeGroups(s.log) })
}

// writeDescription writes what describe returns, or its error.
func writeDescription(w http.ResponseWriter, describe func() (any, error)) {
	out, err := describe()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func describeTopics(l *log.Log) ([]log.TopicInfo, error) {
	names, err := l.Topics()
	if err != nil {
		return nil, err
	}
	out := []log.TopicInfo{}
	for _, name := range names {
		if log.IsInternal(name) {
			continue
		}
		if t, err := l.Topic(name); err == nil { // else deleted meanwhile
			out = append(out, t.Describe(true))
		}
	}
	return out, nil
}

func describeGroups(l *log.Log) ([]log.GroupPartition, error) {
	names, err := l.Groups()
	if err != nil {
		return nil, err
	}
	out := []log.GroupPartition{}
	for _, name := range names {
		g, err := l.Group(name)
		if err != nil {
			continue
		}
		rows, err := g.Describe()
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
	}
	return out, nil
}

// streamWriteTimeout bounds each write of a stream: a client that takes
// none of it for that long (a stalled connection, a suspended laptop) is
// dropped, and its browser reconnects when it wakes.
var streamWriteTimeout = 30 * time.Second

// stream serves server-sent events: "window" and "alert" with the result
// lines, "progress" once a second per pipeline. A client that does not
// keep up loses events rather than slowing anything, and one that takes
// no write for streamWriteTimeout is dropped. Streams end as the server
// stops (a browser reconnects to the next one).
func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Connection", "keep-alive")
	w.WriteHeader(http.StatusOK)
	c := s.store.hub.subscribe()
	defer s.store.hub.unsubscribe(c)
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	fmt.Fprint(w, "retry: 2000\n\n") // reconnect after a restart
	for {
		if rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout)) != nil || rc.Flush() != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		case <-ping.C:
			fmt.Fprint(w, ": ping\n\n")
		case ev := <-c:
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.name, ev.data)
			// Send what else is queued in the same write.
			for n := len(c); n > 0; n-- {
				ev := <-c
				fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.name, ev.data)
			}
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(v)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
