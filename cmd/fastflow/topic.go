package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fastflow/fastflow/log"
)

func newTopicCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "topic", Short: "Create, list, describe and delete topics"}
	c.AddCommand(newTopicCreateCmd(g), newTopicAlterCmd(g), newTopicListCmd(g), newTopicDescribeCmd(g), newTopicDeleteCmd(g))
	return c
}

// topicSettings are the flags of a topic's configuration, shared by
// create (every setting, defaults included) and alter (those given).
type topicSettings struct {
	retention, deleteRetention         string
	retentionBytes, segBytes, maxBytes string
	cleanup, tsType                    string
}

func (ts *topicSettings) register(f *pflag.FlagSet) {
	f.StringVar(&ts.retention, "retention", "168h", "delete segments older than this (e.g. 168h, 7d; -1 keeps everything)")
	f.StringVar(&ts.retentionBytes, "retention-bytes", "0", "per partition, delete the oldest segments above this size (e.g. 10GiB; 0: unlimited)")
	f.StringVar(&ts.cleanup, "cleanup", "delete", "cleanup policy: delete (retention) or compact (latest record per key)")
	f.StringVar(&ts.segBytes, "segment-bytes", "16MiB", "segment file size")
	f.StringVar(&ts.maxBytes, "max-record-bytes", "1MiB", "largest record (key, value and headers)")
	f.StringVar(&ts.tsType, "timestamp-type", "create", "record timestamps: create (the producer's) or append (the log's)")
	f.StringVar(&ts.deleteRetention, "delete-retention", "24h", "how long compaction keeps tombstones")
}

type topicSetting struct {
	flag  string
	parse func() error // sets the setting in the TopicConfig given to parsers
}

// parsers returns each setting's flag and the parser that sets it in cfg.
func (ts *topicSettings) parsers(cfg *log.TopicConfig) []topicSetting {
	var err error
	return []topicSetting{
		{"retention", func() error { cfg.Retention, err = log.ParseRetention(ts.retention); return err }},
		{"delete-retention", func() error {
			if cfg.DeleteRetention, err = log.ParseRetention(ts.deleteRetention); err == nil && cfg.DeleteRetention < 0 {
				err = fmt.Errorf("%q: tombstones cannot be kept forever", ts.deleteRetention)
			}
			return err
		}},
		{"retention-bytes", func() error { cfg.RetentionBytes, err = log.ParseSize(ts.retentionBytes); return err }},
		{"segment-bytes", func() error { cfg.SegmentBytes, err = log.ParseSize(ts.segBytes); return err }},
		{"max-record-bytes", func() error {
			n, err := log.ParseSize(ts.maxBytes)
			cfg.MaxRecordBytes = int(n)
			return err
		}},
		{"cleanup", func() error { cfg.Cleanup = ts.cleanup; return nil }},
		{"timestamp-type", func() error { cfg.TimestampType, err = log.ParseTimestampType(ts.tsType); return err }},
	}
}

// given reports whether any setting's flag was given.
func (ts *topicSettings) given(f *pflag.FlagSet) bool {
	for _, s := range ts.parsers(&log.TopicConfig{}) {
		if f.Changed(s.flag) {
			return true
		}
	}
	return false
}

// apply sets in cfg the settings whose flags were given, or every one with
// all. A bad value is a usage error naming its flag; cfg may then be
// partly set.
func (ts *topicSettings) apply(f *pflag.FlagSet, cfg *log.TopicConfig, all bool) error {
	for _, s := range ts.parsers(cfg) {
		if !all && !f.Changed(s.flag) {
			continue
		}
		if err := s.parse(); err != nil {
			return usagef("invalid --%s: %v", s.flag, err)
		}
	}
	return nil
}

func newTopicCreateCmd(g *globals) *cobra.Command {
	var (
		partitions int32
		settings   topicSettings
	)
	c := &cobra.Command{
		Use:   "create NAME --partitions N",
		Short: "Create a topic",
		Example: `  fastflow topic create events --partitions 6
  fastflow topic create users --partitions 3 --cleanup compact
  fastflow topic create logs --partitions 1 --retention 7d --retention-bytes 10GiB`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("partitions") {
				return usagef("--partitions is required")
			}
			cfg := log.TopicConfig{Partitions: partitions}
			if err := settings.apply(cmd.Flags(), &cfg, true); err != nil {
				return err
			}
			if err := cfg.WithDefaults().Validate(); err != nil {
				return usageError{err}
			}
			if !log.ValidTopicName(args[0]) {
				return usagef("invalid topic name %q: use 1 to 249 of a-z A-Z 0-9 . _ -", args[0])
			}
			l, err := g.openLog()
			if err != nil {
				return err
			}
			defer l.Close()
			t, err := l.CreateTopic(args[0], cfg)
			if err != nil {
				return err
			}
			if isTerminal(os.Stdout) {
				fmt.Printf("created topic %s with %d partitions\n", t.Name(), t.Partitions())
				return nil
			}
			return printJSON(t.Describe(false))
		},
	}
	c.Flags().Int32Var(&partitions, "partitions", 0, "number of partitions (required)")
	settings.register(c.Flags())
	return c
}

