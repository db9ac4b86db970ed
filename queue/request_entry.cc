#include "queue/request_entry.h"

#include <charconv>
#include <chrono>

#include "common/kserve.h"

namespace ppml::queue {
namespace {

bool IsKeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
         c == '-';
}

Result<std::string_view> RequiredField(const StreamEntry& entry, std::string_view name) {
  std::optional<std::string_view> value = entry.Field(name);
  if (!value) return Status::InvalidArgument("stream entry " + entry.id + ": field '" + std::string(name) + "' is missing");
  return *value;
}

// A non-negative decimal integer field; absent gives `fallback`.
Result<int64_t> IntegerField(const StreamEntry& entry, std::string_view name, int64_t fallback) {
  std::optional<std::string_view> value = entry.Field(name);
  if (!value) return fallback;
  int64_t parsed = 0;
  auto [end, error] = std::from_chars(value->data(), value->data() + value->size(), parsed);
  if (error != std::errc() || end != value->data() + value->size() || parsed < 0) {
    return Status::InvalidArgument("stream entry " + entry.id + ": field '" + std::string(name) +
                                   "' is not a non-negative integer");
  }
  return parsed;
}

// "hlen": the Inference-Header-Content-Length of a body with binary tensors.
void AddJsonLength(const std::optional<size_t>& json_length, std::string& text, std::vector<StreamField>& fields) {
  if (!json_length) return;
  text = std::to_string(*json_length);
  fields.push_back({"hlen", text});
}

Status ReadJsonLength(const StreamEntry& entry, std::optional<size_t>* out) {
  if (!entry.Field("hlen")) return Status::Ok();
  PPML_ASSIGN_OR_RETURN(int64_t hlen, IntegerField(entry, "hlen", 0));
  *out = static_cast<size_t>(hlen);
  return Status::Ok();
}

}  // namespace

Status CheckKeyName(std::string_view name, std::string_view what) {
  if (name.empty() || name.size() > 128) {
    return Status::InvalidArgument(std::string(what) + " must be 1-128 characters long");
  }
  for (char c : name) {
    if (!IsKeyChar(c)) {
      return Status::InvalidArgument(std::string(what) + " '" + std::string(name) +
                                     "' may only hold letters, digits, '_', '.' and '-'");
    }
  }
  return Status::Ok();
}

std::string RequestStream(std::string_view model) { return "ppml:{" + std::string(model) + "}:requests"; }
std::string DeadLetterStream(std::string_view model) { return "ppml:{" + std::string(model) + "}:dead"; }
std::string ResultStream(std::string_view frontend_id) { return "ppml:results:{" + std::string(frontend_id) + "}"; }
std::string InfoKey(std::string_view model) { return "ppml:{" + std::string(model) + "}:info"; }
std::string WorkersKey(std::string_view model) { return "ppml:{" + std::string(model) + "}:workers"; }

std::vector<StreamField> RequestEntry::Fields() const {
  std::vector<StreamField> fields = {{"rid", request_id}, {"enc", encapsulated_key}, {"body", body}};
  AddJsonLength(json_length, hlen_text_, fields);
  if (deadline_unix_ms > 0) {
    deadline_text_ = std::to_string(deadline_unix_ms);
    fields.push_back({"deadline", deadline_text_});
  }
  fields.push_back({"reply_to", reply_to});
  if (!kind.empty()) fields.push_back({"kind", kind});
  return fields;
}

Result<RequestEntry> RequestEntry::FromStream(const StreamEntry& entry) {
  RequestEntry request;
  PPML_ASSIGN_OR_RETURN(std::string_view rid, RequiredField(entry, "rid"));
  if (std::optional<std::string_view> kind = entry.Field("kind")) {
    if (*kind != kAttestKind) {
      return Status::InvalidArgument("stream entry " + entry.id + ": field 'kind' is not \"attest\"");
    }
    request.kind = *kind;
  }
  std::string_view enc;
  if (request.kind.empty()) {
    PPML_ASSIGN_OR_RETURN(enc, RequiredField(entry, "enc"));
  }
  PPML_ASSIGN_OR_RETURN(std::string_view body, RequiredField(entry, "body"));
  PPML_ASSIGN_OR_RETURN(std::string_view reply_to, RequiredField(entry, "reply_to"));
  PPML_RETURN_IF_ERROR(CheckKeyName(reply_to, "stream entry " + entry.id + ": field 'reply_to'"));
  request.request_id = rid;
  request.encapsulated_key = enc;
  request.body = body;
  request.reply_to = reply_to;
  PPML_RETURN_IF_ERROR(ReadJsonLength(entry, &request.json_length));
  PPML_ASSIGN_OR_RETURN(request.deadline_unix_ms, IntegerField(entry, "deadline", 0));
  return request;
}

std::vector<StreamField> ResultEntry::Fields() const {
  status_text_ = std::to_string(http_status);
  std::vector<StreamField> fields = {{"rid", request_id}, {"status", status_text_}};
  if (!response_nonce.empty()) fields.push_back({"nonce", response_nonce});
  fields.push_back({"body", body});
  AddJsonLength(json_length, hlen_text_, fields);
  return fields;
}

Result<ResultEntry> ResultEntry::FromStream(const StreamEntry& entry) {
  ResultEntry result;
  PPML_ASSIGN_OR_RETURN(std::string_view rid, RequiredField(entry, "rid"));
  PPML_ASSIGN_OR_RETURN(std::string_view body, RequiredField(entry, "body"));
  PPML_ASSIGN_OR_RETURN(int64_t status, IntegerField(entry, "status", -1));
  if (status < 100 || status > 599) {
    return Status::InvalidArgument("stream entry " + entry.id + ": field 'status' is missing or not an HTTP status");
  }
  result.request_id = rid;
  result.body = body;
  result.http_status = static_cast<int>(status);
  if (std::optional<std::string_view> nonce = entry.Field("nonce")) result.response_nonce = *nonce;
  PPML_RETURN_IF_ERROR(ReadJsonLength(entry, &result.json_length));
  return result;
}

ResultEntry PlainErrorResult(std::string request_id, int http_status, std::string_view message) {
  ResultEntry result;
  result.request_id = std::move(request_id);
  result.http_status = http_status;
  result.body = kserve::ErrorJson(message);
  return result;
}

int64_t UnixNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace ppml::queue
