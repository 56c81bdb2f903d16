package kafka

import (
	"context"
	"crypto/sha256"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice"
)

func init() {
	register(3, &handler{name: "Metadata", min: 0, max: 12, serve: (*Server).metadata})
}

// topicID is a stream's topic id: derived from its name, so it is the same on
// every broker start without being stored. A stream deleted and created
// again under the same name keeps its id, unlike in Kafka.
func topicID(name string) [16]byte {
	sum := sha256.Sum256([]byte("sluice topic " + name))
	var id [16]byte
	copy(id[:], sum[:16])
	return id
}

// sees reports whether the connection may know of the stream: any
// permission on it will do.
func (c *conn) sees(stream string) bool {
	return c.may("publish", stream) || c.may("consume", stream) || c.may("admin", stream)
}

func (s *Server) metadata(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.MetadataRequest)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	host, port := s.addr()
	broker := kmsg.NewMetadataResponseBroker()
	broker.NodeID, broker.Host, broker.Port = NodeID, host, port
	resp.Brokers = []kmsg.MetadataResponseBroker{broker}
	cluster := ClusterID
	resp.ClusterID = &cluster
	resp.ControllerID = NodeID

	streams, err := s.b.ListStreams(ctx)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]sluice.StreamInfo, len(streams))
	for _, st := range streams {
		byName[st.Config.Name] = st
	}
	all := req.Topics == nil || (req.Version == 0 && len(req.Topics) == 0)
	if all {
		for _, st := range streams {
			if c.sees(st.Config.Name) {
				resp.Topics = append(resp.Topics, topicMetadata(st))
			}
		}
		return resp, nil
	}
	for _, rt := range req.Topics {
		name := ""
		if rt.Topic != nil {
			name = *rt.Topic
		} else if id := rt.TopicID; id != [16]byte{} {
			for n := range byName {
				if topicID(n) == id {
					name = n
				}
			}
		}
		st, ok := byName[name]
		if !ok && name != "" && req.AllowAutoTopicCreation && s.opts.AutoCreateTopics && c.may("admin", name) {
			info, err := s.b.CreateStream(ctx, sluice.StreamConfig{Name: name, Partitions: DefaultPartitions})
			switch {
			case err == nil:
				st, ok = info, true
			case errors.Is(err, sluice.ErrStreamExists):
				if info, err := s.b.Stream(ctx, name); err == nil {
					st, ok = info, true
				}
			}
		}
		if !ok || !c.sees(name) {
			t := kmsg.NewMetadataResponseTopic()
			t.Topic = kmsg.StringPtr(name)
			t.TopicID = rt.TopicID
			t.ErrorCode = errUnknownTopic
			if name != "" && !validTopic(name) {
				t.ErrorCode = kerr.InvalidTopicException.Code
			}
			resp.Topics = append(resp.Topics, t)
			continue
		}
		resp.Topics = append(resp.Topics, topicMetadata(st))
	}
	return resp, nil
}

func topicMetadata(st sluice.StreamInfo) kmsg.MetadataResponseTopic {
	t := kmsg.NewMetadataResponseTopic()
	t.Topic = kmsg.StringPtr(st.Config.Name)
	t.TopicID = topicID(st.Config.Name)
	for i := range st.Partitions {
		p := kmsg.NewMetadataResponseTopicPartition()
		p.Partition = int32(i)
		p.Leader = NodeID
		p.LeaderEpoch = 0
		p.Replicas = []int32{NodeID}
		p.ISR = []int32{NodeID}
		t.Partitions = append(t.Partitions, p)
	}
	return t
}

// validTopic reports whether a name is a valid stream (and topic) name.
func validTopic(name string) bool {
	return (&sluice.StreamConfig{Name: name}).Validate() == nil
}