func newTopicAlterCmd(g *globals) *cobra.Command {
	var settings topicSettings
	var partitions int32
	c := &cobra.Command{
		Use:   "alter NAME [--partitions N] [--retention D] [--retention-bytes SIZE] [...]",
		Short: "Change a topic's configuration, or add partitions",
		Long: `Change the settings given, as kafka-configs --alter does; the others keep their values.
A process writing the topic (serve, run) takes the change up within its cleanup interval
(a minute); retention then follows it. A new segment_bytes applies from the next time a
writer opens the partition.

--partitions N adds partitions up to N, as kafka-topics --alter --partitions does: they
cannot be removed, and keys hash over the new count from then on. Consumers take the new
partitions up within a second (from their start); a following pipeline stops to be
restarted over them (serve restarts it).`,
		Example: `  fastflow topic alter logs --retention 24h --retention-bytes 2GiB
  fastflow topic alter events --max-record-bytes 4MiB
  fastflow topic alter events --partitions 12`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			grow := cmd.Flags().Changed("partitions")
			if !settings.given(cmd.Flags()) && !grow {
				return usagef("nothing to change: give at least one setting (see --help)")
			}
			l, err := g.openLog()
			if err != nil {
				return err
			}
			defer l.Close()
			t, err := topic(l, args[0])
			if err != nil {
				return err
			}
			if grow {
				err = t.AddPartitions(partitions)
			}
			if err == nil && settings.given(cmd.Flags()) {
				_, err = t.AlterConfig(func(c *log.TopicConfig) error { return settings.apply(cmd.Flags(), c, false) })
			}
			var refused *log.ConfigError
			if errors.As(err, &refused) {
				return usageError{err} // a bad value: exit 2
			}
			if err != nil {
				return err
			}
			if isTerminal(os.Stdout) {
				fmt.Printf("altered topic %s\n", t.Name())
				return nil
			}
			return printJSON(t.Describe(false))
		},
	}
	settings.register(c.Flags())
	c.Flags().Int32Var(&partitions, "partitions", 0, "add partitions, up to this many in all")
	return c
}

func newTopicListCmd(g *globals) *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List topics",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.openLog()
			if err != nil {
				return err
			}
			defer l.Close()
			names, err := l.Topics()
			if err != nil {
				return err
			}
			human := isTerminal(os.Stdout)
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			if human {
				fmt.Fprintln(tw, "TOPIC\tPARTITIONS\tCLEANUP\tRETENTION")
			}
			// A topic that cannot be opened (its topic.json damaged on
			// disk) is reported, and the others are still listed.
			var bad []string
			for _, n := range names {
				if log.IsInternal(n) && !all {
					continue
				}
				t, err := l.Topic(n)
				if err != nil {
					fmt.Fprintf(os.Stderr, "fastflow: %v\n", err) // the error names the topic
					bad = append(bad, n)
					continue
				}
				if human {
					cfg := t.Describe(false).Config
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", n, t.Partitions(), cfg.Cleanup, cfg.Retention)
					continue
				}
				if err := printJSON(log.TopicInfo{Topic: n, Partitions: t.Partitions()}); err != nil {
					return err
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(bad) > 0 {
				return fmt.Errorf("%d topic(s) could not be read: %s", len(bad), strings.Join(bad, ", "))
			}
			return nil
		},
	}
	c.Flags().BoolVar(&all, "all", false, "include internal topics (names starting with __)")
	return c
}

func newTopicDescribeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a topic's configuration and per-partition offsets",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.openLog()
			if err != nil {
				return err
			}
			defer l.Close()
			t, err := topic(l, args[0])
			if err != nil {
				return err
			}
			d := t.Describe(true)
			if !isTerminal(os.Stdout) {
				return printJSON(d)
			}
			c := d.Config
			fmt.Printf("topic %s: %d partitions, cleanup %s, retention %s, retention_bytes %d, segment_bytes %d, max_record_bytes %d, %s\n",
				d.Topic, d.Partitions, c.Cleanup, c.Retention, c.RetentionBytes, c.SegmentBytes, c.MaxRecordBytes, c.TimestampType)
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PARTITION\tLOG-START\tHIGH-WATERMARK\tSIZE\tSEGMENTS")
			for _, p := range d.Parts {
				fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%d\n", p.Partition, p.LogStartOffset, p.HighWatermark, humanize.IBytes(uint64(p.SizeBytes)), p.Segments)
			}
			return tw.Flush()
		},
	}
}

func newTopicDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a topic and its data",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.openLog()
			if err != nil {
				return err
			}
			defer l.Close()
			if _, err := topic(l, args[0]); err != nil {
				return err
			}
			if err := l.DeleteTopic(args[0]); err != nil {
				return err
			}
			if isTerminal(os.Stdout) {
				fmt.Printf("deleted topic %s\n", args[0])
			}
			return nil
		},
	}
}

// printJSON prints v as one line of JSON on stdout.
func printJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(b, '\n'))
	return err
}
