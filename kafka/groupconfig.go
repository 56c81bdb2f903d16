package kafka

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice"
)

func init() {
	register(44, &handler{name: "IncrementalAlterConfigs", min: 0, max: 1, serve: (*Server).incrementalAlterConfigs})
}

// resourceGroup is the GROUP resource type of DescribeConfigs and
// IncrementalAlterConfigs (KIP-848, KIP-932).
const resourceGroup = 32

// Share group configs (the GROUP resource), their limits and defaults.
const (
	cfgShareAutoOffsetReset = "share.auto.offset.reset"
	cfgShareLockDuration    = "share.record.lock.duration.ms"
	cfgShareDeliveryLimit   = "share.delivery.count.limit"
	cfgShareSessionTimeout  = "share.session.timeout.ms"
	cfgShareHeartbeat       = "share.heartbeat.interval.ms"

	// MinShareLockDuration and MaxShareLockDuration bound
	// share.record.lock.duration.ms.
	MinShareLockDuration = time.Second
	MaxShareLockDuration = time.Hour
	// MinShareDeliveryLimit and MaxShareDeliveryLimit bound
	// share.delivery.count.limit, as Kafka's
	// group.share.min/max.delivery.count.limit do by default.
	MinShareDeliveryLimit = 2
	MaxShareDeliveryLimit = 10
	// MaxGroupConfigs bounds the groups with configs held in memory; a
	// group past it is refused with POLICY_VIOLATION.
	MaxGroupConfigs = 10_000
)

// shareConfigs holds the share groups' configs, set with
// IncrementalAlterConfigs on the GROUP resource and described with
// DescribeConfigs:
//
//   - share.auto.offset.reset: earliest (sluice's default) or latest: where
//     the group's subscription on a topic starts when the group creates it
//     (SubscriptionConfig.StartLatest).
//   - share.record.lock.duration.ms: the acquisition lock, the
//     subscription's Lease (default ShareLockDuration; limits
//     [MinShareLockDuration, MaxShareLockDuration]).
//   - share.delivery.count.limit: the subscription's MaxDeliveries (default
//     ShareDeliveryLimit; limits [MinShareDeliveryLimit,
//     MaxShareDeliveryLimit]).
//   - share.session.timeout.ms and share.heartbeat.interval.ms are described,
//     read-only (ShareSessionTimeout, ShareHeartbeatInterval).
//
// A config applies to the subscriptions the group creates after it is set:
// a subscription's lease, delivery limit and start cannot change once it
// exists, so altering the configs of a group that already consumes a topic
// takes effect there once the group's subscription is deleted
// (DeleteGroups, DeleteShareGroupOffsets) and made again. The configs live
// in memory: they are lost when the broker restarts (the subscriptions made
// with them keep them), and DeleteGroups forgets them.
type shareConfigs map[string]map[string]string

// shareConfigDefaults are the share group configs' values when not set.
func shareConfigDefaults() map[string]string {
	return map[string]string{
		cfgShareAutoOffsetReset: "earliest",
		cfgShareLockDuration:    strconv.FormatInt(ShareLockDuration.Milliseconds(), 10),
		cfgShareDeliveryLimit:   strconv.Itoa(ShareDeliveryLimit),
		cfgShareSessionTimeout:  strconv.FormatInt(ShareSessionTimeout.Milliseconds(), 10),
		cfgShareHeartbeat:       strconv.FormatInt(ShareHeartbeatInterval.Milliseconds(), 10),
	}
}

// checkShareConfig validates one config value as a group would be set.
func checkShareConfig(name, value string) error {
	switch name {
	case cfgShareAutoOffsetReset:
		if value != "earliest" && value != "latest" {
			return fmt.Errorf("%s: %q is not earliest or latest (sluice has no by_duration)", name, value)
		}
	case cfgShareLockDuration:
		ms, err := strconv.ParseInt(value, 10, 64)
		if err != nil || ms < MinShareLockDuration.Milliseconds() || ms > MaxShareLockDuration.Milliseconds() {
			return fmt.Errorf("%s: %q outside [%d, %d] milliseconds", name, value, MinShareLockDuration.Milliseconds(), MaxShareLockDuration.Milliseconds())
		}
	case cfgShareDeliveryLimit:
		n, err := strconv.Atoi(value)
		if err != nil || n < MinShareDeliveryLimit || n > MaxShareDeliveryLimit {
			return fmt.Errorf("%s: %q outside [%d, %d]", name, value, MinShareDeliveryLimit, MaxShareDeliveryLimit)
		}
	case cfgShareSessionTimeout, cfgShareHeartbeat:
		return fmt.Errorf("%s is fixed in sluice (see DescribeConfigs)", name)
	default:
		return fmt.Errorf("%s: not a group config sluice has (it keeps %s, %s and %s)", name, cfgShareAutoOffsetReset, cfgShareLockDuration, cfgShareDeliveryLimit)
	}
	return nil
}

