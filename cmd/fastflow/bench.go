package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/fastflow/fastflow/bench"
	"github.com/fastflow/fastflow/log"
)

func newBenchCmd(g *globals) *cobra.Command {
	var o bench.Options
	var acks string
	var asJSON bool
	c := &cobra.Command{
		Use:   "bench",
		Short: "End-to-end benchmark: ingest, processing and latency of the api-health pipeline",
		Long: `On a temporary data directory: generate --events events with the demo's seeded generator,
produce them into a topic of --partitions partitions, run the api-health pipeline over them
(--until-end), then produce at --rate events/s for --duration while the pipeline follows
the log, to measure the latency from a window's end to its result. Reports ingest
records/s and MB/s, processing events/s, allocations per event, latency p50/p99/p999,
peak RSS and the hardware. --json prints one machine-readable summary.`,
		Example: `  fastflow bench
  fastflow bench --events 200000 --partitions 2 --acks all --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			a, ok := log.ParseAcks(acks)
			if !ok {
				return usagef("invalid --acks %q: use 0, 1 or all", acks)
			}
			if o.Events < 1 || o.Partitions < 1 || o.Batch < 1 || o.Rate <= 0 || o.Workers < 0 {
				return usagef("--events, --partitions, --batch and --rate must be positive")
			}
			o.Acks = a
			if o.Duration == 0 {
				o.Duration = -1 // --duration 0: no latency phase
			}
			if isTerminal(os.Stderr) {
				bars := map[string]*progressbar.ProgressBar{}
				o.Progress = func(phase string, done, total int64) {
					b := bars[phase]
					if b == nil {
						b = progressbar.NewOptions64(total, progressbar.OptionSetWriter(os.Stderr),
							progressbar.OptionSetDescription(fmt.Sprintf("%-8s", phase)), progressbar.OptionSetPredictTime(true),
							progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
						bars[phase] = b
					}
					b.Set64(done)
					if done >= total {
						b.Finish()
					}
				}
			}
			s, err := bench.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			if asJSON || !isTerminal(os.Stdout) {
				b, _ := json.Marshal(s)
				fmt.Println(string(b))
				return nil
			}
			printBench(os.Stdout, s)
			return nil
		},
	}
	f := c.Flags()
	f.IntVar(&o.Events, "events", 1_000_000, "events to produce and process")
	f.Int32Var(&o.Partitions, "partitions", 6, "partitions of the topic")
	f.IntVar(&o.Workers, "workers", 0, "pipeline workers (default: one per CPU)")
	f.StringVar(&acks, "acks", "1", "producer durability: 0, 1 or all")
	f.IntVar(&o.Batch, "batch", 1024, "producer batch size (records)")
	f.Float64Var(&o.Rate, "rate", 20000, "latency phase: events per second")
	f.DurationVar(&o.Duration, "duration", 10*time.Second, "latency phase: how long (0 skips it)")
	f.Uint64Var(&o.Seed, "seed", 1, "generator seed")
	f.BoolVar(&asJSON, "json", false, "print one JSON summary")
	return c
}

func printBench(w io.Writer, s *bench.Summary) {
	h := s.Hardware
	fmt.Fprintf(w, "fastflow bench: %s events, %d partitions, %d workers, acks=%s, batches of %d\n",
		humanize.Comma(int64(s.Events)), s.Partitions, s.Workers, s.Acks, s.Batch)
	fmt.Fprintf(w, "machine: %s, %d CPUs usable (GOMAXPROCS) of %d on %s, cpuid %d physical / %d logical cores, cache line %d B, L1d %s, L2 %s, L3 %s, CRC32C %v, AVX2 %v, %s, %s\n",
		h.CPU, h.GOMAXPROCS, h.CPUs, coresText(h.Cores), h.PhysicalCores, h.LogicalCores, h.CacheLine, cacheText(h.L1D), cacheText(h.L2),
		cacheText(h.L3), h.CRC32C, h.AVX2, humanize.IBytes(uint64(h.MemoryBytes)), h.Go)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tthroughput\t\tdetail\t")
	fmt.Fprintf(tw, "ingest\t%s records/s\t%.1f MB/s\t%s records in %.2fs\t\n", humanize.Comma(int64(s.Ingest.RecordsPerSec)),
		s.Ingest.MBPerSec, humanize.Comma(s.Ingest.Records), s.Ingest.Seconds)
	p := s.Process
	fmt.Fprintf(tw, "process\t%s events/s\t%.2f allocs/event\t%s windows, %d alerts in %.2fs\t\n", humanize.Comma(int64(p.EventsPerSec)),
		p.AllocsPerEvent, humanize.Comma(p.Windows), p.Alerts, p.Seconds)
	if l := s.Latency; l.Results > 0 {
		fmt.Fprintf(tw, "latency\tp50 %.1f ms\tp99 %.1f ms\tp999 %.1f ms, max %.1f ms over %d results at %s events/s\t\n",
			l.P50Ms, l.P99Ms, l.P999Ms, l.MaxMs, l.Results, humanize.Comma(int64(l.Rate)))
	}
	tw.Flush()
	fmt.Fprintf(w, "peak RSS %s\n", humanize.IBytes(uint64(s.PeakRSS)))
}

// coresText names the cores the process's CPUs are on, as far as the
// kernel tells.
func coresText(n int) string {
	if n == 0 {
		return "? cores"
	}
	if n == 1 {
		return "1 core"
	}
	return fmt.Sprintf("%d cores", n)
}

// cacheText is a cache's size, "?" where cpuid does not tell it (-1, as
// for L3 in some VMs: printed as bytes, that read 16 EiB).
func cacheText(n int) string {
	if n <= 0 {
		return "?"
	}
	return humanize.IBytes(uint64(n))
}
