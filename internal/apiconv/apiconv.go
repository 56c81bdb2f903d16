// Package apiconv holds the conversions between the broker's types and the
// network API's messages that the server and the Go client both need: the enum
// tables, headers, and optional durations and times. Each side keeps the
// conversions only it makes (the server checks what it reads, the client trusts
// what the server answers).
//
// It is the one internal package above the root package: it imports sluice and
// the generated API, and server and client import it.
package apiconv

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicemq/sluice"
	sluicev1 "github.com/sluicemq/sluice/gen/sluice/v1"
)

// RetentionPolicies maps the API's retention policies to the broker's.
var RetentionPolicies = map[sluicev1.RetentionPolicy]sluice.RetentionPolicy{
	sluicev1.RetentionPolicy_RETENTION_POLICY_UNSPECIFIED: "",
	sluicev1.RetentionPolicy_RETENTION_POLICY_LIMITS:      sluice.RetainLimits,
	sluicev1.RetentionPolicy_RETENTION_POLICY_WORK:        sluice.RetainWork,
}

// OverflowPolicies maps the API's overflow policies to the broker's.
var OverflowPolicies = map[sluicev1.OverflowPolicy]sluice.OverflowPolicy{
	sluicev1.OverflowPolicy_OVERFLOW_POLICY_UNSPECIFIED: "",
	sluicev1.OverflowPolicy_OVERFLOW_POLICY_REJECT:      sluice.OverflowReject,
	sluicev1.OverflowPolicy_OVERFLOW_POLICY_BLOCK:       sluice.OverflowBlock,
	sluicev1.OverflowPolicy_OVERFLOW_POLICY_DROP_OLDEST: sluice.OverflowDropOldest,
}

// SyncPolicies maps the API's sync policies to the broker's.
var SyncPolicies = map[sluicev1.SyncPolicy]sluice.SyncPolicy{
	sluicev1.SyncPolicy_SYNC_POLICY_UNSPECIFIED: "",
	sluicev1.SyncPolicy_SYNC_POLICY_ALWAYS:      sluice.SyncAlways,
	sluicev1.SyncPolicy_SYNC_POLICY_INTERVAL:    sluice.SyncInterval,
	sluicev1.SyncPolicy_SYNC_POLICY_NEVER:       sluice.SyncNever,
}

// SubscriptionModes maps the API's subscription modes to the broker's.
var SubscriptionModes = map[sluicev1.SubscriptionMode]sluice.SubscriptionMode{
	sluicev1.SubscriptionMode_SUBSCRIPTION_MODE_UNSPECIFIED: "",
	sluicev1.SubscriptionMode_SUBSCRIPTION_MODE_QUEUE:       sluice.QueueMode,
	sluicev1.SubscriptionMode_SUBSCRIPTION_MODE_KEY_ORDERED: sluice.KeyOrderedMode,
	sluicev1.SubscriptionMode_SUBSCRIPTION_MODE_PARTITIONED: sluice.PartitionedMode,
}

// DeliveryGuarantees maps the API's delivery guarantees to the broker's.
var DeliveryGuarantees = map[sluicev1.DeliveryGuarantee]sluice.DeliveryGuarantee{
	sluicev1.DeliveryGuarantee_DELIVERY_GUARANTEE_UNSPECIFIED:   "",
	sluicev1.DeliveryGuarantee_DELIVERY_GUARANTEE_AT_LEAST_ONCE: sluice.AtLeastOnce,
	sluicev1.DeliveryGuarantee_DELIVERY_GUARANTEE_AT_MOST_ONCE:  sluice.AtMostOnce,
}

// MissedPolicies maps the API's missed-tick policies to the broker's.
var MissedPolicies = map[sluicev1.MissedPolicy]sluice.MissedPolicy{
	sluicev1.MissedPolicy_MISSED_POLICY_UNSPECIFIED:   "",
	sluicev1.MissedPolicy_MISSED_POLICY_SKIP:          sluice.MissedSkip,
	sluicev1.MissedPolicy_MISSED_POLICY_CATCH_UP_ONCE: sluice.MissedCatchUpOnce,
}

// HeadersTo converts headers to the API's.
func HeadersTo(hs []sluice.Header) []*sluicev1.Header {
	if len(hs) == 0 {
		return nil
	}
	out := make([]*sluicev1.Header, len(hs))
	for i, h := range hs {
		out[i] = &sluicev1.Header{Key: h.Key, Value: h.Value}
	}
	return out
}

// HeadersFrom converts the API's headers.
func HeadersFrom(hs []*sluicev1.Header) []sluice.Header {
	if len(hs) == 0 {
		return nil
	}
	out := make([]sluice.Header, len(hs))
	for i, h := range hs {
		out[i] = sluice.Header{Key: h.GetKey(), Value: h.GetValue()}
	}
	return out
}

// DurationOrNil leaves a zero duration unset.
func DurationOrNil(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

// TimeOrNil leaves a zero time unset.
func TimeOrNil(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
