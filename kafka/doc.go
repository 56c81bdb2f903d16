// Package kafka serves a sluice broker over Kafka's wire protocol, so that
// unmodified Kafka clients (franz-go, librdkafka and kcat, the Java client,
// kafkajs) produce, consume and join groups. `sluice serve --kafka-listen
// ADDR` runs it beside the API.
//
// # The mapping
//
//   - A stream is a topic and its partitions are the topic's partitions. One
//     node (NodeID 0) leads every partition and coordinates every group.
//     Topic ids are derived from the stream's name.
//   - Offsets are sluice offsets. A message's key, headers, body and time are
//     the record's key, headers, value and timestamp.
//   - Produce decodes each record batch (RecordBatch v2 only; CRC-32C checked;
//     none, gzip, snappy, lz4 or zstd compression, decompressed within
//     MaxDecompressedBytes) and publishes its records: durable before the
//     answer, whatever acks asks for (acks=0 gets no answer). An idempotent
//     producer's sequence numbers are checked per partition, and a retry of
//     one of its last 5 batches is answered with the original offset, not
//     stored twice. That state is memory only, as the records are stored
//     without any header of sluice's: after a broker restart a producer's
//     next batch is accepted whatever its sequence.
//   - Fetch serves the stored batches as they are on disk: the log's format is
//     RecordBatch v2, so nothing is decoded or re-encoded. Messages published
//     through sluice's own API with an idempotency key or a delivery time
//     carry it as a sluice-* record header, which Kafka consumers see.
//   - Kafka consumer groups, classic and KIP-848, are sluice partitioned
//     subscriptions named after the group (groups.go): committed offsets, lag
//     and the console show the same state whichever protocol the consumer
//     speaks. Membership is memory only (clients rejoin after a restart). A
//     partition never committed answers its floor, the log start, not -1.
//     KIP-848 members heartbeat every second, so that a partition moves in
//     about three seconds. Like every sluice subscription, a group's gets a
//     dead-letter stream, "<topic>.<group>.dlq", which Kafka clients see as a
//     topic; a Kafka group never fills it.
//   - Share groups (KIP-932) are queue subscriptions (share.go): per-record
//     accept, release and reject, retries, the delivery limit and the
//     dead-letter stream. A new share group starts at the earliest message
//     unless its share.auto.offset.reset says latest.
//   - Authentication is SASL/PLAIN whose password is a bearer token of the
//     server, with the same permissions as the API; errors map to Kafka codes.
//
// Group administration: DeleteGroups and OffsetDelete delete or rewind a
// group's subscriptions; DescribeShareGroupOffsets, AlterShareGroupOffsets and
// DeleteShareGroupOffsets read and move a share group's; IncrementalAlterConfigs
// and DescribeConfigs on a group set share.auto.offset.reset,
// share.record.lock.duration.ms and share.delivery.count.limit, applied when
// the share group's subscription on a topic is created (memory only).
//
// Produced batches are stored uncompressed (sluice decodes every record to
// check and publish it), so fetches return uncompressed batches.
//
// Each API key is served from a file named after it (produce.go, fetch.go,
// ...), registered with its versions; ApiVersions answers exactly those.
// Transactions are not supported: transactional ids are refused.
package kafka
