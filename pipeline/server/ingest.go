package server

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/valyala/fastjson"

	"github.com/fastflow/fastflow/log"
	"github.com/fastflow/fastflow/log/jsontext"
	"github.com/fastflow/fastflow/log/producer"
	"github.com/fastflow/fastflow/partition"
)

// maxIngestBytes bounds one request's body.
const maxIngestBytes = 32 << 20

// maxIngestRecords bounds one request's records. A record costs the
// request ~450 bytes of memory (its routing, its append, its line of the
// reply): 32 MiB of 2-byte lines, 16.7 M records, took 7.5 GB and 33 s to
// store and answer; 1,048,576 records take at most ~0.5 GB. A body of
// typical events (100 bytes: 330 k in 32 MiB) stays well under it. A
// variable for tests.
var maxIngestRecords = 1 << 20

// errTooManyRecords is a body over maxIngestRecords.
var errTooManyRecords = errors.New("body holds too many records")

// bodyIdleTimeout is how long a request body may stop arriving: a client
// that sends headers and part of a body, then nothing, is cut off then
// (408) rather than holding its connection and goroutine for ever; a large
// body on a slow link takes as long as it needs while bytes come.
var bodyIdleTimeout = 30 * time.Second

// connIdleTimeout closes a keep-alive connection that sends no new
// request for that long.
var connIdleTimeout = 2 * time.Minute

// responseWriteTimeout bounds the writing of a response (the stream's,
// each write): a client that has not taken all of it that long after its
// request (after its body, for an ingest) is dropped rather than holding
// its goroutine and the response for ever. The largest responses, the
// windows API's, are a few megabytes with keys of ordinary length: 4 MB
// in 2 minutes takes a link of 33 KB/s.
var responseWriteTimeout = 2 * time.Minute

// writeDeadline sets each request's write deadline responseWriteTimeout
// ahead before next serves it.
func writeDeadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(responseWriteTimeout))
		next.ServeHTTP(w, r)
	})
}

// progressReader sets the connection's read deadline bodyIdleTimeout
// ahead before each read of the body.
type progressReader struct {
	r  io.Reader
	rc *http.ResponseController
}

func (p progressReader) Read(b []byte) (int, error) {
	if err := p.rc.SetReadDeadline(time.Now().Add(bodyIdleTimeout)); err != nil {
		return 0, err
	}
	return p.r.Read(b)
}

// readBody returns r's body decoded as its Content-Encoding says (gzip,
// deflate, zstd, or none: what log shippers such as Vector and Fluent Bit
// send when told to compress), at most maxIngestBytes of it; or an error
// and the HTTP status that answers it. An encoding it does not know is
// refused rather than stored as the records' bytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	rc := http.NewResponseController(w)
	var body io.Reader = progressReader{r.Body, rc}
	in := body
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("reading gzip body: %v", err)
		}
		defer zr.Close()
		in = zr
	case "deflate": // HTTP's deflate is zlib's format (RFC 9110 8.4.1.2)
		zr, err := zlib.NewReader(body)
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("reading deflate body: %v", err)
		}
		defer zr.Close()
		in = zr
	case "zstd":
		zr, err := zstd.NewReader(body, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxIngestBytes+1))
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("reading zstd body: %v", err)
		}
		defer zr.Close()
		in = zr
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("Content-Encoding %q is not supported: send gzip, deflate, zstd or an uncompressed body", enc)
	}
	data, err := io.ReadAll(io.LimitReader(in, maxIngestBytes+1))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The deadline stays: the server, which would read the rest of
		// the body before answering on a connection it keeps, gives up
		// at once and closes it.
		w.Header().Set("Connection", "close")
		return nil, http.StatusRequestTimeout, fmt.Errorf("reading body: nothing arrived for %v", bodyIdleTimeout)
	}
	rc.SetReadDeadline(time.Time{}) // the connection's next request has its own
	rc.SetWriteDeadline(time.Now().Add(responseWriteTimeout))
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("reading body: %v", err)
	}
	if len(data) > maxIngestBytes {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body over %d bytes; split it", maxIngestBytes)
	}
	return data, 0, nil
}

// ingestReply is the answer to POST /topics/{topic}/records.
type ingestReply struct {
	Topic   string         `json:"topic"`
	Records []ingestResult `json:"records"`
	// BadTimestamp counts the records whose ?timestamp_field= is missing
	// or not a timestamp: stored with the append's time, as produce does.
	BadTimestamp int `json:"bad_timestamp,omitempty"`
}

