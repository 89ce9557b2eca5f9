package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkProduceCLI runs `fastflow produce --key-field service` over a
// file of 1M JSON events into a 6-partition topic, acks=all: the whole CLI
// path (process start, read, split, key extraction, murmur2, batching,
// append, fsync). One op is one run over the whole file.
func BenchmarkProduceCLI(b *testing.B) {
	const lines = 1_000_000
	file := filepath.Join(b.TempDir(), "events.jsonl")
	var sb strings.Builder
	services := []string{"payments", "search", "auth", "checkout", "inventory", "users", "cart", "email"}
	for i := 0; i < lines; i++ {
		fmt.Fprintf(&sb, `{"ts":%d,"service":%q,"status":"ok","response_time":%.1f}`+"\n",
			1795341600000+int64(i), services[i%len(services)], float64(i%5000)/10)
	}
	if err := os.WriteFile(file, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(sb.Len()))
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		c := &cli{t: nil, dir: b.TempDir()}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		if out, err := c.cmd(ctx, "topic", "create", "events", "--partitions", "6").CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
		b.StartTimer()
		if out, err := c.cmd(ctx, "produce", "events", "--key-field", "service", file).CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
		cancel()
	}
	b.ReportMetric(float64(lines*b.N)/b.Elapsed().Seconds(), "records/s")
}
