// Package kafka serves the Kafka wire protocol over a fastflow log, so
// that ordinary Kafka clients produce to and consume from fastflow's
// topics unchanged (tested with kcat/librdkafka, franz-go and kafkajs; the
// versions served are those the Java client negotiates too, but no test
// runs it). Requests and responses are encoded with franz-go's kmsg; the
// records are fastflow's own: a record produced over Kafka is the record
// the CLI and pipelines see, same key, partition, offset, timestamp and
// headers, and the other way round.
//
// One fastflow process is a single-broker cluster (node 0) that leads
// every partition. Served, with the versions current clients negotiate:
// ApiVersions, Metadata, Produce (acks 0/1/all, record batches v2 with their
// CRC checked, gzip/snappy/lz4/zstd), Fetch (max wait and min bytes, long
// polling on the log's tail), ListOffsets, CreateTopics, DeleteTopics,
// DescribeConfigs, AlterConfigs and IncrementalAlterConfigs (topics'
// configs), DescribeLogDirs, FindCoordinator, the classic consumer group protocol
// (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, with session timeouts),
// OffsetCommit, OffsetFetch, OffsetDelete, ListGroups, DescribeGroups,
// DeleteGroups, and InitProducerId for idempotent producers. Committed offsets are the log's group offsets,
// shared with `fastflow consume --group`.
//
// Each connection is served by one goroutine, requests in order, as a
// broker does. A frame over the size limit, or a request that does not
// decode, closes its connection without touching the others.
package kafka

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/fastflow/fastflow/log"
)

// Options configure a Server.
type Options struct {
	// Advertise is the host:port clients are told to connect to (Metadata,
	// FindCoordinator); default the listener's address.
	Advertise string
	// MaxRequestBytes bounds one request frame; default 100 MiB, Kafka's
	// socket.request.max.bytes.
	MaxRequestBytes int
	// AutoCreatePartitions, if positive, creates a topic a client asks
	// Metadata for (and allows creating) when it does not exist, with this
	// many partitions: Kafka's auto.create.topics.enable and num.partitions.
	// Default 0: off, as Redpanda's default.
	AutoCreatePartitions int32
	// IdleTimeout closes a connection that sends no request, or takes none
	// of a response, for this long; default 10 minutes, Kafka's
	// connections.max.idle.ms.
	IdleTimeout time.Duration
	// Logger receives connection errors; nil discards.
	Logger *slog.Logger
}

// Server serves the Kafka protocol over a log.
type Server struct {
	log    *log.Log
	opts   Options
	groups *coordinator
	pids   *producers
	host   string
	port   int32

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// nodeID is the single broker's ID.
const nodeID = 0

// clusterID is what Metadata reports.
const clusterID = "fastflow"

// New returns a server over l.
func New(l *log.Log, opts Options) *Server {
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = 100 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 10 * time.Minute
	}
	return &Server{log: l, opts: opts, groups: newCoordinator(l, opts.Logger), pids: newProducers(), conns: map[net.Conn]struct{}{}}
}

// Serve accepts connections on ln until ctx is done, then closes them and
// returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	addr := s.opts.Advertise
	if addr == "" {
		addr = ln.Addr().String()
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("advertised address %q: %w", addr, err)
	}
	var p int
	fmt.Sscan(port, &p)
	s.host, s.port = host, int32(p)
	s.groups.start(ctx)
	go func() {
		<-ctx.Done()
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	}()
	for {
		conn, err := ln.Accept()
		if err != nil {
			s.wg.Wait()
			s.groups.stop()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		s.mu.Lock()
		s.conns[conn] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(ctx, conn)
			s.mu.Lock()
			delete(s.conns, conn)
			s.mu.Unlock()
			conn.Close()
		}()
	}
}

// request is one decoded request.
type request struct {
	kmsg.Request
	corr     int32
	clientID string
	host     string
}

