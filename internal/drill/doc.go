// Package drill holds the four design drills about queues and their live runs.
//
// A drill is a whiteboard question with a checklist of what a strong answer
// covers (Drill, All, Get), and a scenario that Run plays against a real
// broker through the sluice.Client interface, so that the same run works on a
// broker embedded in the program (sluice drill) and on a served one. A run
// reports what it does as a sequence of Events: steps, observations, measured
// Figures and a conclusion.
//
// The four drills:
//
//  1. queue-or-not: when a queue belongs between two services, and when it is
//     the wrong call;
//  2. exactly-once: why exactly-once delivery cannot be had, and how to design
//     for at-least-once;
//  3. poison: what a message that always fails does to a queue, and how it is
//     contained;
//  4. task-queue-or-log: when each is right, and why ordering differs.
//
// Every stream a run creates is named Options.Prefix + "-" + something and is
// deleted when the run ends, on error and cancellation too. Streams are small
// (a few thousand messages at most per partition) and fsync every publish
// (SyncAlways), so the latencies a run reports are those of durable writes.
// Every wait in a run has a deadline; a whole run takes a few seconds.
package drill
