package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/fastflow/fastflow/log"
)

func newGroupCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "group", Short: "List, describe, reset and delete consumer groups"}
	c.AddCommand(newGroupListCmd(g), newGroupDescribeCmd(g), newGroupResetCmd(g), newGroupDeleteCmd(g))
	return c
}

func newGroupListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List consumer groups",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.openLog()
			if err != nil {
				return err
			}
			defer l.Close()
			names, err := l.Groups()
			if err != nil {
				return err
			}
			human := isTerminal(os.Stdout)
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			if human {
				fmt.Fprintln(tw, "GROUP\tMEMBERS\tSTATE")
			}
			for _, n := range names {
				grp, err := l.Group(n)
				if err != nil {
					return err
				}
				members, err := grp.Members()
				if err != nil {
					return err
				}
				state := "Empty"
				if len(members) > 0 {
					state = "Stable"
				}
				// A Kafka client's member is announced once per topic it
				// subscribes to.
				ids := map[string]bool{}
				for _, m := range members {
					if m.Kafka != nil {
						ids["kafka:"+m.Kafka.MemberID] = true
					} else {
						ids[m.ID] = true
					}
				}
				if human {
					fmt.Fprintf(tw, "%s\t%d\t%s\n", shown(n), len(ids), state)
				} else if err := printJSON(map[string]any{"group": n, "members": len(ids), "state": state}); err != nil {
					return err
				}
			}
			return tw.Flush()
		},
	}
}

func newGroupDescribeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "describe GROUP",
		Short: "Show a group's committed offsets, lag and members",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, grp, err := g.openGroup(args[0])
			if err != nil {
				return err
			}
			defer l.Close()
			rows, err := grp.Describe()
			if err != nil {
				return err
			}
			if len(rows) == 0 {
				return fmt.Errorf("group %q does not exist (nothing committed, no members)", args[0])
			}
			if !isTerminal(os.Stdout) {
				for _, r := range rows {
					if err := printJSON(r); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TOPIC\tPARTITION\tCOMMITTED\tHIGH-WATERMARK\tLAG\tMEMBER")
			for _, r := range rows {
				member := orDash(r.Member)
				if r.ClientID != "" {
					member += fmt.Sprintf(" (Kafka client %s at %s)", shown(r.ClientID), shown(r.ClientHost))
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\n", r.Topic, r.Partition, optInt(r.Committed), r.HighWatermark, optInt(r.Lag), member)
			}
			return tw.Flush()
		},
	}
}

func newGroupResetCmd(g *globals) *cobra.Command {
	var topicName, to string
	c := &cobra.Command{
		Use:   "reset GROUP --topic T --to earliest|latest|OFFSET|RFC3339",
		Short: "Set a group's committed offsets on a topic",
		Long: `Set the group's committed offset in every partition of the topic to the earliest or
latest offset, to an offset (clamped to each partition's range), or to the first record
at or after a time. As with Kafka, the group must have no active member on the topic.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if topicName == "" || to == "" {
				return usagef("--topic and --to are required")
			}
			start, err := log.ParseStart(to)
			if err != nil || start.Kind == log.StartNone {
				return usagef("invalid --to %q: want earliest, latest, an offset or an RFC 3339 time", to)
			}
			l, grp, err := g.openGroup(args[0])
			if err != nil {
				return err
			}
			defer l.Close()
			t, err := topic(l, topicName)
			if err != nil {
				return err
			}
			members, err := grp.Members()
			if err != nil {
				return err
			}
			for _, m := range members {
				if m.Topic == topicName {
					return fmt.Errorf("group %s has active members on %s (e.g. %s); stop them before resetting", shown(args[0]), topicName, m)
				}
			}
			for id := int32(0); id < t.Partitions(); id++ {
				p, err := t.Partition(id)
				if err != nil {
					return err
				}
				o, err := start.Resolve(p)
				if err != nil {
					return err
				}
				if err := grp.Commit(topicName, id, o); err != nil {
					return err
				}
				lag := p.HighWatermark() - o
				row := log.GroupPartition{Group: args[0], Topic: topicName, Partition: id, Committed: &o,
					LogStart: p.LogStartOffset(), HighWatermark: p.HighWatermark(), Lag: &lag}
				if isTerminal(os.Stdout) {
					fmt.Printf("%s %s/%d -> %d\n", args[0], topicName, id, o)
				} else if err := printJSON(row); err != nil {
					return err
				}
			}
			return nil
		},
	}
	c.Flags().StringVar(&topicName, "topic", "", "topic whose offsets to reset (required)")
	c.Flags().StringVar(&to, "to", "", "earliest, latest, an offset, or an RFC 3339 time (required)")
	return c
}

func optInt(p *int64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprint(*p)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return shown(s)
}

// shown is s as a terminal table shows it: as it is, or quoted as Go
// quotes a string if it holds what a terminal would act on (an escape
// sequence, a newline, a tab) or bytes that are not UTF-8. Group names,
// client IDs and hosts are any Kafka client's choice.
func shown(s string) string {
	if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.Quote(s)
	}
	return s
}

func newGroupDeleteCmd(g *globals) *cobra.Command {
	var topicName string
	c := &cobra.Command{
		Use:   "delete GROUP [--topic T]",
		Short: "Delete a consumer group and its committed offsets, or its offsets on one topic",
		Long: `Delete the group's committed offsets, as kafka-consumer-groups --delete does: its next
member starts by its start policy. As with Kafka, the group must have no active member.
With --topic, delete only its offsets on that topic (kafka-consumer-groups --delete-offsets),
which no member may be consuming.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, grp, err := g.openGroup(args[0])
			if err != nil {
				return err
			}
			defer l.Close()
			if topicName != "" {
				if _, err := topic(l, topicName); err != nil {
					return err
				}
				err = grp.DeleteOffsets(topicName)
			} else {
				err = grp.Delete()
			}
			if err != nil {
				return err
			}
			switch {
			case !isTerminal(os.Stdout):
			case topicName != "":
				fmt.Printf("deleted group %s's offsets on %s\n", args[0], topicName)
			default:
				fmt.Printf("deleted group %s\n", args[0])
			}
			return nil
		},
	}
	c.Flags().StringVar(&topicName, "topic", "", "delete only the group's offsets on this topic")
	return c
}

// openGroup opens the log and the named group; a bad name is a usage
// error. The caller closes the log.
func (g *globals) openGroup(name string) (*log.Log, *log.Group, error) {
	l, err := g.openLog()
	if err != nil {
		return nil, nil, err
	}
	grp, err := l.Group(name)
	if err != nil {
		l.Close()
		return nil, nil, usageError{err}
	}
	return l, grp, nil
}
