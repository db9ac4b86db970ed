// The Redis streams operations of the request path (DESIGN.md, "Request life"):
//
//   ppml:{model}:requests       front-end XADDs requests; the consumer group
//                               "workers" reads them (XREADGROUP), acknowledges
//                               and deletes them together (XACK + XDEL), and
//                               takes over what a crashed worker left pending
//                               (XAUTOCLAIM, delivery counts from XPENDING)
//   ppml:results:{frontend_id}  workers XADD results; the front-end XREADs them
//
// A stream entry as Redis keeps it:
//
//   id "1700000000123-0"  (ms timestamp - sequence, chosen by Redis on XADD *)
//   field/value pairs     "rid" "42"  "enc" <32 bytes>  "body" <EHBP frames> ...
//
// Field names are the caller's (the request envelope defines them); values
// are opaque bytes and may hold anything, NUL and CR/LF included. Messages
// name the command and the stream, never a value.
//
// Errors: a Redis error reply becomes a Status via RedisErrorStatus (NOGROUP
// is NotFound, so a worker can recreate a group whose stream was deleted);
// a reply of the wrong shape is Internal; transport failures are those of
// RedisClient.
//
// Thread safety: the functions keep no state; the RedisClient they are given
// is used by one thread at a time, as always.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "queue/redis.h"

namespace ppml::queue {

struct StreamField {
  std::string_view name;
  std::string_view value;
};

struct StreamEntry {
  std::string id;
  std::vector<std::pair<std::string, std::string>> fields;
  // The value of the first field called `name`.
  std::optional<std::string_view> Field(std::string_view name) const;
};

// One entry of a group's pending entries list (XPENDING, extended form).
struct PendingEntry {
  std::string id;
  std::string consumer;    // who holds it now
  int64_t idle_ms = 0;     // since it was last delivered
  int64_t deliveries = 0;  // times delivered, claims included
};

struct AutoclaimResult {
  std::string next_start;  // "0-0" once the whole pending list was scanned
  std::vector<StreamEntry> entries;
  // Pending ids whose entries no longer exist; Redis drops them from the list.
  std::vector<std::string> deleted_ids;
};

// XGROUP CREATE stream group start_id MKSTREAM; an existing group
// (BUSYGROUP) is fine. start_id "$": only entries added from now on.
Status EnsureGroup(RedisClient& client, std::string_view stream, std::string_view group,
                   std::string_view start_id = "$");

// XADD stream [MAXLEN ~ maxlen_approx] * field value ...; returns the new id.
// maxlen_approx 0 keeps the stream untrimmed. InvalidArgument without fields.
Result<std::string> Xadd(RedisClient& client, std::string_view stream, std::span<const StreamField> fields,
                         int64_t maxlen_approx = 0);
// The same command added to a batch (a worker's results, then AppendAckAndDelete).
void AppendXadd(CommandBatch& batch, std::string_view stream, std::span<const StreamField> fields,
                int64_t maxlen_approx = 0);

// XREADGROUP GROUP group consumer COUNT count [BLOCK block_ms] STREAMS stream id.
// id ">" reads entries never delivered to the group; "0" re-reads this
// consumer's own pending entries (after a restart). block_ms 0 does not block;
// no entry in time gives an empty vector.
Result<std::vector<StreamEntry>> XreadGroup(RedisClient& client, std::string_view group, std::string_view consumer,
                                            std::string_view stream, int64_t count, int block_ms,
                                            std::string_view id = ">");

// The reply of an XREAD or XREADGROUP for one stream: nil when nothing came in
// time, else [[stream, [[id, [field, value, ...]], ...]]]. For callers that
// send the command themselves (the front-end, on its event loop); `what`
// starts error messages.
Result<std::vector<StreamEntry>> ParseReadReply(const RedisReplyView& reply, const std::string& what);

// XREAD COUNT count [BLOCK block_ms] STREAMS stream after_id: entries after
// `after_id` ("$" for new ones only), without a group (the front-end's results).
Result<std::vector<StreamEntry>> Xread(RedisClient& client, std::string_view stream, std::string_view after_id,
                                       int64_t count, int block_ms);

// XACK stream group ids... and XDEL stream ids... in one round trip; returns
// how many were acknowledged (an id acknowledged before counts 0). Nothing is
// sent for no ids.
Result<int64_t> AckAndDelete(RedisClient& client, std::string_view stream, std::string_view group,
                             std::span<const std::string> ids);
void AppendAckAndDelete(CommandBatch& batch, std::string_view stream, std::string_view group,
                        std::span<const std::string> ids);

// XAUTOCLAIM stream group consumer min_idle_ms start COUNT count: entries
// pending longer than min_idle_ms move to `consumer`; each claim counts as a
// delivery. Start with "0-0" and continue from next_start.
Result<AutoclaimResult> Autoclaim(RedisClient& client, std::string_view stream, std::string_view group,
                                  std::string_view consumer, int64_t min_idle_ms, std::string_view start,
                                  int64_t count);

struct PendingQuery {
  std::string start = "-";
  std::string end = "+";
  int64_t count = 100;
  int64_t min_idle_ms = 0;  // 0: any
  std::string consumer;     // empty: every consumer
};
// XPENDING stream group [IDLE min_idle_ms] start end count [consumer].
Result<std::vector<PendingEntry>> PendingRange(RedisClient& client, std::string_view stream, std::string_view group,
                                               const PendingQuery& query);
// The pending-list entries for `ids` (one XPENDING id id 1 each, pipelined);
// ids not pending are left out.
Result<std::vector<PendingEntry>> PendingDeliveries(RedisClient& client, std::string_view stream,
                                                    std::string_view group, std::span<const std::string> ids);

// XLEN stream (0 when it does not exist).
Result<int64_t> Xlen(RedisClient& client, std::string_view stream);

}  // namespace ppml::queue
