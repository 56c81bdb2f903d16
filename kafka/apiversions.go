package kafka

import (
	"context"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const apiVersionsKey = 18

func init() {
	register(apiVersionsKey, &handler{name: "ApiVersions", min: 0, max: 4, open: true, serve: (*Server).apiVersions})
}

// apiKeys lists every served API with its versions, by key.
func apiKeys() []kmsg.ApiVersionsResponseApiKey {
	keys := make([]int16, 0, len(handlers))
	for k := range handlers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]kmsg.ApiVersionsResponseApiKey, 0, len(keys))
	for _, k := range keys {
		ak := kmsg.NewApiVersionsResponseApiKey()
		ak.ApiKey, ak.MinVersion, ak.MaxVersion = k, handlers[k].min, handlers[k].max
		out = append(out, ak)
	}
	return out
}

func (s *Server) apiVersions(ctx context.Context, c *conn, req kmsg.Request) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	resp.ApiKeys = apiKeys()
	return resp, nil
}

// unsupportedAPIVersions is the KIP-511 answer to an ApiVersions request of a
// version we do not serve: v0, UNSUPPORTED_VERSION, and our versions.
func unsupportedAPIVersions() kmsg.Response {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(0)
	resp.ErrorCode = kerr.UnsupportedVersion.Code
	resp.ApiKeys = apiKeys()
	return resp
}
