package kafka

import (
	"context"
	"slices"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(32, &handler{name: "DescribeConfigs", min: 0, max: 4, serve: (*Server).describeConfigs})
}

// Resource types of DescribeConfigs.
const (
	resourceTopic  = 2
	resourceBroker = 4
)

func (s *Server) describeConfigs(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeConfigsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, rr := range req.Resources {
		r := kmsg.NewDescribeConfigsResponseResource()
		r.ResourceType, r.ResourceName = rr.ResourceType, rr.ResourceName
		var configs [][2]string
		switch rr.ResourceType {
		case resourceTopic:
			if !c.sees(rr.ResourceName) {
				r.ErrorCode = errTopicAuth
				break
			}
			info, err := s.b.Stream(ctx, rr.ResourceName)
			if err != nil {
				r.ErrorCode, r.ErrorMessage = errorCode(err), errorMessage(err)
				break
			}
			cfg := info.Config
			configs = [][2]string{
				{"cleanup.policy", "delete"},
				{"max.message.bytes", strconv.Itoa(cfg.MaxMessageBytes)},
				{"retention.bytes", strconv.FormatInt(cfg.MaxBytes, 10)},
				{"retention.ms", strconv.FormatInt(cfg.Retention.MaxAge.Milliseconds(), 10)},
				{"segment.bytes", strconv.FormatInt(cfg.SegmentBytes, 10)},
				{"min.insync.replicas", "1"},
				{"message.timestamp.type", "CreateTime"},
				// Produced records are decompressed and stored (and
				// fetched) uncompressed, whatever the producer used.
				{"compression.type", "uncompressed"},
			}
			if cfg.Retention.MaxAge == 0 {
				configs[3][1] = "-1"
			}
		case resourceBroker:
			host, port := s.addr()
			configs = [][2]string{
				{"broker.id", strconv.Itoa(NodeID)},
				{"advertised.listeners", "PLAINTEXT://" + host + ":" + strconv.Itoa(int(port))},
				{"auto.create.topics.enable", strconv.FormatBool(s.opts.AutoCreateTopics)},
				{"num.partitions", strconv.Itoa(DefaultPartitions)},
				{"default.replication.factor", "1"},
				{"socket.request.max.bytes", strconv.Itoa(s.opts.MaxRequestBytes)},
			}
		case resourceGroup:
			if !validGroupID(rr.ResourceName) {
				r.ErrorCode = kerr.InvalidGroupID.Code
				break
			}
			// A group's configs are its own (set or default), not a
			// stream's: listed whether or not the group exists.
			for _, rc := range s.shares.describeGroupConfigs(rr.ResourceName) {
				if len(rr.ConfigNames) == 0 || slices.Contains(rr.ConfigNames, rc.Name) {
					r.Configs = append(r.Configs, rc)
				}
			}
		default:
			r.ErrorCode = kerr.InvalidRequest.Code
			r.ErrorMessage = kmsg.StringPtr("sluice describes topics (2), the broker (4) and groups (32)")
		}
		want := map[string]bool{}
		for _, k := range rr.ConfigNames {
			want[k] = true
		}
		for _, kv := range configs {
			if len(want) > 0 && !want[kv[0]] {
				continue
			}
			rc := kmsg.NewDescribeConfigsResponseResourceConfig()
			rc.Name, rc.Value, rc.ReadOnly = kv[0], kmsg.StringPtr(kv[1]), true
			rc.Source = kmsg.ConfigSourceDefaultConfig
			if rr.ResourceType == resourceTopic {
				rc.Source = kmsg.ConfigSourceDynamicTopicConfig
			}
			r.Configs = append(r.Configs, rc)
		}
		resp.Resources = append(resp.Resources, r)
	}
	return resp, nil
}
