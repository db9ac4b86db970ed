#include "queue/streams.h"

namespace ppml::queue {
namespace {

std::string What(std::string_view command, std::string_view stream) {
  return "redis " + std::string(command) + " " + std::string(stream);
}

Status Unexpected(const std::string& what, const RedisReplyView& reply) {
  return Status::Internal(what + ": unexpected reply " + reply.Describe());
}

// OK for any reply but an error one, which becomes the Status.
Status CheckReply(const RedisReplyView& reply, const std::string& what) { return RedisErrorStatus(reply, what); }

// One entry: [id, [field, value, field, value, ...]]. The field list is nil
// for an entry deleted while it was pending (reads of pending history).
Result<StreamEntry> ParseEntry(const RedisReplyView& reply, const std::string& what) {
  if (!reply.is_array() || reply.size() != 2 || !reply[0].is_string()) return Unexpected(what, reply);
  StreamEntry entry;
  entry.id = std::string(reply[0].str());
  RedisReplyView fields = reply[1];
  if (fields.is_nil()) return entry;
  if (!fields.is_array() || fields.size() % 2 != 0) return Unexpected(what, fields);
  entry.fields.reserve(fields.size() / 2);
  for (size_t i = 0; i < fields.size(); i += 2) {
    entry.fields.emplace_back(std::string(fields[i].str()), std::string(fields[i + 1].str()));
  }
  return entry;
}

Result<std::vector<StreamEntry>> ParseEntries(const RedisReplyView& reply, const std::string& what) {
  if (!reply.is_array()) return Unexpected(what, reply);
  std::vector<StreamEntry> entries;
  entries.reserve(reply.size());
  for (size_t i = 0; i < reply.size(); ++i) {
    PPML_ASSIGN_OR_RETURN(StreamEntry entry, ParseEntry(reply[i], what));
    entries.push_back(std::move(entry));
  }
  return entries;
}

// [id, consumer, idle ms, deliveries]
Result<PendingEntry> ParsePending(const RedisReplyView& reply, const std::string& what) {
  if (!reply.is_array() || reply.size() != 4 || !reply[0].is_string() || !reply[1].is_string() ||
      !reply[2].is_integer() || !reply[3].is_integer()) {
    return Unexpected(what, reply);
  }
  return PendingEntry{std::string(reply[0].str()), std::string(reply[1].str()), reply[2].integer(),
                      reply[3].integer()};
}

Status AppendPending(const RedisReplyView& reply, const std::string& what, std::vector<PendingEntry>* out) {
  PPML_RETURN_IF_ERROR(CheckReply(reply, what));
  if (!reply.is_array()) return Unexpected(what, reply);
  for (size_t i = 0; i < reply.size(); ++i) {
    PPML_ASSIGN_OR_RETURN(PendingEntry entry, ParsePending(reply[i], what));
    out->push_back(std::move(entry));
  }
  return Status::Ok();
}

// COUNT n [BLOCK ms]: the common middle of XREAD and XREADGROUP.
void AppendCountAndBlock(std::vector<std::string_view>& args, const std::string& count, const std::string& block) {
  args.insert(args.end(), {"COUNT", count});
  if (!block.empty()) args.insert(args.end(), {"BLOCK", block});
}

}  // namespace

Result<std::vector<StreamEntry>> ParseReadReply(const RedisReplyView& reply, const std::string& what) {
  PPML_RETURN_IF_ERROR(CheckReply(reply, what));
  if (reply.is_nil()) return std::vector<StreamEntry>();
  if (!reply.is_array() || reply.size() != 1 || !reply[0].is_array() || reply[0].size() != 2) {
    return Unexpected(what, reply);
  }
  return ParseEntries(reply[0][1], what);
}

std::optional<std::string_view> StreamEntry::Field(std::string_view name) const {
  for (const auto& [field, value] : fields) {
    if (field == name) return std::string_view(value);
  }
  return std::nullopt;
}

Status EnsureGroup(RedisClient& client, std::string_view stream, std::string_view group, std::string_view start_id) {
  const std::string what = What("XGROUP CREATE", stream);
  PPML_ASSIGN_OR_RETURN(RedisReply reply, client.Command({"XGROUP", "CREATE", stream, group, start_id, "MKSTREAM"}));
  if (reply.is_error() && reply.error().starts_with("BUSYGROUP")) return Status::Ok();
  return CheckReply(reply, what);
}

void AppendXadd(CommandBatch& batch, std::string_view stream, std::span<const StreamField> fields,
                int64_t maxlen_approx) {
  const std::string maxlen = std::to_string(maxlen_approx);
  std::vector<std::string_view> args = {"XADD", stream};
  if (maxlen_approx > 0) args.insert(args.end(), {"MAXLEN", "~", maxlen});
  args.push_back("*");
  for (const StreamField& field : fields) args.insert(args.end(), {field.name, field.value});
  // No fields leaves "XADD s *", which Redis rejects with an error reply.
  batch.Add(args);
}

Result<std::string> Xadd(RedisClient& client, std::string_view stream, std::span<const StreamField> fields,
                         int64_t maxlen_approx) {
  const std::string what = What("XADD", stream);
  if (fields.empty()) return Status::InvalidArgument(what + ": an entry needs at least one field");
  CommandBatch batch;
  AppendXadd(batch, stream, fields, maxlen_approx);
  PPML_ASSIGN_OR_RETURN(std::vector<RedisReply> replies, client.Execute(batch));
  const RedisReply& reply = replies.front();
  PPML_RETURN_IF_ERROR(CheckReply(reply, what));
  if (!reply.is_string()) return Unexpected(what, reply);
  return std::string(reply.str());
}

Result<std::vector<StreamEntry>> XreadGroup(RedisClient& client, std::string_view group, std::string_view consumer,
                                            std::string_view stream, int64_t count, int block_ms,
                                            std::string_view id) {
  const std::string what = What("XREADGROUP", stream);
  if (count < 1) return Status::InvalidArgument(what + ": count must be at least 1");
  const std::string count_text = std::to_string(count);
  const std::string block_text = block_ms > 0 ? std::to_string(block_ms) : "";
  std::vector<std::string_view> args = {"XREADGROUP", "GROUP", group, consumer};
  AppendCountAndBlock(args, count_text, block_text);
  args.insert(args.end(), {"STREAMS", stream, id});
  PPML_ASSIGN_OR_RETURN(RedisReply reply, client.Command(args, block_ms));
  return ParseReadReply(reply, what);
}

Result<std::vector<StreamEntry>> Xread(RedisClient& client, std::string_view stream, std::string_view after_id,
                                       int64_t count, int block_ms) {
  const std::string what = What("XREAD", stream);
  if (count < 1) return Status::InvalidArgument(what + ": count must be at least 1");
  const std::string count_text = std::to_string(count);
  const std::string block_text = block_ms > 0 ? std::to_string(block_ms) : "";
  std::vector<std::string_view> args = {"XREAD"};
  AppendCountAndBlock(args, count_text, block_text);
  args.insert(args.end(), {"STREAMS", stream, after_id});
  PPML_ASSIGN_OR_RETURN(RedisReply reply, client.Command(args, block_ms));
  return ParseReadReply(reply, what);
}

void AppendAckAndDelete(CommandBatch& batch, std::string_view stream, std::string_view group,
                        std::span<const std::string> ids) {
  std::vector<std::string_view> args = {"XACK", stream, group};
  args.insert(args.end(), ids.begin(), ids.end());
  batch.Add(args);
  args = {"XDEL", stream};
  args.insert(args.end(), ids.begin(), ids.end());
  batch.Add(args);
}

Result<int64_t> AckAndDelete(RedisClient& client, std::string_view stream, std::string_view group,
                             std::span<const std::string> ids) {
  if (ids.empty()) return int64_t{0};
  CommandBatch batch;
  AppendAckAndDelete(batch, stream, group, ids);
  PPML_ASSIGN_OR_RETURN(std::vector<RedisReply> replies, client.Execute(batch));
  PPML_RETURN_IF_ERROR(CheckReply(replies[0], What("XACK", stream)));
  PPML_RETURN_IF_ERROR(CheckReply(replies[1], What("XDEL", stream)));
  if (!replies[0].is_integer()) return Unexpected(What("XACK", stream), replies[0]);
  return replies[0].integer();
}

Result<AutoclaimResult> Autoclaim(RedisClient& client, std::string_view stream, std::string_view group,
                                  std::string_view consumer, int64_t min_idle_ms, std::string_view start,
                                  int64_t count) {
  const std::string what = What("XAUTOCLAIM", stream);
  if (count < 1) return Status::InvalidArgument(what + ": count must be at least 1");
  const std::string idle_text = std::to_string(min_idle_ms);
  const std::string count_text = std::to_string(count);
  PPML_ASSIGN_OR_RETURN(RedisReply reply, client.Command({"XAUTOCLAIM", stream, group, consumer, idle_text, start,
                                                          "COUNT", count_text}));
  PPML_RETURN_IF_ERROR(CheckReply(reply, what));
  // [next start, [entry, ...], [deleted id, ...]]; Redis 6.2 sends no third element.
  if (!reply.is_array() || reply.size() < 2 || !reply[0].is_string()) return Unexpected(what, reply);
  AutoclaimResult result;
  result.next_start = std::string(reply[0].str());
  PPML_ASSIGN_OR_RETURN(result.entries, ParseEntries(reply[1], what));
  RedisReplyView deleted = reply[2];
  for (size_t i = 0; i < deleted.size(); ++i) result.deleted_ids.emplace_back(deleted[i].str());
  return result;
}

Result<std::vector<PendingEntry>> PendingRange(RedisClient& client, std::string_view stream, std::string_view group,
                                               const PendingQuery& query) {
  const std::string what = What("XPENDING", stream);
  const std::string idle_text = std::to_string(query.min_idle_ms);
  const std::string count_text = std::to_string(query.count);
  std::vector<std::string_view> args = {"XPENDING", stream, group};
  if (query.min_idle_ms > 0) args.insert(args.end(), {"IDLE", idle_text});
  args.insert(args.end(), {query.start, query.end, count_text});
  if (!query.consumer.empty()) args.push_back(query.consumer);
  PPML_ASSIGN_OR_RETURN(RedisReply reply, client.Command(args));
  std::vector<PendingEntry> entries;
  PPML_RETURN_IF_ERROR(AppendPending(reply, what, &entries));
  return entries;
}

Result<std::vector<PendingEntry>> PendingDeliveries(RedisClient& client, std::string_view stream,
                                                    std::string_view group, std::span<const std::string> ids) {
  const std::string what = What("XPENDING", stream);
  if (ids.empty()) return std::vector<PendingEntry>();
  CommandBatch batch;
  for (const std::string& id : ids) batch.Add({"XPENDING", stream, group, id, id, "1"});
  PPML_ASSIGN_OR_RETURN(std::vector<RedisReply> replies, client.Execute(batch));
  std::vector<PendingEntry> entries;
  for (const RedisReply& reply : replies) PPML_RETURN_IF_ERROR(AppendPending(reply, what, &entries));
  return entries;
}

Result<int64_t> Xlen(RedisClient& client, std::string_view stream) {
  const std::string what = What("XLEN", stream);
  PPML_ASSIGN_OR_RETURN(RedisReply reply, client.Command({"XLEN", stream}));
  PPML_RETURN_IF_ERROR(CheckReply(reply, what));
  if (!reply.is_integer()) return Unexpected(what, reply);
  return reply.integer();
}

}  // namespace ppml::queue
