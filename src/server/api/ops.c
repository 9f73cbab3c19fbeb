/*
 * ops: the table of Kinesis operations and their input models (member names, types and constraints from
 * the service model of Kinesis_20131202, current version with StreamARN parameters).
 */
#include <string.h>

#include "server/api/api.h"
#include "server/api/policies.h"

/* Shared member specs. */
#define STREAM_NAME(req) {"StreamName", VT_STRING, req, 1, 128, PAT_NAME, NULL, NULL}
#define STREAM_ARN(req) {"StreamARN", VT_STRING, req, 1, 2048, PAT_STREAM_ARN, NULL, NULL}
#define STREAM_ID {"StreamId", VT_STRING, false, VNONE, VNONE, PAT_NONE, NULL, NULL}
#define SHARD_ID(name, req) {name, VT_STRING, req, 1, 128, PAT_NAME, NULL, NULL}
#define INT_RANGE(name, req, lo, hi) {name, VT_INT, req, lo, hi, PAT_NONE, NULL, NULL}
#define END {NULL, VT_STRING, false, VNONE, VNONE, PAT_NONE, NULL, NULL}

static const char *const stream_modes[] = {"PROVISIONED", "ON_DEMAND", NULL};
static const char *const distribution_strategies[] = {"AUTO", "USER_PARTITION_KEY", NULL};
static const char *const encryption_types[] = {"NONE", "KMS", NULL};
static const char *const metric_names[] = {"IncomingBytes",
                                           "IncomingRecords",
                                           "OutgoingBytes",
                                           "OutgoingRecords",
                                           "WriteProvisionedThroughputExceeded",
                                           "ReadProvisionedThroughputExceeded",
                                           "IteratorAgeMilliseconds",
                                           "ALL",
                                           NULL};
static const char *const shard_filter_types[] = {"AFTER_SHARD_ID", "AT_TRIM_HORIZON", "FROM_TRIM_HORIZON",
                                                 "AT_LATEST",      "AT_TIMESTAMP",    "FROM_TIMESTAMP",
                                                 NULL};
static const char *const commitment_statuses[] = {"ENABLED", "DISABLED", NULL};

static const vfield_t stream_mode_details[] = {
    {"StreamMode", VT_STRING, true, VNONE, VNONE, PAT_NONE, stream_modes, NULL},
    END,
};
static const vfield_t tag_map[] = {
    {"key", VT_STRING, true, 1, 128, PAT_NONE, NULL, NULL},
    {"value", VT_STRING, true, 0, 256, PAT_NONE, NULL, NULL},
};
static const vfield_t tag_key = {"member", VT_STRING, true, 1, 128, PAT_NONE, NULL, NULL};
static const vfield_t metric_name = {"member", VT_STRING, true, VNONE, VNONE, PAT_NONE, metric_names, NULL};
static const vfield_t shard_filter[] = {
    {"Type", VT_STRING, true, VNONE, VNONE, PAT_NONE, shard_filter_types, NULL},
    SHARD_ID("ShardId", false),
    {"Timestamp", VT_TIMESTAMP, false, VNONE, VNONE, PAT_NONE, NULL, NULL},
    END,
};
static const vfield_t commitment[] = {
    {"Status", VT_STRING, true, VNONE, VNONE, PAT_NONE, commitment_statuses, NULL},
    END,
};

