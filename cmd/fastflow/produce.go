package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/log/producer"
)

type produceFlags struct {
	keyField, key, tsField, acks string
	partition                    int32
}

func newProduceCmd(g *globals) *cobra.Command {
	var f produceFlags
	c := &cobra.Command{
		Use:   "produce TOPIC [FILE]",
		Short: "Produce one record per line of FILE or stdin",
		Long: `Produce one record per line of FILE (or stdin); empty lines are skipped.

With --key-field, a record's key is that JSON field's value as text; a line that is
not JSON or lacks the field is still stored, with a null key, and counted. Keyed
records go to partition murmur2(key) % partitions, as with Kafka's Java client;
records without a key are spread over the partitions batch by batch.

It prints a summary: records, bytes, per-partition counts, records without a key.`,
		Example: `  fastflow produce events --key-field service events.jsonl
  tail -F app.log | fastflow produce logs --acks 1`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runProduce(cmd.Context(), g, &f, cmd.Flags().Changed("partition"), args)
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.keyField, "key-field", "", "use this JSON field's value as the key (a.b: field b of object a)")
	fl.StringVar(&f.key, "key", "", "use this key for every record")
	fl.Int32Var(&f.partition, "partition", -1, "send every record to this partition")
	fl.StringVar(&f.tsField, "timestamp-field", "", "take the timestamp from this JSON field (unix ms or RFC 3339)")
	fl.StringVar(&f.acks, "acks", "all", "durability: 0 (queued), 1 (written to the OS), all (fsynced)")
	return c
}

// produceSummary is what produce prints when it is done.
type produceSummary struct {
	Topic        string           `json:"topic"`
	Records      int64            `json:"records"`
	Bytes        int64            `json:"bytes"`
	Partitions   map[string]int64 `json:"partitions"`
	NoKey        int64            `json:"no_key"`
	BadTimestamp int64            `json:"bad_timestamp,omitempty"`
	TooLarge     int64            `json:"too_large,omitempty"`
	// Lost counts records queued with --acks 0 whose write then failed;
	// records counts them, as an acks=0 producer does.
	Lost int64 `json:"lost,omitempty"`
}

func runProduce(ctx context.Context, g *globals, f *produceFlags, partitionSet bool, args []string) error {
	acks, ok := log.ParseAcks(f.acks)
	if !ok {
		return usagef("invalid --acks %q: use 0, 1 or all", f.acks)
	}
	if f.keyField != "" && f.key != "" {
		return usagef("--key-field and --key cannot be used together")
	}
	if partitionSet && f.partition < 0 {
		return usagef("invalid --partition %d", f.partition)
	}
	in, size, regular := os.Stdin, int64(-1), false
	if len(args) == 2 && args[1] != "-" {
		file, err := os.Open(args[1])
		if err != nil {
			return err
		}
		defer file.Close()
		in = file
		if st, err := file.Stat(); err == nil && st.Mode().IsRegular() {
			size, regular = st.Size(), true
		}
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
	if f.partition >= t.Partitions() {
		return usagef("--partition %d: topic %s has partitions 0 to %d", f.partition, t.Name(), t.Partitions()-1)
	}
	pr, err := producer.New(t, producer.Options{Acks: acks, Partition: f.partition})
	if err != nil {
		return err
	}
	var bar *progressbar.ProgressBar
	if isTerminal(os.Stderr) {
		bar = progressbar.NewOptions64(size,
			progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription("producing to "+t.Name()),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100_000_000),
			progressbar.OptionClearOnFinish())
	}
	lp := &lineProducer{pr: pr, fields: producer.Fields{KeyField: f.keyField, TimeField: f.tsField},
		max: t.Config().MaxRecordBytes}
	if f.key != "" {
		lp.key = []byte(f.key)
	}
	readErr := lp.run(ctx, in, regular, bar)
	closeErr := pr.Close()
	if bar != nil {
		bar.Finish()
	}
	st := pr.Stats()
	sum := produceSummary{Topic: t.Name(), Records: st.Records, Bytes: st.Bytes, NoKey: st.NoKey,
		BadTimestamp: lp.badTime, TooLarge: lp.tooLarge, Lost: st.Lost, Partitions: map[string]int64{}}
	for id, n := range st.PerPartition {
		sum.Partitions[strconv.Itoa(id)] = n
	}
	if isTerminal(os.Stdout) {
		printProduceSummary(&sum, st.PerPartition)
	} else if err := printJSON(sum); err != nil {
		return err
	}
	if closeErr != nil {
		if st.Lost > 0 {
			return fmt.Errorf("queued %d records with acks=0, then: %w", st.Records, closeErr)
		}
		if errors.Is(closeErr, log.ErrLocked) {
			return fmt.Errorf("produced %d records, then: %w; while a fastflow serve writes the topic, send records through it (POST /topics/%s/records, or its Kafka listener)",
				st.Records, closeErr, t.Name())
		}
		return fmt.Errorf("produced %d records, then: %w", st.Records, closeErr)
	}
	if readErr != nil {
		return readErr
	}
	if lp.tooLarge > 0 {
		if lp.tooLarge == 1 {
			return fmt.Errorf("line %d is over max_record_bytes (%d) of %s: not produced", lp.firstTooLarge, lp.max, t.Name())
		}
		return fmt.Errorf("%d lines over max_record_bytes (%d) of %s were not produced (first: line %d)", lp.tooLarge, lp.max, t.Name(), lp.firstTooLarge)
	}
	return nil
}

