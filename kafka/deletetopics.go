package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(20, &handler{name: "DeleteTopics", min: 0, max: 6, serve: (*Server).deleteTopics})
}

func (s *Server) deleteTopics(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteTopicsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	names := req.TopicNames
	for _, rt := range req.Topics { // v6 names or ids
		if rt.Topic != nil {
			names = append(names, *rt.Topic)
			continue
		}
		streams, err := s.b.ListStreams(ctx)
		if err != nil {
			return nil, err
		}
		found := ""
		for _, st := range streams {
			if topicID(st.Config.Name) == rt.TopicID {
				found = st.Config.Name
			}
		}
		if found == "" {
			t := kmsg.NewDeleteTopicsResponseTopic()
			t.TopicID, t.ErrorCode = rt.TopicID, errUnknownTopic
			resp.Topics = append(resp.Topics, t)
			continue
		}
		names = append(names, found)
	}
	for _, name := range names {
		t := kmsg.NewDeleteTopicsResponseTopic()
		t.Topic = kmsg.StringPtr(name)
		t.TopicID = topicID(name)
		if !c.may("admin", name) {
			t.ErrorCode = errTopicAuth
		} else if err := s.b.DeleteStream(ctx, name); err != nil {
			t.ErrorCode, t.ErrorMessage = errorCode(err), errorMessage(err)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}
