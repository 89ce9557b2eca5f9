package kafka

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/fastflow/fastflow/log"
)

// The Kafka protocol's throughput with franz-go as the client, on the
// same 140-byte records as log's BenchmarkAppend and BenchmarkRead, so
// that BENCHMARKS.md puts the two side by side: what a Kafka client gets
// over TCP next to what an embedding Go program gets in process. Client
// and server share the machine's cores.

const benchRecordBytes = 140

func benchValue(i int) []byte {
	v := fmt.Appendf(nil, `{"ts":1795341600123,"service":"payments","status":"ok","response_time":%07.2f,"pad":"`, float64(i%1000)/3)
	v = append(v, bytes.Repeat([]byte("x"), benchRecordBytes-12-len(v)-2)...)
	return append(v, '"', '}')
}

// BenchmarkKafkaProduce: records/s a franz-go producer (batching while
// requests are in flight; idempotent with acks=all, its default) gets
// through the Kafka listener into one partition. One op is one record.
func BenchmarkKafkaProduce(b *testing.B) {
	for _, acks := range []struct {
		name string
		opts []kgo.Opt
	}{
		{"acks=1", []kgo.Opt{kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite()}},
		{"acks=all", []kgo.Opt{kgo.RequiredAcks(kgo.AllISRAcks())}},
	} {
		b.Run(acks.name, func(b *testing.B) {
			addr, _ := startServer(b, map[string]int32{"bench": 1})
			cl := newClient(b, addr, append(acks.opts, kgo.DefaultProduceTopic("bench"), kgo.MaxBufferedRecords(1<<16))...)
			values := make([][]byte, 1024)
			for i := range values {
				values[i] = benchValue(i)
			}
			key := []byte("payments-001")
			ctx := context.Background()
			// Warm the connection and the producer ID.
			if err := cl.ProduceSync(ctx, &kgo.Record{Key: key, Value: values[0]}).FirstErr(); err != nil {
				b.Fatal(err)
			}
			var failed atomic.Int64
			b.SetBytes(benchRecordBytes)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cl.Produce(ctx, &kgo.Record{Key: key, Value: values[i%len(values)]}, func(_ *kgo.Record, err error) {
					if err != nil {
						failed.Add(1)
					}
				})
			}
			if err := cl.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d records failed", n)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkKafkaConsume: records/s a franz-go consumer fetches from one
// partition through the Kafka listener. One op is one record.
func BenchmarkKafkaConsume(b *testing.B) {
	addr, l := startServer(b, map[string]int32{"bench": 1})
	tp, _ := l.Topic("bench")
	p, _ := tp.Partition(0)
	batch := make([]log.Record, 1024)
	for i := range batch {
		batch[i] = log.Record{TimestampMs: 1795341600123, Key: []byte("payments-001"), Value: benchValue(i)}
	}
	for n := 0; n < b.N; n += len(batch) {
		if _, err := p.Append(batch[:min(len(batch), b.N-n)], log.AcksNone); err != nil {
			b.Fatal(err)
		}
	}
	if err := p.Flush(); err != nil {
		b.Fatal(err)
	}
	cl := newClient(b, addr, kgo.ConsumeTopics("bench"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(64<<20), kgo.FetchMaxPartitionBytes(16<<20))
	ctx := context.Background()
	b.SetBytes(benchRecordBytes)
	b.ReportAllocs()
	b.ResetTimer()
	got := 0
	for got < b.N {
		fs := cl.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			b.Fatal(err)
		}
		got += fs.NumRecords()
	}
	b.StopTimer()
	b.ReportMetric(float64(got)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkDecodeBatches: a Produce partition's uncompressed batch of
// 1,024 records of 100 bytes, each with a key and two headers (a trace
// ID and a content type), decoded to log.Records. One op is the batch;
// ns/record is per record.
func BenchmarkDecodeBatches(b *testing.B) {
	var recs []byte
	for i := range 1024 {
		r := kmsg.Record{OffsetDelta: int32(i), Key: []byte("payments-001"), Value: benchValue(i),
			Headers: []kmsg.Header{{Key: "traceparent", Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")}, {Key: "content-type", Value: []byte("application/json")}}}
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		recs = r.AppendTo(recs)
	}
	batch := kmsg.RecordBatch{Magic: 2, FirstTimestamp: 1795341600000, MaxTimestamp: 1795341600000, LastOffsetDelta: 1023,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 1024, Records: recs}
	raw := batch.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))
	binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], castagnoli))
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		budget := maxDecoded
		bs, err := decodeBatches(raw, &budget)
		if err != nil || len(bs[0].records) != 1024 {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1024, "ns/record")
}