// ingestResult is one record's place in the log: offset -1 where its
// partition's append failed (Kafka's produce response says so too, base
// offset -1 with the partition's error).
type ingestResult struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

// ingestFailure is the answer when some partition's append failed: the
// first error, the error of each partition that failed, and what became of
// every record, so that a client retries only those that were not stored.
type ingestFailure struct {
	Error string `json:"error"`
	ingestReply
	Failed     int              `json:"failed"`
	Partitions map[int32]string `json:"partition_errors"`
}

// appendStatus is the HTTP status that answers an append's error: 413
// for a record too large, 404 for a topic deleted meanwhile, 507 when the
// disk is full (or a file-size or quota limit is reached: Kafka's
// KAFKA_STORAGE_ERROR), 500 otherwise.
func appendStatus(err error) int {
	switch {
	case errors.Is(err, log.ErrRecordTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, log.ErrUnknownTopic):
		return http.StatusNotFound
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EFBIG), errors.Is(err, syscall.EDQUOT):
		return http.StatusInsufficientStorage
	}
	return http.StatusInternalServerError
}

// ingest handles POST /topics/{topic}/records: a body of JSON lines (each
// line a record, empty lines skipped, as `fastflow produce`) or a JSON
// array (each element a record). ?key_field= takes each record's key from
// a JSON field, ?timestamp_field= its timestamp, ?partition= forces a
// partition, ?acks= is 0, 1 or all (default 1). Every record is checked
// before anything is written: a bad request writes nothing.
func (s *Server) ingest(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("topic")
	t, err := s.log.Topic(name)
	if err == nil {
		// Partitions another process added (topic alter --partitions),
		// or its deletion.
		if rerr := t.Reload(); errors.Is(rerr, log.ErrUnknownTopic) {
			err = rerr
		}
	}
	if errors.Is(err, log.ErrUnknownTopic) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("topic %q does not exist", name))
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	q := r.URL.Query()
	acks := log.AcksLeader
	if a := q.Get("acks"); a != "" {
		var ok bool
		if acks, ok = log.ParseAcks(a); !ok {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid acks %q: use 0, 1 or all", a))
			return
		}
	}
	forced := int32(-1)
	if p := q.Get("partition"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n >= int(t.Partitions()) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid partition %q: topic %s has partitions 0 to %d", p, name, t.Partitions()-1))
			return
		}
		forced = int32(n)
	}
	body, status, err := readBody(w, r)
	if err != nil {
		writeError(w, status, err.Error())
		return
	}
	values, err := splitRecords(body)
	if err != nil {
		if err == errTooManyRecords {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body holds more than %d records; split it", maxIngestRecords))
			return
		}
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(values) == 0 {
		writeError(w, http.StatusBadRequest, "no records: send JSON lines or a JSON array")
		return
	}
	fields := producer.Fields{KeyField: q.Get("key_field"), TimeField: q.Get("timestamp_field")}
	// Route every record first; nothing is written unless all are valid.
	recs, badTime, err := s.route(t, values, fields, forced)
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	}
	reply, stored, partErrs, firstErr := appendRouted(t, recs, acks)
	reply.BadTimestamp = badTime
	if stored > 0 {
		s.metrics.ingested(name, stored, len(body))
	}
	if firstErr != nil {
		failed := len(recs) - stored
		msg := firstErr.Error()
		if stored > 0 {
			msg = fmt.Sprintf("%d of %d records not stored: %v", failed, len(recs), firstErr)
		}
		writeJSON(w, appendStatus(firstErr), ingestFailure{Error: msg, ingestReply: reply, Failed: failed, Partitions: partErrs})
		return
	}
	writeJSON(w, http.StatusOK, reply)
}

// routed is an ingested record and the partition it goes to.
type routed struct {
	rec log.Record
	p   int32
}

