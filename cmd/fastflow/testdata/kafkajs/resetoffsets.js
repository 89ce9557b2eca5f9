// kafkajs's admin client setting a consumer group's offsets through
// fastflow's listener, then resetting them to the earliest, as its docs
// show (admin.setOffsets, admin.resetOffsets): prints what
// admin.fetchOffsets returns after each as one JSON line. resetOffsets
// commits -2, which Kafka stores and returns as it is. Driven by
// cmd/fastflow/kafka_test.go: node resetoffsets.js BROKER TOPIC GROUP
const { Kafka, logLevel } = require('kafkajs')

const [broker, topic, groupId] = process.argv.slice(2)

async function main () {
  const kafka = new Kafka({ clientId: 'kafkajs-admin', brokers: [broker], logLevel: logLevel.WARN })
  const admin = kafka.admin()
  await admin.connect()
  const offsets = async () => (await admin.fetchOffsets({ groupId, topics: [topic] }))[0].partitions
    .sort((a, b) => a.partition - b.partition).map(p => p.offset)
  await admin.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: '3' }, { partition: 1, offset: '4' }] })
  const set = await offsets()
  await admin.resetOffsets({ groupId, topic, earliest: true })
  const reset = await offsets()
  await admin.disconnect()
  console.log(JSON.stringify({ set, reset }))
}

const timer = setTimeout(() => { process.stderr.write('timed out\n'); process.exit(3) }, 60000)
main().then(() => { clearTimeout(timer) }, (err) => { process.stderr.write(`kafkajs: ${err.stack}\n`); process.exit(1) })