static const vfield_t in_create_stream[] = {
    STREAM_NAME(true),
    {"ShardCount", VT_INT, false, 1, VNONE, PAT_NONE, NULL, NULL},
    {"StreamModeDetails", VT_STRUCT, false, VNONE, VNONE, PAT_NONE, NULL, stream_mode_details},
    {"Tags", VT_MAP, false, 1, 200, PAT_NONE, NULL, tag_map},
    {"WarmThroughputMiBps", VT_INT, false, 0, VNONE, PAT_NONE, NULL, NULL},
    INT_RANGE("MaxRecordSizeInKiB", false, 1024, 10240),
    {"RecordDistributionStrategy", VT_STRING, false, VNONE, VNONE, PAT_NONE, distribution_strategies, NULL},
    END,
};
static const vfield_t in_delete_stream[] = {
    STREAM_NAME(false),
    {"EnforceConsumerDeletion", VT_BOOL, false, VNONE, VNONE, PAT_NONE, NULL, NULL},
    STREAM_ARN(false),
    STREAM_ID,
    END,
};
static const vfield_t in_describe_stream[] = {
    STREAM_NAME(false), INT_RANGE("Limit", false, 1, 10000), SHARD_ID("ExclusiveStartShardId", false),
    STREAM_ARN(false),  STREAM_ID,                          END,
};
static const vfield_t in_stream_only[] = {
    STREAM_NAME(false),
    STREAM_ARN(false),
    STREAM_ID,
    END,
};
static const vfield_t in_list_streams[] = {
    INT_RANGE("Limit", false, 1, 10000),
    {"ExclusiveStartStreamName", VT_STRING, false, 1, 128, PAT_NAME, NULL, NULL},
    {"NextToken", VT_STRING, false, 1, 1048576, PAT_NONE, NULL, NULL},
    END,
};
static const vfield_t in_list_shards[] = {
    STREAM_NAME(false),
    {"NextToken", VT_STRING, false, 1, 1048576, PAT_NONE, NULL, NULL},
    SHARD_ID("ExclusiveStartShardId", false),
    INT_RANGE("MaxResults", false, 1, 10000),
    {"StreamCreationTimestamp", VT_TIMESTAMP, false, VNONE, VNONE, PAT_NONE, NULL, NULL},
    {"ShardFilter", VT_STRUCT, false, VNONE, VNONE, PAT_NONE, NULL, shard_filter},
    STREAM_ARN(false),
    STREAM_ID,
    END,
};
#define CONSUMER_ARN(req) {"ConsumerARN", VT_STRING, req, 1, 2048, PAT_CONSUMER_ARN, NULL, NULL}
#define CONSUMER_NAME(req) {"ConsumerName", VT_STRING, req, 1, 128, PAT_NAME, NULL, NULL}
static const vfield_t in_register_consumer[] = {
    STREAM_ARN(true),
    CONSUMER_NAME(true),
    {"Tags", VT_MAP, false, 1, 50, PAT_NONE, NULL, tag_map},
    END,
};
static const vfield_t in_consumer[] = {
    STREAM_ARN(false),
    CONSUMER_NAME(false),
    CONSUMER_ARN(false),
    END,
};
static const vfield_t in_list_consumers[] = {
    STREAM_ARN(true),
    {"NextToken", VT_STRING, false, 1, 1048576, PAT_NONE, NULL, NULL},
    INT_RANGE("MaxResults", false, 1, 10000),
    {"StreamCreationTimestamp", VT_TIMESTAMP, false, VNONE, VNONE, PAT_NONE, NULL, NULL},
    END,
};
static const char *const scaling_types[] = {"UNIFORM_SCALING", NULL};
static const vfield_t in_split_shard[] = {
    STREAM_NAME(false),
    SHARD_ID("ShardToSplit", true),
    {"NewStartingHashKey", VT_STRING, true, VNONE, VNONE, PAT_HASH_KEY, NULL, NULL},
    STREAM_ARN(false),
    STREAM_ID,
    END,
};
static const vfield_t in_merge_shards[] = {
    STREAM_NAME(false),
    SHARD_ID("ShardToMerge", true),
    SHARD_ID("AdjacentShardToMerge", true),
    STREAM_ARN(false),
    STREAM_ID,
    END,
};
static const vfield_t in_update_shard_count[] = {
    STREAM_NAME(false),
    INT_RANGE("TargetShardCount", true, 1, 100000),
    {"ScalingType", VT_STRING, true, VNONE, VNONE, PAT_NONE, scaling_types, NULL},
    STREAM_ARN(false),
    STREAM_ID,
    END,
};
static const vfield_t in_retention[] = {
    STREAM_NAME(false),
    {"RetentionPeriodHours", VT_INT, true, VNONE, VNONE, PAT_NONE, NULL, NULL},
    STREAM_ARN(false),
    STREAM_ID,
    END,
};
static const vfield_t in_update_stream_mode[] = {
    STREAM_ARN(true),
    {"StreamModeDetails", VT_STRUCT, true, VNONE, VNONE, PAT_NONE, NULL, stream_mode_details},
    {"WarmThroughputMiBps", VT_INT, false, 0, VNONE, PAT_NONE, NULL, NULL},
    STREAM_ID,
    END,
};
static const vfield_t in_monitoring[] = {
    STREAM_NAME(false),
    {"ShardLevelMetrics", VT_LIST, true, 1, 7, PAT_NONE, NULL, &metric_name},
    STREAM_ARN(false),
    STREAM_ID,
    END,
};
static const vfield_t in_encryption[] = {
    STREAM_NAME(false),
    {"EncryptionType", VT_STRING, true, VNONE, VNONE, PAT_NONE, encryption_types, NULL},
    {"KeyId", VT_STRING, true, 1, 2048, PAT_NONE, NULL, NULL},
    STREAM_ARN(false),
    STREAM_ID,
    END,
};
static const vfield_t in_update_max_record_size[] = {
    STREAM_ARN(false),
    STREAM_ID,
    INT_RANGE("MaxRecordSizeInKiB", true, 1024, 10240),
    END,
};
static const vfield_t in_add_tags[] = {
    STREAM_NAME(false),
    {"Tags", VT_MAP, true, 1, 200, PAT_NONE, NULL, tag_map},
    STREAM_ARN(false),
    STREAM_ID,
    END,
};
static const vfield_t in_remove_tags[] = {
    STREAM_NAME(false),
    {"TagKeys", VT_LIST, true, 1, 50, PAT_NONE, NULL, &tag_key},
    STREAM_ARN(false),
    STREAM_ID,
    END,
};
static const vfield_t in_list_tags_for_stream[] = {
    STREAM_NAME(false),
    {"ExclusiveStartTagKey", VT_STRING, false, 1, 128, PAT_NONE, NULL, NULL},
    INT_RANGE("Limit", false, 1, 50),
    STREAM_ARN(false),
    STREAM_ID,
    END,
};
#define RESOURCE_ARN {"ResourceARN", VT_STRING, true, 1, 2048, PAT_RESOURCE_ARN, NULL, NULL}
static const vfield_t in_tag_resource[] = {
    {"Tags", VT_MAP, true, 1, 200, PAT_NONE, NULL, tag_map},
    RESOURCE_ARN,
    STREAM_ID,
    END,
};
static const vfield_t in_untag_resource[] = {
    {"TagKeys", VT_LIST, true, 1, 50, PAT_NONE, NULL, &tag_key},
    RESOURCE_ARN,
    STREAM_ID,
    END,
};
static const vfield_t in_list_tags_for_resource[] = {
    RESOURCE_ARN,
    STREAM_ID,
    END,
};
static const char *const iterator_types[] = {"AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER", "TRIM_HORIZON",
                                             "LATEST", "AT_TIMESTAMP", NULL};
