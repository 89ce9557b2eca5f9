// Command fastflow is the fastflow binary: a durable partitioned log with
// Kafka's semantics, stream pipelines and alerts on one machine. This
// package holds flags, wiring and exit codes only; the work is done by
// the packages log, partition, pipeline and agg.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/pipeline/server"
)

// usageError marks errors that exit with status 2: bad flags, arguments
// or configuration.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func main() {
	// Past a file-size limit (ulimit -f) a write fails with EFBIG, which
	// the log handles as it does a full disk, instead of the signal
	// killing the process in the middle of it (PostgreSQL does the same).
	signal.Ignore(syscall.SIGXFSZ)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fastflow: "+oneLine(err.Error()))
		var ue usageError
		// cobra's error for an unknown command is not typed.
		if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

// globals are the flags every command has.
type globals struct {
	data     string
	logLevel string
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "fastflow",
		Short: "A durable partitioned log, stream pipelines and alerts in one binary",
		Long: `fastflow gives one machine what usually takes Kafka + Flink + Prometheus/Alertmanager:
a durable partitioned log with Kafka's semantics, windowed metrics and percentiles,
and threshold alerts.

The data directory is --data DIR, else $FASTFLOW_DATA, else ./fastflow-data.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       server.ReadBuild().String(),
	}
	root.SetVersionTemplate("fastflow {{.Version}}\n")
	root.PersistentFlags().StringVar(&g.data, "data", "", "data directory (default $FASTFLOW_DATA, else ./fastflow-data)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "warn", "log level on stderr: debug, info, warn, error")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newTopicCmd(g), newProduceCmd(g), newConsumeCmd(g), newGroupCmd(g), newRunCmd(g), newServeCmd(g), newDemoCmd(g), newBenchCmd(g))
	// Every command's argument errors are usage errors too.
	var wrapArgs func(c *cobra.Command)
	wrapArgs = func(c *cobra.Command) {
		if args := c.Args; args != nil {
			c.Args = func(c *cobra.Command, a []string) error {
				if err := args(c, a); err != nil {
					return usageError{err}
				}
				return nil
			}
		}
		if c.HasSubCommands() && c.RunE == nil {
			c.RunE = func(c *cobra.Command, a []string) error {
				if len(a) > 0 {
					return usagef("unknown command %q for %q", a[0], c.CommandPath())
				}
				return usagef("%s needs a subcommand: %s", c.CommandPath(), subcommands(c))
			}
		}
		for _, s := range c.Commands() {
			wrapArgs(s)
		}
	}
	wrapArgs(root)
	return root
}

func subcommands(c *cobra.Command) string {
	var names []string
	for _, s := range c.Commands() {
		if s.IsAvailableCommand() {
			names = append(names, s.Name())
		}
	}
	return strings.Join(names, ", ")
}

func (g *globals) dataDir() string {
	if g.data != "" {
		return g.data
	}
	if d := os.Getenv("FASTFLOW_DATA"); d != "" {
		return d
	}
	return "fastflow-data"
}

func (g *globals) logger() (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, usagef("invalid --log-level %q: use debug, info, warn or error", g.logLevel)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})), nil
}

// openLog opens the data directory.
func (g *globals) openLog() (*log.Log, error) {
	logger, err := g.logger()
	if err != nil {
		return nil, err
	}
	return log.Open(g.dataDir(), log.Options{Logger: logger})
}

// topic opens an existing topic, with an error that says how to create it.
func topic(l *log.Log, name string) (*log.Topic, error) {
	t, err := l.Topic(name)
	if errors.Is(err, log.ErrUnknownTopic) {
		return nil, fmt.Errorf("topic %q does not exist (create it with: fastflow topic create %s --partitions N)", name, name)
	}
	return t, err
}

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