// serveConn reads requests and writes responses, in order.
func (s *Server) serveConn(ctx context.Context, conn net.Conn) {
	host, _, _ := net.SplitHostPort(conn.RemoteAddr().String())
	var size [4]byte
	var out []byte
	for {
		// The deadline also bounds a frame that stops halfway: a stalled
		// client holds its own goroutine, for a while, and nothing else.
		conn.SetReadDeadline(time.Now().Add(s.opts.IdleTimeout))
		if _, err := io.ReadFull(conn, size[:]); err != nil {
			return
		}
		n := int(int32(binary.BigEndian.Uint32(size[:])))
		if n < 8 || n > s.opts.MaxRequestBytes {
			s.opts.Logger.Warn("kafka: closing connection: request frame size out of range", "client", conn.RemoteAddr(), "bytes", n)
			return
		}
		body, err := readFrame(conn, n)
		if err != nil {
			return
		}
		req, err := parseRequest(body)
		if err != nil {
			s.opts.Logger.Warn("kafka: closing connection: bad request", "client", conn.RemoteAddr(), "err", err)
			return
		}
		req.host = host
		resp := s.handle(ctx, req)
		if resp == nil {
			continue // acks=0 produce: no response
		}
		out = appendResponse(out[:0], req.corr, resp)
		recycleBatches(resp)
		if err := s.writeResponse(conn, out); err != nil {
			return
		}
	}
}

// writeChunk is how much of a response writeResponse writes under one
// deadline.
const writeChunk = 1 << 20

// writeResponse writes out to conn a chunk at a time, each with a deadline
// IdleTimeout ahead: a client that takes none of a response for that long
// is dropped, as one that sends nothing is, while one on a slow link takes
// a large fetch at its own pace.
func (s *Server) writeResponse(conn net.Conn, out []byte) error {
	for len(out) > 0 {
		n := min(len(out), writeChunk)
		conn.SetWriteDeadline(time.Now().Add(s.opts.IdleTimeout))
		if _, err := conn.Write(out[:n]); err != nil {
			return err
		}
		out = out[n:]
	}
	return nil
}