// subscriptionConfig is the queue subscription the share group creates on
// a topic, as its configs say.
func (g *shareGroups) subscriptionConfig(topic, group string) sluice.SubscriptionConfig {
	cfg := sluice.SubscriptionConfig{Name: group, Mode: sluice.QueueMode, Lease: ShareLockDuration,
		MaxDeliveries: ShareDeliveryLimit, DeadLetterStream: groupDeadLetter(topic, group)}
	g.mu.Lock()
	set := g.configs[group]
	g.mu.Unlock()
	// Values were checked when set.
	if v, ok := set[cfgShareAutoOffsetReset]; ok {
		cfg.StartLatest = v == "latest"
	}
	if v, ok := set[cfgShareLockDuration]; ok {
		ms, _ := strconv.ParseInt(v, 10, 64)
		cfg.Lease = time.Duration(ms) * time.Millisecond
	}
	if v, ok := set[cfgShareDeliveryLimit]; ok {
		cfg.MaxDeliveries, _ = strconv.Atoi(v)
	}
	return cfg
}

// describeGroupConfigs lists a group's configs as DescribeConfigs answers
// them: those set come from the group (source GROUP_CONFIG), the others are
// defaults.
func (g *shareGroups) describeGroupConfigs(group string) []kmsg.DescribeConfigsResponseResourceConfig {
	g.mu.Lock()
	set := g.configs[group]
	vals := shareConfigDefaults()
	isSet := map[string]bool{}
	for k, v := range set {
		vals[k], isSet[k] = v, true
	}
	g.mu.Unlock()
	names := make([]string, 0, len(vals))
	for k := range vals {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make([]kmsg.DescribeConfigsResponseResourceConfig, 0, len(names))
	for _, k := range names {
		rc := kmsg.NewDescribeConfigsResponseResourceConfig()
		rc.Name, rc.Value = k, kmsg.StringPtr(vals[k])
		rc.ReadOnly = k == cfgShareSessionTimeout || k == cfgShareHeartbeat
		rc.IsDefault = !isSet[k]
		rc.Source = kmsg.ConfigSourceDefaultConfig
		if isSet[k] {
			rc.Source = kmsg.ConfigSourceGroupConfig
		}
		out = append(out, rc)
	}
	return out
}

// forgetConfigs drops a group's configs (DeleteGroups).
func (g *shareGroups) forgetConfigs(group string) {
	g.mu.Lock()
	delete(g.configs, group)
	g.mu.Unlock()
}

// alterGroupConfigs applies one resource's operations to a group's configs,
// all or none: SET a value, DELETE back to the default. APPEND and SUBTRACT
// are for list configs, which groups have none of.
func (g *shareGroups) alterGroupConfigs(group string, ops []kmsg.IncrementalAlterConfigsRequestResourceConfig, validateOnly bool) (int16, string) {
	if !validGroupID(group) {
		return kerr.InvalidGroupID.Code, fmt.Sprintf("group id %q must be 1..128 characters of [A-Za-z0-9._-] starting with a letter or digit", group)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	next := map[string]string{}
	for k, v := range g.configs[group] {
		next[k] = v
	}
	for _, op := range ops {
		switch op.Op {
		case kmsg.IncrementalAlterConfigOpSet:
			if op.Value == nil {
				return kerr.InvalidConfig.Code, op.Name + ": SET without a value"
			}
			if err := checkShareConfig(op.Name, *op.Value); err != nil {
				return kerr.InvalidConfig.Code, err.Error()
			}
			next[op.Name] = *op.Value
		case kmsg.IncrementalAlterConfigOpDelete:
			if err := checkShareConfig(op.Name, shareConfigDefaults()[op.Name]); err != nil {
				return kerr.InvalidConfig.Code, err.Error()
			}
			delete(next, op.Name)
		default:
			return kerr.InvalidConfig.Code, fmt.Sprintf("%s: operation %v applies to list configs; group configs take SET or DELETE", op.Name, op.Op)
		}
	}
	if validateOnly {
		return 0, ""
	}
	if g.configs == nil {
		g.configs = shareConfigs{}
	}
	if _, known := g.configs[group]; !known && len(next) > 0 && len(g.configs) >= MaxGroupConfigs {
		return kerr.PolicyViolation.Code, fmt.Sprintf("%d groups have configs, limit MaxGroupConfigs=%d", len(g.configs), MaxGroupConfigs)
	}
	if len(next) == 0 {
		delete(g.configs, group)
	} else {
		g.configs[group] = next
	}
	return 0, ""
}

// incrementalAlterConfigs alters share group configs (the GROUP resource;
// see shareConfigs). Topic and broker configs are not altered through the
// Kafka protocol: a topic's are set when it is created.
//
// With authentication on, altering a group's configs takes the "admin"
// permission on every stream the group has a subscription on; configs of a
// group without subscriptions only shape those its members create, which
// joining needs "consume" for.
func (s *Server) incrementalAlterConfigs(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.IncrementalAlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, rr := range req.Resources {
		r := kmsg.NewIncrementalAlterConfigsResponseResource()
		r.ResourceType, r.ResourceName = rr.ResourceType, rr.ResourceName
		code, msg := int16(0), ""
		switch rr.ResourceType {
		case resourceGroup:
			if code, msg = s.mayAdminGroup(ctx, c, rr.ResourceName); code == 0 {
				code, msg = s.shares.alterGroupConfigs(rr.ResourceName, rr.Configs, req.ValidateOnly)
			}
		case resourceTopic, resourceBroker:
			code, msg = kerr.InvalidRequest.Code, "sluice alters group configs (resource type 32) only: a topic's configs are set when it is created"
		default:
			code, msg = kerr.InvalidRequest.Code, fmt.Sprintf("resource type %d is not one sluice has configs for", rr.ResourceType)
		}
		r.ErrorCode = code
		if msg != "" {
			r.ErrorMessage = kmsg.StringPtr(msg)
		}
		resp.Resources = append(resp.Resources, r)
	}
	return resp, nil
}

// mayAdminGroup checks that the connection may administer a group: the
// "admin" permission on every stream the group has a subscription on.
func (s *Server) mayAdminGroup(ctx context.Context, c *conn, group string) (int16, string) {
	if s.opts.Authenticate == nil {
		return 0, ""
	}
	subs, err := s.groupSubscriptions(ctx, group)
	if err != nil {
		return errorCode(err), err.Error()
	}
	for _, sub := range subs {
		if !c.may("admin", sub.Stream) {
			return errGroupAuth, fmt.Sprintf("group %q has a subscription on stream %q, which the connection may not administer", group, sub.Stream)
		}
	}
	return 0, ""
}

// groupSubscriptions lists the subscriptions named group that a Kafka group
// of that id uses: partitioned ones (a consumer group's committed offsets)
// and those a share group can consume through (queue or key-ordered,
// at-least-once). Other subscriptions of the name are not the group's.
func (s *Server) groupSubscriptions(ctx context.Context, group string) ([]sluice.SubscriptionInfo, error) {
	streams, err := s.b.ListStreams(ctx)
	if err != nil {
		return nil, err
	}
	var out []sluice.SubscriptionInfo
	for _, st := range streams {
		info, err := s.b.Subscription(ctx, st.Config.Name, group)
		switch {
		case errors.Is(err, sluice.ErrSubscriptionNotFound), errors.Is(err, sluice.ErrStreamNotFound):
			continue
		case err != nil:
			return nil, err
		}
		if info.Config.Mode == sluice.PartitionedMode || shareable(info.Config) {
			out = append(out, info)
		}
	}
	return out, nil
}

// shareable reports whether a share group can consume through a
// subscription: one that hands each message to one consumer under a lease.
func shareable(cfg sluice.SubscriptionConfig) bool {
	return (cfg.Mode == sluice.QueueMode || cfg.Mode == sluice.KeyOrderedMode) && cfg.Delivery != sluice.AtMostOnce
}
