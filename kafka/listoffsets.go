package kafka

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(2, &handler{name: "ListOffsets", min: 1, max: 8, serve: (*Server).listOffsets})
}

// The special timestamps of ListOffsets.
const (
	latestOffset   = -1
	earliestOffset = -2
	maxTimestamp   = -3
)

func (s *Server) listOffsets(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ListOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range req.Topics {
		t := kmsg.NewListOffsetsResponseTopic()
		t.Topic = rt.Topic
		info, err := s.b.Stream(ctx, rt.Topic)
		for _, rp := range rt.Partitions {
			p := kmsg.NewListOffsetsResponseTopicPartition()
			p.Partition, p.Offset, p.Timestamp, p.LeaderEpoch = rp.Partition, -1, -1, 0
			switch {
			case !c.sees(rt.Topic):
				p.ErrorCode = errTopicAuth
			case err != nil:
				p.ErrorCode = errorCode(err)
			case rp.Partition < 0 || int(rp.Partition) >= len(info.Partitions):
				p.ErrorCode = errUnknownTopic
			default:
				part := info.Partitions[rp.Partition]
				switch rp.Timestamp {
				case latestOffset:
					p.Offset = part.HighWatermark
				case earliestOffset:
					p.Offset = part.StartOffset
				case maxTimestamp:
					p.Offset = max(part.HighWatermark-1, part.StartOffset)
				default:
					off, err := s.b.OffsetForTime(ctx, rt.Topic, int(rp.Partition), time.UnixMilli(rp.Timestamp))
					if err != nil {
						p.ErrorCode = errorCode(err)
						break
					}
					p.Offset, p.Timestamp = off, rp.Timestamp
					if off >= part.HighWatermark { // no message that late
						p.Offset, p.Timestamp = -1, -1
					}
				}
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}
