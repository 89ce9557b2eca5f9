package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/pipeline"
)

func newRunCmd(g *globals) *cobra.Command {
	var untilEnd, noPin bool
	var workers int
	var every time.Duration
	c := &cobra.Command{
		Use:   "run PIPELINES.yaml",
		Short: "Run the pipelines of a YAML file",
		Long: `Run the pipelines of a YAML file: windowed metrics, percentiles and alerts over a
topic, results as JSON lines on stdout and to the configured sinks.

With --until-end it processes what the log holds when it starts, emits every open
window, prints one stats line per pipeline and exits 0. Without it, it follows the
log until SIGINT or SIGTERM, checkpointing window state, alert state and source
offsets every --checkpoint-interval and when it stops; a restart resumes from the
checkpoint (after SIGKILL, results since the last checkpoint are emitted again).

A pipeline whose source is a Kafka cluster (source: {kafka: {brokers, topic, group}})
joins the consumer group: run the same file on several machines and they split the
topic's partitions, each partition's window state moving with it on a rebalance.`,
		Example: `  fastflow run api-health.yaml --until-end
  fastflow run pipelines.yaml --workers 2
  fastflow run pipelines.yaml --checkpoint-interval 1s`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := loadPipelines(args[0])
			if err != nil {
				return err
			}
			if workers < 0 {
				return usagef("invalid --workers %d", workers)
			}
			if every <= 0 {
				return usagef("invalid --checkpoint-interval %s: it must be positive", every)
			}
			for i, c := range f.Pipelines {
				if untilEnd && c.Source.Kafka != nil {
					return usageError{f.Errorf(fmt.Sprintf("pipelines[%d].source.kafka", i),
						"--until-end reads a local topic to its end; a Kafka source follows its consumer group")}
				}
			}
			logger, err := g.logger()
			if err != nil {
				return err
			}
			l, err := g.openLog()
			if err != nil {
				return err
			}
			defer l.Close()
			if err := checkSources(l, f); err != nil {
				return usageError{err}
			}
			return pipeline.Run(cmd.Context(), l, f, pipeline.Options{
				UntilEnd: untilEnd, Workers: workers, NoPin: noPin, Stdout: os.Stdout, Logger: logger,
				CheckpointInterval: every,
			})
		},
	}
	c.Flags().BoolVar(&untilEnd, "until-end", false, "process what the log holds now, flush every window, print stats and exit")
	c.Flags().IntVar(&workers, "workers", 0, "worker goroutines per pipeline (default: one per CPU, at most one per partition)")
	c.Flags().BoolVar(&noPin, "no-pin", false, "do not pin workers to CPUs")
	c.Flags().DurationVar(&every, "checkpoint-interval", 10*time.Second, "how often a following run checkpoints its state and offsets")
	return c
}

// checkSources makes sure every pipeline's source topic exists or is
// declared in the file: a configuration error otherwise.
func checkSources(l *log.Log, f *pipeline.File) error {
	declared := map[string]bool{}
	for _, t := range f.Topics {
		declared[t.Name] = true
	}
	for i, c := range f.Pipelines {
		if declared[c.Source.Topic] || c.Source.Kafka != nil {
			continue
		}
		if _, err := l.Topic(c.Source.Topic); errors.Is(err, log.ErrUnknownTopic) {
			return f.Errorf(fmt.Sprintf("pipelines[%d].source.topic", i),
				"topic %q does not exist (create it, or declare it under topics:)", c.Source.Topic)
		} else if err != nil {
			return err
		}
	}
	return nil
}