static const vfield_t starting_position[] = {
    {"Type", VT_STRING, true, VNONE, VNONE, PAT_NONE, iterator_types, NULL},
    {"SequenceNumber", VT_STRING, false, VNONE, VNONE, PAT_SEQUENCE, NULL, NULL},
    {"Timestamp", VT_TIMESTAMP, false, VNONE, VNONE, PAT_NONE, NULL, NULL},
    END,
};
static const vfield_t in_subscribe_to_shard[] = {
    CONSUMER_ARN(true),
    SHARD_ID("ShardId", true),
    {"StartingPosition", VT_STRUCT, true, VNONE, VNONE, PAT_NONE, NULL, starting_position},
    END,
};
/* Data is bounded by the stream's MaxRecordSizeInKiB, checked by the handler. */
static const vfield_t put_entry[] = {
    {"Data", VT_BLOB, true, VNONE, VNONE, PAT_NONE, NULL, NULL},
    {"ExplicitHashKey", VT_STRING, false, VNONE, VNONE, PAT_HASH_KEY, NULL, NULL},
    {"PartitionKey", VT_STRING, true, 1, 256, PAT_NONE, NULL, NULL},
    END,
};
static const vfield_t put_entry_struct = {"member", VT_STRUCT, true, VNONE, VNONE, PAT_NONE, NULL, put_entry};
static const vfield_t in_put_record[] = {
    STREAM_NAME(false),
    {"Data", VT_BLOB, true, VNONE, VNONE, PAT_NONE, NULL, NULL},
    {"PartitionKey", VT_STRING, true, 1, 256, PAT_NONE, NULL, NULL},
    {"ExplicitHashKey", VT_STRING, false, VNONE, VNONE, PAT_HASH_KEY, NULL, NULL},
    {"SequenceNumberForOrdering", VT_STRING, false, VNONE, VNONE, PAT_SEQUENCE, NULL, NULL},
    STREAM_ARN(false),
    STREAM_ID,
    END,
};
static const vfield_t in_put_records[] = {
    {"Records", VT_LIST, true, 1, 500, PAT_NONE, NULL, &put_entry_struct},
    STREAM_NAME(false),
    STREAM_ARN(false),
    STREAM_ID,
    END,
};
static const vfield_t in_get_shard_iterator[] = {
    STREAM_NAME(false),
    SHARD_ID("ShardId", true),
    {"ShardIteratorType", VT_STRING, true, VNONE, VNONE, PAT_NONE, iterator_types, NULL},
    {"StartingSequenceNumber", VT_STRING, false, VNONE, VNONE, PAT_SEQUENCE, NULL, NULL},
    {"Timestamp", VT_TIMESTAMP, false, VNONE, VNONE, PAT_NONE, NULL, NULL},
    STREAM_ARN(false),
    STREAM_ID,
    END,
};
static const vfield_t in_get_records[] = {
    {"ShardIterator", VT_STRING, true, 1, 512, PAT_NONE, NULL, NULL},
    INT_RANGE("Limit", false, 1, 10000),
    STREAM_ARN(false),
    STREAM_ID,
    END,
};
static const vfield_t in_none[] = {END};
static const vfield_t in_update_account_settings[] = {
    {"MinimumThroughputBillingCommitment", VT_STRUCT, true, VNONE, VNONE, PAT_NONE, NULL, commitment},
    END,
};

