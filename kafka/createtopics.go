package kafka

import (
	"context"
	"errors"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice"
)

func init() {
	register(19, &handler{name: "CreateTopics", min: 0, max: 7, serve: (*Server).createTopics})
}

// createTopics creates streams. A replication factor other than 1 or -1 is
// refused (one node); retention.ms and max.message.bytes map onto the
// stream's config; other configs are refused by name.
func (s *Server) createTopics(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.CreateTopicsRequest)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	for _, rt := range req.Topics {
		t := kmsg.NewCreateTopicsResponseTopic()
		t.Topic = rt.Topic
		t.NumPartitions, t.ReplicationFactor = -1, -1
		cfg := sluice.StreamConfig{Name: rt.Topic, Partitions: int(rt.NumPartitions)}
		if rt.NumPartitions == -1 {
			cfg.Partitions = DefaultPartitions
		}
		code, msg := int16(0), ""
		switch {
		case !c.may("admin", rt.Topic):
			code = errTopicAuth
		case len(rt.ReplicaAssignment) > 0:
			code, msg = kerr.InvalidReplicaAssignment.Code, "sluice places partitions itself: leave replica_assignment empty"
		case rt.ReplicationFactor != -1 && rt.ReplicationFactor != 1:
			code, msg = kerr.InvalidReplicationFactor.Code, "sluice runs one node: replication factor 1 (or -1)"
		case rt.NumPartitions == 0 || rt.NumPartitions < -1:
			code, msg = kerr.InvalidPartitions.Code, "num_partitions must be at least 1 (or -1 for the default)"
		}
		if code == 0 {
			for _, kv := range rt.Configs {
				if err := applyTopicConfig(&cfg, kv.Name, kv.Value); err != nil {
					code, msg = kerr.InvalidConfig.Code, err.Error()
					break
				}
			}
		}
		if code == 0 {
			if err := cfg.Validate(); err != nil {
				code, msg = kerr.InvalidTopicException.Code, err.Error()
				if ie := (*sluice.InvalidError)(nil); errors.As(err, &ie) && ie.Field == "StreamConfig.Partitions" {
					code = kerr.InvalidPartitions.Code
				}
			}
		}
		if code == 0 && !req.ValidateOnly {
			info, err := s.b.CreateStream(ctx, cfg)
			switch {
			case errors.Is(err, sluice.ErrStreamExists):
				code, msg = kerr.TopicAlreadyExists.Code, err.Error()
			case err != nil:
				code, msg = kerr.InvalidRequest.Code, err.Error()
			default:
				t.TopicID = topicID(rt.Topic)
				t.NumPartitions, t.ReplicationFactor = int32(len(info.Partitions)), 1
			}
		} else if code == 0 {
			t.NumPartitions, t.ReplicationFactor = int32(cfg.Partitions), 1
		}
		t.ErrorCode = code
		if msg != "" {
			t.ErrorMessage = kmsg.StringPtr(msg)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}

// applyTopicConfig maps one Kafka topic config onto a stream's config.
func applyTopicConfig(cfg *sluice.StreamConfig, name string, value *string) error {
	if value == nil {
		return nil
	}
	switch name {
	case "max.message.bytes":
		n, err := strconv.Atoi(*value)
		if err != nil {
			return errors.New("max.message.bytes: not a number")
		}
		cfg.MaxMessageBytes = n
	case "cleanup.policy":
		if *value != "delete" {
			return errors.New("cleanup.policy: only delete (sluice does not compact)")
		}
	case "min.insync.replicas", "compression.type", "message.timestamp.type", "segment.bytes", "retention.ms", "retention.bytes":
		// Accepted for compatibility; sluice's bounds apply (see DescribeConfigs).
	default:
		return errors.New(name + ": not a config sluice maps (see DescribeConfigs for those it has)")
	}
	return nil
}
