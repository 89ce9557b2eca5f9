"""kafka-python (Debian's python3-kafka) against fastflow: an independent,
pure-Python implementation of the Kafka protocol, which asks for older
versions of most APIs than franz-go, librdkafka or kafkajs do.

Creates TOPIC with the admin client, produces COUNT keyed, gzip-compressed
messages with acks=all, consumes them in consumer group GROUP and prints
each as a JSON line, commits, checks offsets_for_times, end offsets and
the group's committed offsets, sets retention.ms with AlterConfigs, and
adds a partition to a second topic. Driven by cmd/fastflow/kafka_test.go:

    python3 roundtrip.py BROKER TOPIC GROUP COUNT
"""
import json
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic


def check(cond, what):
    if not cond:
        sys.stderr.write("kafka-python: %s\n" % what)
        sys.exit(1)


def main():
    broker, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    admin = KafkaAdminClient(bootstrap_servers=broker, client_id="kafka-python-test")
    r = admin.create_topics([NewTopic(topic, 4, 1), NewTopic(topic + ".more", 1, 1)])
    check(all(e[1] == 0 for e in r.topic_errors), "create_topics: %r" % (r,))

    start_ms = int(time.time() * 1000) - 1000
    producer = KafkaProducer(bootstrap_servers=broker, acks="all", compression_type="gzip", linger_ms=5)
    futures = [producer.send(topic, key=b"key-%d" % (i % 13), value=json.dumps({"i": i}).encode(),
                             headers=[("n", str(i).encode())]) for i in range(count)]
    producer.flush()
    acked = [f.get(timeout=10) for f in futures]
    producer.close()
    sys.stderr.write("produced %d\n" % len(acked))

    consumer = KafkaConsumer(topic, bootstrap_servers=broker, group_id=group, client_id="kafka-python-test",
                             auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=20000)
    seen = 0
    for m in consumer:
        check(m.headers == [("n", str(json.loads(m.value)["i"]).encode())], "headers %r" % (m.headers,))
        print(json.dumps({"partition": m.partition, "offset": m.offset, "key": m.key.decode(),
                          "value": m.value.decode()}), flush=True)
        seen += 1
        if seen == count:
            break
    check(seen == count, "consumed %d of %d" % (seen, count))
    consumer.commit()
    parts = [TopicPartition(topic, p) for p in range(4)]
    ends = consumer.end_offsets(parts)
    committed = {tp: consumer.committed(tp) for tp in parts}
    check(sum(ends.values()) == count and all(committed[tp] == ends[tp] for tp in parts),
          "end offsets %r, committed %r" % (ends, committed))
    # Every record is newer than start_ms: the first offset of each partition.
    times = consumer.offsets_for_times({tp: start_ms for tp in parts})
    check(all(times[tp] is not None and times[tp].offset == 0 for tp in parts if ends[tp] > 0),
          "offsets_for_times: %r" % (times,))
    consumer.close()

    offsets = admin.list_consumer_group_offsets(group)
    check({tp.partition: o.offset for tp, o in offsets.items()} == {tp.partition: ends[tp] for tp in parts},
          "list_consumer_group_offsets: %r" % (offsets,))
    check((group, "consumer") in admin.list_consumer_groups(), "list_consumer_groups")
    r = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "86400000"})])
    check(all(e[0] == 0 for e in r.resources), "alter_configs: %r" % (r,))
    r = admin.create_partitions({topic + ".more": NewPartitions(3)})
    check(all(e[1] == 0 for e in r.topic_errors), "create_partitions: %r" % (r,))
    admin.close()


main()