static const vfield_t in_resource_policy[] = {
    RESOURCE_ARN,
    {"Policy", VT_STRING, true, 1, 20480, PAT_NONE, NULL, NULL},
    END,
};
static const vfield_t in_resource_only[] = {
    RESOURCE_ARN,
    END,
};

/* Sorted by name (api_find_op searches it with bsearch semantics). */
static const api_op_t ops[] = {
    {"AddTagsToStream", in_add_tags, op_add_tags},
    {"CreateStream", in_create_stream, op_create_stream},
    {"DecreaseStreamRetentionPeriod", in_retention, op_decrease_retention},
    {"DeleteResourcePolicy", in_resource_only, op_delete_resource_policy},
    {"DeleteStream", in_delete_stream, op_delete_stream},
    {"DeregisterStreamConsumer", in_consumer, op_deregister_stream_consumer},
    {"DescribeAccountSettings", in_none, op_describe_account_settings},
    {"DescribeLimits", in_none, op_describe_limits},
    {"DescribeStream", in_describe_stream, op_describe_stream},
    {"DescribeStreamConsumer", in_consumer, op_describe_stream_consumer},
    {"DescribeStreamSummary", in_stream_only, op_describe_stream_summary},
    {"DisableEnhancedMonitoring", in_monitoring, op_disable_monitoring},
    {"EnableEnhancedMonitoring", in_monitoring, op_enable_monitoring},
    {"GetRecords", in_get_records, op_get_records, true},
    {"GetResourcePolicy", in_resource_only, op_get_resource_policy},
    {"GetShardIterator", in_get_shard_iterator, op_get_shard_iterator, true},
    {"IncreaseStreamRetentionPeriod", in_retention, op_increase_retention},
    {"ListShards", in_list_shards, op_list_shards},
    {"ListStreamConsumers", in_list_consumers, op_list_stream_consumers},
    {"ListStreams", in_list_streams, op_list_streams},
    {"ListTagsForResource", in_list_tags_for_resource, op_list_tags_for_resource},
    {"ListTagsForStream", in_list_tags_for_stream, op_list_tags_for_stream},
    {"MergeShards", in_merge_shards, op_merge_shards},
    {"PutRecord", in_put_record, op_put_record, true, op_put_record_fast},
    {"PutRecords", in_put_records, op_put_records, true, op_put_records_fast},
    {"PutResourcePolicy", in_resource_policy, op_put_resource_policy},
    {"RegisterStreamConsumer", in_register_consumer, op_register_stream_consumer},
    {"RemoveTagsFromStream", in_remove_tags, op_remove_tags},
    {"SplitShard", in_split_shard, op_split_shard},
    {"StartStreamEncryption", in_encryption, op_start_encryption},
    {"StopStreamEncryption", in_encryption, op_stop_encryption},
    {"SubscribeToShard", in_subscribe_to_shard, op_subscribe_to_shard, true},
    {"TagResource", in_tag_resource, op_tag_resource},
    {"UntagResource", in_untag_resource, op_untag_resource},
    {"UpdateAccountSettings", in_update_account_settings, op_update_account_settings},
    {"UpdateMaxRecordSize", in_update_max_record_size, op_update_max_record_size},
    {"UpdateShardCount", in_update_shard_count, op_update_shard_count},
    {"UpdateStreamMode", in_update_stream_mode, op_update_stream_mode},
};

const api_op_t *api_ops(size_t *count)
{
    *count = sizeof ops / sizeof ops[0];
    return ops;
}

const api_op_t *api_find_op(const char *name, size_t len)
{
    size_t lo = 0, hi = sizeof ops / sizeof ops[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        size_t n = strlen(ops[mid].name);
        int cmp = memcmp(ops[mid].name, name, n < len ? n : len);
        if (cmp == 0 && n != len) {
            cmp = n < len ? -1 : 1;
        }
        if (cmp == 0) {
            return &ops[mid];
        }
        if (cmp < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}
