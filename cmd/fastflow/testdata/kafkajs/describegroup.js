// kafkajs's admin client describing a consumer group through fastflow's
// listener: prints the group's state and each member's client ID and
// assigned partitions as one JSON line. Driven by
// cmd/fastflow/kafka_test.go: node describegroup.js BROKER GROUP
const { Kafka, logLevel, AssignerProtocol } = require('kafkajs')

const [broker, groupId] = process.argv.slice(2)

async function main () {
  const kafka = new Kafka({ clientId: 'kafkajs-admin', brokers: [broker], logLevel: logLevel.WARN })
  const admin = kafka.admin()
  await admin.connect()
  const { groups } = await admin.describeGroups([groupId])
  const listed = await admin.listGroups()
  await admin.disconnect()
  const g = groups[0]
  console.log(JSON.stringify({
    state: g.state,
    protocolType: g.protocolType,
    listed: listed.groups.filter(l => l.groupId === groupId).map(l => l.protocolType),
    members: g.members.map(m => ({
      clientId: m.clientId,
      assignment: g.state === 'Stable' ? AssignerProtocol.MemberAssignment.decode(m.memberAssignment).assignment : null
    }))
  }))
}

const timer = setTimeout(() => { process.stderr.write('timed out\n'); process.exit(3) }, 60000)
main().then(() => { clearTimeout(timer) }, (err) => { process.stderr.write(`kafkajs: ${err.stack}\n`); process.exit(1) })
