// kafkajs against fastflow: produce keyed messages, then consume them in a
// consumer group and print each as a JSON line; then set the topic's
// retention.ms to a day with the admin client's alterConfigs. Driven by
// cmd/fastflow/kafka_test.go: node roundtrip.js BROKER TOPIC GROUP COUNT
const { Kafka, logLevel, ConfigResourceTypes } = require('kafkajs')

const [broker, topic, groupId, countArg] = process.argv.slice(2)
const count = Number(countArg)

async function main () {
  const kafka = new Kafka({ clientId: 'kafkajs-test', brokers: [broker], logLevel: logLevel.WARN })
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  const messages = []
  for (let i = 0; i < count; i++) {
    messages.push({ key: `key-${i % 13}`, value: JSON.stringify({ i }), headers: { n: String(i) } })
  }
  const acks = await producer.send({ topic, acks: -1, messages })
  process.stderr.write(`produced ${count}: ${JSON.stringify(acks)}\n`)
  await producer.disconnect()

  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 500 })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  let seen = 0
  await new Promise((resolve, reject) => {
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        console.log(JSON.stringify({
          partition,
          offset: Number(message.offset),
          key: message.key.toString(),
          value: message.value.toString(),
          header: message.headers.n.toString()
        }))
        if (++seen === count) resolve()
      }
    }).catch(reject)
  })
  await consumer.commitOffsets([]) // commits what was resolved
  await consumer.disconnect()

  const admin = kafka.admin()
  await admin.connect()
  await admin.alterConfigs({
    validateOnly: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'retention.ms', value: '86400000' }] }]
  })
  await admin.disconnect()
}

const timer = setTimeout(() => { process.stderr.write('timed out\n'); process.exit(3) }, 60000)
main().then(() => { clearTimeout(timer) }, (err) => { process.stderr.write(`kafkajs: ${err.stack}\n`); process.exit(1) })