// readFrame reads a request frame's n bytes. A large one is read into a
// buffer that grows as its bytes arrive, so that a client that claims 100
// MiB (MaxRequestBytes) and sends nothing more holds a little memory, not
// 100 MiB per connection.
func readFrame(r io.Reader, n int) ([]byte, error) {
	const upFront = 1 << 20
	if n <= upFront {
		body := make([]byte, n)
		_, err := io.ReadFull(r, body)
		return body, err
	}
	var buf bytes.Buffer
	buf.Grow(upFront)
	if _, err := io.CopyN(&buf, r, int64(n)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// parseRequest decodes a request frame's body (without the size).
func parseRequest(body []byte) (r *request, err error) {
	defer func() {
		// kmsg decoders are careful, but a request is untrusted input: a
		// panic in decoding must close one connection, not the process.
		if p := recover(); p != nil {
			r, err = nil, fmt.Errorf("request does not decode: %v", p)
		}
	}()
	key := int16(binary.BigEndian.Uint16(body[0:2]))
	version := int16(binary.BigEndian.Uint16(body[2:4]))
	corr := int32(binary.BigEndian.Uint32(body[4:8]))
	rest := body[8:]
	if len(rest) < 2 {
		return nil, errors.New("truncated request header")
	}
	// Client ID: a nullable int16-length string.
	cl := int16(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	var clientID string
	if cl > 0 {
		if int(cl) > len(rest) {
			return nil, errors.New("truncated client id")
		}
		clientID = string(rest[:cl])
		rest = rest[cl:]
	}
	kreq := kmsg.RequestForKey(key)
	if kreq == nil {
		return nil, fmt.Errorf("unknown API key %d", key)
	}
	kreq.SetVersion(version)
	if kreq.IsFlexible() {
		// Tagged fields of the header: a count, then (tag, size, bytes).
		n, k := binary.Uvarint(rest)
		if k <= 0 {
			return nil, errors.New("bad header tags")
		}
		rest = rest[k:]
		for i := uint64(0); i < n; i++ {
			_, k1 := binary.Uvarint(rest)
			if k1 <= 0 {
				return nil, errors.New("bad header tag")
			}
			sz, k2 := binary.Uvarint(rest[k1:])
			if k2 <= 0 || uint64(len(rest)-k1-k2) < sz {
				return nil, errors.New("bad header tag")
			}
			rest = rest[k1+k2+int(sz):]
		}
	}
	if vr := versionRange(key); vr != nil && (version < vr.min || version > vr.max) && key != 18 {
		// Answered with UNSUPPORTED_VERSION without decoding the body,
		// which this version may lay out differently.
		return &request{Request: kreq, corr: corr, clientID: clientID}, nil
	}
	if err := kreq.ReadFrom(rest); err != nil {
		if key == 18 {
			// A newer ApiVersions than we know: answer v0 (KIP-511).
			return &request{Request: kreq, corr: corr, clientID: clientID}, nil
		}
		return nil, fmt.Errorf("API %d v%d does not decode: %v", key, version, err)
	}
	return &request{Request: kreq, corr: corr, clientID: clientID}, nil
}

// appendResponse frames a response: size, correlation ID, header tags
// (flexible versions, except ApiVersions, whose header is never flexible).
func appendResponse(dst []byte, corr int32, resp kmsg.Response) []byte {
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(corr))
	if resp.IsFlexible() && resp.Key() != 18 {
		dst = append(dst, 0)
	}
	dst = resp.AppendTo(dst)
	binary.BigEndian.PutUint32(dst, uint32(len(dst)-4))
	return dst
}

// vrange is a range of versions of an API served.
type vrange struct{ min, max int16 }

// served lists the APIs and versions the server answers. Caps keep to
// versions whose semantics are implemented: Fetch below 13 and Metadata
// below 13 name topics (fastflow has no topic IDs), ListOffsets below 8.
var served = map[int16]vrange{
	0:  {3, 9},  // Produce
	1:  {4, 12}, // Fetch
	2:  {1, 7},  // ListOffsets
	3:  {1, 12}, // Metadata
	8:  {2, 8},  // OffsetCommit
	9:  {1, 7},  // OffsetFetch
	10: {0, 3},  // FindCoordinator
	11: {0, 7},  // JoinGroup
	12: {0, 4},  // Heartbeat
	13: {0, 4},  // LeaveGroup
	14: {0, 5},  // SyncGroup
	15: {0, 5},  // DescribeGroups
	16: {0, 4},  // ListGroups
	18: {0, 3},  // ApiVersions
	19: {0, 7},  // CreateTopics
	20: {0, 5},  // DeleteTopics
	21: {0, 2},  // DeleteRecords
	22: {0, 4},  // InitProducerId
	32: {0, 4},  // DescribeConfigs
	33: {0, 2},  // AlterConfigs
	35: {0, 4},  // DescribeLogDirs
	37: {0, 3},  // CreatePartitions
	42: {0, 2},  // DeleteGroups
	44: {0, 1},  // IncrementalAlterConfigs
	47: {0, 0},  // OffsetDelete
}

func versionRange(key int16) *vrange {
	if r, ok := served[key]; ok {
		return &r
	}
	return nil
}

// handle answers one request.
func (s *Server) handle(ctx context.Context, r *request) kmsg.Response {
	key, version := r.Key(), r.GetVersion()
	vr := versionRange(key)
	if key == 18 {
		return s.apiVersions(r)
	}
	if vr == nil || version < vr.min || version > vr.max {
		return unsupported(r.Request)
	}
	switch req := r.Request.(type) {
	case *kmsg.MetadataRequest:
		return s.metadata(req)
	case *kmsg.ProduceRequest:
		return s.produce(req)
	case *kmsg.FetchRequest:
		return s.fetch(ctx, req)
	case *kmsg.ListOffsetsRequest:
		return s.listOffsets(req)
	case *kmsg.CreateTopicsRequest:
		return s.createTopics(req)
	case *kmsg.DeleteTopicsRequest:
		return s.deleteTopics(req)
	case *kmsg.DeleteRecordsRequest:
		return s.deleteRecords(req)
	case *kmsg.DescribeConfigsRequest:
		return s.describeConfigs(req)
	case *kmsg.AlterConfigsRequest:
		return s.alterConfigs(req)
	case *kmsg.DescribeLogDirsRequest:
		return s.describeLogDirs(req)
	case *kmsg.CreatePartitionsRequest:
		return s.createPartitions(req)
	case *kmsg.IncrementalAlterConfigsRequest:
		return s.incrementalAlterConfigs(req)
	case *kmsg.FindCoordinatorRequest:
		return s.findCoordinator(req)
	case *kmsg.InitProducerIDRequest:
		return s.initProducerID(req)
	case *kmsg.OffsetCommitRequest:
		return s.groups.offsetCommit(req)
	case *kmsg.OffsetFetchRequest:
		return s.groups.offsetFetch(req)
	case *kmsg.ListGroupsRequest:
		return s.groups.listGroups(req)
	case *kmsg.DescribeGroupsRequest:
		return s.groups.describeGroups(req)
	case *kmsg.JoinGroupRequest:
		return s.groups.join(ctx, req, r.clientID, r.host)
	case *kmsg.SyncGroupRequest:
		return s.groups.sync(ctx, req)
	case *kmsg.HeartbeatRequest:
		return s.groups.heartbeat(req)
	case *kmsg.LeaveGroupRequest:
		return s.groups.leave(req)
	case *kmsg.DeleteGroupsRequest:
		return s.groups.deleteGroups(req)
	case *kmsg.OffsetDeleteRequest:
		return s.groups.offsetDelete(req)
	}
	return unsupported(r.Request)
}

// unsupported answers a request for an API or version the server does not
// serve, as Kafka's error responses do: UNSUPPORTED_VERSION in the
// response's top-level error code, or, for APIs that answer per topic and
// partition (Produce, OffsetForLeaderEpoch, ...), in each of the request's
// topics and partitions. The client learns why instead of losing its
// connection.
func unsupported(req kmsg.Request) kmsg.Response {
	resp := req.ResponseKind()
	v := req.GetVersion()
	if r := versionRange(req.Key()); r != nil {
		v = max(r.min, min(v, r.max))
	}
	resp.SetVersion(v)
	mirrorError(reflect.ValueOf(req).Elem(), reflect.ValueOf(resp).Elem(), kerr.UnsupportedVersion.Code)
	return resp
}

// mirrorError sets code in resp's ErrorCode and, for each slice field of
// resp that req has too (Topics, Partitions, ...), builds one element per
// request element, copying the fields that identify it (Topic,
// Partition, ...), recursively. A request slice of plain values, like
// OffsetFetch's []int32 partitions, fills the element's first field.
func mirrorError(req, resp reflect.Value, code int16) {
	if f := resp.FieldByName("ErrorCode"); f.IsValid() && f.Kind() == reflect.Int16 {
		f.SetInt(int64(code))
	}
	if !req.IsValid() || req.Kind() != reflect.Struct {
		return
	}
	for i := 0; i < resp.NumField(); i++ {
		rf := resp.Field(i)
		name := resp.Type().Field(i).Name
		qf := req.FieldByName(name)
		switch {
		case !qf.IsValid() || name == "UnknownTags" || name == "Version":
		case rf.Kind() == reflect.Slice && qf.Kind() == reflect.Slice && rf.Type().Elem().Kind() == reflect.Struct:
			out := reflect.MakeSlice(rf.Type(), qf.Len(), qf.Len())
			for j := 0; j < qf.Len(); j++ {
				el := out.Index(j)
				if d, ok := el.Addr().Interface().(interface{ Default() }); ok {
					d.Default()
				}
				q := qf.Index(j)
				if q.Kind() != reflect.Struct {
					if f0 := el.Field(0); f0.Type() == q.Type() {
						f0.Set(q)
					}
					q = reflect.Value{}
				}
				mirrorError(q, el, code)
			}
			rf.Set(out)
		case rf.Type() == qf.Type() && rf.Kind() != reflect.Slice:
			rf.Set(qf) // Topic, Partition, Group, ...
		}
	}
}

func (s *Server) apiVersions(r *request) kmsg.Response {
	req := r.Request.(*kmsg.ApiVersionsRequest)
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	if req.Version > served[18].max {
		// KIP-511: a v0 response with UNSUPPORTED_VERSION and our range.
		resp.Version = 0
		resp.ErrorCode = kerr.UnsupportedVersion.Code
	}
	for _, key := range sortedKeys() {
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = key, served[key].min, served[key].max
		resp.ApiKeys = append(resp.ApiKeys, k)
	}
	return resp
}

func sortedKeys() []int16 { return slices.Sorted(maps.Keys(served)) }
