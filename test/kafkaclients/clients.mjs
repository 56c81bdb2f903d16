// kafkajs against sluice's Kafka listener: produce, then consume in a group.
// Usage: node clients.mjs BROKER TOPIC GROUP COUNT
import { Kafka, logLevel } from "kafkajs";

const [broker, topic, group, countArg] = process.argv.slice(2);
const count = Number(countArg);
const kafka = new Kafka({ clientId: "sluice-kafkajs-check", brokers: [broker], logLevel: logLevel.WARN });

const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
await producer.connect();
const messages = [];
for (let i = 0; i < count; i++) {
  messages.push({ key: `user-${i % 3}`, value: `kafkajs message ${i}`, headers: { n: String(i) } });
}
const sent = await producer.send({ topic, messages, acks: -1 });
await producer.disconnect();
console.log(`kafkajs produced ${count} messages: ${JSON.stringify(sent)}`);

const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10000, heartbeatInterval: 1000 });
await consumer.connect();
await consumer.subscribe({ topic, fromBeginning: true });
const seen = new Set();
const done = new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`timed out with ${seen.size} of ${count} messages`)), 60000);
  consumer.run({
    eachMessage: async ({ partition, message }) => {
      const v = message.value.toString();
      if (v.startsWith("kafkajs message ")) seen.add(v);
      if (seen.size >= count) {
        clearTimeout(timer);
        resolve();
      }
    },
  });
});
await done;
await consumer.commitOffsets([]).catch(() => {}); // autocommit has run; this flushes if not
await consumer.disconnect();
console.log(`kafkajs consumed ${seen.size} messages in group ${group}`);