// route takes each value's key and timestamp (fields) and partition
// (forced, when not -1); an error names a record over the topic's
// max_record_bytes.
func (s *Server) route(t *log.Topic, values [][]byte, fields producer.Fields, forced int32) (recs []routed, badTime int, err error) {
	max := t.Config().MaxRecordBytes
	recs = make([]routed, len(values))
	// Records without a key go to one partition a batch at a time, as the
	// CLI's producer (and Kafka's sticky partitioner) sends them: the
	// partition moves on after a batch's records or bytes, and each request
	// starts on the partition after the one the server's previous request
	// started on, so that unkeyed traffic spreads over the partitions
	// whatever the size of its requests.
	sticky := partition.NewStickyAt(t.Partitions(), s.ingestTurn.Add(1))
	batchRecords, batchBytes := 0, 0
	for i, v := range values {
		key, ts, bad := fields.Extract(v)
		if bad {
			badTime++
		}
		if key != nil {
			key = bytes.Clone(key)
		}
		if n := len(key) + len(v); n > max {
			return nil, 0, fmt.Errorf("record %d is %d bytes, over max_record_bytes (%d) of %s", i, n, max, t.Name())
		}
		p := forced
		switch {
		case p >= 0:
		case key != nil:
			p = partition.ForKey(key, t.Partitions())
		default:
			p = sticky.Partition()
			if batchRecords, batchBytes = batchRecords+1, batchBytes+len(v); batchRecords >= producer.DefaultBatchRecords || batchBytes >= producer.DefaultBatchBytes {
				sticky.BatchDone()
				batchRecords, batchBytes = 0, 0
			}
		}
		recs[i] = routed{rec: log.Record{Key: key, Value: v, TimestampMs: ts}, p: p}
	}
	return recs, badTime, nil
}

// appendRouted appends recs, one append per partition, in partition
// order, records in request order within it. A partition whose append
// fails (a full disk) does not stop the others, as in a Kafka produce
// request. The reply says which records were stored; partErrs holds
// each failed partition's error, firstErr the first of them.
func appendRouted(t *log.Topic, recs []routed, acks log.Acks) (reply ingestReply, stored int, partErrs map[int32]string, firstErr error) {
	byPart := map[int32][]int{}
	for i, rt := range recs {
		byPart[rt.p] = append(byPart[rt.p], i)
	}
	reply = ingestReply{Topic: t.Name(), Records: make([]ingestResult, len(recs))}
	for _, p := range slices.Sorted(maps.Keys(byPart)) {
		idxs := byPart[p]
		part, err := t.Partition(p)
		var base int64
		if err == nil {
			batch := make([]log.Record, len(idxs))
			for j, i := range idxs {
				batch[j] = recs[i].rec
			}
			base, err = part.Append(batch, acks)
		}
		if err != nil {
			if firstErr == nil {
				firstErr, partErrs = err, map[int32]string{}
			}
			partErrs[p] = err.Error()
			for _, i := range idxs {
				reply.Records[i] = ingestResult{Partition: p, Offset: -1}
			}
			continue
		}
		stored += len(idxs)
		for j, i := range idxs {
			reply.Records[i] = ingestResult{Partition: p, Offset: base + int64(j)}
		}
	}
	return reply, stored, partErrs, firstErr
}

// splitRecords returns the records of a body: the elements of a JSON
// array, or the non-empty lines.
func splitRecords(body []byte) ([][]byte, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		// fastjson's parser takes more than JSON (unknown escapes, NaN,
		// 01, raw control characters in strings) and would store such an
		// element re-encoded as something else; jsontext.Validate does not.
		if err := jsontext.Validate(trimmed); err != nil {
			return nil, fmt.Errorf("body starts with [ but is not a JSON array: %v", err)
		}
		var p fastjson.Parser
		v, err := p.ParseBytes(trimmed)
		if err != nil { // JSON its parser refuses: too deep (its error says so 300 times)
			return nil, fmt.Errorf("body is a JSON array nested deeper than %d levels, more than ingest splits", fastjson.MaxDepth)
		}
		arr, err := v.Array()
		if err != nil {
			return nil, err
		}
		if len(arr) > maxIngestRecords {
			return nil, errTooManyRecords
		}
		out := make([][]byte, len(arr))
		for i, e := range arr {
			out[i] = e.MarshalTo(nil)
		}
		return out, nil
	}
	var out [][]byte
	for line := range bytes.Lines(body) {
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte{'\n'}), []byte{'\r'})
		if len(bytes.TrimSpace(line)) > 0 {
			if len(out) == maxIngestRecords {
				return nil, errTooManyRecords
			}
			out = append(out, line)
		}
	}
	return out, nil
}
