// Package compat holds no code, only tests: Kafka clients that fastflow's
// own module does not depend on — IBM's sarama and segmentio's kafka-go,
// two more independent implementations of the protocol, widely used in Go
// programs — driven against fastflow's Kafka listener (log/kafka) over
// 127.0.0.1, each checking what it wrote against the log itself.
//
// It is its own module so that these clients stay out of fastflow's
// go.mod, as the benchmark peers do (bench/peers). `make test` runs it (with -race).
package compat
