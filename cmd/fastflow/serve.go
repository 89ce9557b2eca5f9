package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/log/kafka"
	"github.com/fastflow/fastflow/pipeline"
	"github.com/fastflow/fastflow/pipeline/demo"
	"github.com/fastflow/fastflow/pipeline/server"
)

func newServeCmd(g *globals) *cobra.Command {
	var config, addr, kafkaAddr, advertise, pyro string
	var workers, autoCreate int
	var origins []string
	c := &cobra.Command{
		Use:   "serve [--config fastflow.yaml] [--http 127.0.0.1:8080] [--kafka 127.0.0.1:9092]",
		Short: "Run pipelines continuously and serve ingest, query API, stream, metrics and dashboard",
		Long: `Run the configuration's topics and pipelines continuously and serve, on --http:

  POST /topics/{topic}/records                      ingest JSON lines or a JSON array (?key_field=, ?acks=)
  GET  /api/v1/pipelines                            pipelines, progress, lag
  GET  /api/v1/pipelines/{name}/windows?key=&last=N recent window results
  GET  /api/v1/alerts                               active alerts and recent transitions
  GET  /api/v1/stream                               server-sent events of results and alerts
  GET  /metrics                                     Prometheus metrics
  GET  /healthz, GET /                              liveness, the dashboard

With --kafka, the same topics are also served over the Kafka wire protocol: Kafka
clients (kcat, librdkafka, the Java client, franz-go, kafkajs) produce, consume and
join consumer groups unchanged, with --kafka as their bootstrap server.

The configuration is a pipelines file (see fastflow run); its optional serve: section
sets http, kafka and kafka_advertise, which flags override. SIGINT/SIGTERM stop ingest,
checkpoint the pipelines and exit 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var f *pipeline.File
			o := serveOptions{addr: addr, kafka: kafkaAddr, advertise: advertise, autoCreate: autoCreate, pyroscope: pyro, workers: workers,
				origins: origins}
			if err := server.CheckOrigins(origins); err != nil {
				return usagef("invalid --allow-origin: %v", err)
			}
			if config != "" {
				var err error
				if f, err = loadPipelines(config); err != nil {
					return err
				}
				flags := cmd.Flags()
				if !flags.Changed("http") && f.Serve.HTTP != "" {
					o.addr = f.Serve.HTTP
				}
				if !flags.Changed("kafka") {
					o.kafka = f.Serve.Kafka
				}
				if !flags.Changed("kafka-advertise") {
					o.advertise = f.Serve.KafkaAdvertise
				}
				if !flags.Changed("kafka-auto-create") {
					o.autoCreate = f.Serve.KafkaAutoCreate
				}
			}
			if o.advertise != "" && o.kafka == "" {
				return usagef("--kafka-advertise needs --kafka")
			}
			if o.autoCreate < 0 || o.autoCreate > 1<<16 {
				return usagef("invalid --kafka-auto-create %d: a number of partitions, 0 for off", o.autoCreate)
			}
			if err := checkAddrs(o.kafka, o.advertise); err != nil {
				return err
			}
			return serve(cmd.Context(), g, f, o)
		},
	}
	c.Flags().StringVar(&config, "config", "", "pipelines file (topics: and pipelines:)")
	c.Flags().StringVar(&addr, "http", "127.0.0.1:8080", "HTTP listen address")
	c.Flags().StringVar(&kafkaAddr, "kafka", "", "also serve the Kafka protocol on this address, e.g. 127.0.0.1:9092")
	c.Flags().StringVar(&advertise, "kafka-advertise", "", "host:port Kafka clients are told to connect to (default: the --kafka address)")
	c.Flags().IntVar(&autoCreate, "kafka-auto-create", 0, "let Kafka clients create the topics they ask for, with this many partitions (0: off)")
	c.Flags().StringVar(&pyro, "pyroscope", "", "stream continuous profiles to this Pyroscope server URL")
	c.Flags().IntVar(&workers, "workers", 0, "worker goroutines per pipeline (default: one per CPU)")
	c.Flags().StringSliceVar(&origins, "allow-origin", nil, "web origin whose pages may POST from a browser, e.g. https://app.example.com (others: 403)")
	return c
}

// loadPipelines loads a pipelines file; configuration errors exit 2.
func loadPipelines(path string) (*pipeline.File, error) {
	f, err := pipeline.LoadFile(path)
	var ce *pipeline.ConfigError
	if errors.As(err, &ce) {
		return nil, usageError{err}
	}
	return f, err
}

type serveOptions struct {
	addr, pyroscope  string
	origins          []string // --allow-origin
	kafka, advertise string
	autoCreate       int
	workers          int
	log              *log.Log                    // when the caller opened it
	ready            func(url, kafkaAddr string) // called once listening (kafkaAddr "" without --kafka)
	beforeServe      func(l *log.Log, srv *server.Server) error
}

func serve(ctx context.Context, g *globals, f *pipeline.File, o serveOptions) error {
	logger, err := g.logger()
	if err != nil {
		return err
	}
	l := o.log
	if l == nil {
		if l, err = g.openLog(); err != nil {
			return err
		}
		defer l.Close()
	}
	if f != nil {
		if err := checkSources(l, f); err != nil {
			return usageError{err}
		}
		if err := server.CheckMetricNames(f); err != nil {
			return usageError{err}
		}
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return listenError("--http", o.addr, err)
	}
	srv := server.New(l, f, server.Options{Logger: logger, Pyroscope: o.pyroscope, Workers: o.workers, Stdout: os.Stdout,
		TrustedOrigins: o.origins})
	if o.beforeServe != nil {
		if err := o.beforeServe(l, srv); err != nil {
			ln.Close()
			return err
		}
	}
	url := "http://" + ln.Addr().String() + "/"
	if o.kafka == "" {
		if o.ready != nil {
			o.ready(url, "")
		} else {
			announce(url, "")
		}
		return srv.Serve(ctx, ln)
	}
	kln, err := net.Listen("tcp", o.kafka)
	if err != nil {
		ln.Close()
		return listenError("--kafka", o.kafka, err)
	}
	ks := kafka.New(l, kafka.Options{Advertise: o.advertise, AutoCreatePartitions: int32(o.autoCreate), Logger: logger})
	if o.ready != nil {
		o.ready(url, kln.Addr().String())
	} else {
		announce(url, kln.Addr().String())
	}
	// The HTTP server owns the shutdown sequence (drain ingest, checkpoint
	// pipelines); the Kafka listener stops with it.
	kctx, stop := context.WithCancel(ctx)
	kdone := make(chan error, 1)
	go func() { kdone <- ks.Serve(kctx, kln) }()
	err = srv.Serve(ctx, ln)
	stop()
	if kerr := <-kdone; err == nil && kerr != nil {
		err = fmt.Errorf("kafka listener: %w", kerr)
	}
	return err
}

// checkAddrs refuses, as a usage error, an address given (not "") that is
// not host:port.
func checkAddrs(addrs ...string) error {
	for _, a := range addrs {
		if _, _, err := net.SplitHostPort(a); a != "" && err != nil {
			return usagef("%q is not a host:port address", a)
		}
	}
	return nil
}

func newDemoCmd(g *globals) *cobra.Command {
	var addr, webhook, kafkaAddr string
	var duration time.Duration
	var rate, speed float64
	c := &cobra.Command{
		Use:   "demo",
		Short: "Serve the api-health pipeline on generated traffic with incidents: open the dashboard",
		Long: `Start the server on the embedded default configuration (SPEC's api-health pipeline)
with generated traffic: several services with realistic latencies, an error burst on
payments and a latency spike on search, so that alerts fire and resolve within the
first minute. Event time runs --speed times faster than the clock, so that one-minute
windows close every few seconds. Alert transitions are printed; the dashboard shows
everything.

The data directory is a temporary one, removed at exit, unless --data is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if rate <= 0 || speed <= 0 {
				return usagef("--rate and --speed must be positive")
			}
			if duration < 0 {
				return usagef("invalid --duration %v: want a positive duration, or none to run until interrupted", duration)
			}
			if err := checkAddrs(kafkaAddr); err != nil {
				return err
			}
			f, err := pipeline.Parse("demo.yaml", demo.Config)
			if err != nil {
				return fmt.Errorf("BUG: embedded demo config: %w", err)
			}
			if webhook != "" {
				f.Pipelines[0].Sinks = append(f.Pipelines[0].Sinks, pipeline.SinkConfig{Type: "webhook", URL: webhook, Format: "alertmanager"})
			}
			if g.data == "" && os.Getenv("FASTFLOW_DATA") == "" {
				dir, err := os.MkdirTemp("", "fastflow-demo-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				g.data = dir
			}
			ctx := cmd.Context()
			if duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			return serve(ctx, g, f, serveOptions{
				addr:  addr,
				kafka: kafkaAddr,
				ready: func(url, kafkaAt string) {
					fmt.Printf("fastflow demo: dashboard at %s — api-health over %.0f events/s, event time ×%g; Ctrl-C to stop\n", url, rate, speed)
					if kafkaAt != "" {
						fmt.Printf("fastflow demo: Kafka protocol on %s (topics events, api-health.results)\n", kafkaAt)
					}
				},
				beforeServe: func(l *log.Log, srv *server.Server) error {
					if err := pipeline.CreateTopics(l, f, nil); err != nil {
						return err
					}
					t, err := l.Topic("events")
					if err != nil {
						return err
					}
					srv.OnResult(printAlert)
					gen := demo.NewGenerator(time.Now().Truncate(time.Minute), uint64(time.Now().UnixNano()))
					go func() {
						if err := demo.Traffic(ctx, t, gen, rate, speed); err != nil && ctx.Err() == nil {
							fmt.Fprintln(os.Stderr, "fastflow: demo traffic:", err)
						}
					}()
					return nil
				},
			})
		},
	}
	c.Flags().StringVar(&addr, "http", "127.0.0.1:8080", "HTTP listen address")
	c.Flags().DurationVar(&duration, "duration", 0, "stop after this long (default: until interrupted)")
	c.Flags().Float64Var(&rate, "rate", 2000, "generated events per second")
	c.Flags().Float64Var(&speed, "speed", 20, "event-time seconds per second of clock")
	c.Flags().StringVar(&webhook, "webhook", "", "also send alerts to this Alertmanager (e.g. http://127.0.0.1:9093/api/v2/alerts)")
	c.Flags().StringVar(&kafkaAddr, "kafka", "", "also serve the Kafka protocol on this address, as serve --kafka (e.g. 127.0.0.1:9092)")
	return c
}

// printAlert prints alert transitions for the demo's user.
func printAlert(r *pipeline.Result) {
	if !r.Alert {
		return
	}
	line := string(r.Line)
	state := "RESOLVED"
	if r.Firing {
		state = "FIRING  "
	}
	fmt.Printf("%s %s %s\n", time.Now().Format("15:04:05"), state, strings.TrimSpace(line))
}

// listenError is the error for an address the server cannot listen on; a
// port in use (another fastflow serve or demo?) says how to choose another.
func listenError(flag, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("listen on %s: %w (choose another with %s ADDR; port 0 takes any free one)", addr, err, flag)
	}
	return fmt.Errorf("listen on %s: %w", addr, err)
}

// announce says on stderr where serve listens — stdout is the pipelines'
// stdout sinks' — so that an address chosen by the system (port 0) can be
// found.
func announce(url, kafkaAddr string) {
	if kafkaAddr != "" {
		fmt.Fprintf(os.Stderr, "fastflow serve: listening on %s, Kafka protocol on %s\n", url, kafkaAddr)
		return
	}
	fmt.Fprintf(os.Stderr, "fastflow serve: listening on %s\n", url)
}
