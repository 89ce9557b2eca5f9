package kafka

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/fastflow/fastflow/log"
)

// DescribeConfigs, AlterConfigs and IncrementalAlterConfigs: a topic's
// configuration under Kafka's names (retention.ms, cleanup.policy, ...).

// describeConfigs reports a topic's configuration under Kafka's names.
func (s *Server) describeConfigs(req *kmsg.DescribeConfigsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, r := range req.Resources {
		sr := kmsg.NewDescribeConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = r.ResourceType, r.ResourceName
		if r.ResourceType != kmsg.ConfigResourceTypeTopic {
			// The broker's own configuration: nothing to report.
			resp.Resources = append(resp.Resources, sr)
			continue
		}
		t, err := s.log.Topic(r.ResourceName)
		if err != nil {
			sr.ErrorCode = kerr.UnknownTopicOrPartition.Code
			resp.Resources = append(resp.Resources, sr)
			continue
		}
		c := t.Config()
		for _, name := range topicConfigOrder {
			if len(r.ConfigNames) > 0 && !contains(r.ConfigNames, name) {
				continue
			}
			cfg := kmsg.NewDescribeConfigsResponseResourceConfig()
			cfg.Name, cfg.Value = name, kmsg.StringPtr(topicConfigs[name].get(c))
			cfg.Source = kmsg.ConfigSourceDynamicTopicConfig
			sr.Configs = append(sr.Configs, cfg)
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return resp
}

// alterConfigs replaces the listed topics' configs, Kafka's legacy
// AlterConfigs: every config not given takes its default.
func (s *Server) alterConfigs(req *kmsg.AlterConfigsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, r := range req.Resources {
		sr := kmsg.NewAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = r.ResourceType, r.ResourceName
		sr.ErrorCode, sr.ErrorMessage = s.alterTopicConfig(r.ResourceType, r.ResourceName, req.ValidateOnly,
			func(cfg *log.TopicConfig) error {
				*cfg = log.TopicConfig{Partitions: cfg.Partitions}.WithDefaults()
				for _, c := range r.Configs {
					if err := setTopicConfig(cfg, c.Name, c.Value); err != nil {
						return err
					}
				}
				return nil
			})
		resp.Resources = append(resp.Resources, sr)
	}
	return resp
}

// incrementalAlterConfigs sets or deletes (reverts to the default) the
// given configs of the listed topics, Kafka's IncrementalAlterConfigs
// (kafka-configs --alter, franz-go's kadm). APPEND and SUBTRACT, for
// list configs, are refused: none of fastflow's is a list.
func (s *Server) incrementalAlterConfigs(req *kmsg.IncrementalAlterConfigsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, r := range req.Resources {
		sr := kmsg.NewIncrementalAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = r.ResourceType, r.ResourceName
		sr.ErrorCode, sr.ErrorMessage = s.alterTopicConfig(r.ResourceType, r.ResourceName, req.ValidateOnly,
			func(cfg *log.TopicConfig) error {
				defaults := log.TopicConfig{Partitions: cfg.Partitions}.WithDefaults()
				for _, c := range r.Configs {
					var err error
					switch c.Op {
					case kmsg.IncrementalAlterConfigOpSet:
						err = setTopicConfig(cfg, c.Name, c.Value)
					case kmsg.IncrementalAlterConfigOpDelete:
						if tc := topicConfigs[c.Name]; tc != nil {
							err = tc.set(cfg, tc.get(defaults))
						}
					default:
						err = fmt.Errorf("%s: operation %v is for list configs, and fastflow's are not lists", c.Name, c.Op)
					}
					if err != nil {
						return err
					}
				}
				return nil
			})
		resp.Resources = append(resp.Resources, sr)
	}
	return resp
}

// alterTopicConfig applies change to a topic's config (with validateOnly,
// only checks it) and returns the error code and message for the
// response.
func (s *Server) alterTopicConfig(typ kmsg.ConfigResourceType, name string, validateOnly bool,
	change func(*log.TopicConfig) error) (int16, *string) {
	fail := func(e *kerr.Error, msg string) (int16, *string) { return e.Code, &msg }
	if typ != kmsg.ConfigResourceTypeTopic {
		return fail(kerr.InvalidRequest, "fastflow alters topic configs only")
	}
	t, err := s.log.Topic(name)
	if err != nil {
		return fail(kerr.UnknownTopicOrPartition, err.Error())
	}
	if validateOnly {
		_, err = t.CheckConfig(change)
	} else {
		_, err = t.AlterConfig(change)
	}
	var refused *log.ConfigError
	switch {
	case errors.As(err, &refused):
		return fail(kerr.InvalidConfig, err.Error())
	case errors.Is(err, log.ErrUnknownTopic): // deleted by another process
		return fail(kerr.UnknownTopicOrPartition, err.Error())
	case err != nil:
		return fail(kerr.KafkaStorageError, err.Error())
	}
	return 0, nil
}

// setTopicConfig sets a Kafka topic config in cfg. Configs without a
// fastflow counterpart are accepted and have no effect, as in
// CreateTopics.
func setTopicConfig(cfg *log.TopicConfig, name string, value *string) error {
	tc := topicConfigs[name]
	if tc == nil {
		return nil
	}
	if value == nil {
		return fmt.Errorf("%s: no value", name)
	}
	if err := tc.set(cfg, *value); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// topicConfig is a Kafka topic config that maps to one of fastflow's:
// how CreateTopics sets it and DescribeConfigs shows it. Other Kafka
// topic configs (min.insync.replicas, compression.type, ...) are accepted
// and have no effect on a single broker that stores batches as it does.
type topicConfig struct {
	set func(*log.TopicConfig, string) error
	get func(log.TopicConfig) string
}

// topicConfigOrder is the order DescribeConfigs lists them in.
var topicConfigOrder = []string{"cleanup.policy", "retention.ms", "retention.bytes", "segment.bytes",
	"max.message.bytes", "message.timestamp.type", "delete.retention.ms"}

var topicConfigs = map[string]*topicConfig{
	"cleanup.policy": {
		set: func(c *log.TopicConfig, v string) error { c.Cleanup = v; return nil },
		get: func(c log.TopicConfig) string { return c.Cleanup },
	},
	"retention.ms": millis(func(c *log.TopicConfig) *time.Duration { return &c.Retention }),
	"retention.bytes": {
		set: number(func(c *log.TopicConfig, n int64) { c.RetentionBytes = max(0, n) }),
		get: func(c log.TopicConfig) string {
			if c.RetentionBytes == 0 {
				return "-1" // unlimited
			}
			return strconv.FormatInt(c.RetentionBytes, 10)
		},
	},
	"segment.bytes": {
		set: number(func(c *log.TopicConfig, n int64) { c.SegmentBytes = n }),
		get: func(c log.TopicConfig) string { return strconv.FormatInt(c.SegmentBytes, 10) },
	},
	"max.message.bytes": {
		set: number(func(c *log.TopicConfig, n int64) { c.MaxRecordBytes = int(n) }),
		get: func(c log.TopicConfig) string { return strconv.Itoa(c.MaxRecordBytes) },
	},
	"message.timestamp.type": {
		set: func(c *log.TopicConfig, v string) error { c.TimestampType = v; return nil },
		get: func(c log.TopicConfig) string {
			if c.TimestampType == log.TimestampAppend {
				return "LogAppendTime"
			}
			return "CreateTime"
		},
	},
	"delete.retention.ms": millis(func(c *log.TopicConfig) *time.Duration { return &c.DeleteRetention }),
}

// number parses a config's value as an integer.
func number(set func(*log.TopicConfig, int64)) func(*log.TopicConfig, string) error {
	return func(c *log.TopicConfig, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", v)
		}
		set(c, n)
		return nil
	}
}

// millis is a duration config in milliseconds; a negative duration is -1.
func millis(field func(*log.TopicConfig) *time.Duration) *topicConfig {
	return &topicConfig{
		set: number(func(c *log.TopicConfig, n int64) { *field(c) = time.Duration(n) * time.Millisecond }),
		get: func(c log.TopicConfig) string {
			d := *field(&c)
			if d < 0 {
				return "-1"
			}
			return strconv.FormatInt(d.Milliseconds(), 10)
		},
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
