// Package batch encodes and decodes sluice record batches.
//
// A record batch is the unit that is written to disk, checksummed, indexed and
// (later) served to Kafka clients without re-encoding. Its layout is Kafka's
// RecordBatch v2 ("magic 2"), byte for byte, all integers big-endian:
//
//	offset  size  field
//	0       8     baseOffset       first offset in the batch; assigned by the log
//	8       4     batchLength      bytes that follow this field (total = 12 + batchLength)
//	12      4     leaderEpoch      leader epoch of the writer (0 until replication)
//	16      1     magic            always 2
//	17      4     crc              CRC-32C (Castagnoli) of bytes [21, end)
//	21      2     attributes       bits 0-2 compression (sluice writes 0: none),
//	                               bit 3 timestamp type, bit 4 transactional, bit 5 control
//	23      4     lastOffsetDelta  numRecords - 1
//	27      8     firstTimestamp   milliseconds since the Unix epoch
//	35      8     maxTimestamp     largest record timestamp in the batch
//	43      8     producerId       -1 when unused
//	51      2     producerEpoch    -1 when unused
//	53      4     baseSequence     -1 when unused
//	57      4     numRecords
//	61      ...   records
//
// Each record is varint-framed (zig-zag varints, as encoding/binary's Varint):
//
//	length varint, attributes int8, timestampDelta varint, offsetDelta varint,
//	keyLength varint (-1 for none), key, valueLength varint (-1 for none), value,
//	headerCount varint, then per header: keyLength varint, key, valueLength varint, value.
//
// The CRC deliberately leaves baseOffset, batchLength and leaderEpoch out, as Kafka
// does: a publisher encodes and checksums its batch before it knows its offset, and
// the log patches baseOffset in without touching the rest. Because baseOffset is not
// covered by the CRC, readers of the log also check that every batch starts exactly
// where the previous one ended (see package logstore).
package batch
