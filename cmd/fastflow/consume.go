package main

import (
	"bufio"
	"context"
	"errors"
	"os"

	"github.com/spf13/cobra"

	"github.com/fastflow/fastflow/log"
)

type consumeFlags struct {
	group, from     string
	partition       int32
	max             int64
	follow, headers bool
}

func newConsumeCmd(g *globals) *cobra.Command {
	var f consumeFlags
	c := &cobra.Command{
		Use:   "consume TOPIC",
		Short: "Print a topic's records as JSON lines",
		Long: `Print a topic's records, one JSON object per line:

  {"topic":"events","partition":3,"offset":41,"timestamp":1795341600123,"key":"payments","value":{...}}

The value is embedded as JSON when it is JSON, as a string otherwise. Without --follow
it stops at the end of the log. With --group it starts from the group's committed
offsets (--from applies to partitions without one), shares the partitions with the
group's other members, and commits what it printed.`,
		Example: `  fastflow consume events --from earliest --max 10
  fastflow consume events --group audit --follow
  fastflow consume events --from 2026-11-22T10:20:00Z --partition 3`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("partition") && f.group != "" {
				return usagef("--partition cannot be used with --group: the group assigns partitions")
			}
			if cmd.Flags().Changed("partition") && f.partition < 0 {
				return usagef("invalid --partition %d", f.partition)
			}
			if f.max < 0 {
				return usagef("invalid --max %d", f.max)
			}
			start, err := log.ParseStart(f.from)
			if err != nil {
				return usageError{err}
			}
			return runConsume(cmd.Context(), g, &f, start, args[0])
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.group, "group", "", "consume as a member of this consumer group, committing offsets")
	fl.StringVar(&f.from, "from", "earliest", "where to start: earliest, latest, none (with --group), an offset, or an RFC 3339 time")
	fl.Int32Var(&f.partition, "partition", -1, "only this partition")
	fl.Int64Var(&f.max, "max", 0, "stop after this many records (0: no limit)")
	fl.BoolVar(&f.follow, "follow", false, "keep waiting for new records")
	fl.BoolVar(&f.headers, "headers", false, "print record headers too")
	return c
}

func runConsume(ctx context.Context, g *globals, f *consumeFlags, start log.Start, name string) error {
	l, err := g.openLog()
	if err != nil {
		return err
	}
	defer l.Close()
	t, err := topic(l, name)
	if err != nil {
		return err
	}
	opts := log.ConsumerOptions{Topic: name, Group: f.group, Start: start}
	if f.partition >= 0 {
		if f.partition >= t.Partitions() {
			return usagef("--partition %d: topic %s has partitions 0 to %d", f.partition, name, t.Partitions()-1)
		}
		opts.Partitions = []int32{f.partition}
	}
	c, err := l.NewConsumer(opts)
	if err != nil {
		return err
	}
	defer c.Close()
	out := bufio.NewWriterSize(os.Stdout, 256<<10)
	var line []byte
	recs := make([]log.Record, 0, 1024)
	var printed int64
	for f.max == 0 || printed < f.max {
		// Never read past --max: the group commits exactly what was printed.
		want := 1024
		if f.max > 0 {
			want = int(min(int64(want), f.max-printed))
		}
		recs, err = c.Read(recs[:0:want])
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			if !f.follow && c.AtEnd() {
				break
			}
			if err := c.Wait(ctx); err != nil {
				if errors.Is(err, context.Canceled) {
					break // interrupted: commit what was printed, exit 0
				}
				return err
			}
			continue
		}
		for i := range recs {
			line = log.AppendJSON(line[:0], name, &recs[i], f.headers)
			line = append(line, '\n')
			if _, err := out.Write(line); err != nil {
				return err
			}
		}
		printed += int64(len(recs))
		if err := out.Flush(); err != nil {
			return err
		}
		if err := c.Commit(); err != nil {
			return err
		}
	}
	if err := out.Flush(); err != nil {
		return err
	}
	return c.Commit()
}
