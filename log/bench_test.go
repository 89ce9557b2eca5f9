package log

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"
)

// benchRecordBytes is the record size of the append benchmarks: a
// 140-byte JSON event with a 12-byte key.
const benchRecordBytes = 140

func benchRecords(n int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		v := fmt.Appendf(nil, `{"ts":1795341600123,"service":"payments","status":"ok","response_time":%07.2f,"pad":"`, float64(i%1000)/3)
		v = append(v, bytes.Repeat([]byte("x"), benchRecordBytes-12-len(v)-2)...)
		v = append(v, '"', '}')
		recs[i] = Record{TimestampMs: 1795341600123, Key: []byte("payments-001"), Value: v}
	}
	return recs
}

func benchPartition(b *testing.B) (*Log, *Partition) {
	l := testLog(b, "")
	tp, err := l.CreateTopic("bench", TopicConfig{Partitions: 1, Retention: -1})
	if err != nil {
		b.Fatal(err)
	}
	p, err := tp.Partition(0)
	if err != nil {
		b.Fatal(err)
	}
	return l, p
}

// BenchmarkAppend: records/s and MB/s of Append for 140-byte records. One
// op is one record; a batch of N records is one Append call.
func BenchmarkAppend(b *testing.B) {
	for _, acks := range []Acks{AcksNone, AcksLeader, AcksAll} {
		for _, batch := range []int{1, 64, 1024} {
			for _, writers := range []int{1, 8} {
				if acks == AcksAll && batch == 1024 && writers == 8 {
					continue // nothing new over 1 writer: the fsync is not the cost
				}
				b.Run(fmt.Sprintf("acks=%v/batch=%d/writers=%d", acks, batch, writers), func(b *testing.B) {
					benchAppend(b, acks, batch, writers)
				})
			}
		}
	}
}

func benchAppend(b *testing.B, acks Acks, batch, writers int) {
	l, p := benchPartition(b)
	defer l.Close()
	recs := make([][]Record, writers)
	for w := range recs {
		recs[w] = benchRecords(batch)
	}
	b.SetBytes(benchRecordBytes)
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	calls := (b.N + batch - 1) / batch
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < calls; i += writers {
				if _, err := p.Append(recs[w], acks); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := p.Flush(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(calls*batch)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkRawWrite is the limit the append path is measured against: the
// same 140-byte records written to a file through a 1 MiB bufio.Writer,
// no framing, no index, no checksum.
func BenchmarkRawWrite(b *testing.B) {
	w := rawWriter(b)
	recs := benchRecords(1024)
	b.SetBytes(benchRecordBytes)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		writeRaw(w, recs[i&1023:i&1023+1])
	}
	w.Flush()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// rawWriter is the limit's writer: a file in the benchmark's temporary
// directory through a 1 MiB bufio.Writer.
func rawWriter(b *testing.B) *bufio.Writer {
	f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return bufio.NewWriterSize(f, 1<<20)
}

// writeRaw writes the records' keys and values, nothing else.
func writeRaw(w *bufio.Writer, recs []Record) {
	for i := range recs {
		w.Write(recs[i].Key)
		w.Write(recs[i].Value)
	}
}

// BenchmarkAppendVsRaw is the append target's comparison made in one
// loop: each op appends a batch of 1024 records and writes the same
// records' bytes to a file through a 1 MiB bufio.Writer, timing the two
// sides apart. Run separately, the raw write's figure moves 4x between
// passes with the page cache and writeback (see BenchmarkRawWrite);
// interleaved, that state weighs on both sides alike. It reports each
// side's records/s and their ratio.
func BenchmarkAppendVsRaw(b *testing.B) {
	for _, acks := range []Acks{AcksNone, AcksLeader} {
		b.Run(fmt.Sprintf("acks=%v", acks), func(b *testing.B) {
			l, p := benchPartition(b)
			defer l.Close()
			w := rawWriter(b)
			recs := benchRecords(1024)
			b.SetBytes(benchRecordBytes)
			b.ReportAllocs()
			var appendTime, rawTime time.Duration
			calls := (b.N + len(recs) - 1) / len(recs)
			for i := 0; i < calls; i++ {
				t0 := time.Now()
				if _, err := p.Append(recs, acks); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				writeRaw(w, recs)
				appendTime += t1.Sub(t0)
				rawTime += time.Since(t1)
			}
			t0 := time.Now()
			if err := p.Flush(); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			appendTime += t1.Sub(t0)
			rawTime += time.Since(t1)
			n := float64(calls * len(recs))
			b.ReportMetric(n/appendTime.Seconds(), "append-records/s")
			b.ReportMetric(n/rawTime.Seconds(), "raw-records/s")
			b.ReportMetric(rawTime.Seconds()/appendTime.Seconds(), "x-raw")
		})
	}
}

// BenchmarkFsync measures fdatasync of a file after a 4 KiB append: the
// latency acks=all pays once per group commit. It reports p50 and p99.
func BenchmarkFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "sync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	page := bytes.Repeat([]byte("s"), 4096)
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		f.Write(page)
		t0 := time.Now()
		if err := fdatasync(f); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkRead: records/s reading a partition from the start (page
// cache warm), 512 records per Read.
func BenchmarkRead(b *testing.B) { benchRead(b, 1024, 512, false) }

// BenchmarkReadMapped is BenchmarkRead through a mapped reader
// (NewMappedReader): no copy into the reader's buffer.
func BenchmarkReadMapped(b *testing.B) { benchRead(b, 1024, 512, true) }

// BenchmarkReadInPieces reads batches of 8192 records (Kafka clients send
// batches of up to 1 MB) 100 records at a time: each Read goes on inside
// the batch the previous one stopped in.
func BenchmarkReadInPieces(b *testing.B) { benchRead(b, 8192, 100, false) }

// benchRead appends 1M records in batches of batch, then reads them again
// and again, per records at a time, with a mapped reader or not.
func benchRead(b *testing.B, batch, per int, mapped bool) {
	l, p := benchPartition(b)
	defer l.Close()
	const n = 1 << 20
	recs := benchRecords(batch)
	for i := 0; i < n; i += batch {
		if _, err := p.Append(recs, AcksLeader); err != nil {
			b.Fatal(err)
		}
	}
	buf := make([]Record, 0, per)
	newReader := p.NewReader
	if mapped {
		newReader = p.NewMappedReader
	}
	r, _ := newReader(0)
	defer r.Close()
	b.SetBytes(benchRecordBytes)
	b.ReportAllocs()
	b.ResetTimer()
	for got := 0; got < b.N; {
		if r.Offset() == n {
			r.SeekOffset(0)
		}
		var err error
		if buf, err = r.Read(buf[:0]); err != nil {
			b.Fatal(err)
		}
		got += len(buf)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkTail: a reader waiting at the end of the partition while a
// writer appends batches of 64 (acks=1): records/s delivered to the tail.
func BenchmarkTail(b *testing.B) {
	l, p := benchPartition(b)
	defer l.Close()
	recs := benchRecords(64)
	b.SetBytes(benchRecordBytes)
	b.ReportAllocs()
	done := make(chan error)
	go func() {
		r, _ := p.NewReader(0)
		buf := make([]Record, 0, 512)
		var err error
		for got := 0; got < b.N; got += len(buf) {
			if buf, err = r.Poll(context.Background(), buf[:0]); err != nil {
				break
			}
		}
		done <- err
	}()
	for i := 0; i < b.N; i += len(recs) {
		if _, err := p.Append(recs, AcksLeader); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
