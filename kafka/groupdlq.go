package kafka

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/sluicemq/sluice"
)

// dlqHashLen is the hex digits of the hash that tells shortened dead-letter
// stream names apart.
const dlqHashLen = 16

// groupDeadLetter is the dead-letter stream of a group's subscription on a
// topic: sluice's default, "<topic>.<group>.dlq", when that is a valid
// stream name; otherwise (topic and group too long together, as two
// 64-character names are) the name shortened to sluice.MaxStreamNameLen,
// "<topic>.<group>" cut short, a dot, 16 hex digits of a hash of both names,
// and ".dlq". The same pair gets the same name on every call.
func groupDeadLetter(topic, group string) string {
	name := topic + "." + group + sluice.DeadLetterSuffix
	if validTopic(name) {
		return name
	}
	sum := sha256.Sum256([]byte(topic + "\x00" + group))
	prefix := topic + "." + group
	keep := sluice.MaxStreamNameLen - len(sluice.DeadLetterSuffix) - 1 - dlqHashLen
	if len(prefix) > keep {
		prefix = prefix[:keep]
	}
	return prefix + "." + hex.EncodeToString(sum[:])[:dlqHashLen] + sluice.DeadLetterSuffix
}
