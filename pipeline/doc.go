// Package pipeline is fastflow's stream processor: it reads a topic,
// parses JSON events, assigns them to event-time windows per group key,
// aggregates exact counts, sums, ratios and HDR percentiles, evaluates
// alert rules on every emitted window, and writes results to sinks.
//
// A pipelines file (Parse, LoadFile) declares topics and pipelines in
// YAML; each pipeline compiles to a plan (fields to extract, predicates,
// metric layout, alert rules). Run or Start executes it:
//
//	log partitions ──read in place──▶ worker (owns its partitions)
//	                                         │ partial aggregates per round
//	                                         ▼ (SPSC ring)
//	                                   coordinator ──▶ windows, alerts ──▶ sinks
//
// Why this shape: a worker per core owns whole partitions, so the per-event
// path (extract, window, aggregate) touches no lock, no channel and no
// allocation. A worker reads its local partitions itself and processes
// the records in the reader's buffer: no copy and no handoff. A waker per
// worker turns appends into wake-ups for the workers; a Kafka source's
// poller copies records into batches that cross to the workers over
// lock-free single-producer single-consumer rings. Workers report in
// rounds, and the coordinator applies round r of every worker before it
// moves the watermark, so what is emitted depends on the log alone — not
// on the number of workers or their speed — and the same log always gives
// the same lines. Lateness is judged per partition (Kafka Streams' stream
// time), which is also what lets partitions move between machines without
// changing results.
//
// A following run checkpoints the coordinator's state (positions, open
// windows, alert histories) to DATA/pipelines/NAME.checkpoint and resumes
// from it exactly; it holds DATA/pipelines/NAME.lock meanwhile, so that a
// second run of the pipeline on the data directory fails rather than
// overwriting its checkpoints. A checkpoint records the ends of the topics
// the pipeline writes (local ones and Kafka sinks), so that a restart
// after a crash does not write again what the killed run wrote after it
// (replay.go): results reach topics once, stdout and webhooks at least
// once. With a Kafka source (KafkaSource), the pipeline joins a consumer
// group so that N instances split the topic's partitions; on every
// rebalance the state is split by partition into a checkpoint topic and
// restored by the partitions' next owners, and each record written tells
// the source partition it comes from, so that a dead member's next owners
// each skip what it wrote for their partitions.
package pipeline
