// RESP encoding (hiredis's formatter) and decoding (hiredis's reader) as our
// CommandBatch, RespReader and RedisReply wrap them; no server needed.
#include <gtest/gtest.h>

#include <string>

#include "queue/resp.h"

namespace ppml::queue {
namespace {

using namespace std::string_literals;

TEST(CommandBatchTest, EncodesBinarySafeBulkStrings) {
  CommandBatch batch;
  batch.Add({"SET", "k", "a\0b\r\n"s});
  batch.Add({"PING"});
  EXPECT_EQ(batch.size(), 2u);
  EXPECT_TRUE(batch.status().ok());
  EXPECT_EQ(batch.bytes(), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\na\0b\r\n\r\n*1\r\n$4\r\nPING\r\n"s);
  batch.Clear();
  EXPECT_TRUE(batch.empty());
  EXPECT_TRUE(batch.bytes().empty());
}

TEST(CommandBatchTest, EmptyCommandIsRecordedAsError) {
  CommandBatch batch;
  batch.Add({"PING"});
  batch.Add(std::span<const std::string_view>());
  EXPECT_EQ(batch.size(), 1u);  // nothing was added for it
  EXPECT_EQ(batch.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(batch.status().message().find("command 2"), std::string::npos) << batch.status().ToString();
  batch.Clear();
  EXPECT_TRUE(batch.status().ok());
}

TEST(RespReaderTest, RepliesArriveInPiecesAndInOrder) {
  RespReader reader;
  ASSERT_TRUE(reader.Feed("+OK\r\n:42\r\n$5\r\nhe").ok());
  Result<std::optional<RedisReply>> first = reader.Next();
  ASSERT_TRUE(first.ok() && first->has_value());
  EXPECT_TRUE((*first)->is_status());
  EXPECT_EQ((*first)->str(), "OK");
  Result<std::optional<RedisReply>> second = reader.Next();
  ASSERT_TRUE(second.ok() && second->has_value());
  EXPECT_TRUE((*second)->is_integer());
  EXPECT_EQ((*second)->integer(), 42);
  Result<std::optional<RedisReply>> partial = reader.Next();
  ASSERT_TRUE(partial.ok());
  EXPECT_FALSE(partial->has_value());  // the bulk string is not complete yet

  ASSERT_TRUE(reader.Feed("l\0o\r\n$-1\r\n"s).ok());
  Result<std::optional<RedisReply>> bulk = reader.Next();
  ASSERT_TRUE(bulk.ok() && bulk->has_value());
  EXPECT_TRUE((*bulk)->is_string());
  EXPECT_EQ((*bulk)->str(), "hel\0o"s);
  Result<std::optional<RedisReply>> nil = reader.Next();
  ASSERT_TRUE(nil.ok() && nil->has_value());
  EXPECT_TRUE((*nil)->is_nil());
}

TEST(RespReaderTest, NestedArraysAndErrors) {
  RespReader reader;
  ASSERT_TRUE(reader.Feed("*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n-WRONGTYPE Operation\r\n").ok());
  Result<std::optional<RedisReply>> array = reader.Next();
  ASSERT_TRUE(array.ok() && array->has_value());
  const RedisReply& entry = **array;
  ASSERT_TRUE(entry.is_array());
  ASSERT_EQ(entry.size(), 2u);
  EXPECT_EQ(entry[0].str(), "1-0");
  EXPECT_EQ(entry[1].size(), 2u);
  EXPECT_EQ(entry[1][1].str(), "v");
  EXPECT_EQ(entry[5].type(), RedisReplyView::Type::kNone);  // out of range is a none view
  EXPECT_EQ(entry.Describe(), "array(2)");
  EXPECT_EQ(entry[0].Describe(), "string(3 bytes)");

  Result<std::optional<RedisReply>> error = reader.Next();
  ASSERT_TRUE(error.ok() && error->has_value());
  EXPECT_TRUE((*error)->is_error());
  EXPECT_EQ((*error)->error(), "WRONGTYPE Operation");
  EXPECT_EQ((*error)->str(), "WRONGTYPE Operation");

  // A reply moves with its tree; the source is left empty.
  RedisReply moved = std::move(**array);
  EXPECT_TRUE(moved.is_array());
  EXPECT_EQ((**array).type(), RedisReplyView::Type::kNone);
}

TEST(RespReaderTest, GarbageIsDataLoss) {
  RespReader reader;
  ASSERT_TRUE(reader.Feed("?what\r\n").ok());
  Result<std::optional<RedisReply>> reply = reader.Next();
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(reply.status().message().find("protocol error"), std::string::npos) << reply.status().ToString();
}

TEST(RedisErrorStatusTest, CodesFollowTheErrorPrefix) {
  RespReader reader;
  ASSERT_TRUE(reader.Feed("-WRONGPASS invalid username-password pair\r\n-LOADING Redis is loading\r\n"
                          "-OOM command not allowed\r\n-NOGROUP No such key\r\n-ERR unknown command\r\n+OK\r\n")
                  .ok());
  const StatusCode expected[] = {StatusCode::kPermissionDenied, StatusCode::kUnavailable,
                                 StatusCode::kResourceExhausted, StatusCode::kNotFound,
                                 StatusCode::kFailedPrecondition, StatusCode::kOk};
  for (StatusCode code : expected) {
    Result<std::optional<RedisReply>> reply = reader.Next();
    ASSERT_TRUE(reply.ok() && reply->has_value());
    Status status = RedisErrorStatus(**reply, "redis XADD s");
    EXPECT_EQ(status.code(), code) << status.ToString();
    if (!status.ok()) {
      EXPECT_EQ(status.message().rfind("redis XADD s: ", 0), 0u) << status.message();
    }
  }
}

}  // namespace
}  // namespace ppml::queue
