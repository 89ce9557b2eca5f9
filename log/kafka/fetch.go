package kafka

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/fastflow/fastflow/log"
)

// fetch reads from each requested partition, from its fetch offset, up to
// the request's and the partition's byte limits, as record batches v2. If
// fewer than MinBytes are available it waits, up to MaxWaitMillis, for
// appends to any of the partitions (the log wakes it; no polling) - unless
// a partition has an error (an offset out of range, an unknown
// partition): then it answers at once, as Kafka's broker does, so that
// the client resets its offset or refreshes its metadata now rather than
// after MaxWaitMillis.
func (s *Server) fetch(ctx context.Context, req *kmsg.FetchRequest) kmsg.Response {
	deadline := time.Now().Add(time.Duration(req.MaxWaitMillis) * time.Millisecond)
	wake := make(chan struct{}, 1)
	var stops []func()
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	listening := false
	for {
		resp, bytes, failed := s.fetchOnce(req)
		if bytes >= int(req.MinBytes) || failed || !time.Now().Before(deadline) || ctx.Err() != nil {
			return resp
		}
		recycleBatches(resp)
		if !listening {
			listening = true
			for _, rt := range req.Topics {
				if t, err := s.log.Topic(rt.Topic); err == nil {
					for _, rp := range rt.Partitions {
						if p, err := t.Partition(rp.Partition); err == nil {
							if stop, err := p.Listen(wake); err == nil {
								stops = append(stops, stop)
							}
						}
					}
				}
			}
			continue // appended between the read and the listen?
		}
		timer := time.NewTimer(time.Until(deadline))
		select {
		case <-wake:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
	}
}

// fetchMaxBytes bounds a Fetch response, whatever the request's MaxBytes
// asks (up to 2 GiB): Kafka's broker setting fetch.max.bytes, at its
// default. Clients ask for 50 MiB by default.
const fetchMaxBytes = 57671680

// fetchOnce reads what is available now; it returns the response, the
// number of record bytes in it, and whether a partition has an error.
func (s *Server) fetchOnce(req *kmsg.FetchRequest) (*kmsg.FetchResponse, int, bool) {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	budget := int(req.MaxBytes)
	if budget <= 0 || budget > fetchMaxBytes {
		budget = fetchMaxBytes
	}
	total, failed := 0, false
	for _, rt := range req.Topics {
		st := kmsg.NewFetchResponseTopic()
		st.Topic = rt.Topic
		t, terr := s.log.Topic(rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			// Empty, not null: librdkafka rejects a null record set.
			sp.RecordBatches = []byte{}
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
			var p *log.Partition
			err := terr
			if err == nil {
				p, err = t.Partition(rp.Partition)
			}
			if err != nil {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				st.Partitions = append(st.Partitions, sp)
				failed = true
				continue
			}
			hw := p.HighWatermark()
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = hw, hw, p.LogStartOffset()
			limit := int(rp.PartitionMaxBytes)
			if limit <= 0 || limit > budget-total {
				limit = budget - total
			}
			// Kafka returns at least one batch even past the limit, so a
			// large record never blocks a consumer.
			if total > 0 && limit <= 0 {
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			b, err := readBatches(p, rp.FetchOffset, limit, t.Config().TimestampType == log.TimestampAppend)
			var oe *log.OffsetOutOfRangeError
			switch {
			case errors.As(err, &oe):
				sp.ErrorCode, failed = kerr.OffsetOutOfRange.Code, true
			case err != nil:
				sp.ErrorCode, failed = kerr.KafkaStorageError.Code, true
			case b != nil:
				sp.RecordBatches = b
				total += len(b)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, total, failed
}

// readBatches reads records from offset, about limit bytes of them, and
// encodes them as record batches.
func readBatches(p *log.Partition, offset int64, limit int, logAppend bool) ([]byte, error) {
	if offset == p.HighWatermark() {
		return nil, nil
	}
	r, err := p.NewReader(offset)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	out := batchBuf(fetchSize(p, offset, limit))
	recs := make([]log.Record, 0, 512)
	for full := false; !full && len(out) < limit && r.Offset() < p.HighWatermark(); {
		recs, err = r.Read(recs[:0])
		if err != nil {
			return nil, err
		}
		if len(recs) == 0 {
			break
		}
		// One Kafka batch per run of records whose offsets follow each
		// other (compaction leaves gaps; a batch's records need not be
		// dense, but its deltas must fit), as many records as the limit
		// takes: at least one, however large, as Kafka answers.
		start := 0
		for i := 1; i <= len(recs) && !full; i++ {
			if i == len(recs) || recs[i].Offset-recs[start].Offset > 1<<30 {
				run := recs[start:i]
				n, size := batchFit(run, limit-len(out))
				if n < len(run) {
					full = true
					if n == 0 && len(out) == 0 {
						n, size = batchFit(run[:1], math.MaxInt)
					}
					run = run[:n]
				}
				if len(run) > 0 {
					out = appendBatch(growBatches(out, size), run, logAppend)
				}
				start = i
			}
		}
	}
	return out, nil
}

// fetchSize guesses the bytes of record batches a fetch from offset
// finds, up to limit: the partition's bytes on disk per offset times the
// offsets from there to the end, and an eighth more. The encoding is
// about the log's own, so the guess is close unless compaction left
// gaps; a short guess is grown (growBatches).
func fetchSize(p *log.Partition, offset int64, limit int) int {
	hw, start := p.HighWatermark(), p.LogStartOffset()
	if hw <= start || offset >= hw {
		return 0
	}
	guess := float64(p.Size()) / float64(hw-start) * float64(hw-max(offset, start)) * 1.125
	return int(min(guess, float64(limit)))
}

// growBatches makes room for n more bytes in out, and when it has to
// grow, at least doubles its capacity: growing by what the next batch
// needs let append grow large slices by 1.25x, so a 16 MiB fetch copied
// its batches ~4 times over (a third of the CPU of a consuming benchmark).
func growBatches(out []byte, n int) []byte {
	if cap(out)-len(out) >= n {
		return out
	}
	return slices.Grow(out, max(n, 2*cap(out)-len(out)))
}

// batchBufs recycles the buffers fetches encode record batches into,
// from one response to the next (recycleBatches): a consumer fetching 16
// MiB at a time would otherwise have each response allocate and zero a
// buffer and grow it, copying, to that size.
var batchBufs sync.Pool // of *[]byte

// batchBuf is a buffer for about size bytes: a recycled one if it is that
// large, else a new one (of at least 64 KiB). Growing a buffer from 64 KiB
// to a 16 MiB fetch, even doubling, costs as much again in copies and
// zeroing, and a GC empties the pool often while a consumer keeps up.
func batchBuf(size int) []byte {
	if b, ok := batchBufs.Get().(*[]byte); ok && cap(*b) >= size {
		return (*b)[:0]
	}
	return make([]byte, 0, max(size, 64<<10))
}

// recycleBatches gives a Fetch response's record batches back to
// batchBufs once it is encoded; other responses are left as they are.
func recycleBatches(resp kmsg.Response) {
	fr, ok := resp.(*kmsg.FetchResponse)
	if !ok {
		return
	}
	for i := range fr.Topics {
		for j := range fr.Topics[i].Partitions {
			sp := &fr.Topics[i].Partitions[j]
			if b := sp.RecordBatches; cap(b) > 0 {
				batchBufs.Put(&b)
			}
			sp.RecordBatches = nil
		}
	}
}