func printProduceSummary(s *produceSummary, per []int64) {
	parts := make([]string, len(per))
	for id, n := range per {
		parts[id] = fmt.Sprintf("%d:%d", id, n)
	}
	fmt.Printf("produced %d records (%s) to %s; per partition %s; %d without a key",
		s.Records, humanize.IBytes(uint64(s.Bytes)), s.Topic, strings.Join(parts, " "), s.NoKey)
	if s.BadTimestamp > 0 {
		fmt.Printf("; %d without a valid timestamp", s.BadTimestamp)
	}
	if s.Lost > 0 {
		fmt.Printf("; %d lost (acks=0, the write failed)", s.Lost)
	}
	fmt.Println()
}

// lineProducer turns input lines into records.
type lineProducer struct {
	pr     *producer.Producer
	fields producer.Fields
	key    []byte // --key
	max    int

	line          int64
	carry         []byte // a line split across chunks
	carryTooLarge bool
	badTime       int64
	tooLarge      int64
	firstTooLarge int64
}

type chunk struct {
	b   []byte
	err error
}

// run reads in, in chunks from a goroutine of its own so that an
// interrupt is noticed even while stdin blocks, and produces its lines.
// Input that does not come from a regular file is flushed whenever no
// more is waiting, so a slow stream's records are not held back.
func (lp *lineProducer) run(ctx context.Context, in io.Reader, regular bool, bar *progressbar.ProgressBar) error {
	const chunkBytes = 1 << 20
	chunks, free := make(chan chunk, 2), make(chan []byte, 3)
	for range 3 {
		free <- make([]byte, chunkBytes)
	}
	go func() {
		for {
			b := <-free
			n, err := in.Read(b)
			chunks <- chunk{b[:n], err}
			if err != nil {
				return
			}
		}
	}()
	for {
		var c chunk
		select {
		case c = <-chunks:
		case <-ctx.Done():
			return fmt.Errorf("interrupted after %d lines", lp.line)
		}
		if err := lp.lines(c.b); err != nil {
			return err
		}
		if bar != nil {
			bar.Add(len(c.b))
		}
		free <- c.b[:cap(c.b)]
		if c.err == io.EOF {
			return lp.last()
		}
		if c.err != nil {
			return c.err
		}
		if !regular && len(chunks) == 0 {
			if err := lp.pr.Flush(); err != nil {
				return err
			}
		}
	}
}

// lines produces the complete lines of b, keeping a trailing partial line.
func (lp *lineProducer) lines(b []byte) error {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			lp.keep(b)
			return nil
		}
		line := b[:i]
		b = b[i+1:]
		if len(lp.carry) > 0 || lp.carryTooLarge {
			lp.keep(line)
			line = lp.carry
		}
		err := lp.produce(line)
		lp.carry, lp.carryTooLarge = lp.carry[:0], false
		if err != nil {
			return err
		}
	}
	return nil
}

// keep appends part of a line that continues in the next chunk; past the
// record size limit it only remembers that the line is too large.
func (lp *lineProducer) keep(b []byte) {
	if lp.carryTooLarge || len(lp.carry)+len(b) > lp.max+1 {
		lp.carryTooLarge = true
		lp.carry = lp.carry[:0]
		return
	}
	lp.carry = append(lp.carry, b...)
}

func (lp *lineProducer) last() error {
	if len(lp.carry) == 0 && !lp.carryTooLarge {
		return nil
	}
	line := lp.carry
	err := lp.produce(line)
	lp.carry = lp.carry[:0]
	return err
}

func (lp *lineProducer) produce(line []byte) error {
	lp.line++
	line = bytes.TrimSuffix(line, []byte{'\r'})
	if !lp.carryTooLarge && len(bytes.TrimSpace(line)) == 0 {
		return nil
	}
	var key []byte
	var ts int64
	if !lp.carryTooLarge && len(line) <= lp.max {
		var bad bool
		key, ts, bad = lp.fields.Extract(line)
		if lp.key != nil {
			key = lp.key
		}
		if bad {
			lp.badTime++
		}
	}
	// The log counts key and value against max_record_bytes.
	if lp.carryTooLarge || len(key)+len(line) > lp.max {
		lp.tooLarge++
		if lp.firstTooLarge == 0 {
			lp.firstTooLarge = lp.line
		}
		return nil
	}
	return lp.pr.Add(key, line, ts)
}
